"""`db restart` through the real Kubernetes platform adapter (kube-apiserver 1.20 testbed):
the mongodb Deployment is rolled out, then the command waits until a real MongoDB answers."""

from __future__ import annotations

import pytest
import yaml

from cli import invoke
from fixtures_k8s import ROOT, K8sNamespace
from fixtures_servers import MongoServer, ServerSet
from travellr_ops.settings import MongoSettings

pytestmark = [pytest.mark.k8s, pytest.mark.mongo]


@pytest.fixture
def mongo(servers: ServerSet) -> MongoServer:
    return servers.mongo(memory=True)


def test_db_restart_rolls_out_the_mongodb_deployment_and_waits_for_ping(
    k8s_ns: K8sNamespace, mongo: MongoServer
) -> None:
    from kubernetes import client

    for doc in yaml.safe_load_all((ROOT / "config" / "k8s" / "mongodb.yaml").read_text()):
        k8s_ns.apply(doc)
    before = k8s_ns.wait_available("mongodb")
    settings = k8s_ns.settings().model_copy(
        update={"mongo": MongoSettings(uri=mongo.uri, timeout_s=2.0)}
    )

    dry = invoke("db", "restart", "--dry-run", settings=settings)
    assert dry.exit_code == 0
    result = invoke("db", "restart", "--yes", "--timeout", "90", "--json", settings=settings)

    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["platform"] == "kubernetes" and doc["restart"]["healthy"] is True
    assert doc["healthy"] is True and doc["wait"]["ping"]["ok"] is True
    apps = client.AppsV1Api(k8s_ns.cluster.api_client())
    after = apps.read_namespaced_deployment("mongodb", k8s_ns.name)
    assert after.metadata.generation > before.metadata.generation  # a real rollout happened
    audit = (k8s_ns.state_dir / "audit.log").read_text()
    assert '"action": "db restart"' in audit
