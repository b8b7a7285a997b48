"""`doctor` on the platforms: a crash loop, an OOM kill and a bad image deployed a minute ago,
on the Compose stack (its own images; the backend's command replaced, or v2-broken) and on the
Kubernetes testbed (the node simulator's crashloop/oom/broken tags, beside a sandbox of the
module's own serving the API and the data). Each is a fault of bench/doctor's suite."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli import invoke
from fixtures_docker import COMPOSE_FILE, ComposeStack
from fixtures_k8s import K8sNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "doctor"))
import faults
import platforms


# ---------------------------------------------------------------------------------- compose
def compose_settings(stack: ComposeStack, tmp_path: Path) -> Any:
    base = stack.settings()
    return base.model_copy(
        update={
            "state_dir": tmp_path / "state",
            "disk_paths": [tmp_path],
            "logs": base.logs.model_copy(
                update={"access_log": tmp_path / "access.log", "app_log": tmp_path / "app.log"}
            ),
            "backup": base.backup.model_copy(update={"dir": tmp_path / "backups"}),
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


def _backend_shows(stack: ComposeStack, fault: platforms.ComposeFault) -> None:
    deadline = time.monotonic() + 60
    while True:
        container = stack.container("backend")
        if fault.shows(container.attrs):
            return
        assert time.monotonic() < deadline, f"{fault.name}: never showed {container.attrs['State']}"
        time.sleep(0.5)


@pytest.mark.docker
def test_compose_healthy_then_each_platform_fault_is_the_top_cause(
    stack: ComposeStack, tmp_path: Path
) -> None:
    s = compose_settings(stack, tmp_path)
    healthy = invoke("doctor", "--json", settings=s)
    assert healthy.exit_code == 0, healthy.stdout + healthy.stderr
    assert "platform" in {c["check"] for c in healthy.json()["checks"]}
    for fault in platforms.COMPOSE_FAULTS:
        try:
            if fault.override is not None:
                override = tmp_path / "override.yml"
                override.write_text(fault.override)
                files = [COMPOSE_FILE, stack.workdir / "labels.yml", override]
                stack.compose("up", "-d", "backend", files=files)
            else:
                assert fault.tag is not None
                stack.compose("up", "-d", "backend", env={"TRAVELLR_BACKEND_TAG": fault.tag})
                platforms.record_deploy(
                    s.state_dir, "compose", "travellr-backend:v1", f"travellr-backend:{fault.tag}"
                )
            _backend_shows(stack, fault)
            res = invoke("doctor", *([fault.symptom] if fault.symptom else []), "--json",
                         settings=s)  # fmt: skip
            doc = res.json()
            assert res.exit_code == 1, doc
            assert doc["top"]["id"] == fault.expected, (fault.name, doc["causes"])
        finally:
            stack.compose("up", "-d", "backend")  # the stack's own backend again
            stack.wait_healthy()
        s = compose_settings(stack, tmp_path / fault.expected)  # a history without that deploy


# ------------------------------------------------------------------------------- kubernetes
@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[faults.Sandbox]:
    from fixtures_servers import ServerStartError
    from servers import need

    try:
        sb = faults.Sandbox(tmp_path_factory.mktemp("doctor-sandbox")).start()
    except ServerStartError as exc:
        need(str(exc))
    yield sb
    sb.stop()


@pytest.mark.k8s
@pytest.mark.redis
@pytest.mark.mongo
@pytest.mark.parametrize("fault", platforms.K8S_FAULTS, ids=lambda f: f.name)
def test_kubernetes_fault_is_the_top_cause(
    k8s_ns: K8sNamespace, sandbox: faults.Sandbox, fault: platforms.K8sFault
) -> None:
    k = platforms.K8s(k8s_ns.cluster.kubeconfig, k8s_ns.name, k8s_ns.cluster.context)
    k.deploy()
    s = k.settings(sandbox.settings(), k8s_ns.state_dir)
    before = invoke("doctor", "--json", settings=s)
    assert before.exit_code == 0, before.json()["causes"]
    fault.plant(k, k8s_ns.state_dir)
    res = invoke("doctor", *([fault.symptom] if fault.symptom else []), "--json", settings=s)
    doc = res.json()
    assert res.exit_code == 1, doc
    assert doc["top"]["id"] == fault.expected, doc["causes"]
    top = doc["top"]
    assert any("travellr-backend" in e or "backend" in e for e in top["evidence"])
    if fault.expected == "bad_deploy":
        assert top["level"] == 2 and "travellr-ops deploy rollback" in top["commands"]
        fixed = invoke("doctor", "--fix", "--yes", "--json", settings=s)
        assert fixed.json()["fix"]["applied"] is False  # Level 2: suggested only
        assert "deploy rollback" in fixed.json()["fix"]["action"]
