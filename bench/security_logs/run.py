"""`travellr-ops security logs` over a large access log against grep + awk, in one run.

Generates --size bytes (default 1 GiB) of combined-format access log under /var/tmp (a
directory of its own, deleted at the end), with a known mix: about 3 % 401, 2 % 403 and 1 %
429 from a few thousand client IPs, the rest 200/304/404/500, timestamps over the last six
days. Then, on the same file, warm in the page cache:

  ours      travellr-ops security logs --source FILE --since all --top N --json
            (the whole report: 401/403/429 by IP, path and hour, requests per minute, ...)
  baseline  LC_ALL=C grep -E '" (401|403|429) ' FILE | LC_ALL=C awk '{c[$1" "$9]++} END {...}'
            (only the 401/403/429-by-IP counts)

Each runs --repeat times (default 1), alternating; the best time of each is compared. The
401/403/429-by-IP counts of both must equal each other and what the generator wrote. Peak RSS
of each command is /usr/bin/time's (the kernel's ru_maxrss: -v's "Maximum resident set
size"); for grep + awk it is the larger of the two processes.

Targets (issue 13): ours within 3x of grep + awk; our peak RSS under 100 MB.

    .venv/bin/python bench/security_logs/run.py [--size 1G] [--repeat 1] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

VENV_BIN = Path(sys.executable).parent
BLOCK_LINES = 40_000
DISTINCT_BLOCKS = 16
DENIED = ("401", "403", "429")
PATHS = [
    "/api/search?destination=Lisbon&page=2",
    "/api/trips/popular",
    "/api/trips/5f1c2a9b8e7d6c5b4a392817",
    "/api/bookings",
    "/api/auth/login",
    "/api/users/me",
    "/admin/users",
    "/api/health",
    "/static/app.3f9a1c.js",
    "/.env",
    "/wp-login.php",
]
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "curl/8.4.0",
    "Travellr-iOS/4.2.1 CFNetwork/1410.0.3 Darwin/22.6.0",
    "python-requests/2.31.0",
]
METHODS = ["GET"] * 8 + ["POST", "PUT"]


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().rstrip("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def make_template(rng: random.Random) -> tuple[list[tuple[str, str]], Counter[tuple[str, str]]]:
    """BLOCK_LINES lines as (before the time, after it), and their (ip, status) counts for
    401/403/429."""
    counts: Counter[tuple[str, str]] = Counter()
    lines = []
    for _ in range(BLOCK_LINES):
        roll = rng.random()
        if roll < 0.03:
            status = "401"
        elif roll < 0.05:
            status = "403"
        elif roll < 0.06:
            status = "429"
        else:
            status = rng.choice(("200", "200", "200", "200", "304", "404", "500"))
        if status in DENIED and rng.random() < 0.5:
            ip = f"203.0.113.{rng.randrange(1, 40)}"  # a few loud offenders
        else:
            ip = f"10.{rng.randrange(0, 4)}.{rng.randrange(0, 40)}.{rng.randrange(1, 30)}"
        size = rng.randrange(0, 50_000) if status == "200" else rng.randrange(0, 300)
        lines.append(
            (
                f"{ip} - - [",
                f' +0000] "{rng.choice(METHODS)} {rng.choice(PATHS)} HTTP/1.1" {status} {size} '
                f'"https://travellr.test/" "{rng.choice(AGENTS)}"\n',
            )
        )
        if status in DENIED:
            counts[(ip, status)] += 1
    return lines, counts


def generate(path: Path, size: int, seed: int) -> tuple[int, Counter[tuple[str, str]]]:
    """Lines in time order (as a server writes them) over the last six days, drawn from
    DISTINCT_BLOCKS random templates."""
    rng = random.Random(seed)
    templates = [make_template(rng) for _ in range(DISTINCT_BLOCKS)]
    line_bytes = sum(len(a) + len(b) + 20 for a, b in templates[0][0]) / BLOCK_LINES
    span_s = 6 * 86400
    step = span_s / (size / line_bytes)
    t = (datetime.now(UTC) - timedelta(seconds=span_s)).timestamp()
    expected: Counter[tuple[str, str]] = Counter()
    written = 0
    second, stamp = -1, ""
    with open(path, "wb") as f:
        while written < size:
            lines, counts = templates[rng.randrange(DISTINCT_BLOCKS)]
            parts = []
            for before, after in lines:
                if int(t) != second:
                    second = int(t)
                    stamp = datetime.fromtimestamp(second, UTC).strftime("%d/%b/%Y:%H:%M:%S")
                parts += (before, stamp, after)
                t += step
            data = "".join(parts).encode()
            f.write(data)
            written += len(data)
            expected.update(counts)
    return written, expected


class Run(NamedTuple):
    wall_s: float
    cpu_s: float
    rss: int
    stdout: bytes


def timed(argv: list[str], work: Path, env: dict[str, str] | None = None) -> Run:
    """Wall and CPU (user + system) seconds, peak RSS (bytes) and stdout of one command, from
    /usr/bin/time: the kernel's figures for the command and its children (not for this big
    parent process); RSS is the largest process's."""
    rss_file = work / "maxrss"
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M %U %S", "-o", str(rss_file), *argv],
            stdout=out,
            stderr=subprocess.PIPE,
            env=env,
            cwd=work,
        )
        seconds = time.perf_counter() - started
        out.seek(0)
        data = out.read()
    if proc.returncode not in (0, 1):  # security logs exits 1 when it finds a suspect
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    rss_kb, user, system = rss_file.read_text().split()[-3:]
    return Run(seconds, float(user) + float(system), int(rss_kb) * 1024, data)


def ours_counts(raw: bytes) -> Counter[tuple[str, str]]:
    doc = json.loads(raw)
    counts: Counter[tuple[str, str]] = Counter()
    for row in doc["denied_by_ip"]:
        for status in DENIED:
            if row[status]:
                counts[(row["key"], status)] = row[status]
    return counts


def baseline_counts(raw: bytes) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for line in raw.decode().splitlines():
        ip, status, n = line.split()
        counts[(ip, status)] = int(n)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1G", help="bytes of log to generate (1G, 200M ...)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each contender")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--keep", action="store_true", help="keep the generated log")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="travellr-bench-seclogs-", dir="/var/tmp"))
    log = work / "access.log"
    config = work / "travellr-ops.toml"
    config.write_text(f'platform = "none"\nstate_dir = "{work / "state"}"\n')
    try:
        t0 = time.perf_counter()
        size, expected = generate(log, parse_size(args.size), args.seed)
        print(
            f"generated {size / 1e9:.2f} GB ({size:,} bytes) in {time.perf_counter() - t0:.1f} s: "
            f"{sum(expected.values()):,} lines of 401/403/429 from "
            f"{len({ip for ip, _ in expected}):,} IPs"
        )
        subprocess.run(["cat", str(log)], stdout=subprocess.DEVNULL, check=True)  # page cache

        ours_argv = [
            str(VENV_BIN / "travellr-ops"),
            "--config",
            str(config),
            "security",
            "logs",
            "--source",
            str(log),
            "--since",
            "all",
            "--top",
            "100000000",
            "--json",
        ]
        script = (
            f"LC_ALL=C grep -E '\" (401|403|429) ' {log} | "
            "LC_ALL=C awk '{c[$1\" \"$9]++} END {for (k in c) print k, c[k]}'"
        )
        base_argv = ["bash", "-c", script]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAVELLR_")}
        ours_runs, base_runs = [], []
        for _ in range(args.repeat):
            ours_runs.append(timed(ours_argv, work, env))
            base_runs.append(timed(base_argv, work))
        ours = min(ours_runs, key=lambda r: r.wall_s)
        base = min(base_runs, key=lambda r: r.wall_s)
        got_ours, got_base = ours_counts(ours.stdout), baseline_counts(base.stdout)
        agree = got_ours == got_base == expected
        for name, best, runs in (("ours", ours, ours_runs), ("grep+awk", base, base_runs)):
            print(
                f"{name:9s} {best.wall_s:7.2f} s wall ({size / best.wall_s / 1e6:4.0f} MB/s), "
                f"{min(r.cpu_s for r in runs):6.2f} s CPU, peak RSS {best.rss / 1e6:6.1f} MB; "
                f"runs: {', '.join(f'{r.wall_s:.2f}' for r in runs)}"
            )
        ratio = ours.wall_s / base.wall_s
        cpu_ratio = min(r.cpu_s for r in ours_runs) / min(r.cpu_s for r in base_runs)
        print(
            f"ratio ours/grep+awk: {ratio:.2f}x wall (target <= 3x: "
            f"{'met' if ratio <= 3 else 'NOT met'}), {cpu_ratio:.2f}x CPU"
        )
        print(
            f"our peak RSS: {ours.rss / 1e6:.1f} MB (target < 100 MB): "
            f"{'met' if ours.rss < 100e6 else 'NOT met'}"
        )
        print(
            f"401/403/429-by-IP counts: ours {sum(got_ours.values()):,}, grep+awk "
            f"{sum(got_base.values()):,}, generated {sum(expected.values()):,}: "
            f"{'agree' if agree else 'DIFFER'}"
        )
        if not agree:
            raise SystemExit(1)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
