"""Where `security logs` reads from: files (with their rotated copies) or the service."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from travellr_ops.ops.security.logs import LogReport, analyze_files, analyze_lines, rotated
from travellr_ops.settings import Settings

SERVICE = "service"


def parse_window(since: str) -> datetime | None:
    if since.strip().lower() == "all":
        return None
    from travellr_ops.ops.service import parse_since

    return parse_since(since)


def review(settings: Settings, sources: list[str], since: str) -> LogReport:
    start = parse_window(since)
    sec = settings.security
    if SERVICE in sources:
        from travellr_ops.adapters.platform import get_platform
        from travellr_ops.ops.service import logs as service_logs

        platform = get_platform(settings)
        try:
            service = "backend"  # the logical name; each platform maps it to its own
            lines = service_logs(platform, [service], since=since if start else None)
            return analyze_lines(
                (line.text for line in lines),
                f"{platform.name}:{service}",
                since=start,
                bruteforce_failures=sec.bruteforce_failures,
                bruteforce_window_s=sec.bruteforce_window_s,
            )
        finally:
            platform.close()
    paths = [Path(s) for s in sources] or [settings.logs.access_log, settings.logs.app_log]
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
