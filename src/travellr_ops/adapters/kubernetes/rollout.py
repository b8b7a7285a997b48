"""Rollouts: followed by watch as ``kubectl rollout status`` does, and the pod template of an
earlier revision found again as ``kubectl rollout undo --to-revision`` does."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from travellr_ops.adapters.kubernetes.client import REQUEST_TIMEOUT, KubeClient, selector, wrap
from travellr_ops.adapters.kubernetes.mapping import REVISION
from travellr_ops.adapters.log_streams import split_lines
from travellr_ops.adapters.platform_types import Progress


def rollout_state(dep: Any) -> tuple[bool | None, str]:
    """What ``kubectl rollout status`` concludes: (True done | False failed | None going, why)."""
    spec, st = dep.spec, dep.status
    name = dep.metadata.name
    if (st.observed_generation or 0) < (dep.metadata.generation or 0):
        return None, "waiting for the deployment spec update to be observed"
    for cond in st.conditions or []:
        if cond.type == "Progressing" and cond.reason == "ProgressDeadlineExceeded":
            return False, (
                f"deployment {name!r} exceeded its progress deadline"
                f" ({spec.progress_deadline_seconds or 600}s): {cond.message}"
            )
    desired = int(spec.replicas if spec.replicas is not None else 1)
    updated = int(st.updated_replicas or 0)
    total = int(st.replicas or 0)
    available = int(st.available_replicas or 0)
    if updated < desired:
        return None, f"waiting: {updated} of {desired} new replicas have been updated"
    if total > updated:
        return None, f"waiting: {total - updated} old replicas are pending termination"
    if available < updated:
        return None, f"waiting: {available} of {updated} updated replicas are available"
    revision = (dep.metadata.annotations or {}).get(REVISION, "?")
    return True, f"deployment {name!r} successfully rolled out (revision {revision})"


def follow_rollout(
    client: KubeClient, dep: Any, deadline: float, progress: Progress
) -> tuple[bool, str]:
    """Watch the Deployment until the rollout completes (True) or fails (False, why).

    One watch request at a time, resumed from the last resourceVersion seen; a 410 Gone
    (our version expired) reads the Deployment afresh. No polling.
    """
    name = dep.metadata.name
    version = dep.metadata.resource_version
    done, said = rollout_state(dep)
    if done is not None:
        return done, said
    progress(said)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False, f"rollout did not finish in time: {said}"
        expired = False
        with client.errors(f"watching deployment {name!r}"):
            for kind, obj in _watch_deployment(client, name, version, remaining):
                if kind == "DELETED":
                    return False, f"deployment {name!r} was deleted during the rollout"
                if kind == "ERROR":
                    expired = True
                    break
                version = obj.metadata.resource_version
                done, message = rollout_state(obj)
                if done is not None:
                    return done, message
                if message != said:
                    said = message
                    progress(message)
                if time.monotonic() >= deadline:
                    break
        if expired or time.monotonic() >= deadline:
            with client.errors(f"reading deployment {name!r}"):
                fresh = client.request("GET", client.deployments_path(name))
            version = fresh.metadata.resource_version
            done, said = rollout_state(fresh)
            if done is not None:
                return done, said


def _watch_deployment(
    client: KubeClient, name: str, version: str, seconds: float
) -> Iterator[tuple[str, Any]]:
    """(event type, object) from one watch request on one Deployment."""
    from kubernetes.client.exceptions import ApiException

    try:
        response = client.request(
            "GET",
            client.deployments_path(),
            {
                "fieldSelector": f"metadata.name={name}",
                "resourceVersion": version,
                "watch": True,
                "timeoutSeconds": max(1, int(seconds + 0.999)),
            },
            timeout=(REQUEST_TIMEOUT[0], seconds + 5),
            stream=True,
        )
    except ApiException as exc:
        if exc.status == 410:
            yield "ERROR", None
            return
        raise
    try:
        chunks = response.stream(4096, decode_content=True)
        for raw in split_lines(chunks, keep_partial=False):
            if raw.strip():
                event = json.loads(raw)
                yield str(event.get("type")), wrap(event.get("object"))
    finally:
        # a stream left before its end still has the server writing to it: closed, not
        # handed back to the pool, where the next request would wait on its unread events
        response.close()
        response.release_conn()


def revision_template(client: KubeClient, dep: Any, revision: str) -> dict[str, Any] | None:
    """The pod template of the Deployment's ``revision``, from the ReplicaSet that recorded it
    (None when that ReplicaSet is gone)."""
    with client.errors(f"listing replica sets of deployment {dep.metadata.name!r}"):
        items = client.request(
            "GET",
            f"/apis/apps/v1/namespaces/{quote(client.namespace)}/replicasets",
            {"labelSelector": selector(dep.spec.selector)},
        )["items"]
    for rs in items:
        owners = rs.metadata.owner_references or []
        mine = any(o.uid == dep.metadata.uid for o in owners)
        if mine and (rs.metadata.annotations or {}).get(REVISION) == revision:
            template = json.loads(json.dumps(rs["spec"]["template"]))
            template.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
            return dict(template)
    return None
