"""The backend's ERROR lines, from its app log wherever the settings put it
(``ops.logsource``: a local file, the file inside each container, or the service's output)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from travellr_ops.ops import logsource
from travellr_ops.ops.service import log_filter
from travellr_ops.runtime import Runtime


@dataclass
class ErrorLines:
    source: str
    #: lines read
    read: int
    errors: list[str]


def backend_errors(rt: Runtime, tail: int, since: datetime | None = None) -> ErrorLines:
    """ERROR (and worse) lines among the backend's last ``tail`` app-log lines (since
    ``since``). A log that gave no line, or none in the app log's form, is LogUnavailable:
    "no ERROR lines" is said only of lines that were read."""
    source = logsource.log_source(rt.settings, "app")
    found = logsource.last_lines(source, rt.platform_factory(), tail, rt.settings.logs.read_bytes)
    if not any(source.matches(line.text.encode("utf-8", "replace")) for line in found):
        raise source.nothing_found(len(found))
    if since is not None:
        found = [line for line in found if line.time is None or line.time >= since]
    keep = log_filter(None, "ERROR")
    return ErrorLines(source.label, len(found), [line.text for line in found if keep(line.text)])
