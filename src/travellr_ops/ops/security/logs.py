"""`security logs`: 401/403/429, failed logins, brute force and rate limiting, from the
backend's access log (combined format) and app log, rotated and gzipped copies included.

The logs are read in blocks and scanned with compiled regular expressions over each whole
block (the per-line loop runs in C), so a large log costs little more than reading it; memory
holds only the counters, never the log. Lines that parse as neither format (binary garbage, a
line cut short) and gzip files that end early are counted and reported, never fatal.
"""

from __future__ import annotations

import calendar
import gzip
import json
import os
import re
import zlib
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

from travellr_ops.vocab.logformat import ACCESS_TIME, APP_LEVELS, APP_TIME

BLOCK = 4 << 20
#: a plain access log at least this big is cut at line boundaries into one byte range per core
#: (up to MAX_WORKERS), scanned by as many processes at once; its counts are sums, so the
#: parts add up to exactly what one scan counts. Gzip files and app logs (whose brute-force
#: window needs the failures in order) are read in one stream.
PARALLEL_MIN = 64 << 20
MAX_WORKERS = 4
#: a "line" longer than this without a newline is garbage: counted once, then skipped
MAX_LINE = 1 << 20
DENIED = (401, 403, 429)
_MONTHS = {m.encode(): i for i, m in enumerate(calendar.month_abbr) if m}

# The patterns are the shared formats (vocab.logformat's ACCESS_TIME, APP_TIME, APP_LEVELS)
# specialised for a bulk scan.
# Every line pattern starts with the newline before the line (each block is scanned with a
# newline put in front), not with ^ under re.M: the regex engine then jumps from newline to
# newline with a fast search for that literal instead of trying a match at every byte, which
# makes the scan about 2.5x faster.
# -- the access log, combined format: ip ident user [time] "request" status size "ref" "ua"
# The request may hold escaped quotes (\"), as in vocab.logformat; written as a run of plain
# characters then (backslash, any, plain run)*, it costs no more than a plain run when there
# is no backslash.
_REQUEST = rb'"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+"'
# (one group, the whole time: one object per line is what findall costs most)
_ACCESS_VALID = re.compile(
    rb"\n\S+ \S+ \S+ \[(" + ACCESS_TIME + rb")\] " + _REQUEST + rb" \d{3} \S+"
)
# the same lines when their time does not matter (no --since), matched one after the other from
# the block's start, each to its end, by one call that stops only at a line that is not one:
# no search for each line's start and no object per line (about 35 % faster than findall);
# atomic, since no field can give anything back to the next
_ACCESS_RUN = re.compile(
    rb"(?>\S+ \S+ \S+ \[" + ACCESS_TIME + rb"\] " + _REQUEST + rb" \d{3} \S[^\n]*+(?:\n|\Z))*"
)
# 401/403/429 lines are found by what ends their request ('" 401 '), a literal search at
# memory speed, and only those lines are parsed whole: one pattern parsing every line would
# backtrack through each request that is not one of them
_ACCESS_DENIED_HINT = re.compile(rb'" (?:401|403|429) ')
# (run with findall over those lines only, joined, each after its newline; the path stops at
# "?", the query dropped; possessive, so that a line that is not one of them fails at once
# instead of backtracking through its request)
_ACCESS_DENIED = re.compile(
    rb"\n(\S++) \S++ \S++ \[("
    + ACCESS_TIME
    + rb')\] "(?:[A-Z]+ )?+([^" \n?\\]*+)'
    + _REQUEST[1:]
    + rb" (401|403|429) \S"
)
# -- the app log: 2026-11-28T04:12:00.123Z LEVEL message key=value ...
_APP_VALID = re.compile(
    rb"\n" + APP_TIME + rb" (?:" + b"|".join(level.encode() for level in APP_LEVELS) + rb") "
)
_APP_EVENT = re.compile(rb"\n(" + APP_TIME + rb") WARN (login failed|rate limit exceeded)([^\n]*)")
_FIELD = re.compile(rb'(\w+)=("(?:[^"\\\n]|\\.)*"|\S*)')
_ROTATED = re.compile(r"\.(\d+)(\.gz)?$")


@dataclass
class FileStat:
    path: str
    kind: str  # "access", "app", "unknown"
    lines: int = 0
    parsed: int = 0
    malformed: int = 0
    #: a gzip file that ended early or is damaged: read up to there
    truncated: bool = False
    error: str = ""


@dataclass
class Suspect:
    ip: str
    #: when the threshold was first reached, and the failures inside that window
    detected_at: str
    failures: int = 0
    accounts: list[str] = field(default_factory=list)


@dataclass
class LogReport:
    since: datetime | None
    bruteforce_failures: int
    bruteforce_window_s: float
    files: list[FileStat] = field(default_factory=list)
    requests: int = 0
    denied: Counter[int] = field(default_factory=Counter)
    denied_by_ip: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    denied_by_path: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    denied_by_hour: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    failed_logins: int = 0
    failed_by_account: Counter[str] = field(default_factory=Counter)
    failed_by_ip: Counter[str] = field(default_factory=Counter)
    rate_limit_hits: int = 0
    rate_limited_by_ip: Counter[str] = field(default_factory=Counter)
    suspects: dict[str, Suspect] = field(default_factory=dict)
    #: logs the review needed and could not read (a platform's file or output that gave
    #: nothing of its kind): its counts are then not the service's, whatever else was read
    unread: list[str] = field(default_factory=list)

    @property
    def malformed(self) -> int:
        return sum(f.malformed for f in self.files)

    @property
    def read_any(self) -> bool:
        return any(not f.error for f in self.files)

    def offenders(self) -> list[tuple[str, int, int, int, int]]:
        """(ip, denied, failed logins, rate-limit hits, total) by total, highest first."""
        ips = set(self.denied_by_ip) | set(self.failed_by_ip) | set(self.rate_limited_by_ip)
        rows = []
        for ip in ips:
            denied = sum(self.denied_by_ip[ip].values()) if ip in self.denied_by_ip else 0
            failed, limited = self.failed_by_ip[ip], self.rate_limited_by_ip[ip]
            rows.append((ip, denied, failed, limited, denied + failed + limited))
        return sorted(rows, key=lambda r: (-r[4], r[0]))


class _Analyzer:
    def __init__(self, report: LogReport) -> None:
        self.report = report
        self.since = report.since.timestamp() if report.since else None
        self._minutes: dict[bytes, float] = {}
        self._windows: dict[str, deque[float]] = {}
        self._accounts: dict[str, set[str]] = defaultdict(set)
        self._hours: dict[float, str] = {}

    # -- time: parsed once per distinct minute, so a big log costs a dictionary look-up.
    # Both stamps are fixed-width (vocab.logformat): an access time is dd/Mon/yyyy:HH:MM:SS
    # +zzzz, an app time yyyy-mm-ddTHH:MM:SS[.fff]Z.
    def _access_minute(self, key: bytes) -> float:
        """The minute (epoch seconds) of an access time's minute and zone, ``stamp[:17] +
        stamp[21:]`` (``dd/Mon/yyyy:HH:MM+zzzz``), sliced where it is used: this runs per
        distinct second of a big log."""
        cached = self._minutes.get(key)
        if cached is None:
            day, month, rest = key[:17].split(b"/")
            year, hour, minute = rest.split(b":")
            zone = key[17:]
            offset = (1 if zone[:1] == b"+" else -1) * (int(zone[1:3]) * 3600 + int(zone[3:]) * 60)
            cached = (
                calendar.timegm((int(year), _MONTHS[month], int(day), int(hour), int(minute), 0))
                - offset
            )
            self._minutes[key] = cached
        return cached

    def _app_minute(self, stamp: bytes) -> float:
        """The minute (epoch seconds) of an app time."""
        key = stamp[:16]
        cached = self._minutes.get(key)
        if cached is None:
            cached = datetime.fromisoformat(key.decode() + ":00+00:00").timestamp()
            self._minutes[key] = cached
        return cached

    def _kept(self, minute: float, second: float = 59.999) -> bool:
        return self.since is None or minute + second >= self.since

    # -- blocks of whole lines
    def _hour(self, minute: float) -> str:
        hour = self._hours.get(minute)
        if hour is None:
            start = minute - minute % 3600
            hour = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:00Z")
            self._hours[minute] = hour
        return hour

    def access(self, block: bytes, stat: FileStat, lines: int | None = None) -> None:
        """Count a block of whole access-log lines (``lines``: how many, when known)."""
        r = self.report
        text = b"\n" + block  # see the patterns: each line starts after a newline
        if lines is None:
            lines = _lines(block)
        if self.since is None:
            valid = lines - _not_matching(_ACCESS_RUN, block)
            r.requests += valid
        else:
            stamps = _ACCESS_VALID.findall(text)
            valid = len(stamps)
            # dd/Mon/yyyy:HH:MM:SS +zzzz, counted per second: a log in time order has few
            # distinct seconds per block
            for stamp, n in Counter(stamps).items():
                if self._kept(self._access_minute(stamp[:17] + stamp[21:]), int(stamp[18:20])):
                    r.requests += n
        stat.parsed += valid
        stat.malformed += lines - valid
        # the 401/403/429 lines, cut out by their hint and parsed by one findall; then counted
        # per distinct key in C (Counter over zip), so Python works per key, not per line
        denied_lines = []
        line_start = -1
        rfind, find = text.rfind, text.find
        for hint in _ACCESS_DENIED_HINT.finditer(text):
            start = rfind(b"\n", 0, hint.start())
            if start == line_start:  # the same line again (the hint in its user agent)
                continue
            line_start = start
            end = find(b"\n", hint.end())
            denied_lines.append(text[start:end] if end >= 0 else text[start:])
        if not denied_lines:
            return
        rows = _ACCESS_DENIED.findall(b"".join(denied_lines))
        if self.since is not None:
            rows = [
                row
                for row in rows
                if self._kept(self._access_minute(row[1][:17] + row[1][21:]), int(row[1][18:20]))
            ]
        if not rows:
            return
        ips, times, paths, statuses = zip(*rows, strict=True)
        for status_b, n in Counter(statuses).items():
            r.denied[int(status_b)] += n
        for (ip_b, status_b), n in Counter(zip(ips, statuses, strict=True)).items():
            r.denied_by_ip[ip_b.decode("utf-8", "replace")][int(status_b)] += n
        for (path_b, status_b), n in Counter(zip(paths, statuses, strict=True)).items():
            r.denied_by_path[path_b.decode("utf-8", "replace") or "-"][int(status_b)] += n
        minutes = [t[:17] + t[21:] for t in times]  # fewer distinct keys than the seconds
        for (key, status_b), n in Counter(zip(minutes, statuses, strict=True)).items():
            hour = self._hour(self._access_minute(key))
            r.denied_by_hour[hour][int(status_b)] += n

    def app(self, block: bytes, stat: FileStat, lines: int | None = None) -> None:
        text = b"\n" + block
        valid = len(_APP_VALID.findall(text))
        stat.parsed += valid
        stat.malformed += (_lines(block) if lines is None else lines) - valid
        for stamp, event, rest in _APP_EVENT.findall(text):
            minute, second = self._app_minute(stamp), float(stamp[17:-1])
            if not self._kept(minute, second):
                continue
            fields = _fields(rest)
            ip = fields.get("ip", "-")
            if event == b"rate limit exceeded":
                self.report.rate_limit_hits += 1
                self.report.rate_limited_by_ip[ip] += 1
            else:
                self._failed_login(ip, fields.get("email", "-"), minute + second)

    def _failed_login(self, ip: str, account: str, when: float) -> None:
        r = self.report
        r.failed_logins += 1
        r.failed_by_account[account] += 1
        r.failed_by_ip[ip] += 1
        accounts = self._accounts[ip]
        if len(accounts) < 100:
            accounts.add(account)
        window = self._windows.get(ip)
        if window is None:
            window = self._windows[ip] = deque(maxlen=r.bruteforce_failures)
        window.append(when)
        if (
            ip not in r.suspects
            and len(window) == r.bruteforce_failures
            and window[-1] - window[0] <= r.bruteforce_window_s
        ):
            stamp = datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds")
            r.suspects[ip] = Suspect(ip, stamp.replace("+00:00", "Z"))

    def finish(self) -> None:
        for ip, suspect in self.report.suspects.items():
            suspect.failures = self.report.failed_by_ip[ip]
            suspect.accounts = sorted(self._accounts[ip])


def _not_matching(run: re.Pattern[bytes], block: bytes) -> int:
    """How many lines of ``block`` stop ``run`` (a pattern matching a run of good lines)."""
    bad, pos, size, match, find = 0, 0, len(block), run.match, block.find
    while True:
        m = match(block, pos)
        pos = m.end() if m else pos
        if pos >= size:
            return bad
        bad += 1
        pos = find(b"\n", pos) + 1
        if not pos:  # the last line, with no newline
            return bad


def _lines(block: bytes) -> int:
    return block.count(b"\n") + (0 if not block or block.endswith(b"\n") else 1)


def _fields(rest: bytes) -> dict[str, str]:
    fields = {}
    for key, value in _FIELD.findall(rest):
        text = value.decode("utf-8", "replace")
        if text.startswith('"'):
            try:
                text = str(json.loads(text))
            except ValueError:
                text = text.strip('"')
        fields[key.decode()] = text
    return fields


def rotated(path: Path) -> list[Path]:
    """``path`` and its rotated copies (``.1``, ``.2.gz``...), oldest first."""
    copies = []
    if path.parent.is_dir():
        for other in path.parent.glob(path.name + ".*"):
            match = _ROTATED.fullmatch(other.name[len(path.name) :])
            if match:
                copies.append((int(match.group(1)), other))
    ordered = [p for _, p in sorted(copies, key=lambda c: -c[0])]
    return [*ordered, path] if path.exists() else ordered


def _open(path: Path) -> BinaryIO:
    if path.suffix == ".gz":
        # the standard library's reader, not ISA-L's: on a truncated file its read1 hands
        # over everything decoded before the error, where igzip drops the last buffer
        return cast(BinaryIO, gzip.open(path, "rb"))
    return open(path, "rb")


class _Range:
    """At most ``size`` bytes of an open file, from where it stands (None: up to its end)."""

    def __init__(self, stream: BinaryIO, size: int | None) -> None:
        self.stream, self.left = stream, size

    def read(self, n: int) -> bytes:
        if self.left is None:
            return self.stream.read(n)
        data = self.stream.read(min(n, self.left))
        self.left -= len(data)
        return data


def _blocks(stream: BinaryIO | _Range, stat: FileStat, read_size: int = BLOCK) -> Iterator[bytes]:
    """Blocks of about BLOCK bytes of whole lines, from reads of ``read_size`` (small for
    gzip, so that a truncated file loses little). A line longer than MAX_LINE is counted as
    one malformed line and skipped."""
    read = getattr(stream, "read1", stream.read)
    carry = b""
    skipping = False
    eof = False
    while not eof:
        parts: list[bytes] = []
        size = 0
        while size < BLOCK:
            try:
                # read1: one raw read per call, so an error loses no data already decoded
                chunk = read(read_size)
            except EOFError:  # a gzip file that ends before its end marker
                stat.truncated = True
                chunk = b""
            except (OSError, zlib.error) as exc:  # a damaged gzip stream
                stat.truncated = True
                stat.error = f"{type(exc).__name__}: {exc}"
                chunk = b""
            if not chunk:
                eof = True
                break
            parts.append(chunk)
            size += len(chunk)
        data = b"".join(parts)
        if skipping:
            cut = data.find(b"\n")
            if cut < 0:
                continue
            data, skipping = data[cut + 1 :], False
        data = carry + data
        if eof:
            if data:
                yield data
            return
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) > MAX_LINE:
                stat.lines += 1
                stat.malformed += 1
                carry, skipping = b"", True
            else:
                carry = data
            continue
        carry = data[cut + 1 :]
        yield data[: cut + 1]


def sniff(block: bytes) -> str:
    text = b"\n" + block
    access = len(_ACCESS_VALID.findall(text))
    app = len(_APP_VALID.findall(text))
    if not access and not app:
        return "unknown"
    return "access" if access >= app else "app"


def _workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


def _line_start(stream: BinaryIO, pos: int) -> int:
    """The offset of the first line that starts at or after ``pos``."""
    if pos <= 0:
        return 0
    stream.seek(pos - 1)
    while chunk := stream.read(1 << 16):
        cut = chunk.find(b"\n")
        if cut >= 0:
            return pos + cut
        pos += len(chunk)
    return pos - 1  # none: the end of the file


def _scan_range(
    path: str, since: datetime | None, failures: int, window_s: float, start: int, end: int | None
) -> tuple[LogReport, FileStat]:
    """Count the access-log lines of bytes start..end of ``path`` (None: to its end)."""
    report = LogReport(since, failures, window_s)
    analyzer = _Analyzer(report)
    stat = FileStat(path, "access")
    try:
        with open(path, "rb") as stream:
            stream.seek(start)
            for block in _blocks(_Range(stream, None if end is None else end - start), stat):
                lines = _lines(block)
                stat.lines += lines
                analyzer.access(block, stat, lines)
    except OSError as exc:
        stat.error = exc.strerror or str(exc)
    return report, stat


def _merge(report: LogReport, stat: FileStat, part: LogReport, part_stat: FileStat) -> None:
    report.requests += part.requests
    report.denied.update(part.denied)
    for mine, theirs in (
        (report.denied_by_ip, part.denied_by_ip),
        (report.denied_by_path, part.denied_by_path),
        (report.denied_by_hour, part.denied_by_hour),
    ):
        for key, counts in theirs.items():
            mine[key].update(counts)
    stat.lines += part_stat.lines
    stat.parsed += part_stat.parsed
    stat.malformed += part_stat.malformed
    stat.truncated = stat.truncated or part_stat.truncated
    stat.error = stat.error or part_stat.error


def _ranges(stream: BinaryIO, stat: FileStat) -> list[tuple[int, int | None]]:
    """The byte ranges to scan a big plain access log in at once, cut at line boundaries;
    [] when it is to be read in one stream (small, one core, or not an access log)."""
    workers = _workers()
    try:
        size = os.fstat(stream.fileno()).st_size
    except (OSError, ValueError):
        return []
    if workers < 2 or size < PARALLEL_MIN or stat.kind not in ("unknown", "access"):
        return []
    if stat.kind == "unknown":  # told by its first block, as the one-stream scan does
        stat.kind = sniff(next(_blocks(stream, FileStat(stat.path, "unknown")), b""))
        stream.seek(0)
        if stat.kind != "access":
            return []
    cuts = [0]
    for i in range(1, workers):
        cuts.append(_line_start(stream, max(size * i // workers, cuts[-1])))
    stream.seek(0)
    # the last range reads on to the end: the log may grow while it is read
    bounds: list[int | None] = [*cuts, None]
    return [(a, b) for a, b in zip(cuts, bounds[1:], strict=True) if a != b]


def _scan_parallel(
    path: Path, stat: FileStat, report: LogReport, ranges: list[tuple[int, int | None]]
) -> bool:
    """Scan the ranges in child processes (forked: nothing to import again) and this one;
    False when no process could be started (then the file is read in one stream)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    args = (str(path), report.since, report.bruteforce_failures, report.bruteforce_window_s)
    try:
        with ProcessPoolExecutor(
            len(ranges) - 1, mp_context=multiprocessing.get_context("fork")
        ) as pool:
            futures = [pool.submit(_scan_range, *args, a, b) for a, b in ranges[1:]]
            parts = [_scan_range(*args, *ranges[0])] + [f.result() for f in futures]
    except (OSError, BrokenProcessPool):
        return False
    for part, part_stat in parts:
        _merge(report, stat, part, part_stat)
    return True


def analyze_files(
    files: Iterable[tuple[Path, str | None]],
    *,
    since: datetime | None,
    bruteforce_failures: int,
    bruteforce_window_s: float,
) -> LogReport:
    """Scan each (file, kind) in order; kind None: told from the file's first block."""
    report = LogReport(since, bruteforce_failures, bruteforce_window_s)
    analyzer = _Analyzer(report)
    for path, kind in files:
        stat = FileStat(str(path), kind or "unknown")
        report.files.append(stat)
        try:
            stream = _open(path)
        except OSError as exc:
            stat.error = exc.strerror or str(exc)
            continue
        with stream:
            if path.suffix != ".gz":
                ranges = _ranges(stream, stat)
                if len(ranges) > 1 and _scan_parallel(path, stat, report, ranges):
                    continue
            read_size = 1 << 16 if path.suffix == ".gz" else BLOCK
            for block in _blocks(stream, stat, read_size):
                if stat.kind == "unknown":
                    stat.kind = sniff(block)
                lines = _lines(block)
                stat.lines += lines
                if stat.kind == "access":
                    analyzer.access(block, stat, lines)
                elif stat.kind == "app":
                    analyzer.app(block, stat, lines)
                else:
                    stat.malformed += lines
    analyzer.finish()
    return report


def analyze_lines(
    streams: Iterable[tuple[str, str, Iterable[bytes]]],
    *,
    since: datetime | None,
    bruteforce_failures: int,
    bruteforce_window_s: float,
    batch: int = 5000,
) -> LogReport:
    """The same report from (name, kind, lines) read from wherever the logs are (a file
    inside the containers, the service's output), kind "access" or "app". Only lines of its
    kind count from a stream: a service's output may carry both, and be read as either."""
    report = LogReport(since, bruteforce_failures, bruteforce_window_s)
    analyzer = _Analyzer(report)
    for name, kind, lines in streams:
        stat = FileStat(name, kind)
        report.files.append(stat)
        pending: list[bytes] = []

        def flush(stat: FileStat = stat, pending: list[bytes] = pending, kind: str = kind) -> None:
            block = b"".join(pending)
            pending.clear()
            count = _lines(block)
            stat.lines += count
            if kind == "access":
                analyzer.access(block, stat, count)
                other = len(_APP_VALID.findall(b"\n" + block))
            else:
                analyzer.app(block, stat, count)
                other = len(_ACCESS_VALID.findall(b"\n" + block))
            # a line of the other kind is no malformed line
            stat.malformed -= other

        for line in lines:
            pending.append(line.rstrip(b"\n") + b"\n")
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
    analyzer.finish()
    return report


def to_json(report: LogReport, top: int) -> dict[str, Any]:
    def by_status(table: dict[str, Counter[int]], limit: int | None = top) -> list[dict[str, Any]]:
        rows = sorted(table.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
        return [
            {"key": key, "total": sum(c.values()), **{str(s): c[s] for s in DENIED}}
            for key, c in rows[:limit]
        ]

    return {
        "since": report.since,
        "files": report.files,
        "requests": report.requests,
        "denied": {str(s): report.denied[s] for s in DENIED},
        "denied_by_ip": by_status(report.denied_by_ip),
        "denied_by_path": by_status(report.denied_by_path),
        "denied_by_hour": sorted(by_status(report.denied_by_hour, None), key=lambda r: r["key"]),
        "distinct_denied_ips": len(report.denied_by_ip),
        "failed_logins": report.failed_logins,
        "failed_logins_by_account": dict(report.failed_by_account.most_common(top)),
        "failed_logins_by_ip": dict(report.failed_by_ip.most_common(top)),
        "bruteforce": {
            "failures": report.bruteforce_failures,
            "window_s": report.bruteforce_window_s,
            "suspects": sorted(report.suspects.values(), key=lambda s: (-s.failures, s.ip)),
        },
        "rate_limit_hits": report.rate_limit_hits,
        "rate_limited_by_ip": dict(report.rate_limited_by_ip.most_common(top)),
        "top_offenders": [
            {"ip": ip, "denied": d, "failed_logins": f, "rate_limited": r, "total": t}
            for ip, d, f, r, t in report.offenders()[:top]
        ],
        "malformed_lines": report.malformed,
        "truncated_files": [f.path for f in report.files if f.truncated],
    }
