"""The runbook's Node.js troubleshooting on the running backend, without restarting it.

The runbook says `node --prof src/server.js` (High CPU) and `node --inspect src/server.js`
(Memory Leaks): both restart the server, which loses the state being investigated. Here the
process is found by the port it serves, its inspector opened with SIGUSR1 (Node's own
handler), and the V8 inspector protocol does the rest:

- ``cpu_profile``: Profiler.start/stop over a window; a ``.cpuprofile`` (Chrome DevTools loads
  it) and the functions with the most self time;
- ``heap_snapshot``: HeapProfiler.takeHeapSnapshot streamed chunk by chunk to disk, then read
  back in blocks (never whole) for the constructors holding the most memory;
- ``leak_watch``: the process's resident memory sampled every interval, a least-squares line
  through it: growing N MB/h (with R²) or flat. Reads /proc only; no inspector.

The inspector is closed afterwards (``process._debugEnd()``) unless it was open before.
The process is found among this machine's processes by the 127.0.0.1 port the settings give
the service (api.url, mongo.uri, redis.url): the sandbox's processes, and the Compose stack's
containers, which use the host's network. The Kubernetes testbed's pods are simulated (no
process runs in them), so there is nothing to attach to there.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from travellr_ops.errors import OperationFailed, ServiceError, Unreachable, UsageError

if TYPE_CHECKING:
    from travellr_ops.adapters.inspector import InspectorSession
    from travellr_ops.runtime import Runtime
    from travellr_ops.settings import Settings

#: how long the inspector may take to open after SIGUSR1
INSPECTOR_OPEN_S = 5.0
DEFAULT_INSPECT_PORT = 9229
NODE_NAMES = ("node", "nodejs")


@dataclass
class NodeProcess:
    service: str
    pid: int
    name: str
    cmdline: list[str]
    #: the 127.0.0.1 port it serves on (how it was found)
    port: int


@dataclass
class FunctionTime:
    function: str
    location: str
    self_ms: float
    self_pct: float


@dataclass
class CpuProfileReport:
    service: str
    pid: int
    path: str
    duration_s: float
    samples: int
    size_bytes: int
    top: list[FunctionTime] = field(default_factory=list)


@dataclass
class ConstructorSize:
    constructor: str
    count: int
    #: the objects' own sizes plus the strings and internal arrays they point at directly
    held_bytes: int


@dataclass
class HeapReport:
    service: str
    pid: int
    path: str
    size_bytes: int
    nodes: int
    heap_bytes: int
    seconds: float
    top: list[ConstructorSize] = field(default_factory=list)


@dataclass
class LeakReport:
    service: str
    pid: int
    samples: list[tuple[float, int]]
    mb_per_h: float
    r_squared: float
    minutes: float
    threshold_mb_per_h: float
    verdict: str  # "growing" | "flat" | "insufficient"

    @property
    def ok(self) -> bool:
        return self.verdict != "growing" or self.mb_per_h <= self.threshold_mb_per_h


# ------------------------------------------------------------------------ finding the process
def _service_port(settings: Settings, service: str) -> int:
    urls = {
        "backend": settings.api.url,
        "mongodb": settings.mongo.uri,
        "redis": settings.redis.url,
    }
    if service not in urls:
        raise UsageError(
            f"unknown service {service!r}", hint="name one of: " + ", ".join(sorted(urls))
        )
    parts = urlsplit(urls[service].split(",")[0])
    default = {"backend": 80, "mongodb": 27017, "redis": 6379}[service]
    try:
        return parts.port or default
    except ValueError as exc:
        raise UsageError(f"the {service} URL has no usable port: {exc}") from None


def _listener_pid(port: int) -> int | None:
    import psutil

    for conn in psutil.net_connections(kind="tcp"):
        addr: Any = conn.laddr  # (ip, port), or () for a socket with no address
        if conn.status != psutil.CONN_LISTEN or not conn.pid or not addr:
            continue
        ip, listen_port = addr[0], addr[1]
        if listen_port == port and ip in ("127.0.0.1", "0.0.0.0", "::", "::1"):
            return int(conn.pid)
    return None


def find_node_process(settings: Settings, service: str) -> NodeProcess:
    """The Node.js process serving ``service`` on this machine; exit 2 when it is not Node.js."""
    import psutil

    if settings.platform == "kubernetes":
        raise UsageError(
            "service profile cannot reach a pod's process on Kubernetes from here",
            hint="the testbed's pods are simulated and run no process; on a real cluster, "
            "`kubectl exec POD -- kill -USR1 1` and `kubectl port-forward POD 9229`, then "
            "open the inspector in Chrome DevTools",
        )
    port = _service_port(settings, service)
    pid = _listener_pid(port)
    if pid is None:
        raise Unreachable(
            f"no process on this machine listens on port {port} ({service})",
            hint="is the service running here? (`service status`, scripts/sandbox.sh status)",
        )
    try:
        proc = psutil.Process(pid)
        name, cmdline = proc.name(), proc.cmdline()
    except psutil.Error as exc:
        raise Unreachable(f"the process on port {port} went away: {exc}") from None
    program = os.path.basename(cmdline[0]) if cmdline else name
    if name not in NODE_NAMES and program not in NODE_NAMES:
        raise UsageError(
            f"{service} is not a Node.js process: pid {pid} on port {port} runs {program}",
            hint="only a Node.js service has a V8 inspector to profile (backend)",
        )
    return NodeProcess(service, pid, name, cmdline, port)


def _inspect_port(proc: NodeProcess) -> int:
    """The port SIGUSR1 opens the inspector on: --inspect-port / --inspect, else 9229."""
    try:
        import psutil

        options = psutil.Process(proc.pid).environ().get("NODE_OPTIONS", "")
    except Exception:  # an unreadable environment: the command line alone decides
        options = ""
    port = DEFAULT_INSPECT_PORT
    for arg in [*options.split(), *proc.cmdline[1:]]:
        match = re.fullmatch(r"--(?:inspect-port|debug-port|inspect)=(?:[\d.]+:)?(\d+)", arg)
        if match:
            port = int(match.group(1))
    return port


def _listening_ports(pid: int) -> set[int]:
    import psutil

    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        raise Unreachable(f"process {pid} exited") from None
    return {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN and c.laddr}


def _find_inspector(proc: NodeProcess, ports: set[int]) -> str | None:
    from travellr_ops.adapters.inspector import debugger_url

    for port in sorted(ports - {proc.port}):
        url = debugger_url(port)
        if url:
            return url
    return None


@contextlib.contextmanager
def attached(proc: NodeProcess, notify: Callable[[str], None]) -> Iterator[InspectorSession]:
    """An inspector session to ``proc``, opened with SIGUSR1 and closed after the block
    (left open if it was open before)."""
    from travellr_ops.adapters.inspector import InspectorSession

    before = _listening_ports(proc.pid)
    url = _find_inspector(proc, before)
    opened_here = url is None
    if url is None:
        try:
            os.kill(proc.pid, signal.SIGUSR1)
        except ProcessLookupError:
            raise Unreachable(f"process {proc.pid} exited") from None
        except PermissionError:
            raise OperationFailed(
                f"not allowed to signal pid {proc.pid}",
                hint="run as the user the service runs as (or root)",
            ) from None
        deadline = time.monotonic() + INSPECTOR_OPEN_S
        while url is None and time.monotonic() < deadline:
            time.sleep(0.05)
            url = _find_inspector(proc, _listening_ports(proc.pid) - before)
        if url is None:
            raise _not_opened(proc)
        notify(f"opened the inspector of pid {proc.pid} ({url.split('/')[2]})")
    else:
        notify(f"the inspector of pid {proc.pid} was already open ({url.split('/')[2]})")
    session = InspectorSession(url)
    try:
        yield session
    finally:
        if opened_here:
            session.close_inspector()
        session.close()


def _not_opened(proc: NodeProcess) -> ServiceError:
    port = _inspect_port(proc)
    holder = _listener_pid(port) if port else None
    if holder is not None and holder != proc.pid:
        import psutil

        with contextlib.suppress(psutil.Error):
            name = psutil.Process(holder).name()
            return OperationFailed(
                f"the inspector of pid {proc.pid} could not open: port {port} is in use by "
                f"pid {holder} ({name})",
                hint="free that port, or start the service with --inspect-port=0 (any free port)",
            )
    return OperationFailed(
        f"the inspector of pid {proc.pid} did not open within {INSPECTOR_OPEN_S:.0f} s of SIGUSR1",
        hint="the process may ignore SIGUSR1 or run without inspector support",
    )


def _alive(pid: int) -> None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise Unreachable(f"process {pid} exited during the profile") from None


# --------------------------------------------------------------------------------- CPU profile
def cpu_profile(
    rt: Runtime, service: str, duration_s: float, out: Path, top: int = 10
) -> CpuProfileReport:
    """Profile ``service``'s Node.js process for ``duration_s``; write ``out`` (.cpuprofile)."""
    from travellr_ops.vocab.files import write_output

    proc = find_node_process(rt.settings, service)
    _writable(out)
    with attached(proc, rt.notify) as session:
        session.call("Profiler.enable")
        session.call("Profiler.setSamplingInterval", {"interval": 1000})  # µs
        session.call("Profiler.start")
        started = time.monotonic()
        with rt.progress(f"profiling pid {proc.pid}", duration_s) as task:
            while (elapsed := time.monotonic() - started) < duration_s:
                time.sleep(min(0.25, duration_s - elapsed))
                _alive(proc.pid)
                task.update(description=f"profiling pid {proc.pid}")
                task.advance(min(0.25, duration_s - elapsed))
        profile = session.call("Profiler.stop", timeout_s=60)["profile"]
        session.call("Profiler.disable")
    data = json.dumps(profile, separators=(",", ":"))
    write_output(out, data, "the CPU profile")
    return CpuProfileReport(
        service=service,
        pid=proc.pid,
        path=str(out),
        duration_s=round(time.monotonic() - started, 3),
        samples=len(profile.get("samples") or []),
        size_bytes=len(data),
        top=top_functions(profile, top),
    )


def top_functions(profile: dict[str, Any], count: int) -> list[FunctionTime]:
    """Functions by self time: each sample's time (timeDeltas) goes to the node it hit."""
    nodes = {n["id"]: n["callFrame"] for n in profile.get("nodes", [])}
    samples = profile.get("samples") or []
    deltas = profile.get("timeDeltas") or []
    by_node: dict[int, float] = {}
    # timeDeltas[i] is the time before sample i; the time a sample stands for is the next delta
    for i, node_id in enumerate(samples):
        step = deltas[i + 1] if i + 1 < len(deltas) else 0
        by_node[node_id] = by_node.get(node_id, 0.0) + max(step, 0)
    by_function: dict[tuple[str, str], float] = {}
    for node_id, us in by_node.items():
        frame = nodes.get(node_id, {})
        name = frame.get("functionName") or "(anonymous)"
        url = str(frame.get("url") or "")
        location = f"{url.rsplit('/', 1)[-1]}:{int(frame.get('lineNumber', -1)) + 1}" if url else ""
        key = (name, location)
        by_function[key] = by_function.get(key, 0.0) + us
    total = sum(by_function.values()) or 1.0
    ranked = sorted(by_function.items(), key=lambda kv: -kv[1])[:count]
    return [
        FunctionTime(name, loc, round(us / 1000, 1), round(100 * us / total, 1))
        for (name, loc), us in ranked
    ]


# ------------------------------------------------------------------------------- heap snapshot
def heap_snapshot(rt: Runtime, service: str, out: Path, top: int = 10) -> HeapReport:
    """A heap snapshot of ``service``'s Node.js process streamed to ``out``; the process is
    paused while V8 takes it, so the Guard asks first."""
    from travellr_ops.safety import Change

    proc = find_node_process(rt.settings, service)
    _writable(out)
    change = Change(
        action="service profile --heap",
        summary=f"take a heap snapshot of {service} (pid {proc.pid}): the process is paused "
        "and answers no request while V8 writes it (seconds for a large heap)",
        target=service,
    )
    with rt.guard.mutation(change, mutates_servers=False) as go:
        if not go:
            return HeapReport(service, proc.pid, str(out), 0, 0, 0, 0.0)
        return _take_snapshot(rt, proc, out, top)


def _take_snapshot(rt: Runtime, proc: NodeProcess, out: Path, top: int) -> HeapReport:
    part = out.with_name(f".{out.name}.{os.getpid()}.part")
    started = time.monotonic()
    with attached(proc, rt.notify) as session:
        heap = session.call("Runtime.getHeapUsage")
        used = int(heap.get("usedSize", 0))
        free = shutil.disk_usage(out.parent).free
        # a snapshot file is typically 1-2x the used heap
        if free < 2 * used:
            raise OperationFailed(
                f"not enough free disk for the snapshot: {free // 2**20} MiB free in "
                f"{out.parent}, the heap holds {used // 2**20} MiB (the file needs up to twice that)",
                hint="write it to a disk with more room (--out)",
            )
        written = 0
        try:
            with open(part, "wb") as sink, rt.progress("heap snapshot", None) as task:

                def on_event(method: str, params: dict[str, Any]) -> None:
                    nonlocal written
                    if method == "HeapProfiler.addHeapSnapshotChunk":
                        chunk = str(params.get("chunk", "")).encode()
                        sink.write(chunk)
                        written += len(chunk)
                        task.update(description=f"heap snapshot: {written // 2**20} MiB written")
                    elif method == "HeapProfiler.reportHeapSnapshotProgress":
                        task.update(
                            total=float(params.get("total") or 0) or None,
                            description="heap snapshot: V8 walking the heap",
                        )

                session.call("HeapProfiler.enable")
                session.call(
                    "HeapProfiler.takeHeapSnapshot",
                    {"reportProgress": True, "captureNumericValue": False},
                    on_event=on_event,
                    timeout_s=600,
                )
                session.call("HeapProfiler.disable")
            os.replace(part, out)
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise OperationFailed(
                f"cannot write the heap snapshot to {out}: {exc.strerror or exc}",
                hint="the partial file was removed; free disk space or choose another --out",
            ) from None
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    nodes, ranked = constructor_sizes(out, top)
    return HeapReport(
        service=proc.service,
        pid=proc.pid,
        path=str(out),
        size_bytes=out.stat().st_size,
        nodes=nodes,
        heap_bytes=used,
        seconds=round(time.monotonic() - started, 2),
        top=ranked,
    )


# A V8 .heapsnapshot: {"snapshot":{"meta":{...},...},"nodes":[ints],"edges":[ints],...,
# "strings":["...",\n"...",...]}: read in blocks, numbers counted as they pass.
_BLOCK = 1 << 17  # 128 KiB: a block's numbers as Python ints are ~10x its text


def _blocks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            yield block


class _Reader:
    """The snapshot's text, walked forward once in blocks."""

    def __init__(self, path: Path) -> None:
        self._blocks = _blocks(path)
        self._buf = b""

    def until(self, marker: bytes, keep: bool = False) -> bytes:
        """Skip past ``marker``; the text before it when ``keep`` (only for small parts)."""
        taken = []
        while (i := self._buf.find(marker)) < 0:
            tail = len(marker)
            if keep:
                taken.append(self._buf[:-tail])
            self._buf = self._buf[-tail:]
            nxt = next(self._blocks, None)
            if nxt is None:
                raise OperationFailed(f"the heap snapshot ends before {marker.decode()!r}")
            self._buf += nxt
        taken.append(self._buf[:i])
        self._buf = self._buf[i + len(marker) :]
        return b"".join(taken) if keep else b""

    def rows(self, width: int) -> Iterator[list[int]]:
        """The numbers of a JSON array of integers, up to its closing bracket, in whole rows
        of ``width`` numbers (a block's worth at a time)."""
        carry = b""
        pending: list[int] = []
        while True:
            end = self._buf.find(b"]")
            text = carry + (self._buf if end < 0 else self._buf[:end])
            carry = b""
            if end < 0:
                cut = text.rfind(b",")
                carry, text = text[cut + 1 :], text[: max(cut, 0)]
            text = text.strip(b", \r\n")
            if text:
                pending.extend(map(int, text.split(b",")))  # int() takes b"\n12" as 12
            whole = len(pending) - len(pending) % width
            if whole:
                yield pending[:whole]
                pending = pending[whole:]
            if end >= 0:
                self._buf = self._buf[end + 1 :]
                return
            nxt = next(self._blocks, None)
            if nxt is None:
                raise OperationFailed("the heap snapshot ends inside an array")
            self._buf = nxt

    def lines(self) -> Iterator[bytes]:
        while True:
            parts = self._buf.split(b"\n")
            self._buf = parts.pop()  # the unfinished line
            yield from parts
            nxt = next(self._blocks, None)
            if nxt is None:
                if self._buf:
                    yield self._buf
                return
            self._buf += nxt


def constructor_sizes(path: Path, count: int) -> tuple[int, list[ConstructorSize]]:
    """(node count, the ``count`` constructors holding the most memory) of a .heapsnapshot.

    Memory used is about 9 bytes per heap object (three compact arrays), never the file: an
    object's "held" size is its own plus that of the strings and internal arrays it points at
    directly (the leak's payload), counted once per object."""
    reader = _Reader(path)
    head = reader.until(b'"nodes":[', keep=True)
    meta = json.loads(head[head.index(b"{", 1) : head.rindex(b"}") + 1].decode())["meta"]
    node_fields: list[str] = meta["node_fields"]
    node_types: list[str] = meta["node_types"][0]
    edge_fields: list[str] = meta["edge_fields"]
    edge_types: list[str] = meta["edge_types"][0]
    nf, ef = len(node_fields), len(edge_fields)
    i_type, i_name, i_size = (node_fields.index(k) for k in ("type", "name", "self_size"))
    i_edges = node_fields.index("edge_count")
    e_type, e_to = edge_fields.index("type"), edge_fields.index("to_node")

    types, names, sizes, edge_counts = array("B"), array("i"), array("q"), array("i")
    for rows in reader.rows(nf):
        types.extend(rows[i_type::nf])
        names.extend(rows[i_name::nf])
        sizes.extend(rows[i_size::nf])
        edge_counts.extend(rows[i_edges::nf])
    total_nodes = len(types)
    object_type = node_types.index("object")
    owned = [
        node_types.index(t)
        for t in ("string", "array", "hidden", "concatenated string", "sliced string")
        if t in node_types
    ]
    owned_by_type = [t in owned for t in range(len(node_types))]
    weak = [t in ("weak", "shortcut") for t in edge_types]

    held = array("q", sizes)  # starts at each object's own size
    reader.until(b'"edges":[')
    node, left = -1, 0
    for rows in reader.rows(ef):
        for kind, to_node in zip(rows[e_type::ef], rows[e_to::ef], strict=True):
            while left == 0:
                node += 1
                left = edge_counts[node]
            left -= 1
            if types[node] != object_type or weak[kind]:
                continue
            target = to_node // nf
            if owned_by_type[types[target]]:
                held[node] += sizes[target]

    by_name: dict[int, list[int]] = {}
    for n in range(total_nodes):
        if types[n] == object_type:
            entry = by_name.setdefault(names[n], [0, 0])
            entry[0] += 1
            entry[1] += held[n]
    ranked = sorted(by_name.items(), key=lambda kv: -kv[1][1])[:count]
    wanted = {name for name, _ in ranked}
    strings: dict[int, str] = {}
    reader.until(b'"strings":[')
    for index, line in enumerate(reader.lines()):
        if index in wanted:
            text = line.rstrip(b"\r").rstrip(b"]}").rstrip(b",")
            strings[index] = json.loads(text.decode())
            if len(strings) == len(wanted):
                break
    return total_nodes, [
        ConstructorSize(strings.get(name, f"#{name}"), c, size) for name, (c, size) in ranked
    ]


def _writable(out: Path) -> None:
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise UsageError(
            f"cannot write to {out}: {out.parent} is not a writable directory",
            hint="name a file in a directory that exists and that you can write",
        )


# ---------------------------------------------------------------------------------- leak watch
def leak_watch(
    rt: Runtime,
    service: str,
    duration_s: float,
    interval_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> LeakReport:
    """Resident memory of ``service``'s process every ``interval_s`` for ``duration_s``, and
    the straight line through it."""
    import psutil

    proc = find_node_process(rt.settings, service)
    started = time.monotonic()
    samples: list[tuple[float, int]] = []
    with rt.progress(f"memory of pid {proc.pid}", duration_s) as task:
        while True:
            try:
                rss = psutil.Process(proc.pid).memory_info().rss
            except psutil.NoSuchProcess:
                raise Unreachable(f"process {proc.pid} exited during the watch") from None
            elapsed = time.monotonic() - started
            samples.append((round(elapsed, 3), int(rss)))
            task.update(description=f"memory of pid {proc.pid}: {rss / 2**20:.1f} MiB")
            if elapsed + interval_s > duration_s + 1e-9:
                break
            sleep(interval_s)
            task.advance(interval_s)
    return fit_leak(service, proc.pid, samples, rt.settings.thresholds.leak_mb_per_h)


def fit_leak(
    service: str, pid: int, samples: list[tuple[float, int]], threshold_mb_per_h: float
) -> LeakReport:
    """Least squares through (seconds, bytes): the slope in MB/h and R². Fewer than 5
    samples is "insufficient". "flat" when the line rises less than 1 MB over the window
    (resident memory moves by pages and allocator arenas: less is noise), less than a tenth
    of the threshold, or explains under half the variance."""
    minutes = (samples[-1][0] - samples[0][0]) / 60 if samples else 0.0
    if len(samples) < 5:
        return LeakReport(
            service, pid, samples, 0.0, 0.0, minutes, threshold_mb_per_h, "insufficient"
        )
    xs = [t for t, _ in samples]
    ys = [b / 1e6 for _, b in samples]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    syy = sum((y - my) ** 2 for y in ys)
    slope = sxy / sxx if sxx else 0.0
    r2 = (sxy * sxy) / (sxx * syy) if sxx and syy else 0.0
    mb_per_h = slope * 3600
    rise_mb = slope * (xs[-1] - xs[0])
    growing = rise_mb >= 1.0 and mb_per_h > threshold_mb_per_h / 10 and r2 >= 0.5
    return LeakReport(
        service,
        pid,
        samples,
        round(mb_per_h, 1),
        round(r2, 3) if not math.isnan(r2) else 0.0,
        round(minutes, 2),
        threshold_mb_per_h,
        "growing" if growing else "flat",
    )
