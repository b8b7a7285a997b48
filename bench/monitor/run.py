"""bench/monitor: the monitor's observer effect; `monitor once` against its floor; live
`monitor`'s CPU and RSS.

    .venv/bin/python bench/monitor/run.py [--observer 480] [--block 30] [--rounds 5]
                                          [--window 1] [--live 120 | --long] [--scale 1]
                                          [--no-observer] [--no-once] [--no-live]

Starts a sandbox of its own (scripts/sandbox.sh with its own SANDBOX_DIR and free ports:
redis-server, SecantusDB seeded at --scale, the stand-in backend) and stops it at the end.

1. observer effect: an independent prober (a plain HTTP loop, http.client, one keep-alive
   connection) GETs the backend's health endpoint every 50 ms for --observer seconds, while
   `monitor --interval 5` (its own process) runs and is paused in alternating --block second
   blocks (60 s, in the order on, off, off, on, so that a drift of the machine's
   other load falls on both alike) (SIGSTOP/SIGCONT, after its first samples), so that both conditions share the
   machine's drifting load. Target: the prober's p95 with the monitor within 10 % of its p95
   without.
2. once: in the same run, --rounds times each, with a --window second sample:
   - each source alone, as `monitor once` runs it (the API probes, the cache delta, the
     CPU/memory of the processes, the disks, the maintenance flag, the access log; after the
     window: the timed queries, the server statistics, the business queries);
   - the sampler with every source (`Sampler.sample`);
   - the whole command, in-process: `monitor once --json` (settings, adapters, sample,
     output, the history store).
   The window's sources overlap; the database work runs after the window, one part after
   the other, so that none of it slows the probes: the floor is the slowest source of the
   window plus the database parts alone. Target: the command within 1.2x of that floor.
   Also: the API p50 each sample reports against curl's time for the same endpoint right
   after it (the server's latency, not the tool's): within 1.2x + 1 ms of curl's.
3. live: `monitor --interval 1` as its own process with its output on a pseudo-terminal (the
   Rich dashboard redrawn every second), for --live seconds (120; --long: 600). After a
   warm-up (the first samples, the sparklines filling), psutil reads its CPU time and RSS.
   Targets: CPU < 5 % of one core; RSS growth after the warm-up < 5 MB. Ends with Ctrl-C
   (SIGINT): exit 130 expected.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import http.client
import io
import os
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

import psutil  # noqa: E402

from travellr_ops.cli.app import run  # noqa: E402
from travellr_ops.ops.monitor.sampler import Sampler, open_sampler  # noqa: E402
from travellr_ops.runtime import Runtime  # noqa: E402
from travellr_ops.settings import Settings, load_settings  # noqa: E402
from travellr_ops.vocab.stats import percentile  # noqa: E402
from travellr_ops.vocab.verdict import Verdict  # noqa: E402

SANDBOX_SH = REPO / "scripts" / "sandbox.sh"
MB = 1024 * 1024
#: the parts of a sample taken after its window, one after the other (the database work)
AFTER_WINDOW = ("timed queries", "server statistics", "business queries")
P50 = "api_response_p50_ms"


def med(values: list[float]) -> float:
    """The median as the tool reports one (nearest-rank p50)."""
    found = percentile(values, 50)
    assert found is not None, "no rounds"
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sandbox:
    """scripts/sandbox.sh with a directory and ports of its own."""

    def __init__(self, workdir: Path, scale: str) -> None:
        self.dir = workdir / "sandbox"
        self.settings_file = workdir / "travellr-ops.toml"
        self.env = {
            **os.environ,
            "SANDBOX_DIR": str(self.dir),
            "SANDBOX_SETTINGS": str(self.settings_file),
            "SANDBOX_SEED_SCALE": scale,
            "SANDBOX_REDIS_PORT": str(free_port()),
            "SANDBOX_MONGO_PORT": str(free_port()),
            "SANDBOX_API_PORT": str(free_port()),
            "VENV": str(Path(sys.executable).parents[1]),
        }

    def sh(self, command: str) -> None:
        subprocess.run(["bash", str(SANDBOX_SH), command], env=self.env, check=True, timeout=600)

    def settings(self) -> Settings:
        return load_settings(self.settings_file).settings


# ------------------------------------------------------------------------------------ once


def alone(sampler: Sampler) -> dict[str, Callable[[float], object]]:
    """Each source of a sample by itself, with the set-up `Sampler.sample` does for it."""

    def mongo_down() -> str | None:
        down = sampler.mongo.preflight()
        return down.message if down else None

    def api(end: float) -> object:
        sampler.http.prepare(sampler.api_urls)
        return sampler._api(end)

    def resources(end: float) -> object:
        if sampler._usage is not None:
            sampler._usage.prime()
        return sampler._resources(end)

    return {
        "api probes": api,
        "cache delta": sampler._cache,
        "cpu/memory": resources,
        "disks": lambda end: sampler._disks(),
        "maintenance flag": lambda end: sampler._maintenance_flag(),
        "access log": lambda end: sampler._errors(None, []),
        "timed queries": lambda end: sampler._db(mongo_down()),
        "server statistics": lambda end: sampler._server_stats(mongo_down()),
        "business queries": lambda end: sampler._business(mongo_down()),
    }


def bench_once(settings: Settings, rounds: int, window: float) -> bool:
    settings.monitor.window_s = window
    per_source: dict[str, list[float]] = {}
    sampled: list[float] = []
    command: list[float] = []
    reported: list[float] = []  # the API p50 each sample reports
    curl: list[float] = []  # curl's time for the same endpoint, right after each sample
    with open_sampler(Runtime(settings)) as sampler:
        sampler.sample(window)  # connections made, deltas primed: every round starts alike
        for _ in range(rounds):
            for name, fn in alone(sampler).items():
                started = time.perf_counter()
                fn(started + window)
                per_source.setdefault(name, []).append(time.perf_counter() - started)
            started = time.perf_counter()
            sample = sampler.sample(window)
            sampled.append(time.perf_counter() - started)
            reported.append(next(m.value for m in sample.metrics if m.key == P50) or 0.0)
            curl.extend(curl_times(sampler.api_urls[0], settings.monitor.api_probes))
            unknown = [m.key for m in sample.metrics if m.verdict == Verdict.UNKNOWN]
            assert not unknown, f"a source is down: {unknown}"
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                code = run(["monitor", "once", "--json"], settings=settings)
            command.append(time.perf_counter() - started)
            assert code in (0, 1), f"monitor once exited {code}"

    print(f"\nmonitor once: window {window:g} s, median of {rounds} rounds")
    for name, times in sorted(per_source.items(), key=lambda kv: med(kv[1])):
        print(f"  {name:<22} alone {med(times) * 1000:8.1f} ms")
    # the window's sources overlap; the database work runs after the window, one part after
    # the other, so that none of it is beside the probes: its floor is their sum
    in_window = max(med(per_source[n]) for n in per_source if n not in AFTER_WINDOW)
    after = sum(med(per_source[n]) for n in AFTER_WINDOW)
    floor = in_window + after
    print(
        f"  floor: the slowest source of the window {in_window * 1000:.1f} ms + the database "
        f"work after it ({', '.join(AFTER_WINDOW)}) {after * 1000:.1f} ms = {floor * 1000:.1f} ms"
    )
    print(
        f"  Sampler.sample, every source   {med(sampled) * 1000:8.1f} ms  "
        f"ratio {med(sampled) / floor:4.2f}x"
    )
    ratio = med(command) / floor
    print(f"  `monitor once --json` (command) {med(command) * 1000:8.1f} ms  ratio {ratio:4.2f}x")
    verdict = "PASS" if ratio <= 1.2 else "FAIL"
    print(f"{verdict}: monitor once at {ratio:.2f}x its floor (target <= 1.2x)")
    ok = verdict == "PASS"
    if curl:
        bound = med(curl) * 1.2 + 1.0
        close = med(reported) <= bound
        ok = ok and close
        print(
            f"{'PASS' if close else 'FAIL'}: the API p50 the monitor reports {med(reported):.1f} ms"
            f" (median of {len(reported)} samples), curl {med(curl):.1f} ms (median of"
            f" {len(curl)}, same endpoint, same run; target <= 1.2x curl + 1 ms = {bound:.1f} ms)"
        )
    return ok


def curl_times(url: str, times: int) -> list[float]:
    """curl's total time for ``url``, ms, ``times`` runs (none when curl is not installed)."""
    if not shutil.which("curl"):
        return []
    found = []
    for _ in range(times):
        out = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{time_total}", url],
            capture_output=True,
            text=True,
            check=True,
        )
        found.append(float(out.stdout) * 1000)
    return found


# ------------------------------------------------------------------------- observer effect


class Prober:
    """An independent client: a plain HTTP loop (http.client, one keep-alive connection) that
    GETs the health endpoint every ``every_s`` and keeps (time, latency ms)."""

    def __init__(self, url: str, every_s: float = 0.05) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "", parts.port or 80, parts.path
        self.every_s = every_s
        self.seen: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                conn.request("GET", self.path, headers={"User-Agent": "bench-prober"})
                conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                continue
            self.seen.append((time.monotonic(), (time.perf_counter() - started) * 1000))
            self._stop.wait(max(self.every_s - (time.perf_counter() - started), 0))
        conn.close()

    def between(self, start: float, end: float) -> list[float]:
        return [ms for t, ms in self.seen if start <= t < end]


def bench_observer(sandbox: Sandbox, workdir: Path, seconds: float, block_s: float) -> bool:
    """The API p95 an independent prober sees with and without `monitor --interval 5`.

    The monitor runs as its own process; after its first samples (which take every part at
    once), it is paused (SIGSTOP) and resumed (SIGCONT) in alternating blocks, so that both
    conditions see the same drift of the machine's other load. Its cadences run on the wall
    clock, so its database work falls into the running blocks about twice as densely as in a
    continuous run: the effect measured is, if anything, overstated.
    """
    settings = sandbox.settings()
    url = settings.api.url.rstrip("/") + settings.api.health_path
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "TRAVELLR_CONFIG": str(sandbox.settings_file),
        "PYTHONPATH": str(REPO / "src"),  # this checkout's code, whatever the venv points at
    }
    prober = Prober(url)
    prober.start()
    proc = subprocess.Popen(
        [sys.executable, "-m", "travellr_ops", "monitor", "--interval", "5", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=workdir,
        start_new_session=True,
    )
    on: list[float] = []
    off: list[float] = []
    try:
        time.sleep(20)  # the first samples: every part taken at once (`monitor once` alike)
        blocks = max(int(seconds // block_s) // 4 * 4, 4)
        for i in range(blocks):
            # on, off, off, on, ...: the machine's other load drifting up or down over the run
            # falls on both conditions alike (on, off, on, off gave the first a bias)
            running = i % 4 in (0, 3)
            proc.send_signal(signal.SIGCONT if running else signal.SIGSTOP)
            start = time.monotonic()
            time.sleep(block_s)
            (on if running else off).extend(prober.between(start + 1, time.monotonic()))
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        prober.stop()
    p95_on, p95_off = percentile(on, 95), percentile(off, 95)
    assert p95_on is not None and p95_off is not None, "the prober got no answers"
    change = (p95_on - p95_off) / p95_off * 100
    print(f"\nobserver effect: an independent prober GETs {url} every 50 ms")
    print(f"  {seconds:g} s in {block_s:g} s blocks, monitor --interval 5 running / paused")
    print(f"  without the monitor: {len(off)} requests, p50 {percentile(off, 50):.1f} ms, ", end="")
    print(f"p95 {p95_off:.1f} ms")
    print(f"  with the monitor:    {len(on)} requests, p50 {percentile(on, 50):.1f} ms, ", end="")
    print(f"p95 {p95_on:.1f} ms")
    verdict = "PASS" if abs(change) <= 10 else "FAIL"
    print(
        f"{verdict}: the prober's p95 changed {change:+.1f} % with the monitor (target within 10 %)"
    )
    return verdict == "PASS"


# ------------------------------------------------------------------------------------ live


def bench_live(sandbox: Sandbox, workdir: Path, seconds: float) -> bool:
    warmup = min(30.0, seconds / 4)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 140, 0, 0))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "TERM": "xterm-256color",
        "TRAVELLR_CONFIG": str(sandbox.settings_file),
        "PYTHONPATH": str(REPO / "src"),  # this checkout's code, whatever the venv points at
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "travellr_ops", "monitor", "--interval", "1"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=workdir,
        start_new_session=True,
    )
    os.close(slave)
    screen = {"bytes": 0, "tail": b""}

    def drain() -> None:  # a terminal that keeps up, as a person's does
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            screen["bytes"] += len(chunk)
            screen["tail"] = (screen["tail"] + chunk)[-4000:]

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    code: int | None = None
    try:
        watched = psutil.Process(proc.pid)
        time.sleep(2)
        rss_start = watched.memory_info().rss
        time.sleep(max(warmup - 2, 0))
        cpu0, t0, wall0 = watched.cpu_times(), time.monotonic(), time.time()
        rss0 = watched.memory_info().rss
        rss_seen = [rss0]
        while time.monotonic() - t0 < seconds - warmup:
            time.sleep(min(10.0, seconds - warmup - (time.monotonic() - t0)) or 0.1)
            rss_seen.append(watched.memory_info().rss)
        cpu1, t1, wall1 = watched.cpu_times(), time.monotonic(), time.time()
        rss1 = watched.memory_info().rss
        threads = watched.num_threads()
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
        os.close(master)

    history = sqlite3.connect(sandbox.dir / "state" / "travellr-ops.db")
    samples = history.execute(
        "SELECT COUNT(DISTINCT time) FROM samples WHERE time >= ? AND time < ?", (wall0, wall1)
    ).fetchone()[0]
    history.close()
    busy = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    cpu_pct = busy / (t1 - t0) * 100
    growth = (rss1 - rss0) / MB
    print(f"\nmonitor --interval 1 on a pty: {seconds:g} s ({warmup:g} s warm-up not measured)")
    print(f"  RSS after 2 s {rss_start / MB:.1f} MB, after warm-up {rss0 / MB:.1f} MB, ", end="")
    print(f"at the end {rss1 / MB:.1f} MB (max {max(rss_seen) / MB:.1f} MB); {threads} threads")
    print(f"  CPU {busy:.2f} s in {t1 - t0:.0f} s = {cpu_pct:.2f} % of one core")
    print(
        f"  {samples} samples recorded in the measured {t1 - t0:.0f} s (one per interval at best)"
    )
    print(f"  screen output {screen['bytes'] / 1024:.0f} KiB; exit after Ctrl-C: {code}")
    ok_cpu, ok_rss, ok_exit = cpu_pct < 5, growth < 5, code == 130
    print(f"{'PASS' if ok_cpu else 'FAIL'}: CPU {cpu_pct:.2f} % of one core (target < 5 %)")
    print(f"{'PASS' if ok_rss else 'FAIL'}: RSS growth {growth:+.2f} MB (target < 5 MB)")
    if not ok_exit:
        print(f"FAIL: exit {code} after Ctrl-C, not 130; screen ends with:")
        print(screen["tail"].decode(errors="replace")[-1500:])
    return ok_cpu and ok_rss and ok_exit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--window", type=float, default=1.0, help="seconds a sample spans")
    parser.add_argument("--live", type=float, default=120.0, help="seconds of live monitor")
    parser.add_argument("--long", action="store_true", help="live for 600 s (10 minutes)")
    parser.add_argument("--scale", default="1", help="sandbox seed scale (1 = 75,000 documents)")
    parser.add_argument("--no-once", action="store_true")
    parser.add_argument("--no-live", action="store_true")
    parser.add_argument(
        "--observer", type=float, default=480.0, help="seconds of the observer-effect run"
    )
    parser.add_argument("--block", type=float, default=60.0, help="seconds per on/off block")
    parser.add_argument("--no-observer", action="store_true")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    sandbox = Sandbox(workdir, args.scale)
    results: list[bool] = []
    try:
        sandbox.sh("up")
        print(f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.2f} (other work on the machine)")
        if not args.no_observer:
            results.append(bench_observer(sandbox, workdir, args.observer, args.block))
        if not args.no_once:
            results.append(bench_once(sandbox.settings(), args.rounds, args.window))
        if not args.no_live:
            results.append(bench_live(sandbox, workdir, 600.0 if args.long else args.live))
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            sandbox.sh("down")
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
