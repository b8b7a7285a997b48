"""Startup cost of `travellr-ops --help` against a minimal Typer hello-world, same run.

Target (issue 2): at most 1.5x the hello-world. Also lists which heavy SDKs each command
imports (there should be none for --help).

    .venv/bin/python bench/startup/run.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds
    py = sys.executable
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(HELLO)
    hello = [py, f.name, "--help"]
    timed(hello, 2)  # warm the page cache
    base = timed(hello, rounds)
    print(f"baseline  typer hello-world --help       {base * 1000:7.1f} ms (median of {rounds})")
    worst = 0.0
    for args in (["--help"], ["health", "--help"], ["cache", "--help"], ["--version"]):
        cmd = [py, "-m", "travellr_ops", *args]
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


if __name__ == "__main__":
    main()
