"""`doctor` on the platforms: a crash loop, an OOM kill and a bad image deployed a minute ago,
on the Compose stack (its own images; the backend's command replaced, or v2-broken) and on the
Kubernetes testbed (the node simulator's crashloop/oom/broken tags, beside a sandbox of the
module's own serving the API and the data). Each is a fault of bench/doctor's suite."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import invoke
from fixtures_docker import ComposeStack
from fixtures_k8s import K8sNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "doctor"))
import faults
import platforms


# ---------------------------------------------------------------------------------- compose
@pytest.mark.docker
def test_compose_healthy_then_each_platform_fault_is_the_top_cause(
    stack: ComposeStack, tmp_path: Path
) -> None:
    healthy = invoke("doctor", "--json", settings=platforms.compose_settings(stack, tmp_path))
    assert healthy.exit_code == 0, healthy.stdout + healthy.stderr
    assert "platform" in {c["check"] for c in healthy.json()["checks"]}
    for fault in platforms.COMPOSE_FAULTS:
        where = tmp_path / fault.expected  # a deploy history of its own
        s = platforms.compose_settings(stack, where)
        try:
            platforms.plant_compose(stack, fault, where, s)
            symptom = [fault.symptom] if fault.symptom else []
            res = invoke("doctor", *symptom, "--json", settings=s)
        finally:
            platforms.repair_compose(stack)
        doc = res.json()
        assert res.exit_code == 1, doc
        assert doc["top"]["id"] == fault.expected, (fault.name, doc["causes"])
        assert doc["top"]["evidence"] and doc["top"]["commands"]


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
