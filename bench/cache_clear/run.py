"""`travellr-ops cache clear 'search:*'` against the usual ways of doing it, in one run.

On a redis-server of its own (127.0.0.1, a free port, nothing on disk; stopped by its PID),
filled with --keys keys (default 2,000,000), half of them `search:<n>` and half `trip:<n>`,
refilled before each contender:

  ours       travellr-ops cache clear 'search:*' --yes     (SCAN + pipelined UNLINK, one connection)
  redis-cli  redis-cli --scan --pattern 'search:*' | xargs -n BATCH redis-cli unlink
  naive      redis-py: for key in scan_iter('search:*'): delete(key)

Each run is checked: every search:* key gone, every trip:* key left. While ours (and the
redis-cli pipeline) run, a separate prober process PINGs Redis about every millisecond on its
own connection and records each round trip; its p99 is the latency other clients saw. Redis's
own LATENCY monitor (threshold 1 ms) reports the slowest command event as well.

Targets (issue 3): ours <= 0.5x the redis-cli pipeline, >= 20x faster than naive, p99 < 5 ms.

    .venv/bin/python bench/cache_clear/run.py [--keys 2000000] [--batch 1000] [--no-naive]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PROBER = Path(__file__).with_name("prober.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.port = free_port()
        self.pidfile = workdir / "redis.pid"
        self.pid: int | None = None

    def start(self) -> None:
        subprocess.run(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "yes", "--pidfile", str(self.pidfile),
             "--logfile", str(self.dir / "redis.log"), "--dir", str(self.dir),
             "--enable-debug-command", "local"],
            check=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.pidfile.exists() and self.pidfile.read_text().strip():
                try:
                    if self.client().ping():
                        self.pid = int(self.pidfile.read_text())
                        return
                except Exception:
                    pass
            time.sleep(0.05)
        raise SystemExit("redis-server did not start; see " + str(self.dir / "redis.log"))

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=60)

    def stop(self) -> None:
        if self.pid is None:
            return
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(self.pid, signal.SIGKILL)
        self.pid = None


def fill(server: Server, keys: int) -> None:
    r = server.client()
    r.flushall()
    half = keys // 2
    r.execute_command("DEBUG", "POPULATE", half, "search")  # search:0 .. search:N-1
    r.execute_command("DEBUG", "POPULATE", keys - half, "trip")
    assert r.dbsize() == keys
    r.config_set("latency-monitor-threshold", 1)
    r.execute_command("LATENCY", "RESET")
    r.close()


def check(server: Server, keys: int) -> None:
    """Every search:* key gone, every trip:* key left."""
    r = server.client()
    left = sum(len(batch) for batch in _scan_batches(r, "search:*"))
    size = r.dbsize()
    r.close()
    if left or size != keys - keys // 2:
        raise SystemExit(f"wrong result: {left} search:* keys left, dbsize {size}")


def _scan_batches(r: Any, match: str) -> Any:
    cursor = 0
    while True:
        cursor, found = r.scan(cursor, match=match, count=10000)
        yield found
        if cursor == 0:
            return


def slowest_event_ms(server: Server) -> int:
    r = server.client()
    latest = r.execute_command("LATENCY", "LATEST")
    r.close()
    return max((int(event[2]) for event in latest), default=0)


class Probe:
    """A separate process PINGing Redis about every ms; round trips in ms."""

    def __init__(self, server: Server, out: Path) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, str(PROBER), str(server.port), str(out)], stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # "ready"

    def stop(self) -> list[float]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        return json.loads(self.out.read_text())


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def run_ours(server: Server, state: Path) -> float:
    env = {
        **os.environ,
        "TRAVELLR_REDIS__URL": f"redis://127.0.0.1:{server.port}/0",
        "TRAVELLR_STATE_DIR": str(state),
    }
    started = time.perf_counter()
    done = subprocess.run(
        [str(VENV_BIN / "travellr-ops"), "cache", "clear", "search:*", "--yes", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        cwd=state,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"travellr-ops failed ({done.returncode}): {done.stderr}")
    return seconds


def run_redis_cli(server: Server, batch: int) -> float:
    p = str(server.port)
    pipeline = (
        f"redis-cli -h 127.0.0.1 -p {p} --scan --pattern 'search:*'"
        f" | xargs -n {batch} redis-cli -h 127.0.0.1 -p {p} unlink > /dev/null"
    )
    started = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], check=True)
    return time.perf_counter() - started


def run_naive(server: Server) -> float:
    r = server.client()
    started = time.perf_counter()
    for key in r.scan_iter(match="search:*"):
        r.delete(key)
    seconds = time.perf_counter() - started
    r.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=2_000_000, help="keys in all (half match)")
    parser.add_argument("--batch", type=int, default=1000, help="keys per redis-cli unlink")
    parser.add_argument("--no-naive", action="store_true", help="skip the (slow) naive loop")
    args = parser.parse_args()
    for tool in ("redis-server", "redis-cli", "xargs"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing (scripts/testbed/redis.sh install)")

    with tempfile.TemporaryDirectory(prefix="cache-clear-bench-") as tmp:
        base = Path(tmp)
        server = Server(base)
        server.start()
        try:
            results: dict[str, dict[str, Any]] = {}
            print(f"redis-server pid {server.pid} on 127.0.0.1:{server.port}; {args.keys:,} keys,"
                  f" {args.keys // 2:,} matching search:*", flush=True)  # fmt: skip
            contenders: list[tuple[str, Any, bool]] = [
                ("ours", lambda: run_ours(server, base), True),
                ("redis-cli", lambda: run_redis_cli(server, args.batch), True),
            ]
            if not args.no_naive:
                contenders.append(("naive", lambda: run_naive(server), False))
            for name, fn, probed in contenders:
                fill(server, args.keys)
                probe = Probe(server, base / f"probe-{name}.json") if probed else None
                seconds = fn()
                rtts = probe.stop() if probe else []
                slowest = slowest_event_ms(server)  # before check() adds its own SCANs
                check(server, args.keys)
                results[name] = {
                    "seconds": round(seconds, 3),
                    "p50_ms": round(percentile(rtts, 50), 3) if rtts else None,
                    "p99_ms": round(percentile(rtts, 99), 3) if rtts else None,
                    "max_ms": round(max(rtts), 3) if rtts else None,
                    "probes": len(rtts),
                    "slowest_event_ms": slowest,
                }
                r = results[name]
                line = f"{name:10} {seconds:8.2f} s  ({args.keys // 2 / seconds:,.0f} keys/s)"
                if rtts:
                    line += (
                        f"  latency p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms,"
                        f" max {r['max_ms']:.2f} ms over {len(rtts):,} pings"
                    )
                line += f"; slowest command event (LATENCY LATEST) {r['slowest_event_ms']} ms"
                print(line, flush=True)
        finally:
            server.stop()

    ours = results["ours"]["seconds"]
    cli = results["redis-cli"]["seconds"]
    print()
    print(f"ours / redis-cli = {ours / cli:.2f}x  (target <= 0.5x)")
    if "naive" in results:
        print(
            f"naive / ours    = {results['naive']['seconds'] / ours:.1f}x faster  (target >= 20x)"
        )
    p99 = results["ours"]["p99_ms"]
    print(f"Redis p99 latency during our clear = {p99:.2f} ms  (target < 5 ms)")
    print(json.dumps({"keys": args.keys, "batch": args.batch, **results}))


if __name__ == "__main__":
    main()
