"""`service` on Kubernetes, against a real kube-apiserver + kube-controller-manager 1.20.

Pods are bound, run and logged by the testbed's node simulator (tests/fixtures_k8s.py); every
other behaviour — Deployments, ReplicaSets, revisions, rollouts, RBAC, watches — is the real
control plane's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli import invoke
from fixtures_k8s import ROOT, K8sNamespace, backend_deployment
from servers import free_port

pytestmark = pytest.mark.k8s


def _apps(ns: K8sNamespace) -> Any:
    from kubernetes import client

    return client.AppsV1Api(ns.cluster.api_client())


def _replica_sets(ns: K8sNamespace, app: str = "travellr-backend") -> list[Any]:
    return _apps(ns).list_namespaced_replica_set(ns.name, label_selector=f"app={app}").items


def _deployment(ns: K8sNamespace, name: str = "travellr-backend") -> Any:
    return _apps(ns).read_namespaced_deployment(name, ns.name)


@pytest.fixture
def backend(k8s_ns: K8sNamespace) -> K8sNamespace:
    """A namespace whose travellr-backend Deployment (2 replicas) is fully available."""
    k8s_ns.apply(backend_deployment(replicas=2))
    k8s_ns.wait_available("travellr-backend")
    return k8s_ns


# -- the shipped manifests --------------------------------------------------------------------------
def test_shipped_manifests_run_and_status_reports_them(k8s_ns: K8sNamespace) -> None:
    for name in ("mongodb.yaml", "redis.yaml", "backend.yaml"):
        for doc in yaml.safe_load_all((ROOT / "config" / "k8s" / name).read_text()):
            k8s_ns.apply(doc)
    for deployment in ("mongodb", "redis", "travellr-backend"):
        k8s_ns.wait_available(deployment)

    result = invoke("--json", "service", "status", settings=k8s_ns.settings())

    assert result.exit_code == 0, result.stderr
    services = {s["name"]: s for s in result.json()["services"]}
    assert set(services) == {"backend", "mongodb", "redis"}
    backend = services["backend"]
    assert (backend["desired"], backend["ready"], backend["available"]) == (3, 3, True)
    assert backend["revision"] == "1"
    assert backend["image"] == "travellr-backend:v1"
    assert len(backend["instances"]) == 3
    assert all(i["node"] == "testbed-node" and i["ready"] for i in backend["instances"])


# -- status -----------------------------------------------------------------------------------------
def test_status_of_an_available_deployment(backend: K8sNamespace) -> None:
    result = invoke("--json", "service", "status", "backend", settings=backend.settings())

    assert result.exit_code == 0, result.stderr
    (service,) = result.json()["services"]
    assert (service["desired"], service["ready"], service["updated"]) == (2, 2, 2)
    assert any(c.startswith("Available=True") for c in service["conditions"])
    assert [i["state"] for i in service["instances"]] == ["Running", "Running"]
    assert all(i["name"].startswith("travellr-backend-") for i in service["instances"])


def test_status_exits_1_and_names_the_crash_when_not_available(k8s_ns: K8sNamespace) -> None:
    k8s_ns.apply(backend_deployment(image="travellr-backend:v2-broken-oom", replicas=1))
    _wait_for(lambda: _pod_restarts(k8s_ns) > 0)

    result = invoke("--json", "service", "status", "backend", settings=k8s_ns.settings())

    assert result.exit_code == 1
    (service,) = result.json()["services"]
    assert service["available"] is False
    (pod,) = service["instances"]
    assert pod["ready"] is False
    assert "OOMKilled" in pod["last_termination"]
    assert "CrashLoopBackOff" in pod["last_termination"]


def test_status_exits_1_while_pods_fail_readiness(k8s_ns: K8sNamespace) -> None:
    k8s_ns.apply(backend_deployment(image="travellr-backend:v2-broken", replicas=2))
    _wait_for(lambda: len(_running_pods(k8s_ns)) == 2)

    result = invoke("service", "status", "backend", settings=k8s_ns.settings())

    assert result.exit_code == 1
    assert "0/2" in result.stdout + result.stderr


# -- restart ----------------------------------------------------------------------------------------
def test_restart_rolls_out_a_new_replica_set_and_revision(backend: K8sNamespace) -> None:
    before = {rs.metadata.name for rs in _replica_sets(backend)}

    result = invoke("service", "restart", "backend", "--yes", settings=backend.settings())

    assert result.exit_code == 0, result.stderr
    dep = _deployment(backend)
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    assert "kubectl.kubernetes.io/restartedAt" in dep.spec.template.metadata.annotations
    new = {rs.metadata.name for rs in _replica_sets(backend)} - before
    assert len(new) == 1
    (new_rs,) = new
    assert (
        _apps(backend).read_namespaced_replica_set(new_rs, backend.name).status.ready_replicas == 2
    )
    # the rollout was followed to its end: every replica is the new one
    assert (dep.status.updated_replicas, dep.status.available_replicas) == (2, 2)
    assert "successfully rolled out" in result.stderr + result.stdout
    audit = [json.loads(x) for x in (backend.state_dir / "audit.log").read_text().splitlines()]
    assert audit[-1]["outcome"] == "ok"


def test_restart_dry_run_changes_nothing(backend: K8sNamespace) -> None:
    result = invoke("service", "restart", "backend", "--dry-run", settings=backend.settings())

    assert result.exit_code == 0, result.stderr
    assert _deployment(backend).metadata.annotations["deployment.kubernetes.io/revision"] == "1"


def test_restart_that_never_becomes_ready_reports_the_progress_deadline(
    k8s_ns: K8sNamespace,
) -> None:
    k8s_ns.apply(
        backend_deployment(image="travellr-backend:v2-broken", replicas=1, progress_deadline=2)
    )

    result = invoke("service", "restart", "backend", "--yes", settings=k8s_ns.settings())

    assert result.exit_code != 0
    assert "progress deadline" in result.stderr + result.stdout


# -- scale ------------------------------------------------------------------------------------------
def test_scale_changes_the_replica_count(backend: K8sNamespace) -> None:
    result = invoke("service", "scale", "backend", "4", "--yes", settings=backend.settings())

    assert result.exit_code == 0, result.stderr
    assert _deployment(backend).spec.replicas == 4
    backend.wait_available("travellr-backend")
    assert len(_running_pods(backend)) == 4


def test_a_backend_taken_down_is_stopped_and_fails_status_as_on_compose(
    backend: K8sNamespace,
) -> None:
    down = invoke("service", "down", "backend", "--yes", settings=backend.settings())
    assert down.exit_code == 0, down.stderr
    status = invoke("--json", "service", "status", "backend", settings=backend.settings())
    assert status.exit_code == 1  # 0/0 available is not a healthy backend
    [svc] = status.json()["services"]
    assert svc["stopped"] is True and svc["available"] is False and svc["desired"] == 0
    human = invoke("service", "status", "backend", settings=backend.settings())
    assert human.exit_code == 1 and "backend is stopped" in human.stderr
    assert "stopped" in human.stdout
    up = invoke("service", "up", "backend", "--yes", settings=backend.settings())
    assert up.exit_code == 0, up.stderr


def test_scale_dry_run_and_read_only_change_nothing(backend: K8sNamespace) -> None:
    dry = invoke(
        "service", "scale", "backend", "--replicas", "5", "--dry-run", settings=backend.settings()
    )
    refused = invoke(
        "--read-only", "service", "scale", "backend", "--replicas", "5", "--yes",
        settings=backend.settings(),
    )  # fmt: skip

    assert dry.exit_code == 0, dry.stderr
    assert refused.exit_code == 4
    assert _deployment(backend).spec.replicas == 2


# -- logs -------------------------------------------------------------------------------------------
def test_logs_come_from_every_pod_prefixed_and_in_time_order(backend: K8sNamespace) -> None:
    pods = sorted(p.metadata.name for p in _running_pods(backend))
    _wait_for(lambda: _youngest_pod_age(backend) >= 3.5)  # a line a second: 3 lines each

    result = invoke(
        "--json", "service", "logs", "backend", "--tail", "3", settings=backend.settings()
    )

    assert result.exit_code == 0, result.stderr
    lines = result.json()["lines"]
    assert sorted({line["source"] for line in lines}) == pods
    assert len(lines) == 6
    times = [line["time"] for line in lines]
    assert times == sorted(times)


def test_logs_grep_and_previous(k8s_ns: K8sNamespace) -> None:
    k8s_ns.apply(backend_deployment(replicas=2))
    k8s_ns.wait_available("travellr-backend")

    grepped = invoke(
        "service", "logs", "backend", "--grep", "listening", settings=k8s_ns.settings()
    )

    assert grepped.exit_code == 0, grepped.stderr
    out = grepped.stdout.splitlines()
    assert len(out) == 2
    assert all("listening on port 5000" in line for line in out)
    for pod in _running_pods(k8s_ns):
        assert any(line.startswith(pod.metadata.name) or pod.metadata.name in line for line in out)


def test_logs_follow_streams_new_lines_from_every_pod(backend: K8sNamespace) -> None:
    from travellr_ops.adapters.platform import get_platform

    platform = get_platform(backend.settings())
    pods = {p.metadata.name for p in _running_pods(backend)}
    stream = platform.logs(["backend"], tail=0, follow=True)
    try:
        seen = [next(stream) for _ in range(6)]  # tail 0: every one of these is new
    finally:
        stream.close()
        platform.close()

    assert {line.source for line in seen} == pods
    assert all(line.time is not None and "GET /api/" in line.text for line in seen)


def test_logs_since_leaves_out_older_lines(backend: K8sNamespace) -> None:
    _wait_for(lambda: _youngest_pod_age(backend) >= 6)

    recent = invoke(
        "--json", "service", "logs", "backend", "--since", "3s", settings=backend.settings()
    )
    everything = invoke("--json", "service", "logs", "backend", settings=backend.settings())

    assert recent.exit_code == everything.exit_code == 0, recent.stderr
    assert 0 < len(recent.json()["lines"]) < len(everything.json()["lines"])
    assert not any("listening" in line["text"] for line in recent.json()["lines"])


def test_logs_previous_shows_the_crashed_container(k8s_ns: K8sNamespace) -> None:
    k8s_ns.apply(backend_deployment(image="travellr-backend:v2-broken-oom", replicas=1))
    _wait_for(lambda: _pod_restarts(k8s_ns) > 0)

    result = invoke("service", "logs", "backend", "--previous", settings=k8s_ns.settings())

    assert result.exit_code == 0, result.stderr
    assert "out of memory" in result.stdout


# -- stats ------------------------------------------------------------------------------------------
def test_stats_reports_usage_against_limits(k8s_ns: K8sNamespace) -> None:
    k8s_ns.apply(
        backend_deployment(
            replicas=1,
            annotations={"sim.travellr.io/cpu": "200m", "sim.travellr.io/memory": "256Mi"},
        )
    )
    k8s_ns.wait_available("travellr-backend")
    _wait_for(lambda: _has_metrics(k8s_ns))

    result = invoke("--json", "service", "stats", "backend", settings=k8s_ns.settings())

    assert result.exit_code == 0, result.stderr
    (usage,) = result.json()["usage"]
    assert usage["cpu_pct"] == 40.0  # 200m of a 500m limit
    assert usage["memory_bytes"] == 256 * 1024 * 1024
    assert usage["memory_pct"] == 50.0  # of 512Mi


def test_stats_over_threshold_exits_1(k8s_ns: K8sNamespace) -> None:
    k8s_ns.apply(backend_deployment(replicas=1, annotations={"sim.travellr.io/cpu": "450m"}))
    k8s_ns.wait_available("travellr-backend")
    _wait_for(lambda: _has_metrics(k8s_ns))

    result = invoke("service", "stats", "backend", settings=k8s_ns.settings())

    assert result.exit_code == 1
    # 450m of a 500m limit, over the runbook's 70 % CPU threshold
    assert "CPU 90.0 % > 70 %" in result.stderr


def test_top_shows_each_pods_containers(k8s_ns: K8sNamespace) -> None:
    annotations = {"sim.travellr.io/cpu": "120m", "sim.travellr.io/memory": "200Mi"}
    k8s_ns.apply(backend_deployment(replicas=2, annotations=annotations))
    k8s_ns.wait_available("travellr-backend")
    _wait_for(lambda: _has_metrics(k8s_ns))

    result = invoke("--json", "service", "top", "backend", settings=k8s_ns.settings())

    assert result.exit_code == 0, result.stderr
    listings = result.json()["instances"]
    assert sorted(x["instance"] for x in listings) == sorted(
        p.metadata.name for p in _running_pods(k8s_ns)
    )
    assert all(x["processes"][0][:2] == ["backend", "120m"] for x in listings)
    # memory in the binary units every other byte count of the tool uses
    assert all(x["processes"][0][2] == "200.0 MiB" for x in listings)


@pytest.mark.usefixtures("without_metrics_api")
def test_stats_without_a_metrics_api_says_so(backend: K8sNamespace) -> None:
    result = invoke("service", "stats", "backend", settings=backend.settings())

    assert result.exit_code == 3
    assert "metrics API (metrics.k8s.io/v1beta1) is not available" in result.stderr
    assert "Traceback" not in result.stderr


# -- describe ---------------------------------------------------------------------------------------
def test_describe_shows_the_pod_and_its_events(k8s_ns: K8sNamespace) -> None:
    k8s_ns.apply(backend_deployment(image="travellr-backend:v2-broken", replicas=1))
    _wait_for(lambda: len(_running_pods(k8s_ns)) == 1)
    (pod,) = _running_pods(k8s_ns)

    result = invoke("--json", "service", "describe", pod.metadata.name, settings=k8s_ns.settings())

    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["node"] == "testbed-node"
    assert data["containers"][0]["limits"] == {"cpu": "500m", "memory": "512Mi"}
    reasons = {e["reason"] for e in data["events"]}
    assert {"Scheduled", "Started", "Unhealthy"} <= reasons


def test_describe_unknown_pod(backend: K8sNamespace) -> None:
    result = invoke("service", "describe", "no-such-pod", settings=backend.settings())

    assert result.exit_code == 2
    assert "pod 'no-such-pod' not found" in result.stderr


# -- bad input and faults: one line each, the contract's exit code ----------------------------------
def _one_line_error(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr
    return errors[0]


def test_no_kubeconfig(k8s_ns: K8sNamespace, tmp_path: Path) -> None:
    settings = k8s_ns.settings(kubeconfig=tmp_path / "absent" / "kubeconfig")

    result = invoke("service", "status", "backend", settings=settings)

    assert result.exit_code == 2
    assert "kubeconfig not found" in _one_line_error(result.stderr)


def test_unknown_context(backend: K8sNamespace) -> None:
    result = invoke("service", "status", "backend", settings=backend.settings(context="prod-eu"))

    assert result.exit_code == 2
    assert "context 'prod-eu' is not in kubeconfig" in _one_line_error(result.stderr)


def test_bad_token_is_a_401(backend: K8sNamespace, tmp_path: Path) -> None:
    kubeconfig = backend.cluster.kubeconfig_with_token(tmp_path / "kubeconfig", "expired-token")

    result = invoke(
        "service", "status", "backend", settings=backend.settings(kubeconfig=kubeconfig)
    )

    assert result.exit_code == 3
    assert "rejected the credentials" in _one_line_error(result.stderr)
    assert "401" in result.stderr


def test_no_rbac_rights_names_the_verb_and_resource(backend: K8sNamespace) -> None:
    limited = backend.settings(context=backend.cluster.limited_context)

    result = invoke("service", "status", "backend", settings=limited)

    assert result.exit_code == 3
    line = _one_line_error(result.stderr)
    assert f"'limited' may not get deployments.apps in namespace '{backend.name}'" in line


def test_read_only_rights_cannot_restart(backend: K8sNamespace) -> None:
    backend.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "viewer"},
            "rules": [
                {
                    "apiGroups": ["", "apps"],
                    "resources": ["deployments", "replicasets", "pods", "namespaces"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        }
    )
    backend.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "limited-viewer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "viewer"},
            "subjects": [
                {"kind": "User", "name": "limited", "apiGroup": "rbac.authorization.k8s.io"}
            ],
        }
    )
    limited = backend.settings(context=backend.cluster.limited_context)
    _wait_for(lambda: invoke("service", "status", "backend", settings=limited).exit_code == 0)

    result = invoke("service", "restart", "backend", "--yes", settings=limited)

    assert result.exit_code == 3
    line = _one_line_error(result.stderr)
    assert f"'limited' may not patch deployments.apps in namespace '{backend.name}'" in line
    assert _deployment(backend).metadata.annotations["deployment.kubernetes.io/revision"] == "1"


def test_unreachable_api_server(backend: K8sNamespace, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    text = backend.cluster.kubeconfig.read_text()
    kubeconfig.write_text(text.replace(backend.cluster.server, f"https://127.0.0.1:{free_port()}"))

    result = invoke(
        "service", "status", "backend", settings=backend.settings(kubeconfig=kubeconfig)
    )

    assert result.exit_code == 3
    line = _one_line_error(result.stderr)
    assert "cannot reach the Kubernetes API server" in line
    assert "connection refused" in line


def test_missing_namespace(backend: K8sNamespace) -> None:
    result = invoke(
        "service", "status", "backend", settings=backend.settings(namespace="no-such-ns")
    )

    assert result.exit_code == 2
    assert "namespace 'no-such-ns' does not exist" in _one_line_error(result.stderr)


def test_missing_deployment(backend: K8sNamespace) -> None:
    result = invoke(
        "service", "status", "backend", settings=backend.settings(backend_deployment="travellr-api")
    )

    assert result.exit_code == 2
    line = _one_line_error(result.stderr)
    assert f"deployment 'travellr-api' not found in namespace '{backend.name}'" in line


# -- helpers ----------------------------------------------------------------------------------------
def _running_pods(ns: K8sNamespace) -> list[Any]:
    from kubernetes import client

    pods = client.CoreV1Api(ns.cluster.api_client()).list_namespaced_pod(ns.name).items
    return [
        p for p in pods if p.status.phase == "Running" and p.metadata.deletion_timestamp is None
    ]


def _youngest_pod_age(ns: K8sNamespace) -> float:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return min((now - p.status.start_time).total_seconds() for p in _running_pods(ns))


def _pod_restarts(ns: K8sNamespace) -> int:
    return sum(
        cs.restart_count for p in _running_pods(ns) for cs in p.status.container_statuses or []
    )


def _has_metrics(ns: K8sNamespace) -> bool:
    from kubernetes import client

    api = client.CustomObjectsApi(ns.cluster.api_client())
    items = api.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", ns.name, "pods")
    return len(items["items"]) >= len(_running_pods(ns)) > 0


def _wait_for(check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)
