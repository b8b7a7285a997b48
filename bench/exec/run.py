"""`travellr-ops service exec backend -- true` against `docker-compose exec -T backend true`.

Both run the same no-op in the same container of a compose project of the Travellr stack that
this script starts on the testbed's Docker Engine (scripts/testbed/docker.sh) on free ports,
and removes at the end. Both are whole processes, start-up included: a user waits for that
too. Rounds alternate which side goes first, so that drift in the machine's load hits both
alike; figures are medians. Target (issue 20): ours <= 1.2x docker-compose's.

Also shown, to tell where our time goes: `travellr-ops --version` (our start-up alone), and
`docker exec` (Debian's Go CLI, which pays no Python start-up) as a floor.

    .venv/bin/python bench/exec/run.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "config" / "docker-compose.yml"
DOCKER_SH = ROOT / "scripts" / "testbed" / "docker.sh"
TARGET = 1.2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(cmd: list[str], env: dict[str, str], cwd: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr.decode()}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    host = subprocess.run(
        ["bash", str(DOCKER_SH), "start"], capture_output=True, text=True, check=True
    ).stdout.strip()
    project = f"travellrbenchexec{secrets.token_hex(3)}"
    ports = {
        "TRAVELLR_BACKEND_PORT": free_port(),
        "TRAVELLR_REDIS_PORT": free_port(),
        "TRAVELLR_MONGO_PORT": free_port(),
    }
    with tempfile.TemporaryDirectory(prefix="exec-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAVELLR_", "XDG_"))}
        env.update({k: str(v) for k, v in ports.items()})
        env.update(
            HOME=tmp,
            DOCKER_HOST=host,
            TRAVELLR_PLATFORM="compose",
            TRAVELLR_COMPOSE__PROJECT=project,
            TRAVELLR_COMPOSE__DOCKER_HOST=host,
            TRAVELLR_STATE_DIR=str(Path(tmp) / "state"),
        )
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (os.environ.get("PYTHONPATH"), str(ROOT / "src")) if p
        )
        compose = ["docker-compose", "-p", project, "-f", str(COMPOSE_FILE)]
        print(f"starting compose project {project} on {host}", file=sys.stderr)
        subprocess.run([*compose, "up", "-d"], env=env, cwd=tmp, capture_output=True, check=True)
        try:
            ours = [sys.executable, "-m", "travellr_ops", "service", "exec", "backend", "--yes"]
            sides = {
                "travellr-ops service exec backend -- true": [*ours, "--", "true"],
                "docker-compose exec -T backend true": [*compose, "exec", "-T", "backend", "true"],
                "travellr-ops --version (start-up alone)": [
                    sys.executable,
                    "-m",
                    "travellr_ops",
                    "--version",
                ],
                "docker exec CONTAINER true (Go CLI)": [
                    "/usr/bin/docker",
                    "-H",
                    host,
                    "exec",
                    f"{project}_backend_1",
                    "true",
                ],
            }
            _wait_healthy(f"{project}_backend_1", host)
            samples: dict[str, list[float]] = {name: [] for name in sides}
            for cmd in sides.values():
                timed(cmd, env, tmp)  # warm the page cache
            names = list(sides)
            for i in range(args.rounds):
                order = names if i % 2 == 0 else names[::-1]
                for name in order:
                    samples[name].append(timed(sides[name], env, tmp))
        finally:
            subprocess.run(
                [*compose, "down", "--volumes", "--timeout", "0"],
                env=env,
                cwd=tmp,
                capture_output=True,
                check=False,
            )
    medians = {name: statistics.median(s) for name, s in samples.items()}
    for name, value in medians.items():
        spread = f"{min(samples[name]) * 1000:6.0f}-{max(samples[name]) * 1000:6.0f}"
        print(f"{name:45s} {value * 1000:7.1f} ms  (min-max {spread} ms, {args.rounds} rounds)")
    ratio = medians[names[0]] / medians[names[1]]
    paired = statistics.median(
        a / b for a, b in zip(samples[names[0]], samples[names[1]], strict=True)
    )
    print(f"median of the per-round ratios (same round, side by side): {paired:.2f}x")
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    print(
        f"ratio service exec / docker-compose exec: {ratio:.2f}x (target <= {TARGET}x): {verdict}"
    )
    return 0 if ratio <= TARGET else 1


def _wait_healthy(container: str, host: str) -> None:
    """Until the backend's health check passes (compose up returns before it runs)."""
    inspect = ["/usr/bin/docker", "-H", host, "inspect", "-f", "{{.State.Health.Status}}"]
    deadline = time.monotonic() + 120
    while True:
        done = subprocess.run([*inspect, container], capture_output=True, text=True, check=False)
        if done.stdout.strip() == "healthy":
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{container} was not healthy within 120 s")
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
