"""The backend's ERROR lines: from the platform's logs, or (platform "none") its log file."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from travellr_ops.errors import ServiceError
from travellr_ops.ops.service import log_filter
from travellr_ops.ops.service import logs as service_logs
from travellr_ops.runtime import Runtime
from travellr_ops.vocab.logformat import leading_time
from travellr_ops.vocab.tail import tail_lines


@dataclass
class ErrorLines:
    source: str
    #: lines read (None: the platform's last ``tail`` lines, however many there were)
    read: int | None
    errors: list[str]


def backend_errors(rt: Runtime, tail: int, since: datetime | None = None) -> ErrorLines:
    """ERROR (and worse) lines among the backend's last ``tail`` lines (since ``since``)."""
    if rt.has_platform:
        with rt.platform() as platform:
            found = service_logs(
                platform,
                ["backend"],
                tail=tail,
                since=since.isoformat() if since else None,
                level="ERROR",
            )
            return ErrorLines(f"{platform.name}:backend", None, [line.text for line in found])
    path = rt.settings.logs.app_log
    try:
        lines = tail_lines(path, tail)
    except FileNotFoundError:
        raise ServiceError(
            f"no backend log at {path}",
            hint="set logs.app_log to the backend's application log",
        ) from None
    except OSError as exc:
        raise ServiceError(f"cannot read the backend log {path}: {exc.strerror}") from None
    if since is not None:
        lines = [line for line in lines if _after(line, since)]
    keep = log_filter(None, "ERROR")
    return ErrorLines(str(path), len(lines), [line for line in lines if keep(line)])


def _after(line: str, since: datetime) -> bool:
    """Whether a line stamped ``2026-11-28T04:12:00.123Z ...`` is from ``since`` on (a line
    without a readable stamp is kept: better shown than lost)."""
    when = leading_time(line)
    return when is None or when >= since
