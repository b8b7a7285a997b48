"""Platform faults: a crash loop, an OOM kill, a bad image deployed a minute ago.

On Kubernetes, the testbed's node simulator runs images by their tag (scripts/testbed/
k8s_node_sim.py): ``crashloop`` keeps crashing (CrashLoopBackOff), ``oom`` is OOMKilled (exit
137), ``broken`` never becomes Ready. On Compose, the stack's own images: ``v2-broken`` (its
health check fails), and the backend's command replaced by one that exits (a crash loop) or
that allocates past a small memory limit (an OOM kill).

The bad image is also written to the deploy history as the deploy that landed a minute ago,
through the history's own code, as `deploy run` records one.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from travellr_ops.settings import Settings

REPO = Path(__file__).resolve().parents[2]
K8S_SH = REPO / "scripts" / "testbed" / "k8s.sh"
SIM = REPO / "scripts" / "testbed" / "k8s_node_sim.py"
CONTEXT = "travellr-testbed"
DEPLOYMENT = "travellr-backend"


def record_deploy(state_dir: Path, platform: str, image_from: str, image_to: str) -> None:
    """The deploy history's row of a deploy of ``image_to`` that landed a minute ago."""
    from travellr_ops.ops.deploy.history import History

    started = datetime.now(UTC) - timedelta(seconds=60)
    history = History(state_dir)
    try:
        entry = history.start(
            kind="deploy",
            service="backend",
            platform=platform,
            started_at=started.isoformat(timespec="seconds"),
            outcome="running",
            user=getpass.getuser(),
            host=socket.gethostname(),
            pid=os.getpid(),
            image_from=image_from,
            image_to=image_to,
        )
        history.update(
            entry,
            outcome="succeeded",
            finished_at=(started + timedelta(seconds=20)).isoformat(timespec="seconds"),
        )
    finally:
        history.close()


# -- Kubernetes -------------------------------------------------------------------------------
def backend_manifest(image: str = "travellr-backend:v1") -> dict[str, Any]:
    labels = {"app": DEPLOYMENT}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "backend",
                            "image": image,
                            "ports": [{"containerPort": 5000}],
                            "readinessProbe": {
                                "httpGet": {"path": "/api/health", "port": 5000},
                                "initialDelaySeconds": 0,
                                "periodSeconds": 5,
                            },
                        }
                    ]
                },
            },
        },
    }


@dataclass
class K8s:
    """One namespace of a testbed cluster, with the backend Deployment in it."""

    kubeconfig: Path
    namespace: str
    context: str = CONTEXT

    def api(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig), context=self.context)

    def create(self) -> None:
        """The namespace, then the backend in it."""
        from kubernetes import client

        with self.api() as api:
            client.CoreV1Api(api).create_namespace({"metadata": {"name": self.namespace}})
        self.deploy()

    def deploy(self) -> None:
        """The backend Deployment on travellr-backend:v1, once its pod is Ready."""
        from kubernetes import utils

        with self.api() as api:
            utils.create_from_dict(api, backend_manifest(), namespace=self.namespace)
        self.wait(lambda pods: any(_ready(p) for p in pods))

    def settings(self, base: Settings, state_dir: Path) -> Settings:
        return base.model_copy(
            update={
                "platform": "kubernetes",
                "state_dir": state_dir,
                "kubernetes": base.kubernetes.model_copy(
                    update={
                        "kubeconfig": self.kubeconfig,
                        "context": self.context,
                        "namespace": self.namespace,
                    }
                ),
            }
        )

    def set_image(self, image: str) -> None:
        from kubernetes import client

        patch = {
            "spec": {"template": {"spec": {"containers": [{"name": "backend", "image": image}]}}}
        }
        with self.api() as api:
            client.AppsV1Api(api).patch_namespaced_deployment(DEPLOYMENT, self.namespace, patch)

    def pods(self) -> list[Any]:
        from kubernetes import client

        with self.api() as api:
            found = client.CoreV1Api(api).list_namespaced_pod(self.namespace).items
        return [p for p in found if p.metadata.deletion_timestamp is None]

    def wait(self, done: Callable[[list[Any]], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not done(self.pods()):
            if time.monotonic() > deadline:
                raise AssertionError(f"pods of {self.namespace} did not get there: {self.pods()}")
            time.sleep(0.3)

    def delete(self) -> None:
        from kubernetes import client

        with self.api() as api:
            client.CoreV1Api(api).delete_namespace(self.namespace)


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def _waiting(reason: str) -> Callable[[list[Any]], bool]:
    def done(pods: list[Any]) -> bool:
        for pod in pods:
            for cs in pod.status.container_statuses or []:
                waiting = cs.state.waiting if cs.state else None
                if waiting is not None and waiting.reason == reason and cs.restart_count >= 1:
                    return True
        return False

    return done


def _terminated_as(reason: str) -> Callable[[list[Any]], bool]:
    def done(pods: list[Any]) -> bool:
        for pod in pods:
            for cs in pod.status.container_statuses or []:
                last = cs.last_state.terminated if cs.last_state else None
                if last is not None and last.reason == reason:
                    return True
        return False

    return done


@dataclass(frozen=True)
class K8sFault:
    name: str
    expected: str
    plant: Callable[[K8s, Path], None]
    symptom: str | None = None


def _crashloop(k: K8s, state_dir: Path) -> None:
    k.set_image("travellr-backend:v2-crashloop")
    k.wait(_waiting("CrashLoopBackOff"))


def _oom(k: K8s, state_dir: Path) -> None:
    k.set_image("travellr-backend:v2-oom")
    k.wait(_terminated_as("OOMKilled"))


def _bad_deploy(k: K8s, state_dir: Path) -> None:
    k.set_image("travellr-backend:v2-broken")
    record_deploy(state_dir, "kubernetes", "travellr-backend:v1", "travellr-backend:v2-broken")
    k.wait(lambda pods: bool(pods) and all("v2-broken" in p.spec.containers[0].image for p in pods))


def repair_k8s(k: K8s, state_dir: Path) -> None:
    k.set_image("travellr-backend:v1")
    k.wait(
        lambda pods: len(pods) == 1 and _ready(pods[0]) and "v1" in pods[0].spec.containers[0].image
    )


K8S_FAULTS = [
    K8sFault("k8s backend crash-looping", "backend_crashloop", _crashloop, "down"),
    K8sFault("k8s backend OOM-killed", "backend_oom", _oom, "memory"),
    K8sFault("k8s bad image deployed 1 min ago", "bad_deploy", _bad_deploy, "down"),
]


# -- Compose ----------------------------------------------------------------------------------
#: the backend's command replaced: one that exits at once, one that allocates past its limit
CRASH_OVERRIDE = """services:
  backend:
    command: ["node", "-e", "process.exit(1)"]
"""
OOM_OVERRIDE = """services:
  backend:
    mem_limit: 48m
    memswap_limit: 48m
    command: ["node", "-e", "const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1))"]
"""


@dataclass(frozen=True)
class ComposeFault:
    name: str
    expected: str
    #: an override file for the backend, or None
    override: str | None = None
    #: the backend tag to run instead, recorded as deployed a minute ago
    tag: str | None = None
    symptom: str | None = None
    #: what the backend's container shows once the fault is in place
    shows: Callable[[dict[str, Any]], bool] = lambda attrs: True


def _restarted(attrs: dict[str, Any]) -> bool:
    return int(attrs.get("RestartCount", 0)) >= 2


def _oom_killed(attrs: dict[str, Any]) -> bool:
    return bool(attrs.get("State", {}).get("OOMKilled"))


COMPOSE_FAULTS = [
    ComposeFault(
        "compose backend crash-looping",
        "backend_crashloop",
        CRASH_OVERRIDE,
        symptom="down",
        shows=_restarted,
    ),
    ComposeFault(
        "compose backend OOM-killed",
        "backend_oom",
        OOM_OVERRIDE,
        symptom="memory",
        shows=_oom_killed,
    ),
    ComposeFault(
        "compose bad image deployed 1 min ago", "bad_deploy", tag="v2-broken", symptom="down"
    ),
]


def compose_settings(stack: Any, where: Path) -> Settings:
    """travellr-ops on the compose stack (tests/fixtures_docker.ComposeStack) and its servers,
    with its state in ``where``."""
    base = stack.settings()
    return base.model_copy(
        update={
            "state_dir": where / "state",
            "disk_paths": [where],
            "logs": base.logs.model_copy(
                update={"access_log": where / "access.log", "app_log": where / "app.log"}
            ),
            "backup": base.backup.model_copy(update={"dir": where / "backups"}),
            "mongo": base.mongo.model_copy(
                update={
                    "uri": f"mongodb://127.0.0.1:{stack.ports['mongodb']}/travellr"
                    "?directConnection=true"
                }
            ),
            "redis": base.redis.model_copy(
                update={"url": f"redis://127.0.0.1:{stack.ports['redis']}/0"}
            ),
            "thresholds": base.thresholds.model_copy(
                update={"api_response_ms": 1000.0, "cpu_pct": 200.0}
            ),
        }
    )


def plant_compose(stack: Any, fault: ComposeFault, where: Path, settings: Settings) -> None:
    """Run the backend as the fault has it, and wait until its container shows it."""
    from fixtures_docker import COMPOSE_FILE

    where.mkdir(parents=True, exist_ok=True)
    if fault.override is not None:
        override = where / "override.yml"
        override.write_text(fault.override)
        files = [COMPOSE_FILE, stack.workdir / "labels.yml", override]
        stack.compose("up", "-d", "backend", files=files)
    else:
        assert fault.tag is not None
        stack.compose("up", "-d", "backend", env={"TRAVELLR_BACKEND_TAG": fault.tag})
        record_deploy(
            settings.state_dir, "compose", "travellr-backend:v1", f"travellr-backend:{fault.tag}"
        )
    deadline = time.monotonic() + 60
    while not fault.shows(stack.container("backend").attrs):
        if time.monotonic() > deadline:
            raise AssertionError(f"{fault.name}: the backend never showed it")
        time.sleep(0.5)


def repair_compose(stack: Any) -> None:
    stack.compose("up", "-d", "backend")  # the stack's own backend again
    stack.wait_healthy()


def compose_suite(base: Path, doctor: Callable[..., Any], only: str | None) -> list[Any]:
    """Every Compose fault on a stack of the bench's own (the images as they are: none built)."""
    import secrets

    from fixtures_docker import SERVICES, SESSION_LABEL, ComposeStack
    from servers import free_port

    chosen = [f for f in COMPOSE_FAULTS if not only or only in f.name]
    if not chosen:
        return []
    started = subprocess.run(
        ["bash", str(REPO / "scripts" / "testbed" / "docker.sh"), "start"],
        capture_output=True,
        text=True,
        check=True,
    )
    base.mkdir(parents=True, exist_ok=True)
    project = f"doctorbench{secrets.token_hex(4)}"
    stack = ComposeStack(
        project,
        started.stdout.strip().splitlines()[-1],
        base / "state",
        base,
        {s: free_port() for s in SERVICES},
    )
    (base / "labels.yml").write_text(
        "services:\n"
        + "".join(f"  {s}:\n    labels:\n      {SESSION_LABEL}: {project}\n" for s in SERVICES)
    )
    rows = []
    try:
        stack.compose("up", "-d")
        stack.wait_healthy()
        rows.append(doctor("compose", "healthy", "-", compose_settings(stack, base / "h"), None))
        for fault in chosen:
            where = base / fault.expected
            settings = compose_settings(stack, where)
            try:
                plant_compose(stack, fault, where, settings)
                rows.append(doctor("compose", fault.name, fault.expected, settings, fault.symptom))
            finally:
                repair_compose(stack)
            print(json.dumps({"fault": fault.name, "top": rows[-1].top}), file=sys.stderr)
    finally:
        try:
            stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "0")
        finally:
            stack.remove_everything()
    return rows


def start_cluster(base: Path) -> tuple[Path, subprocess.Popen[bytes]]:
    """The testbed control plane and its node simulator (as tests/fixtures_k8s.py starts them)."""
    base.mkdir(parents=True, exist_ok=True)
    started = subprocess.run(
        [str(K8S_SH), "start", "--dir", str(base)], capture_output=True, text=True
    )
    if started.returncode != 0:
        raise RuntimeError(f"k8s.sh start: {started.stderr[-500:]}")
    ready = base / "sim.ready"
    log = open(base / "sim.log", "w")  # noqa: SIM115 - the simulator's, closed with it
    sim = subprocess.Popen(
        [
            sys.executable,
            str(SIM),
            "--kubeconfig",
            str(base / "kubeconfig"),
            "--context",
            CONTEXT,
            "--cert",
            str(base / "kubelet.crt"),
            "--key",
            str(base / "kubelet.key"),
            "--metrics-interval",
            "2",
            "--ready-file",
            str(ready),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        if sim.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"node simulator: {(base / 'sim.log').read_text()[-500:]}")
        time.sleep(0.1)
    return base / "kubeconfig", sim


def stop_cluster(base: Path, sim: subprocess.Popen[bytes]) -> None:
    sim.terminate()
    try:
        sim.wait(10)
    except subprocess.TimeoutExpired:
        sim.kill()
    subprocess.run([str(K8S_SH), "stop", "--dir", str(base)], capture_output=True)


def k8s_suite(sb: Any, base: Path, doctor: Callable[..., Any], only: str | None) -> list[Any]:
    """Every Kubernetes fault on a namespace of a fresh testbed cluster, plus a healthy run."""
    chosen = [f for f in K8S_FAULTS if not only or only in f.name]
    if not chosen:
        return []
    kubeconfig, sim = start_cluster(base)
    rows = []
    k = K8s(kubeconfig, f"doctor-{uuid.uuid4().hex[:8]}")
    state_dir = base / "state"
    try:
        k.create()
        settings = k.settings(sb.settings(), state_dir)
        rows.append(doctor("k8s", "healthy", "-", settings, None))
        for fault in chosen:
            fault.plant(k, state_dir)
            try:
                rows.append(doctor("k8s", fault.name, fault.expected, settings, fault.symptom))
            finally:
                repair_k8s(k, state_dir)
            print(json.dumps({"fault": fault.name, "top": rows[-1].top}), file=sys.stderr)
    finally:
        stop_cluster(base, sim)
    return rows
