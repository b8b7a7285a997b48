"""Where `security logs` reads from: files (with their rotated copies) or the service."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from travellr_ops.ops.security.logs import LogReport, analyze_files, analyze_lines, rotated
from travellr_ops.runtime import Runtime

SERVICE = "service"


def parse_window(since: str, option: str = "--since") -> datetime | None:
    """The start of the review's window: ``all`` (None: everything), else a duration ago or a
    time, in the tool's one grammar."""
    if since.strip().lower() == "all":
        return None
    from travellr_ops.vocab.timespec import parse_since

    return parse_since(since, option)


def review(rt: Runtime, sources: list[str], start: datetime | None) -> LogReport:
    """The log review of ``sources`` (files, or ``service``; none: the settings' access and
    app logs) from ``start`` on (None: all of them)."""
    sec = rt.settings.security
    if SERVICE in sources:
        from travellr_ops.ops.service import logs as service_logs

        with rt.platform() as platform:
            service = "backend"  # the logical name; each platform maps it to its own
            lines = service_logs(platform, [service], since=start.isoformat() if start else None)
            return analyze_lines(
                (line.text for line in lines),
                f"{platform.name}:{service}",
                since=start,
                bruteforce_failures=sec.bruteforce_failures,
                bruteforce_window_s=sec.bruteforce_window_s,
            )
    paths = [Path(s) for s in sources] or [rt.settings.logs.access_log, rt.settings.logs.app_log]
    files: list[tuple[Path, str | None]] = []
    for path in paths:
        copies = rotated(path)
        files += [(p, None) for p in copies] or [(path, None)]  # a missing file: its error
    return analyze_files(
        files,
        since=start,
        bruteforce_failures=sec.bruteforce_failures,
        bruteforce_window_s=sec.bruteforce_window_s,
    )
