"""Start-up cost of travellr-ops, each figure against a baseline measured in the same run.

1. `--help`: `travellr-ops --help` (and two groups' help, `--version`) against a minimal Typer
   hello-world. Target (issue 2): at most 1.5x the hello-world; lists which heavy SDKs each
   imports (there should be none).
2. First server call (issue 17): from spawning the process to the first byte a server receives,
   and the CPU seconds (user + sys, /proc) the process has spent by then:
   - `travellr-ops cache stats` -> a TCP listener standing in for Redis, against bare Python
     importing redis-py and calling INFO;
   - `travellr-ops deploy rollback` on a compose platform whose DOCKER_HOST is a unix socket
     listened on here -> its first Docker Engine request, against bare Python importing the
     Docker SDK and building a client (which asks the engine for /version, as ours does).
   The listener reads the first byte, notes the time, and the process is killed: only the way
   to the first request is measured. Also `cache stats` against a closed port, run to its end
   (exit 3), wall and CPU seconds against redis-py's. Target: first byte <= 0.3 s.

Rounds alternate which side goes first, so that drift in the machine's load hits both alike;
figures are medians. Run from a checkout (`python -m travellr_ops`, PYTHONPATH=src in a
worktree), with no TRAVELLR_* variable or config file in effect.

    .venv/bin/python bench/startup/run.py [--rounds 15] [--only help|first-call]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

HEAVY = ("docker", "kubernetes", "pymongo", "redis", "httpx", "bson")
HELLO = """
import typer
app = typer.Typer()
@app.command()
def hello(name: str = "world") -> None:
    print(f"hello {name}")
app()
"""
FIRST_BYTE_TARGET_S = 0.3
PY = sys.executable
OPS = [PY, "-m", "travellr_ops"]
REDIS_PY = """
import sys
import redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=5, socket_timeout=5).info()
except redis.ConnectionError:
    raise SystemExit(3)
"""
DOCKER_SDK = """
import sys
import docker
docker.DockerClient(base_url=sys.argv[1], timeout=5)
"""
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- 1. --help ----------------------------------------------------------------------------------
def timed(cmd: list[str], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def heavy_imports(cmd: list[str]) -> list[str]:
    done = subprocess.run(
        [cmd[0], "-X", "importtime", *cmd[1:]], capture_output=True, text=True, check=False
    )
    found = set()
    for line in done.stderr.splitlines():
        name = line.rsplit("|", 1)[-1].strip()
        if name.split(".")[0] in HEAVY:
            found.add(name.split(".")[0])
    return sorted(found)


def bench_help(rounds: int) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(HELLO)
    hello = [PY, f.name, "--help"]
    timed(hello, 2)  # warm the page cache
    base = timed(hello, rounds)
    print(f"baseline  typer hello-world --help       {base * 1000:7.1f} ms (median of {rounds})")
    worst = 0.0
    for args in (["--help"], ["health", "--help"], ["cache", "--help"], ["--version"]):
        cmd = [*OPS, *args]
        timed(cmd, 2)
        t = timed(cmd, rounds)
        ratio = t / base
        worst = max(worst, ratio)
        heavy = heavy_imports(cmd) or ["none"]
        label = "travellr-ops " + " ".join(args)
        print(
            f"{label:40s} {t * 1000:7.1f} ms  ratio {ratio:4.2f}x  heavy SDKs: {', '.join(heavy)}"
        )
    verdict = "PASS" if worst <= 1.5 else "FAIL"
    print(f"worst ratio {worst:.2f}x (target <= 1.5x): {verdict}")
    Path(f.name).unlink()


# -- 2. first server call -----------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process `pid` has spent so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def first_byte(cmd: list[str], env: dict[str, str], cwd: str, listener: socket.socket) -> tuple:
    """(seconds from spawning `cmd` to the first byte `listener` receives, CPU seconds by then)."""
    listener.settimeout(60)
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            proc.kill()
            err = proc.communicate()[1].decode(errors="replace")
            raise SystemExit(f"{' '.join(cmd)}: no connection within 60 s\n{err[-2000:]}") from None
        with conn:
            conn.recv(1)
            seconds = time.perf_counter() - started
            cpu = cpu_seconds(proc.pid)
    finally:
        proc.kill()
        proc.communicate()
    _drain(listener)
    return seconds, cpu


def _drain(listener: socket.socket) -> None:
    """Close connections a killed process left in the backlog (a retry), so the next round's
    first connection is its own."""
    listener.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            listener.accept()[0].close()
    listener.setblocking(True)


def run_to_the_end(cmd: list[str], env: dict[str, str], cwd: str) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, exit code) of `cmd` run to its end."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return seconds, usage.ru_utime + usage.ru_stime, proc.returncode


def alternating(
    rounds: int, ours: Callable[[], tuple], theirs: Callable[[], tuple]
) -> tuple[list[tuple], list[tuple]]:
    a: list[tuple] = []
    b: list[tuple] = []
    ours()  # warm the page cache for both
    theirs()
    for i in range(rounds):
        pairs = [(ours, a), (theirs, b)]
        if i % 2:
            pairs.reverse()
        for run, samples in pairs:
            samples.append(run())
    return a, b


def median_of(samples: list[tuple], index: int) -> float:
    return statistics.median(s[index] for s in samples)


@contextlib.contextmanager
def bench_dir() -> Iterator[tuple[str, dict[str, str]]]:
    """A scratch cwd and HOME, and an environment in which no TRAVELLR_* setting or config file
    of the user's applies."""
    with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAVELLR_", "XDG_"))}
        env.update(HOME=tmp, TRAVELLR_STATE_DIR=str(Path(tmp) / "state"))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (os.environ.get("PYTHONPATH"), str(Path(__file__).parents[2] / "src")) if p
        )
        yield tmp, env


def print_pair(label: str, base: str, ours: list[tuple], theirs: list[tuple]) -> float:
    t_ours, t_base = median_of(ours, 0), median_of(theirs, 0)
    cpu_ours, cpu_base = median_of(ours, 1), median_of(theirs, 1)
    print(
        f"{label:34s} {t_ours * 1000:6.0f} ms  cpu {cpu_ours:4.2f} s | "
        f"{base:18s} {t_base * 1000:6.0f} ms  cpu {cpu_base:4.2f} s | "
        f"ratio {t_ours / t_base:4.2f}x  cpu ratio {cpu_ours / max(cpu_base, 0.01):4.2f}x"
    )
    return t_ours


def bench_first_call(rounds: int) -> None:
    print(f"first byte a server receives, from spawning the process (median of {rounds}):")
    worst = 0.0
    with bench_dir() as (tmp, env):
        tcp = socket.create_server(("127.0.0.1", 0), backlog=16)
        url = f"redis://127.0.0.1:{tcp.getsockname()[1]}/0"
        ours_env = {**env, "TRAVELLR_REDIS__URL": url}
        ours, theirs = alternating(
            rounds,
            lambda: first_byte([*OPS, "cache", "stats"], ours_env, tmp, tcp),
            lambda: first_byte([PY, "-c", REDIS_PY, url], env, tmp, tcp),
        )
        tcp.close()
        worst = max(worst, print_pair("travellr-ops cache stats", "redis-py INFO", ours, theirs))

        path = str(Path(tmp) / "docker.sock")
        unix = socket.socket(socket.AF_UNIX)
        unix.bind(path)
        unix.listen(16)
        host = f"unix://{path}"
        compose_env = {
            **env,
            "TRAVELLR_PLATFORM": "compose",
            "TRAVELLR_COMPOSE__DOCKER_HOST": host,
            "TRAVELLR_COMPOSE__PROJECT": "startupbench",
        }
        ours, theirs = alternating(
            rounds,
            lambda: first_byte([*OPS, "deploy", "rollback", "--yes"], compose_env, tmp, unix),
            lambda: first_byte([PY, "-c", DOCKER_SDK, host], env, tmp, unix),
        )
        unix.close()
        worst = max(
            worst, print_pair("travellr-ops deploy rollback", "docker SDK client", ours, theirs)
        )

        closed = socket.create_server(("127.0.0.1", 0))
        closed_url = f"redis://127.0.0.1:{closed.getsockname()[1]}/0"
        closed.close()  # nothing listens there now: connection refused
        ours_env = {**env, "TRAVELLR_REDIS__URL": closed_url}
        ours, theirs = alternating(
            rounds,
            lambda: run_to_the_end([*OPS, "cache", "stats"], ours_env, tmp),
            lambda: run_to_the_end([PY, "-c", REDIS_PY, closed_url], env, tmp),
        )
        codes = {s[2] for s in ours} | {s[2] for s in theirs}
        if codes != {3}:
            raise SystemExit(f"against a closed port both should exit 3, not {sorted(codes)}")
        print("closed port, run to the end (exit 3):")
        print_pair("travellr-ops cache stats", "redis-py INFO", ours, theirs)
    verdict = "PASS" if worst <= FIRST_BYTE_TARGET_S else "FAIL"
    print(f"slowest first byte {worst * 1000:.0f} ms (target <= 300 ms): {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--only", choices=("help", "first-call"))
    args = parser.parse_args()
    if args.only in (None, "help"):
        bench_help(args.rounds)
    if args.only in (None, "first-call"):
        bench_first_call(args.rounds)


if __name__ == "__main__":
    main()
