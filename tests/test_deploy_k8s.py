"""`travellr-ops deploy` on the real Kubernetes control plane (node simulator: `broken` tags
never Ready, `errors` tags Ready but logging 500s), with real MongoDB, Redis and API."""

from __future__ import annotations

from typing import Any

import pytest

from cli import invoke
from fixtures_k8s import K8sNamespace, backend_deployment
from travellr_ops.settings import DeploySettings, Settings, Thresholds

pytestmark = [pytest.mark.k8s, pytest.mark.redis, pytest.mark.mongo]


def _settings(
    ns: K8sNamespace, mongo_uri: str, redis_url: str, api_url: str, **deploy: Any
) -> Settings:
    base = ns.settings()
    values = {"watch_s": 6.0, "sample_interval_s": 5.0, "fail_after": 2, "min_requests": 1}
    values.update(deploy)
    return base.model_copy(
        update={
            "deploy": DeploySettings(**values),
            "thresholds": Thresholds(api_response_ms=3000),
            "mongo": base.mongo.model_copy(update={"uri": mongo_uri}),
            "redis": base.redis.model_copy(update={"url": redis_url}),
            "api": base.api.model_copy(update={"url": api_url}),
        }
    )


def _deployment(ns: K8sNamespace) -> Any:
    from kubernetes import client

    with ns.cluster.api_client() as api:
        return client.AppsV1Api(api).read_namespaced_deployment("travellr-backend", ns.name)


def _start(ns: K8sNamespace) -> None:
    ns.apply(backend_deployment(replicas=2, progress_deadline=5))
    ns.wait_available("travellr-backend")


def test_v2_passes_and_the_revision_is_recorded(
    k8s_ns: K8sNamespace, mongo_uri: str, redis_url: str, backend_url: str
) -> None:
    _start(k8s_ns)
    settings = _settings(k8s_ns, mongo_uri, redis_url, backend_url)

    result = invoke(
        "--json", "deploy", "run", "--image", "v2", "--no-backup", "--yes", settings=settings
    )

    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["outcome"] == "succeeded"
    assert report["before"]["revision"] == "1"
    assert "travellr-backend:v1@sha256:" in report["before"]["image_id"]  # imageID of both pods
    assert report["now"]["revision"] == "2"
    dep = _deployment(k8s_ns)
    assert dep.spec.template.spec.containers[0].image == "travellr-backend:v2"
    assert dep.status.available_replicas == 2


def test_broken_is_rolled_back_to_the_recorded_revision(
    k8s_ns: K8sNamespace, mongo_uri: str, redis_url: str, backend_url: str
) -> None:
    _start(k8s_ns)
    settings = _settings(k8s_ns, mongo_uri, redis_url, backend_url)

    result = invoke(
        "--json",
        "deploy",
        "run",
        "--image",
        "v2-broken",
        "--no-backup",
        "--yes",
        settings=settings,
    )

    assert result.exit_code == 1, result.stderr
    report = result.json()
    assert report["outcome"] == "rolled_back"
    assert "progress deadline" in report["failure"]
    k8s_ns.wait_available("travellr-backend")
    dep = _deployment(k8s_ns)
    assert dep.spec.template.spec.containers[0].image == "travellr-backend:v1"
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "3"  # as undo does


def test_errors_are_caught_by_the_error_rate_and_rolled_back(
    k8s_ns: K8sNamespace, mongo_uri: str, redis_url: str, backend_url: str
) -> None:
    _start(k8s_ns)
    settings = _settings(k8s_ns, mongo_uri, redis_url, backend_url, watch_s=30.0)

    result = invoke(
        "--json",
        "deploy",
        "run",
        "--image",
        "v2-errors",
        "--no-backup",
        "--yes",
        settings=settings,
    )

    assert result.exit_code == 1, result.stderr
    report = result.json()
    assert report["rollout"]["healthy"] is True  # Ready: a readiness gate would keep it
    assert "error rate" in report["failure"]
    assert report["now"]["image"] == "travellr-backend:v1"
    k8s_ns.wait_available("travellr-backend")
    assert _deployment(k8s_ns).spec.template.spec.containers[0].image == "travellr-backend:v1"


def test_preflight_says_it_cannot_check_the_image_and_a_set_registry_is_asked(
    k8s_ns: K8sNamespace, mongo_uri: str, redis_url: str, backend_url: str
) -> None:
    from servers import free_port

    _start(k8s_ns)
    settings = _settings(k8s_ns, mongo_uri, redis_url, backend_url)

    result = invoke("--json", "deploy", "preflight", "--image", "v2", settings=settings)

    assert result.exit_code == 0, result.stderr
    step = {s["name"]: s for s in result.json()["steps"]}["image exists"]
    assert step["verdict"] == "warn"  # not a pass: nothing looked at the image
    assert "cannot check before the rollout" in step["detail"]

    registry = f"http://127.0.0.1:{free_port()}"  # named, but nothing answers there
    asked = settings.model_copy(
        update={"deploy": settings.deploy.model_copy(update={"image_check": registry})}
    )
    down = invoke("--json", "deploy", "preflight", "--image", "v2", settings=asked)

    assert down.exit_code == 3, down.stderr
    step = {s["name"]: s for s in down.json()["steps"]}["image exists"]
    assert step["verdict"] == "down" and registry in step["detail"]


def test_an_image_that_never_pulls_is_rolled_back_at_the_deadline_saying_why(
    k8s_ns: K8sNamespace, mongo_uri: str, redis_url: str, backend_url: str
) -> None:
    _start(k8s_ns)
    settings = _settings(k8s_ns, mongo_uri, redis_url, backend_url)

    result = invoke(
        "--json",
        "deploy",
        "run",
        "--image",
        "v2-missing",
        "--no-backup",
        "--yes",
        settings=settings,
    )

    assert result.exit_code == 1, result.stderr
    report = result.json()
    assert report["outcome"] == "rolled_back"
    assert "progress deadline" in report["failure"]
    assert "ImagePullBackOff" in report["failure"]
    assert {s["name"]: s for s in report["preflight"]}["image exists"]["verdict"] == "warn"
    k8s_ns.wait_available("travellr-backend")
    assert _deployment(k8s_ns).spec.template.spec.containers[0].image == "travellr-backend:v1"


def test_rollback_goes_to_the_revision_before_and_to_a_numbered_one(
    k8s_ns: K8sNamespace, mongo_uri: str, redis_url: str, backend_url: str
) -> None:
    from kubernetes import client

    _start(k8s_ns)
    settings = _settings(k8s_ns, mongo_uri, redis_url, backend_url)
    v2 = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "backend", "image": "travellr-backend:v2"}]}
            }
        }
    }
    with k8s_ns.cluster.api_client() as api:  # by hand: nothing in the deploy history
        client.AppsV1Api(api).patch_namespaced_deployment("travellr-backend", k8s_ns.name, v2)
    k8s_ns.wait_available("travellr-backend")

    back = invoke("--json", "deploy", "rollback", "--yes", settings=settings)

    assert back.exit_code == 0, back.stderr
    report = back.json()
    assert report["before"]["revision"] == "2"
    assert report["now"]["image"] == "travellr-backend:v1"
    assert report["now"]["revision"] == "3"  # revision 1's template again, as undo numbers it

    again = invoke("--json", "deploy", "rollback", "--to", "2", "--yes", settings=settings)

    assert again.exit_code == 0, again.stderr
    assert again.json()["now"]["image"] == "travellr-backend:v2"
    k8s_ns.wait_available("travellr-backend")
    assert _deployment(k8s_ns).spec.template.spec.containers[0].image == "travellr-backend:v2"
