"""`travellr-ops service restart` against `kubectl rollout restart` + `kubectl rollout status`.

Both restart the shipped backend Deployment (config/k8s/backend.yaml: 3 replicas, maxSurge 1,
readiness after 5 s) on the testbed control plane and return once the rollout is complete;
kubectl is Debian's 1.20 (cached by scripts/testbed/k8s.sh install), never /usr/bin/kubectl.
Rounds alternate between the two so that drift in the machine's load hits both alike.
Target (issue 7): our time to notice completion is no worse than kubectl's, ratio <= 1.1.

    .venv/bin/python bench/k8s_restart/run.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
K8S_SH = ROOT / "scripts" / "testbed" / "k8s.sh"
SIM = ROOT / "scripts" / "testbed" / "k8s_node_sim.py"
NAMESPACE = "bench"
DEPLOYMENT = "travellr-backend"


def settle(kubeconfig: Path) -> None:
    """Wait until the Deployment is complete and no old pod is left terminating."""
    import yaml  # noqa: F401 - kubernetes needs it; fail early if missing
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        dep = apps.read_namespaced_deployment(DEPLOYMENT, NAMESPACE)
        st = dep.status
        pods = core.list_namespaced_pod(NAMESPACE, label_selector=f"app={DEPLOYMENT}").items
        if (
            (st.observed_generation or 0) >= dep.metadata.generation
            and st.updated_replicas == st.available_replicas == st.replicas == dep.spec.replicas
            and len(pods) == dep.spec.replicas
        ):
            api.close()
            return
        time.sleep(0.2)
    raise SystemExit("the deployment did not settle")


def timed(cmds: list[list[str]], env: dict[str, str]) -> float:
    started = time.perf_counter()
    for cmd in cmds:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr}")
    return time.perf_counter() - started


@contextlib.contextmanager
def backend_on_testbed(prefix: str) -> Iterator[tuple[Path, Path, list[str], dict[str, str]]]:
    """A control plane and node simulator of their own, with the shipped backend Deployment
    applied in NAMESPACE and settled: (its folder, kubeconfig, kubectl argv, environment).
    Everything is stopped when the block ends."""
    bin_dir = Path(subprocess.check_output([str(K8S_SH), "bin-dir"], text=True).strip())
    kubectl = bin_dir / "kubectl"
    if not kubectl.exists():
        raise SystemExit("no cached binaries: run scripts/testbed/k8s.sh install first")
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        base = Path(tmp)
        subprocess.run([str(K8S_SH), "start", "--dir", str(base)], check=True)
        sim: subprocess.Popen[Any] | None = None
        try:
            kubeconfig = base / "kubeconfig"
            sim = subprocess.Popen(
                [sys.executable, str(SIM), "--kubeconfig", str(kubeconfig),
                 "--cert", str(base / "kubelet.crt"), "--key", str(base / "kubelet.key"),
                 "--ready-file", str(base / "sim.ready")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            while not (base / "sim.ready").exists():
                time.sleep(0.1)
            env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
            kc = [str(kubectl), "--kubeconfig", str(kubeconfig), "-n", NAMESPACE]
            subprocess.run([*kc[:3], "create", "namespace", NAMESPACE], check=True, env=env)
            manifest = str(ROOT / "config" / "k8s" / "backend.yaml")
            subprocess.run([*kc, "apply", "-f", manifest], check=True, env=env)
            settle(kubeconfig)
            yield base, kubeconfig, kc, env
        finally:
            if sim is not None:
                sim.terminate()
                sim.wait(10)
            subprocess.run([str(K8S_SH), "stop", "--dir", str(base)], check=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    with backend_on_testbed("k8s-bench-") as (base, kubeconfig, kc, env):
        ours_env = {
            **env,
            "TRAVELLR_PLATFORM": "kubernetes",
            "TRAVELLR_KUBERNETES__KUBECONFIG": str(kubeconfig),
            "TRAVELLR_KUBERNETES__NAMESPACE": NAMESPACE,
            "TRAVELLR_STATE_DIR": str(base / "state"),
        }
        ours_cmd = [[str(Path(sys.executable).parent / "travellr-ops"),
                     "service", "restart", "backend", "--yes"]]  # fmt: skip
        kubectl_cmds = [
            [*kc, "rollout", "restart", f"deployment/{DEPLOYMENT}"],
            [*kc, "rollout", "status", f"deployment/{DEPLOYMENT}", "--timeout=300s"],
        ]
        kubectl = kc[0]
        version = subprocess.run(
            [kubectl, "version", "--client", "--short"], capture_output=True, text=True
        ).stdout.strip()
        print(f"baseline: {kubectl} ({version})")
        ours: list[float] = []
        theirs: list[float] = []
        for i in range(rounds):
            pairs = [("travellr-ops", ours_cmd, ours), ("kubectl", kubectl_cmds, theirs)]
            if i % 2:
                pairs.reverse()
            for label, cmds, samples in pairs:
                settle(kubeconfig)
                seconds = timed(cmds, ours_env if label == "travellr-ops" else env)
                samples.append(seconds)
                print(f"round {i + 1}: {label:13s} {seconds:6.2f} s", flush=True)
        med_ours, med_theirs = statistics.median(ours), statistics.median(theirs)
        ratio = med_ours / med_theirs
        print(f"median travellr-ops service restart:          {med_ours:6.2f} s")
        print(f"median kubectl rollout restart + status:      {med_theirs:6.2f} s")
        print(f"ratio: {ratio:.3f} (target <= 1.1) -> {'OK' if ratio <= 1.1 else 'OVER'}")


if __name__ == "__main__":
    main()
