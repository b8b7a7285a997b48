"""The backend's ERROR lines: from the platform's logs, or (platform "none") its log file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from travellr_ops.errors import ServiceError
from travellr_ops.ops.service import log_filter
from travellr_ops.ops.service import logs as service_logs
from travellr_ops.runtime import Runtime

BLOCK = 64 * 1024


@dataclass
class ErrorLines:
    source: str
    #: lines read (None: the platform's last ``tail`` lines, however many there were)
    read: int | None
    errors: list[str]


def backend_errors(servers: Runtime, tail: int, since: datetime | None = None) -> ErrorLines:
    """ERROR (and worse) lines among the backend's last ``tail`` lines (since ``since``)."""
    if servers.has_platform:
        with servers.platform() as platform:
            found = service_logs(
                platform,
                ["backend"],
                tail=tail,
                since=since.isoformat() if since else None,
                level="ERROR",
            )
            return ErrorLines(f"{platform.name}:backend", None, [line.text for line in found])
    path = servers.settings.logs.app_log
    lines = tail_lines(path, tail)
    if since is not None:
        lines = [line for line in lines if _after(line, since)]
    keep = log_filter(None, "ERROR")
    return ErrorLines(str(path), len(lines), [line for line in lines if keep(line)])


def tail_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of a file, read from its end."""
    try:
        with open(path, "rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            data = b""
            position = end
            while position > 0 and data.count(b"\n") <= count:
                step = min(BLOCK, position)
                position -= step
                handle.seek(position)
                data = handle.read(step) + data
    except FileNotFoundError:
        raise ServiceError(
            f"no backend log at {path}",
            hint="set logs.app_log to the backend's application log",
        ) from None
    except OSError as exc:
        raise ServiceError(f"cannot read the backend log {path}: {exc.strerror}") from None
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-count:]


def _after(line: str, since: datetime) -> bool:
    """Whether a line stamped ``2026-11-28T04:12:00.123Z ...`` is from ``since`` on (a line
    without a readable stamp is kept: better shown than lost)."""
    stamp = line.split(" ", 1)[0]
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return True
    return when.tzinfo is None or when >= since
