"""`travellr-ops cache bigkeys` (every key) against `redis-cli --memkeys`, in one run.

On a redis-server of its own (scripts/testbed/redis.sh on a free 127.0.0.1 port, nothing on
disk; stopped through its pidfile), filled with --keys small keys (default 1,000,000:
`search:<n>` strings of 50 bytes) and a few big ones (strings, a hash and a list of 1-5 MiB).
Both contenders walk the whole keyspace with SCAN and MEMORY USAGE:

  ours       travellr-ops cache bigkeys --json    (SCAN COUNT cache.scan_count, one pipeline of
                                                   MEMORY USAGE per batch, next SCAN in flight)
  redis-cli  redis-cli --memkeys                  (SCAN, pipelined TYPE + MEMORY USAGE per batch)

Runs alternate (ours, redis-cli, ours, ...) --rounds times; each of ours is checked to have
measured every key and to rank the 5 MiB string first. Prints each time, the medians and the
ratio ours / redis-cli. Target (issue 10): ratio <= 1x.

    .venv/bin/python bench/cache_bigkeys/run.py [--keys 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REDIS_SH = ROOT / "scripts" / "testbed" / "redis.sh"
VENV_BIN = Path(sys.executable).parent
BIG = {"big:string5m": 5 * 2**20, "big:string2m": 2 * 2**20, "big:string1m": 2**20}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fill(port: int, keys: int) -> None:
    import redis

    r = redis.Redis(host="127.0.0.1", port=port)
    value = b"x" * 50
    batch = 10_000
    for start in range(0, keys, batch):
        r.mset({f"search:{i}": value for i in range(start, min(start + batch, keys))})
    for key, size in BIG.items():
        r.set(key, b"y" * size)
    r.hset("big:hash", mapping={f"f{i}": "v" * 100 for i in range(20_000)})
    r.rpush("big:list", *([b"z" * 100] * 20_000))
    r.close()


def timed(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """Seconds and stdout of a command run in ``cwd`` (where no ./travellr-ops.toml is)."""
    started = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    if shutil.which("redis-cli") is None:
        sys.exit("redis-cli missing: apt-get install redis-server")
    workdir = Path(tempfile.mkdtemp(prefix="bench-bigkeys-"))
    port = free_port()
    subprocess.run(["bash", str(REDIS_SH), "start", "--port", str(port), "--dir", str(workdir)],
                   check=True)  # fmt: skip
    try:
        started = time.perf_counter()
        fill(port, opts.keys)
        total = opts.keys + len(BIG) + 2
        print(f"filled {total:,} keys in {time.perf_counter() - started:.1f} s (port {port})")
        env = {**os.environ, "TRAVELLR_REDIS__URL": f"redis://127.0.0.1:{port}/0",
               "TRAVELLR_STATE_DIR": str(workdir / "state")}  # fmt: skip
        ours_cmd = [str(VENV_BIN / "travellr-ops"), "cache", "bigkeys", "--json"]
        cli_cmd = ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--memkeys"]
        ours, theirs = [], []
        for round_ in range(1, opts.rounds + 1):
            seconds, out = timed(ours_cmd, env, workdir)
            doc = json.loads(out)
            assert doc["seen"] == total == doc["total_keys"], (doc["seen"], total)
            assert doc["keys"][0]["key"] == "big:string5m", doc["keys"][0]
            ours.append(seconds)
            seconds, out = timed(cli_cmd, env, workdir)
            assert "big:string5m" in out, out[-500:]
            theirs.append(seconds)
            print(f"round {round_}: ours {ours[-1]:.2f} s, redis-cli --memkeys {theirs[-1]:.2f} s")
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"median: ours {a:.2f} s, redis-cli --memkeys {b:.2f} s, ratio {a / b:.2f}x"
              " (target <= 1x)")  # fmt: skip
    finally:
        subprocess.run(["bash", str(REDIS_SH), "stop", "--dir", str(workdir)], check=False)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
