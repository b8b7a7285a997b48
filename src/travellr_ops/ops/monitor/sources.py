"""Where the monitor's figures come from, each a stateful reader that can be sampled again.

Readers keep what a delta needs (the previous counters, an open log file, the processes
behind the servers) so that a live monitor costs one small read per sample, with memory
bounded by the window, not by how long it runs.
"""

from __future__ import annotations

import re
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from travellr_ops import __version__
from travellr_ops.adapters.mongo import MongoAdapter
from travellr_ops.ops.logsource import LogSource, Reader
from travellr_ops.ops.logsource import LogUnavailable as LogUnavailable
from travellr_ops.settings import MonitorQuery
from travellr_ops.vocab.logformat import ACCESS_LINE, ACCESS_TIME_FORMAT

# ------------------------------------------------------------------------------ access log

#: the most read from the end of a log when it is first opened (older lines are out of
#: any sensible window at the rates a single backend logs)
TAIL_BYTES = 16 * 1024 * 1024


#: the User-Agent of the monitor's own probes. Every request travellr-ops sends says it sent
#: it ("travellr-ops/<version>", adapters.http.USER_AGENT); the error rate leaves them all out
#: (a monitor that counted its own probes, or `health`'s, reported the 503s it drew from a
#: backend with nobody else calling), except where the deploy gate counts its own on purpose
MONITOR_AGENT = f"travellr-ops/{__version__} monitor"
_OURS = re.compile(rb'"travellr-ops/[^"]*"\s*$')


def is_own(line: bytes) -> bool:
    """Whether a combined-format line is a request travellr-ops sent (any version, any role)."""
    return _OURS.search(line) is not None


@dataclass
class RequestCounts:
    #: requests counted: travellr-ops's own and maintenance 503s left out
    requests: int
    #: 5xx among them
    errors: int
    #: seconds the counts span (the window, or less when the log is younger)
    span_s: float
    #: requests travellr-ops sent itself (its probes, health checks), left out
    own: int = 0
    #: 503s answered inside a maintenance window, left out
    maintenance: int = 0

    @property
    def rate_pct(self) -> float | None:
        return round(self.errors * 100 / self.requests, 2) if self.requests else None

    def left_out(self) -> str:
        """What was not counted, as a clause ("" when nothing was)."""
        parts = []
        if self.own:
            parts.append(f"{self.own} requests travellr-ops sent itself")
        if self.maintenance:
            parts.append(f"{self.maintenance} 503s during maintenance")
        return f"left out: {' and '.join(parts)}" if parts else ""


class AccessLog:
    """The 5xx share of the requests an access log (combined format) recorded in the last
    ``window_s`` seconds, read incrementally from wherever it is (``ops.logsource``: a local
    file followed through rotation and truncation, the file inside each container, or the
    service's output). A source whose lines hold no access-log line is unavailable, never
    zero requests.
    """

    def __init__(
        self,
        source: Path | Reader,
        window_s: float,
        clock: Callable[[], float] = time.time,
        count_own: bool = False,
    ) -> None:
        if isinstance(source, Path):
            source = Reader(LogSource("access", "file", source, "none"), max_bytes=TAIL_BYTES)
        self.reader = source
        #: count travellr-ops's own requests like any (the deploy gate: its probes are data)
        self.count_own = count_own
        self.window_s = window_s
        self._clock = clock
        #: [second, requests, 5xx, 503s, travellr-ops's own] per second with traffic, oldest
        #: first (its own lines are in no other count, unless ``count_own``)
        self._buckets: deque[list[int]] = deque()
        self._stamps: dict[bytes, int] = {}
        self._opened_at: float | None = None

    @property
    def path(self) -> str:
        """Where the log is read (for messages)."""
        return self.reader.source.label

    def read(self, in_maintenance: Callable[[int], bool] | None = None) -> RequestCounts:
        """The counts of the window; ``in_maintenance(second)`` tells the seconds whose 503s
        maintenance mode served (left out of requests and errors alike)."""
        self._poll()
        now = self._clock()
        horizon = now - self.window_s
        while self._buckets and self._buckets[0][0] < horizon:
            self._buckets.popleft()
        requests = errors = own = maintenance = 0
        for second, count, failed, unavailable, mine in self._buckets:
            requests += count
            errors += failed
            own += mine
            if unavailable and in_maintenance is not None and in_maintenance(second):
                maintenance += unavailable
        return RequestCounts(
            requests - maintenance, errors - maintenance, self.window_s, own, maintenance
        )

    def close(self) -> None:
        self.reader.close()

    def _poll(self) -> None:
        for line in self.reader.read_bytes():
            self._count(line)
        self.reader.check()

    def _count(self, line: bytes) -> None:
        match = ACCESS_LINE.match(line)
        if match is None:
            return
        second = self._second(match.group(1))
        if second is None:
            return
        if self._buckets and self._buckets[-1][0] >= second:
            bucket = self._buckets[-1]  # same second (or a line slightly out of order)
        else:
            bucket = [second, 0, 0, 0, 0]
            self._buckets.append(bucket)
            # the log is read faster than the window ends: keep the deque bounded meanwhile
            if len(self._buckets) > self.window_s + 60:
                self._buckets.popleft()
        if not self.count_own and is_own(line):
            bucket[4] += 1
            return
        status = match.group(2)
        bucket[1] += 1
        bucket[2] += status.startswith(b"5")
        bucket[3] += status == b"503"

    def _second(self, stamp: bytes) -> int | None:
        cached = self._stamps.get(stamp)
        if cached is None:
            try:
                parsed = datetime.strptime(stamp.decode(), ACCESS_TIME_FORMAT)
            except ValueError:
                return None
            cached = int(parsed.timestamp())
            if len(self._stamps) > 4096:
                self._stamps.clear()
            self._stamps[stamp] = cached
        return cached


# ------------------------------------------------------------------------- local processes


@dataclass
class Usage:
    service: str
    cpu_pct: float | None
    memory_pct: float | None
    detail: str


def local_address(host: str) -> bool:
    """Whether ``host`` names this machine (so its server is a local process psutil sees)."""
    import psutil

    if host in ("localhost", "127.0.0.1", "::1", "0.0.0.0", ""):
        return True
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    mine = {a.address for nic in psutil.net_if_addrs().values() for a in nic}
    return bool(addresses & mine) or any(str(a).startswith("127.") for a in addresses)


def server_ports(urls: dict[str, str]) -> dict[str, int]:
    """service -> port of the servers whose URL names this machine."""
    defaults = {"mongodb": 27017, "redis": 6379, "http": 80, "https": 443}
    ports: dict[str, int] = {}
    for service, url in urls.items():
        parts = urlsplit(url.split(",")[0])  # a MongoDB seed list: its first host
        scheme = parts.scheme.split("+")[0]
        try:
            port = parts.port or defaults.get(scheme, 0)
        except ValueError:
            continue
        if port and local_address(parts.hostname or ""):
            ports[service] = port
    return ports


class LocalProcesses:
    """CPU and memory of the local processes listening on the servers' ports (psutil).

    CPU is a share of one core over the time since the previous read (as `docker stats`
    reports it); memory is the resident size as a share of the machine's memory.
    """

    def __init__(self, ports: dict[str, int]) -> None:
        self.ports = ports
        self._procs: dict[str, Any] = {}

    def prime(self) -> None:
        """Find the processes (again, for any that went away) and start their CPU clocks."""
        import psutil

        missing = [s for s in self.ports if s not in self._procs]
        if not missing:
            return
        listeners: dict[int, int] = {}
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.pid and conn.laddr:
                listeners.setdefault(conn.laddr.port, conn.pid)
        for service in missing:
            pid = listeners.get(self.ports[service])
            if pid is None:
                continue
            try:
                proc = psutil.Process(pid)
                proc.cpu_percent(None)
            except psutil.Error:
                continue
            self._procs[service] = proc

    def read(self) -> list[Usage]:
        import psutil

        usages = []
        for service, port in self.ports.items():
            proc = self._procs.get(service)
            if proc is None:
                usages.append(
                    Usage(service, None, None, f"no local process listens on port {port}")
                )
                continue
            try:
                with proc.oneshot():
                    cpu = proc.cpu_percent(None)
                    memory = proc.memory_percent()
                    name = proc.name()
            except psutil.Error:
                del self._procs[service]
                usages.append(Usage(service, None, None, f"the process on port {port} exited"))
                continue
            usages.append(Usage(service, round(cpu, 1), round(memory, 1), f"pid {proc.pid} {name}"))
        return usages


class HostUsage:
    """The machine's own CPU (share of all cores) and memory, when no server is local."""

    def prime(self) -> None:
        import psutil

        psutil.cpu_percent(None)

    def read(self) -> list[Usage]:
        import psutil

        cpu = psutil.cpu_percent(None)
        memory = psutil.virtual_memory().percent
        return [Usage("host", round(cpu, 1), round(memory, 1), f"{psutil.cpu_count()} CPUs")]


# ---------------------------------------------------------------------------------- MongoDB


def query_filter(query: MonitorQuery, now: datetime | None = None) -> dict[str, Any]:
    """The query's filter, with its time window (``time_field`` within ``within_h``) added."""
    found = dict(query.filter)
    if query.time_field and query.within_h:
        since = (now or datetime.now(UTC)) - timedelta(hours=query.within_h)
        found[query.time_field] = {"$gte": since}
    return found


def run_query(mongo: MongoAdapter, query: MonitorQuery) -> tuple[float, float]:
    """(result, milliseconds): the document count, the distinct count, or for a find with
    a limit or sort, the documents returned."""
    filt = query_filter(query)
    started = time.perf_counter()
    if query.distinct:
        reply = mongo.command(
            "distinct", collection=query.collection, key=query.distinct, query=filt
        )
        result = float(sum(1 for v in reply.get("values", []) if v is not None))
    elif query.limit or query.sort:
        kwargs: dict[str, Any] = {"filter": filt}
        if query.sort:
            kwargs["sort"] = query.sort
        if query.limit:
            kwargs["limit"] = query.limit
            kwargs["batchSize"] = query.limit
        reply = mongo.command("find", collection=query.collection, **kwargs)
        result = float(len(reply.get("cursor", {}).get("firstBatch", [])))
    else:
        reply = mongo.command("count", collection=query.collection, query=filt)
        result = float(reply.get("n", 0))
    return result, (time.perf_counter() - started) * 1000


def op_latencies(status: dict[str, Any]) -> tuple[int, int] | None:
    """(total latency in microseconds, operations) of serverStatus.opLatencies, or None
    when the server does not report them."""
    lat = status.get("opLatencies")
    if not isinstance(lat, dict):
        return None
    micros = ops = 0
    for kind in ("reads", "writes", "commands"):
        entry = lat.get(kind) or {}
        micros += int(entry.get("latency", 0))
        ops += int(entry.get("ops", 0))
    return micros, ops
