"""Where `security logs` reads from: local files (with their rotated copies), or the
backend's access and app logs wherever the settings put them (``ops.logsource``)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from travellr_ops.errors import ConfigError, TravellrError
from travellr_ops.ops import logsource
from travellr_ops.ops.security.logs import (
    FileStat,
    LogReport,
    analyze_files,
    analyze_lines,
    rotated,
)
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
    """The log review of ``sources`` (files, or ``service``: the backend's logs through the
    platform; none: the settings' access and app logs) from ``start`` on (None: all of
    them)."""
    s = rt.settings
    if SERVICE in sources:
        if not rt.has_platform:
            raise ConfigError(
                "--source service reads the backend's logs through its platform,"
                " and platform is 'none'",
                hint="pass --source FILE, or set platform",
            )
        return _review_sources(rt, _platform_sources(rt), start)
    if sources:
        return _review_files(rt, [Path(p) for p in sources], start)
    wanted = [logsource.log_source(s, "access"), logsource.log_source(s, "app")]
    if all(w.source == "file" for w in wanted):
        return _review_files(rt, [w.path for w in wanted if w.path is not None], start)
    return _review_sources(rt, wanted, start)


def _platform_sources(rt: Runtime) -> list[logsource.LogSource]:
    """The access and app logs as the platform holds them: the settings' sources, those set to
    a local file replaced by the platform's own place."""
    found = []
    for kind in ("access", "app"):
        source = logsource.log_source(rt.settings, kind)
        if source.source == "file":
            platform_only = rt.settings.model_copy(deep=True)
            setattr(platform_only.logs, f"{kind}_log", None)
            setattr(platform_only.logs, f"{kind}_source", None)
            source = logsource.log_source(platform_only, kind)
        found.append(source)
    return found


def _review_files(rt: Runtime, paths: list[Path], start: datetime | None) -> LogReport:
    sec = rt.settings.security
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


def _review_sources(
    rt: Runtime, sources: list[logsource.LogSource], start: datetime | None
) -> LogReport:
    """Each source read through the platform (from ``start``, at most logs.read_bytes of each
    file), into one report; a source that gave nothing of its kind is an error of its own."""
    sec = rt.settings.security
    streams: list[tuple[logsource.LogSource, list[bytes] | TravellrError]] = []
    platform = rt.platform_factory()
    opened = None
    try:
        for source in sources:
            if source.source != "file" and opened is None and platform is not None:
                opened = platform()
            reader = logsource.Reader(source, opened, start, rt.settings.logs.read_bytes)
            try:
                streams.append((source, reader.read_bytes()))
            except TravellrError as exc:
                streams.append((source, exc))
            finally:
                reader.close()
    finally:
        if opened is not None:
            opened.close()
    report = analyze_lines(
        [(s.label, s.kind, got) for s, got in streams if not isinstance(got, TravellrError)],
        since=start,
        bruteforce_failures=sec.bruteforce_failures,
        bruteforce_window_s=sec.bruteforce_window_s,
    )
    for source, got in streams:
        if isinstance(got, TravellrError):
            report.files.append(FileStat(source.label, source.kind, error=got.message))
    # read, but nothing of its kind: no review of it (an access log is never empty where a
    # backend serves, if only its health checks)
    by_key: dict[tuple[str, str], logsource.LogSource] = {
        (source.label, source.kind): source for source, _ in streams
    }
    for stat in report.files:
        source = by_key[(stat.path, stat.kind)]
        if not stat.error and (stat.parsed or (source.kind == "app" and not stat.lines)):
            continue
        stat.error = stat.error or source.nothing_found(stat.lines).message
        report.unread.append(source.label)
    return report
