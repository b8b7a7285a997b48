"""`travellr-ops deploy rollback` against the platforms' own rollback, and the gate's detection time.

- Kubernetes (the testbed control plane + node simulator, config/k8s/backend.yaml): each round
  sets the image to v2 (untimed), then times `deploy rollback` against `kubectl rollout undo`
  + `kubectl rollout status` (Debian's kubectl 1.20 from the k8s cache bin dir). Target <= 1.1.
- Compose (the testbed stack, its own project and ports): each round puts v2 up (untimed),
  then times `deploy rollback --to v1` against `TRAVELLR_BACKEND_TAG=v1 docker-compose up -d
  backend` + waiting for its health check. Target <= 1.1.
- Detection: `deploy run --image v2-errors` with fail_after and sample_interval_s at their
  defaults; from the start of the watch (v2-errors fails from its first request) to the start
  of the rollback, from the audit log. Target < 3 sample intervals.

Rounds alternate the order so that drift in the machine's load hits both alike.

    .venv/bin/python bench/rollback/run.py [--rounds 5] [--only k8s|compose|detect]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from travellr_ops.vocab.stats import percentile

ROOT = Path(__file__).resolve().parents[2]
DOCKER_SH = ROOT / "scripts" / "testbed" / "docker.sh"
OPS = str(Path(sys.executable).parent / "travellr-ops")
NAMESPACE = "bench"
DEPLOYMENT = "travellr-backend"


def timed(cmds: list[list[str]], env: dict[str, str], then: Any = None) -> float:
    started = time.perf_counter()
    for cmd in cmds:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr}")
    if then is not None:
        then()
    return time.perf_counter() - started


def report(name: str, ours: list[float], theirs: list[float], baseline: str) -> None:
    # the tool's one percentile (nearest-rank): of an even count, the lower middle round
    med_ours, med_theirs = percentile(ours, 50), percentile(theirs, 50)
    assert med_ours is not None and med_theirs is not None  # every round times both
    ratio = med_ours / med_theirs
    print(f"{name}: median travellr-ops deploy rollback {med_ours:6.2f} s")
    print(f"{name}: median {baseline} {med_theirs:6.2f} s")
    print(f"{name}: ratio {ratio:.3f} (target <= 1.1) -> {'OK' if ratio <= 1.1 else 'OVER'}")


def rounds_of(n: int, ours: Any, theirs: Any, prepare: Any) -> tuple[list[float], list[float]]:
    a: list[float] = []
    b: list[float] = []
    for i in range(n):
        pairs = [("travellr-ops", ours, a), ("baseline", theirs, b)]
        if i % 2:
            pairs.reverse()
        for label, run, samples in pairs:
            prepare()
            samples.append(run())
            print(f"round {i + 1}: {label:13s} {samples[-1]:6.2f} s", flush=True)
    return a, b


# -- Kubernetes ---------------------------------------------------------------------------------
def bench_k8s(rounds: int) -> None:
    sys.path.insert(0, str(ROOT / "bench" / "k8s_restart"))
    from run import backend_on_testbed, settle  # type: ignore[import-not-found]

    with backend_on_testbed("rollback-bench-") as (base, kubeconfig, kc, env):
        ours_env = {
            **env,
            "TRAVELLR_PLATFORM": "kubernetes",
            "TRAVELLR_KUBERNETES__KUBECONFIG": str(kubeconfig),
            "TRAVELLR_KUBERNETES__NAMESPACE": NAMESPACE,
            "TRAVELLR_STATE_DIR": str(base / "state"),
        }

        def prepare() -> None:
            settle(kubeconfig)
            timed([[*kc, "set", "image", f"deployment/{DEPLOYMENT}",
                    "backend=travellr-backend:v2"],
                   [*kc, "rollout", "status", f"deployment/{DEPLOYMENT}"]], env)  # fmt: skip
            settle(kubeconfig)

        def ours() -> float:
            return timed([[OPS, "deploy", "rollback", "--yes"]], ours_env)

        def theirs() -> float:
            return timed(
                [[*kc, "rollout", "undo", f"deployment/{DEPLOYMENT}"],
                 [*kc, "rollout", "status", f"deployment/{DEPLOYMENT}", "--timeout=300s"]],
                env,
            )  # fmt: skip

        a, b = rounds_of(rounds, ours, theirs, prepare)
        report("kubernetes", a, b, "kubectl rollout undo + status")


# -- Compose ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    def __init__(self, work: Path) -> None:
        self.host = subprocess.check_output(["bash", str(DOCKER_SH), "start"], text=True).strip()
        subprocess.run(["bash", str(DOCKER_SH), "images"], check=True)
        self.project = f"travellrbench{os.getpid()}"
        self.file = work / "docker-compose.yml"
        self.file.write_text((ROOT / "config" / "docker-compose.yml").read_text())
        self.ports = {k: free_port() for k in ("BACKEND", "REDIS", "MONGO")}
        self.env = {
            **os.environ,
            "DOCKER_HOST": self.host,
            **{f"TRAVELLR_{k}_PORT": str(p) for k, p in self.ports.items()},
        }
        self.compose = ["docker-compose", "-p", self.project, "-f", str(self.file)]

    def healthy(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            out = subprocess.run(
                ["/usr/bin/docker", "-H", self.host, "ps", "-q", "--filter",
                 f"label=com.docker.compose.project={self.project}", "--filter",
                 "label=com.docker.compose.service=backend", "--filter", "health=healthy"],
                capture_output=True, text=True, check=False,
            ).stdout.split()  # fmt: skip
            if out:
                return
            time.sleep(0.1)
        raise SystemExit("the backend did not become healthy")

    def up(self, tag: str) -> list[str]:
        return [*self.compose, "up", "-d", "backend"]


def bench_compose(rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="rollback-bench-") as tmp:
        work = Path(tmp)
        stack = Stack(work)
        try:
            subprocess.run([*stack.compose, "up", "-d"], env=stack.env, check=True)
            stack.healthy()
            ours_env = {
                **stack.env,
                "TRAVELLR_PLATFORM": "compose",
                "TRAVELLR_STATE_DIR": str(work / "state"),
                "TRAVELLR_COMPOSE__PROJECT": stack.project,
                "TRAVELLR_COMPOSE__FILE": str(stack.file),
                "TRAVELLR_COMPOSE__DOCKER_HOST": stack.host,
            }

            def prepare() -> None:
                timed([stack.up("v2")], {**stack.env, "TRAVELLR_BACKEND_TAG": "v2"}, stack.healthy)

            def ours() -> float:
                return timed([[OPS, "deploy", "rollback", "--to", "v1", "--yes"]], ours_env)

            def theirs() -> float:
                env = {**stack.env, "TRAVELLR_BACKEND_TAG": "v1"}
                return timed([stack.up("v1")], env, stack.healthy)

            a, b = rounds_of(rounds, ours, theirs, prepare)
            report("compose", a, b, "docker-compose up -d (v1) + health check")
        finally:
            subprocess.run(
                [*stack.compose, "down", "--volumes", "-t", "0"], env=stack.env, check=False
            )


def bench_detect() -> None:
    with tempfile.TemporaryDirectory(prefix="rollback-bench-") as tmp:
        work = Path(tmp)
        stack = Stack(work)
        try:
            subprocess.run([*stack.compose, "up", "-d"], env=stack.env, check=True)
            stack.healthy()
            p = stack.ports
            env = {
                **stack.env,
                "TRAVELLR_PLATFORM": "compose",
                "TRAVELLR_STATE_DIR": str(work / "state"),
                "TRAVELLR_COMPOSE__PROJECT": stack.project,
                "TRAVELLR_COMPOSE__FILE": str(stack.file),
                "TRAVELLR_COMPOSE__DOCKER_HOST": stack.host,
                "TRAVELLR_API__URL": f"http://127.0.0.1:{p['BACKEND']}",
                "TRAVELLR_MONGO__URI": f"mongodb://127.0.0.1:{p['MONGO']}/travellr"
                "?directConnection=true",
                "TRAVELLR_REDIS__URL": f"redis://127.0.0.1:{p['REDIS']}/0",
            }
            cmd = [OPS, "--json", "deploy", "run", "--image", "v2-errors", "--no-backup", "--yes"]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            result = json.loads(done.stdout)
            audit = [
                json.loads(line) for line in (work / "state" / "audit.log").read_text().splitlines()
            ]
            at = {
                (a["action"], a.get("phase")): datetime.fromisoformat(a["time"])
                for a in audit
                if a.get("deploy_id") == result["id"]
            }
            watch = at[("deploy watch", "start")]
            rollback = at[("deploy rollback", "start")]
            seconds = (rollback - watch).total_seconds()
            from travellr_ops.settings import DeploySettings

            d = DeploySettings()
            print(
                f"detect: exit {done.returncode}, outcome {result['outcome']}: {result['failure']}"
            )
            print(
                f"detect: watch start -> rollback start {seconds:.1f} s with sample_interval_s"
                f" {d.sample_interval_s:g} and fail_after {d.fail_after}"
                f" ({seconds / d.sample_interval_s:.2f} intervals; target < 3)"
                f" -> {'OK' if seconds < 3 * d.sample_interval_s else 'OVER'}"
            )
        finally:
            subprocess.run(
                [*stack.compose, "down", "--volumes", "-t", "0"], env=stack.env, check=False
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=["k8s", "compose", "detect"])
    args = parser.parse_args()
    if args.only in (None, "compose"):
        bench_compose(args.rounds)
    if args.only in (None, "detect"):
        bench_detect()
    if args.only in (None, "k8s"):
        bench_k8s(args.rounds)


if __name__ == "__main__":
    main()
