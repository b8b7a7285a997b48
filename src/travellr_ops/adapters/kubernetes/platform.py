"""The Kubernetes service platform: Deployments and their pods.

Services are the runbook's logical names (``backend``, ``mongodb``, ``redis``), mapped to
Deployments by ``settings.kubernetes``; any other name is taken as a Deployment's own name.

Kubernetes 1.20 is the oldest server this speaks to: it relies on nothing newer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from travellr_ops.adapters.kubernetes import exec as pod_exec
from travellr_ops.adapters.kubernetes import mapping
from travellr_ops.adapters.kubernetes.client import JSON_PATCH, MERGE_PATCH, SMP, KubeClient
from travellr_ops.adapters.kubernetes.logs import last_lines, read_logs
from travellr_ops.adapters.kubernetes.rollout import follow_rollout, revision_template
from travellr_ops.adapters.platform_types import (
    ExecIO,
    ExecTarget,
    FileChunk,
    FileCursor,
    LogLine,
    ProcessList,
    Progress,
    Release,
    ResourceUsage,
    RestartResult,
    ServiceStatus,
    check_image_tag,
)
from travellr_ops.errors import OperationFailed, TravellrError, UsageError

if TYPE_CHECKING:
    from travellr_ops.settings import Settings

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
#: where `service down` keeps the replica count that `service up` restores
REPLICAS_BEFORE_DOWN = "travellr.io/replicas-before-down"


@dataclass
class _Target:
    service: str  # the name the user gave (logical or Deployment name)
    deployment: str


class KubernetesPlatform:
    """``ServicePlatform`` over a Kubernetes cluster (kubeconfig, context, namespace)."""

    name = "kubernetes"

    def __init__(self, settings: Settings) -> None:
        self.k8s = settings.kubernetes
        self.client = KubeClient(settings.kubernetes)
        self.namespace = self.client.namespace

    def close(self) -> None:
        self.client.close()

    # -- names -------------------------------------------------------------------------------
    def _logical(self) -> dict[str, str]:
        return {
            "backend": self.k8s.backend_deployment,
            "mongodb": self.k8s.mongodb_deployment,
            "redis": self.k8s.redis_deployment,
        }

    def services(self) -> list[str]:
        return list(self._logical())

    def _target(self, service: str) -> _Target:
        return _Target(service, self._logical().get(service, service))

    def _read(self, target: _Target) -> Any:
        return self.client.read_deployment(target.deployment)

    def _patch(self, target: _Target, doing: str, body: Any, content_type: str = SMP) -> Any:
        with self.client.errors(doing):
            return self.client.request(
                "PATCH",
                self.client.deployments_path(target.deployment),
                body=body,
                content_type=content_type,
            )

    # -- status ------------------------------------------------------------------------------
    def status(self, service: str | None = None) -> list[ServiceStatus]:
        if service is not None:
            target = self._target(service)
            return [self._status(target, self._read(target))]
        with self.client.errors(f"listing deployments in namespace {self.namespace!r}"):
            items = self.client.request("GET", self.client.deployments_path())["items"]
        by_name = {d.metadata.name: d for d in items}
        found = [
            self._status(_Target(logical, name), by_name[name])
            for logical, name in self._logical().items()
            if name in by_name
        ]
        if not found:
            self.client.check_namespace()
            raise UsageError(
                f"none of the deployments {', '.join(self._logical().values())} is in"
                f" namespace {self.namespace!r} (context {self.client.context_name!r})",
                hint="check kubernetes.namespace and kubernetes.backend_deployment",
            )
        return found

    def _status(self, target: _Target, dep: Any) -> ServiceStatus:
        return mapping.service_status(target.service, dep, self.client.pods(dep))

    # -- restart and rollouts ----------------------------------------------------------------
    def restart(self, service: str, timeout_s: float, progress: Progress) -> RestartResult:
        """``kubectl rollout restart`` then follow the rollout with a watch until it settles."""
        target = self._target(service)
        started = time.monotonic()
        self._read(target)  # a clear error for a missing deployment or namespace
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        dep = self._patch(target, f"restarting deployment {target.deployment!r}", patch)
        progress(f"rollout restart of deployment/{target.deployment} requested")
        return self._rollout_result(target, dep, started, timeout_s, progress)

    def _rollout_result(
        self, target: _Target, dep: Any, started: float, timeout_s: float, progress: Progress
    ) -> RestartResult:
        done, reason = follow_rollout(self.client, dep, started + timeout_s, progress)
        status = self._status(target, self._read(target))
        result = RestartResult(
            service=target.service,
            healthy=done,
            seconds=time.monotonic() - started,
            status=status,
            reason=reason,
        )
        if not done:
            result.reason += mapping.not_ready(status)
            result.last_logs = self._last_logs(status)
        return result

    def _last_logs(self, status: ServiceStatus, lines: int = 5) -> list[str]:
        out: list[str] = []
        for inst in status.instances:
            if inst.ready:
                continue
            try:
                for line in last_lines(self.client, inst.name, lines, inst.restarts > 0):
                    out.append(f"{inst.name}: {line.text}")
            except TravellrError as exc:
                out.append(f"{inst.name}: ({exc.message})")
        return out[-20:]

    # -- deploy ------------------------------------------------------------------------------
    def release(self, service: str) -> Release:
        target = self._target(service)
        status = self._status(target, self._read(target))
        return Release(
            service=service,
            platform=self.name,
            image=status.image or "",
            image_ids={
                i.name: i.image_digest or "" for i in status.instances if i.state != "Terminating"
            },
            revision=status.revision,
            ready=status.ready,
            desired=status.desired,
        )

    def image_for(self, service: str, tag: str) -> str:
        if ":" in tag.rsplit("/", 1)[-1] or "@" in tag:
            return tag  # a whole reference
        check_image_tag(tag)
        image = self.release(service).image
        last = image.rsplit("/", 1)[-1]
        repository = image[: len(image) - len(last)] + last.split("@")[0].split(":")[0]
        return f"{repository}:{tag}"

    def image_exists(self, image: str) -> bool | None:
        return None  # the nodes pull at rollout; nothing here can ask their registry first

    def set_image(
        self, service: str, image: str, timeout_s: float, progress: Progress
    ) -> RestartResult:
        """`kubectl set image` of the Deployment's first container, then follow the rollout by
        watch until it completes, fails its progressDeadlineSeconds, or the time is up."""
        target = self._target(service)
        dep = self._read(target)
        container = dep.spec.template.spec.containers[0].name
        patch = {
            "spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}
        }
        started = time.monotonic()
        doing = f"setting the image of deployment {target.deployment!r}"
        dep = self._patch(target, doing, patch)
        progress(f"deployment/{target.deployment} {container}={image}")
        return self._rollout_result(target, dep, started, timeout_s, progress)

    def restore(
        self, service: str, release: Release, timeout_s: float, progress: Progress
    ) -> RestartResult:
        """As `kubectl rollout undo --to-revision`: the recorded revision's pod template (from
        its ReplicaSet) back into the Deployment; by image when that ReplicaSet is gone."""
        target = self._target(service)
        dep = self._read(target)
        template = (
            revision_template(self.client, dep, release.revision) if release.revision else None
        )
        if template is None:
            progress(f"revision {release.revision} is gone: setting image {release.image}")
            return self.set_image(service, release.image, timeout_s, progress)
        started = time.monotonic()
        patch = [{"op": "replace", "path": "/spec/template", "value": template}]
        doing = f"rolling back deployment {target.deployment!r}"
        dep = self._patch(target, doing, patch, JSON_PATCH)
        progress(f"deployment/{target.deployment} rolled back to revision {release.revision}")
        return self._rollout_result(target, dep, started, timeout_s, progress)

    def read_file(
        self, service: str, path: str, cursors: dict[str, FileCursor], max_bytes: int
    ) -> list[FileChunk]:
        """Not done on Kubernetes: a pod's log is its containers' standard output."""
        raise OperationFailed(
            f"reading {path} inside the pods of {service!r} is not supported on Kubernetes",
            hint="read the pod logs (logs.access_source / logs.app_source = 'service'); a log"
            " the backend writes to a file reaches them through a sidecar that streams it",
        )

    # -- logs --------------------------------------------------------------------------------
    def logs(
        self,
        services: Sequence[str],
        *,
        tail: int | None = None,
        since: datetime | None = None,
        follow: bool = False,
        previous: bool = False,
    ) -> Iterator[LogLine]:
        """Every pod's log, interleaved by time, each line tagged with its pod."""
        pods: list[tuple[str, str]] = []  # (pod, container)
        for service in services or [self._logical()["backend"]]:
            dep = self._read(self._target(service))
            for pod in self.client.pods(dep, live_only=True):
                pods.extend((pod.metadata.name, c.name) for c in pod.spec.containers)
        if not pods:
            return iter(())
        return read_logs(
            self.client, pods, tail=tail, since=since, follow=follow, previous=previous
        )

    # -- resource usage ----------------------------------------------------------------------
    def stats(self, service: str | None = None) -> list[ResourceUsage]:
        """Per-pod CPU and memory (metrics.k8s.io) against each pod's requests and limits."""
        names = [service] if service else [st.name for st in self.status()]
        usage: list[ResourceUsage] = []
        for target in map(self._target, names):
            dep = self._read(target)
            metrics = self.client.pod_metrics(dep)
            for pod in self.client.pods(dep, live_only=True):
                usage.append(mapping.usage(target.service, pod, metrics.get(pod.metadata.name)))
        return usage

    def top(self, service: str) -> list[ProcessList]:
        """``kubectl top pods --containers`` for the service's pods."""
        dep = self._read(self._target(service))
        metrics = self.client.pod_metrics(dep)
        return [
            ProcessList(
                instance=pod.metadata.name,
                titles=["CONTAINER", "CPU(cores)", "MEMORY(bytes)"],
                processes=mapping.container_rows(metrics.get(pod.metadata.name) or {}),
            )
            for pod in self.client.pods(dep, live_only=True)
        ]

    # -- scale, up, down ---------------------------------------------------------------------
    def scale(self, service: str, replicas: int) -> ServiceStatus:
        if replicas < 0:
            raise UsageError(f"replicas must be 0 or more, not {replicas}")
        target = self._target(service)
        self._read(target)
        with self.client.errors(f"scaling deployment {target.deployment!r}"):
            self.client.request(
                "PATCH",
                self.client.deployments_path(target.deployment, "scale"),
                body={"spec": {"replicas": replicas}},
                content_type=MERGE_PATCH,
            )
        return self._status(target, self._read(target))

    def down(self, service: str | None = None) -> None:
        for name in [service] if service else self.services():
            target = self._target(name)
            current = int(self._read(target).spec.replicas or 0)
            if current == 0:
                continue
            patch = {
                "metadata": {"annotations": {REPLICAS_BEFORE_DOWN: str(current)}},
                "spec": {"replicas": 0},
            }
            self._patch(target, f"scaling deployment {target.deployment!r} to 0", patch)

    def up(self, service: str | None = None) -> None:
        for name in [service] if service else self.services():
            target = self._target(name)
            dep = self._read(target)
            if int(dep.spec.replicas or 0) > 0:
                continue
            before = (dep.metadata.annotations or {}).get(REPLICAS_BEFORE_DOWN, "1")
            patch = {
                "metadata": {"annotations": {REPLICAS_BEFORE_DOWN: None}},
                "spec": {"replicas": max(1, int(before))},
            }
            self._patch(target, f"scaling deployment {target.deployment!r} up", patch)

    # -- describe ----------------------------------------------------------------------------
    def describe(self, instance: str) -> dict[str, Any]:
        """One pod as ``kubectl describe pod`` shows it, its events included."""
        from kubernetes.client.exceptions import ApiException

        client = self.client
        with client.errors(f"reading pod {instance!r}"):
            try:
                pod = client.request("GET", client.core_path("pods", instance))
            except ApiException as exc:
                if exc.status != 404:
                    raise
                pod = None
        if pod is None:
            client.check_namespace()
            raise UsageError(
                f"pod {instance!r} not found in namespace {self.namespace!r}",
                hint="`travellr-ops service status` lists the pods",
            )
        with client.errors(f"listing events of pod {instance!r}"):
            events = client.request(
                "GET",
                client.core_path("events"),
                {"fieldSelector": f"involvedObject.kind=Pod,involvedObject.name={instance}"},
            )["items"]
        return mapping.describe_pod(pod, events)

    # -- exec --------------------------------------------------------------------------------
    def exec_target(self, service: str, instance: int | None = None) -> ExecTarget:
        """The ``instance``-th pod by name (else the first running), in its default container
        (the ``kubectl.kubernetes.io/default-container`` annotation, else the first)."""
        target = self._target(service)
        pods = self.client.pods(self._read(target), live_only=True)
        return pod_exec.choose(service, pods, instance)

    def exec(self, target: ExecTarget, command: Sequence[str], io: ExecIO) -> int:
        return pod_exec.run(self.client, target, command, io)

    def debug_copy(self, target: ExecTarget) -> AbstractContextManager[ExecTarget]:
        return pod_exec.debug_copy(self.client, target)

    def rollback_revision(self, now: Release, to: str | None) -> Release | None:
        """As `kubectl rollout undo [--to-revision N]` counts: a Deployment's revisions are
        numbered, the one before ``now``'s is one less."""
        if to is None:
            if not (now.revision and now.revision.isdigit()):
                return None
            return Release(now.service, self.name, now.image, revision=str(int(now.revision) - 1))
        return Release(now.service, self.name, "", revision=to) if to.isdigit() else None
