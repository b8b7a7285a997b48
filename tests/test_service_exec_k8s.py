"""`travellr-ops service exec` on Kubernetes, against the real kube-apiserver 1.20.

The apiserver is real: it finds the pod's node and proxies the exec subresource's websocket
upgrade to that node's kubelet endpoint, exactly as in a cluster. The kubelet is the testbed's
node simulator (scripts/testbed/k8s_node_sim.py), which runs the command as a process on this
machine with the container's literal environment (there are no container images here). So
what is tested end to end is our side and the apiserver's: the container chosen, the request,
the channel protocol, stdin, stdout, stderr, the exit code and the debug copy's pod; what is
not is a real container runtime (the 126 for a missing command is dockershim's, as the
simulator plays it).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cli import invoke
from fixtures_k8s import K8sNamespace, backend_deployment
from travellr_ops.adapters.kubernetes.exec import DEBUG_COPY_ANNOTATION
from travellr_ops.safety import AuditLog

pytestmark = pytest.mark.k8s


def _with_sidecar(default_container: str | None, image: str = "travellr-backend:v1") -> Any:
    """The backend Deployment with a log-shipper sidecar listed first in its pod."""
    annotations = {"kubectl.kubernetes.io/default-container": default_container}
    manifest = backend_deployment(
        replicas=1,
        image=image,
        annotations=annotations if default_container else None,
    )
    pod = manifest["spec"]["template"]["spec"]
    (backend,) = pod["containers"]
    backend["env"] = [{"name": "CONTAINER", "value": "backend"}, {"name": "PORT", "value": "5000"}]
    sidecar = {
        "name": "log-shipper",
        "image": "travellr-log-shipper:v1",
        "env": [{"name": "CONTAINER", "value": "log-shipper"}],
    }
    pod["containers"] = [sidecar, backend]
    return manifest


@pytest.fixture
def backend(k8s_ns: K8sNamespace) -> K8sNamespace:
    k8s_ns.apply(_with_sidecar("backend"))
    k8s_ns.wait_available("travellr-backend")
    return k8s_ns


def _pods(ns: K8sNamespace) -> list[Any]:
    from kubernetes import client

    with ns.cluster.api_client() as api:
        return list(client.CoreV1Api(api).list_namespaced_pod(ns.name).items)


def test_the_default_container_annotation_chooses_the_container(backend: K8sNamespace) -> None:
    result = invoke(
        "service",
        "exec",
        "backend",
        "--yes",
        "--",
        "printenv",
        "CONTAINER",
        settings=backend.settings(),
    )

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "backend\n"


def test_without_the_annotation_the_first_container(k8s_ns: K8sNamespace) -> None:
    k8s_ns.apply(_with_sidecar(None))
    k8s_ns.wait_available("travellr-backend")

    result = invoke(
        "service",
        "exec",
        "backend",
        "--yes",
        "--",
        "printenv",
        "CONTAINER",
        settings=k8s_ns.settings(),
    )

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "log-shipper\n"


def test_output_streams_and_the_exit_code(backend: K8sNamespace) -> None:
    result = invoke(
        "service",
        "exec",
        "backend",
        "--yes",
        "--reason",
        "INC-3",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
        settings=backend.settings(),
    )

    assert result.exit_code == 7
    assert result.stdout == "out\n"
    assert "err\n" in result.stderr
    (entry,) = AuditLog(backend.state_dir / "audit.log").entries()
    assert entry["user_reason"] == "INC-3"
    assert entry["result"] == {"exit_code": 7}  # the command's own, not the tool's outcome
    assert entry["target"] == _pods(backend)[0].metadata.name


def test_stdin_is_passed_through(backend: K8sNamespace) -> None:
    # v4.channel.k8s.io cannot say "end of input": read a line, not to the end
    result = invoke(
        "service",
        "exec",
        "backend",
        "--yes",
        "--",
        "sh",
        "-c",
        "read line; echo got:$line",
        settings=backend.settings(),
        input="hello\n",
    )

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "got:hello\n"


def test_a_command_that_does_not_exist_is_126_with_its_message(backend: K8sNamespace) -> None:
    result = invoke(
        "service",
        "exec",
        "backend",
        "--yes",
        "--",
        "no-such-command",
        settings=backend.settings(),
    )

    assert result.exit_code == 126
    assert "executable file not found" in result.stdout + result.stderr


def test_debug_copy_of_a_crash_looping_pod(k8s_ns: K8sNamespace) -> None:
    k8s_ns.apply(_with_sidecar("backend", image="travellr-backend:v2-crashloop"))
    deadline = time.monotonic() + 30
    while not any(
        (s.state.waiting and s.state.waiting.reason == "CrashLoopBackOff")
        for p in _pods(k8s_ns)
        for s in (p.status.container_statuses or [])
    ):
        assert time.monotonic() < deadline, "the backend pod did not crash-loop"
        time.sleep(0.2)
    (original,) = _pods(k8s_ns)

    refused = invoke(
        "service", "exec", "backend", "--yes", "--", "true", settings=k8s_ns.settings()
    )

    assert refused.exit_code == 3
    assert "CrashLoopBackOff" in refused.stderr and "--debug-copy" in refused.stderr

    result = invoke(
        "service",
        "exec",
        "backend",
        "--yes",
        "--debug-copy",
        "--",
        "sh",
        "-c",
        "printenv CONTAINER PORT; exit 4",
        settings=k8s_ns.settings(),
    )

    assert result.exit_code == 4, result.stderr
    assert result.stdout.split() == ["backend", "5000"]  # its container, its environment
    assert "debug copy" in result.stderr
    # the copy is deleted on the way out; the crashing pod is left as it was
    deadline = time.monotonic() + 10
    while True:
        pods = _pods(k8s_ns)
        copies = [p for p in pods if DEBUG_COPY_ANNOTATION in (p.metadata.annotations or {})]
        if not copies:
            break
        assert time.monotonic() < deadline, f"debug copy left behind: {copies}"
        time.sleep(0.2)
    assert [p.metadata.uid for p in pods] == [original.metadata.uid]


def test_a_connection_lost_mid_exec_is_exit_3(backend: K8sNamespace, tmp_path: Path) -> None:
    import yaml

    from helpers_exec import CuttableProxy

    proxy = CuttableProxy.tcp(int(backend.cluster.server.rsplit(":", 1)[1]))
    config = yaml.safe_load(backend.cluster.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    timer = threading.Timer(3.0, proxy.cut)
    timer.start()
    try:
        started = time.monotonic()
        result = invoke(
            "service",
            "exec",
            "backend",
            "--yes",
            "--",
            "sleep",
            "30",
            settings=backend.settings(kubeconfig=kubeconfig),
        )
    finally:
        timer.cancel()
        proxy.cut()

    assert result.exit_code == 3, result.stderr
    assert "pod" in result.stderr
    assert time.monotonic() - started < 20
