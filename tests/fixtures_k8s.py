"""A real Kubernetes control plane for the tests (pytest plugin, listed in conftest.py).

``k8s_cluster`` (session): etcd + kube-apiserver + kube-controller-manager 1.20 started by
scripts/testbed/k8s.sh, plus the node simulator (scripts/testbed/k8s_node_sim.py) that binds
pods, marks them Ready, serves their logs and publishes PodMetrics.
``k8s_ns`` (function): a fresh namespace per test (deleted afterwards), so that leftovers of
one test are never adopted by the next one's Deployments.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from servers import need
from travellr_ops.settings import KubernetesSettings, Settings

ROOT = Path(__file__).resolve().parent.parent
K8S_SH = ROOT / "scripts" / "testbed" / "k8s.sh"
SIM = ROOT / "scripts" / "testbed" / "k8s_node_sim.py"
CONTEXT = "travellr-testbed"
LIMITED_CONTEXT = "travellr-testbed-limited"

sys.path.insert(0, str(SIM.parent))
import k8s_node_sim  # noqa: E402


@dataclass
class K8sCluster:
    dir: Path
    kubeconfig: Path
    bin_dir: Path
    context: str = CONTEXT
    limited_context: str = LIMITED_CONTEXT

    @property
    def kubectl(self) -> Path:
        return self.bin_dir / "kubectl"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{(self.dir / 'port').read_text().strip()}"

    def api_client(self, context: str | None = None) -> Any:
        from kubernetes import config

        return config.new_client_from_config(
            config_file=str(self.kubeconfig), context=context or self.context
        )

    def kubeconfig_with_token(self, path: Path, token: str) -> Path:
        """A copy of the kubeconfig whose admin user presents ``token`` (for 401s)."""
        import yaml

        data = yaml.safe_load(self.kubeconfig.read_text())
        for user in data["users"]:
            user["user"]["token"] = token
        path.write_text(yaml.safe_dump(data))
        return path


def _bin_dir() -> Path | None:
    try:
        out = subprocess.run([str(K8S_SH), "bin-dir"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(out.stdout.strip())
    names = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
    return path if all(os.access(path / n, os.X_OK) for n in names) else None


@pytest.fixture(scope="session")
def k8s_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K8sCluster]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        need("Kubernetes binaries not built: run scripts/testbed/k8s.sh install")
    base = tmp_path_factory.mktemp("k8s")
    started = subprocess.run(
        [str(K8S_SH), "start", "--dir", str(base)], capture_output=True, text=True
    )
    if started.returncode != 0:
        subprocess.run([str(K8S_SH), "stop", "--dir", str(base)], capture_output=True)
        need(f"control plane did not start: {started.stderr.strip()[-500:]}")
    cluster = K8sCluster(dir=base, kubeconfig=base / "kubeconfig", bin_dir=bin_dir)
    ready = base / "sim.ready"
    sim_log = open(base / "sim.log", "w")  # noqa: SIM115 - closed at teardown
    sim = subprocess.Popen(
        [
            sys.executable,
            str(SIM),
            "--kubeconfig",
            str(cluster.kubeconfig),
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
        stdout=sim_log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if sim.poll() is not None or time.monotonic() > deadline:
                need(f"node simulator did not start: {(base / 'sim.log').read_text()[-500:]}")
            time.sleep(0.1)
        yield cluster
    finally:
        sim.terminate()
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()
        sim_log.close()
        subprocess.run([str(K8S_SH), "stop", "--dir", str(base)], capture_output=True)


@dataclass
class K8sNamespace:
    """One test's namespace, with helpers to build what a test needs in it."""

    cluster: K8sCluster
    name: str
    state_dir: Path

    def settings(self, **kubernetes: Any) -> Settings:
        values: dict[str, Any] = {
            "kubeconfig": self.cluster.kubeconfig,
            "context": self.cluster.context,
            "namespace": self.name,
        }
        values.update(kubernetes)
        return Settings(
            platform="kubernetes",
            state_dir=self.state_dir,
            kubernetes=KubernetesSettings(**values),
        )

    def apply(self, manifest: dict[str, Any]) -> None:
        """Create one object from its manifest in this namespace."""
        from kubernetes import utils

        manifest = json.loads(json.dumps(manifest))
        manifest.setdefault("metadata", {})["namespace"] = self.name
        with self.cluster.api_client() as api:
            utils.create_from_dict(api, manifest, namespace=self.name)

    def wait_available(self, deployment: str, timeout: float = 60) -> Any:
        """The Deployment once every desired replica is updated, ready and available."""
        from kubernetes import client

        with self.cluster.api_client() as api:
            apps = client.AppsV1Api(api)
            deadline = time.monotonic() + timeout
            while True:
                dep = apps.read_namespaced_deployment(deployment, self.name)
                st = dep.status
                want = dep.spec.replicas
                if (
                    (st.observed_generation or 0) >= dep.metadata.generation
                    and (st.updated_replicas or 0) == want
                    and (st.available_replicas or 0) == want
                    and (st.replicas or 0) == want
                ):
                    return dep
                if time.monotonic() > deadline:
                    raise AssertionError(f"deployment {deployment} not available: {st}")
                time.sleep(0.2)


def backend_deployment(
    name: str = "travellr-backend",
    image: str = "travellr-backend:v1",
    replicas: int = 2,
    readiness_delay: int = 1,
    progress_deadline: int = 600,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The backend Deployment as config/k8s ships it, sized for tests."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": progress_deadline,
            "selector": {"matchLabels": labels},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": labels, "annotations": annotations or {}},
                "spec": {
                    "containers": [
                        {
                            "name": "backend",
                            "image": image,
                            "ports": [{"containerPort": 5000}],
                            "readinessProbe": {
                                "httpGet": {"path": "/api/health", "port": 5000},
                                "initialDelaySeconds": readiness_delay,
                                "periodSeconds": 5,
                            },
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                                "limits": {"cpu": "500m", "memory": "512Mi"},
                            },
                        }
                    ]
                },
            },
        },
    }


@pytest.fixture
def k8s_ns(k8s_cluster: K8sCluster, tmp_path: Path) -> Iterator[K8sNamespace]:
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:10]}"
    with k8s_cluster.api_client() as api:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    try:
        yield K8sNamespace(cluster=k8s_cluster, name=name, state_dir=tmp_path / "state")
    finally:
        with k8s_cluster.api_client() as api:
            client.CoreV1Api(api).delete_namespace(name)


@pytest.fixture
def without_metrics_api(k8s_cluster: K8sCluster) -> Iterator[None]:
    """The cluster with no metrics.k8s.io API, as a cluster without metrics-server has."""
    from kubernetes import client

    crd_name = f"pods.{k8s_node_sim.METRICS_GROUP}"
    with k8s_cluster.api_client() as api:
        ext = client.ApiextensionsV1Api(api)
        ext.delete_custom_resource_definition(crd_name)
        deadline = time.monotonic() + 30
        while True:
            try:
                ext.read_custom_resource_definition(crd_name)
            except client.ApiException as exc:
                if exc.status == 404:
                    break
                raise
            if time.monotonic() > deadline:
                raise AssertionError("the PodMetrics CRD was not removed")
            time.sleep(0.1)
    try:
        yield
    finally:
        with k8s_cluster.api_client() as api:
            ext = client.ApiextensionsV1Api(api)
            deadline = time.monotonic() + 30
            while True:
                try:
                    ext.create_custom_resource_definition(k8s_node_sim.metrics_crd())
                    break
                except client.ApiException as exc:
                    # 409 while the old one is still finalizing its objects
                    if exc.status != 409 or time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
