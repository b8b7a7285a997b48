"""The Kubernetes service platform: Deployments and their pods, over the official client.

Services are the runbook's logical names (``backend``, ``mongodb``, ``redis``), mapped to
Deployments by ``settings.kubernetes``; any other name is taken as a Deployment's own name.
The ``kubernetes`` package is imported only when the platform is first used, and every error it
raises leaves this module as one of the project's errors (``errors.py``) with a one-line message.

Kubernetes 1.20 is the oldest server this speaks to: it relies on nothing newer.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from travellr_ops.adapters.platform_types import (
    Instance,
    LogLine,
    ProcessList,
    Progress,
    Release,
    ResourceUsage,
    RestartResult,
    ServiceStatus,
)
from travellr_ops.errors import (
    AuthError,
    ConfigError,
    OperationFailed,
    TravellrError,
    Unreachable,
    UsageError,
)

if TYPE_CHECKING:
    from travellr_ops.settings import Settings

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REVISION = "deployment.kubernetes.io/revision"
#: where `service down` keeps the replica count that `service up` restores
REPLICAS_BEFORE_DOWN = "travellr.io/replicas-before-down"
METRICS = ("metrics.k8s.io", "v1beta1", "pods")
IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
#: (connect, read) seconds for ordinary API calls; watches and log streams set their own
REQUEST_TIMEOUT = (5.0, 30.0)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
SMP = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"

_FORBIDDEN = re.compile(
    r'User "(?P<user>[^"]*)" cannot (?P<verb>\S+) resource "(?P<resource>[^"]+)"'
    r'(?: in API group "(?P<group>[^"]*)")?'
    r'(?: in the namespace "(?P<namespace>[^"]*)")?'
)


@dataclass
class _Target:
    service: str  # the name the user gave (logical or Deployment name)
    deployment: str


class KubernetesPlatform:
    """``ServicePlatform`` over a Kubernetes cluster (kubeconfig, context, namespace)."""

    name = "kubernetes"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.k8s = settings.kubernetes
        self.namespace = self.k8s.namespace
        self._api: Any = None
        self._context_name = self.k8s.context or ""

    # -- connection --------------------------------------------------------------------------
    @property
    def api(self) -> Any:
        """The ApiClient, built on first use from the kubeconfig (or the pod's own account)."""
        if self._api is None:
            self._api = self._connect()
        return self._api

    def _connect(self) -> Any:
        from kubernetes import client

        config = _sdk("kubernetes.config")

        path = self.k8s.kubeconfig
        if path is None and IN_CLUSTER_TOKEN.exists() and not self.k8s.context:
            try:
                config.load_incluster_config()
                self._context_name = "in-cluster"
                return client.ApiClient()
            except config.ConfigException:
                pass  # not really inside a pod: fall back to a kubeconfig
        if path is None:
            from kubernetes.config.kube_config import KUBE_CONFIG_DEFAULT_LOCATION

            first = str(KUBE_CONFIG_DEFAULT_LOCATION).split(":")[0]
            path = Path(first).expanduser()
            if not path.is_file():
                raise ConfigError(
                    f"no kubeconfig: {path} does not exist and this is not a pod",
                    hint="set kubernetes.kubeconfig (TRAVELLR_KUBERNETES__KUBECONFIG) or KUBECONFIG",
                )
        elif not path.is_file():
            raise ConfigError(
                f"kubeconfig not found: {path}",
                hint="fix kubernetes.kubeconfig (TRAVELLR_KUBERNETES__KUBECONFIG)",
            )
        try:
            contexts, active = config.list_kube_config_contexts(config_file=str(path))
        except (config.ConfigException, OSError, ValueError) as exc:
            raise ConfigError(f"cannot read kubeconfig {path}: {_first_line(exc)}") from None
        names = [c["name"] for c in contexts or []]
        wanted = self.k8s.context or (active or {}).get("name")
        if wanted is None:
            raise ConfigError(
                f"kubeconfig {path} names no current context",
                hint="set kubernetes.context (TRAVELLR_KUBERNETES__CONTEXT)",
            )
        if wanted not in names:
            raise ConfigError(
                f"context {wanted!r} is not in kubeconfig {path}",
                hint=f"known contexts: {', '.join(names) or 'none'};"
                " fix kubernetes.context (TRAVELLR_KUBERNETES__CONTEXT)",
            )
        self._context_name = wanted
        try:
            return config.new_client_from_config(config_file=str(path), context=wanted)
        except (config.ConfigException, OSError, ValueError) as exc:
            raise ConfigError(
                f"kubeconfig {path}, context {wanted!r}: {_first_line(exc)}"
            ) from None

    @property
    def server(self) -> str:
        return str(self.api.configuration.host) if self._api is not None else "?"

    def _request(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: Any = REQUEST_TIMEOUT,
        stream: bool = False,
    ) -> Any:
        """One API request through the client's transport (auth, TLS, proxy from kubeconfig).

        The answer is plain JSON read by attribute, as the client's models spell it
        (``dep.status.ready_replicas``). The client's generated API classes and models are
        not used: importing and building them (pydantic) costs about 0.6 s per command,
        which kubectl does not pay. With ``stream`` the raw response is returned, open.
        """
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        params = [
            (k, str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in (query or {}).items()
            if v is not None
        ]
        request = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=params,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*request, _request_timeout=timeout)
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        if stream:
            return response.response
        response.read()
        return _wrap(json.loads(response.data))

    def _deployments(self, name: str = "", sub: str = "") -> str:
        path = f"/apis/apps/v1/namespaces/{quote(self.namespace)}/deployments"
        return path + (f"/{quote(name)}" if name else "") + (f"/{sub}" if sub else "")

    def _core_path(self, kind: str, name: str = "", sub: str = "") -> str:
        path = f"/api/v1/namespaces/{quote(self.namespace)}/{kind}"
        return path + (f"/{quote(name)}" if name else "") + (f"/{sub}" if sub else "")

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Translate what the client raises while ``doing`` into the project's errors."""
        from kubernetes.client.exceptions import ApiException
        from kubernetes.config import ConfigException
        from urllib3.exceptions import HTTPError, MaxRetryError, SSLError

        try:
            yield
        except TravellrError:
            raise
        except ApiException as exc:
            raise self._api_error(exc, doing) from None
        except MaxRetryError as exc:
            reason = exc.reason
            if isinstance(reason, SSLError):
                raise Unreachable(
                    f"TLS with the Kubernetes API server at {self.server} failed while {doing}:"
                    f" {_first_line(reason)}",
                    hint="check the cluster's certificate-authority in the kubeconfig",
                ) from None
            raise Unreachable(
                f"cannot reach the Kubernetes API server at {self.server} while {doing}:"
                f" {_connection_reason(reason)}",
                hint=f"is the cluster up? check context {self._context_name!r} in the kubeconfig",
            ) from None
        except (HTTPError, OSError) as exc:
            raise Unreachable(
                f"lost the Kubernetes API server at {self.server} while {doing}:"
                f" {_first_line(exc)}",
                hint=f"is the cluster up? check context {self._context_name!r}",
            ) from None
        except ConfigException as exc:
            raise ConfigError(f"kubeconfig problem while {doing}: {_first_line(exc)}") from None

    def _api_error(self, exc: Any, doing: str) -> TravellrError:
        status = int(exc.status or 0)
        message = _status_message(exc)
        if status == 401:
            return AuthError(
                f"the Kubernetes API server at {self.server} rejected the credentials of"
                f" context {self._context_name!r} (401 Unauthorized)",
                hint="the token or certificate is invalid or expired: log in again"
                " or refresh the kubeconfig",
            )
        if status == 403:
            found = _FORBIDDEN.search(message)
            if found:
                resource = found["resource"]
                if found["group"]:
                    resource = f"{resource}.{found['group']}"
                where = f" in namespace {found['namespace']!r}" if found["namespace"] else ""
                return AuthError(
                    f"forbidden: {found['user']!r} may not {found['verb']} {resource}{where}"
                    " (403, RBAC)",
                    hint=f"grant the {found['verb']!r} verb on {resource} to that user"
                    " (Role/RoleBinding), or use a context that has it",
                )
            return AuthError(f"forbidden while {doing}: {message} (403)")
        if status == 404:
            return OperationFailed(f"not found while {doing}: {message}")
        if status == 0:
            return Unreachable(f"no answer from {self.server} while {doing}: {exc.reason}")
        return OperationFailed(f"the Kubernetes API refused {doing}: {message} ({status})")

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

    def _read_deployment(self, target: _Target) -> Any:
        from kubernetes.client.exceptions import ApiException

        with self._errors(f"reading deployment {target.deployment!r}"):
            try:
                return self._request("GET", self._deployments(target.deployment))
            except ApiException as exc:
                if exc.status != 404:
                    raise
        self._check_namespace()
        raise UsageError(
            f"deployment {target.deployment!r} not found in namespace {self.namespace!r}"
            f" (context {self._context_name!r})",
            hint="check the service name, or kubernetes.backend_deployment / kubernetes.namespace",
        )

    def _check_namespace(self) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self._request("GET", f"/api/v1/namespaces/{quote(self.namespace)}")
        except ApiException as exc:
            if exc.status == 404:
                raise ConfigError(
                    f"namespace {self.namespace!r} does not exist (context {self._context_name!r})",
                    hint="fix kubernetes.namespace (TRAVELLR_KUBERNETES__NAMESPACE)",
                ) from None
            # no right to read namespaces: say nothing more than the missing deployment

    def _pods(self, deployment: Any, live_only: bool = False) -> list[Any]:
        """The Deployment's pods by name; ``live_only`` leaves out those being deleted."""
        selector = _selector(deployment.spec.selector)
        with self._errors(f"listing pods of deployment {deployment.metadata.name!r}"):
            pods = self._request("GET", self._core_path("pods"), {"labelSelector": selector})[
                "items"
            ]
        if live_only:
            pods = [p for p in pods if p.metadata.deletion_timestamp is None]
        return sorted(pods, key=lambda p: p.metadata.name)

    # -- status ------------------------------------------------------------------------------
    def status(self, service: str | None = None) -> list[ServiceStatus]:
        if service is not None:
            target = self._target(service)
            return [self._status(target, self._read_deployment(target))]
        with self._errors(f"listing deployments in namespace {self.namespace!r}"):
            items = self._request("GET", self._deployments())["items"]
        by_name = {d.metadata.name: d for d in items}
        found = [
            self._status(_Target(logical, name), by_name[name])
            for logical, name in self._logical().items()
            if name in by_name
        ]
        if not found:
            self._check_namespace()
            raise UsageError(
                f"none of the deployments {', '.join(self._logical().values())} is in"
                f" namespace {self.namespace!r} (context {self._context_name!r})",
                hint="check kubernetes.namespace and kubernetes.backend_deployment",
            )
        return found

    def _status(self, target: _Target, dep: Any, pods: list[Any] | None = None) -> ServiceStatus:
        st = dep.status
        desired = int(dep.spec.replicas if dep.spec.replicas is not None else 1)
        ready = int(st.ready_replicas or 0)
        updated = int(st.updated_replicas or 0)
        available_n = int(st.available_replicas or 0)
        observed = (st.observed_generation or 0) >= (dep.metadata.generation or 0)
        available = (
            observed
            and updated == desired
            and available_n == desired
            and int(st.replicas or 0) == desired
        )
        conditions = [
            f"{c.type}={c.status}" + (f" ({c.reason})" if c.reason else "")
            for c in st.conditions or []
        ]
        instances = [_instance(p) for p in (pods if pods is not None else self._pods(dep))]
        containers = dep.spec.template.spec.containers or []
        message = ""
        stopped = desired == 0
        available = available and not stopped  # 0/0 is a service nobody can reach
        if stopped:
            message = "stopped: scaled to 0 replicas (service up starts it)"
        elif not available:
            message = (
                f"{available_n}/{desired} available, {updated}/{desired} updated,"
                f" {ready}/{desired} ready"
            )
            problems = [f"{i.name}: {i.last_termination}" for i in instances if i.last_termination]
            if problems:
                message += "; " + "; ".join(problems)
        return ServiceStatus(
            name=target.service,
            platform=self.name,
            available=available,
            desired=desired,
            ready=ready,
            updated=updated,
            revision=(dep.metadata.annotations or {}).get(REVISION),
            image=containers[0].image if containers else None,
            conditions=conditions,
            stopped=stopped,
            instances=instances,
            message=message,
        )

    # -- restart -----------------------------------------------------------------------------
    def restart(self, service: str, timeout_s: float, progress: Progress) -> RestartResult:
        """``kubectl rollout restart`` then follow the rollout with a watch until it settles."""
        target = self._target(service)
        started = time.monotonic()
        self._read_deployment(target)  # a clear error for a missing deployment or namespace
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        with self._errors(f"restarting deployment {target.deployment!r}"):
            dep = self._request(
                "PATCH", self._deployments(target.deployment), body=patch, content_type=SMP
            )
        progress(f"rollout restart of deployment/{target.deployment} requested")
        done, reason = self._follow_rollout(dep, started + timeout_s, progress)
        final = self._read_deployment(target)
        status = self._status(target, final)
        result = RestartResult(
            service=service,
            healthy=done,
            seconds=time.monotonic() - started,
            status=status,
            reason=reason,
        )
        if not done:
            result.reason += _not_ready(status)
            result.last_logs = self._last_logs(status)
        return result

    def _follow_rollout(self, dep: Any, deadline: float, progress: Progress) -> tuple[bool, str]:
        """Watch the Deployment until the rollout completes (True) or fails (False, why).

        One watch request at a time, resumed from the last resourceVersion seen; a 410 Gone
        (our version expired) reads the Deployment afresh. No polling.
        """
        name = dep.metadata.name
        version = dep.metadata.resource_version
        verdict, said = _rollout_state(dep)
        if verdict is not None:
            return verdict, said
        progress(said)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False, f"rollout did not finish in time: {said}"
            expired = False
            with self._errors(f"watching deployment {name!r}"):
                for kind, obj in self._watch_deployment(name, version, remaining):
                    if kind == "DELETED":
                        return False, f"deployment {name!r} was deleted during the rollout"
                    if kind == "ERROR":
                        expired = True
                        break
                    version = obj.metadata.resource_version
                    verdict, message = _rollout_state(obj)
                    if verdict is not None:
                        return verdict, message
                    if message != said:
                        said = message
                        progress(message)
                    if time.monotonic() >= deadline:
                        break
            if expired or time.monotonic() >= deadline:
                with self._errors(f"reading deployment {name!r}"):
                    fresh = self._request("GET", self._deployments(name))
                version = fresh.metadata.resource_version
                verdict, said = _rollout_state(fresh)
                if verdict is not None:
                    return verdict, said

    def _watch_deployment(
        self, name: str, version: str, seconds: float
    ) -> Iterator[tuple[str, Any]]:
        """(event type, object) from one watch request on one Deployment."""
        from kubernetes.client.exceptions import ApiException

        try:
            response = self._request(
                "GET",
                self._deployments(),
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
            pending = b""
            for chunk in response.stream(4096, decode_content=True):
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    if raw.strip():
                        event = json.loads(raw)
                        yield str(event.get("type")), _wrap(event.get("object"))
        finally:
            response.release_conn()

    def _last_logs(self, status: ServiceStatus, lines: int = 5) -> list[str]:
        out: list[str] = []
        for inst in status.instances:
            if inst.ready:
                continue
            try:
                for line in self._pod_log_lines(inst.name, tail=lines, previous=inst.restarts > 0):
                    out.append(f"{inst.name}: {line.text}")
            except TravellrError as exc:
                out.append(f"{inst.name}: ({exc.message})")
        return out[-20:]

    # -- deploy ------------------------------------------------------------------------------
    def release(self, service: str) -> Release:
        target = self._target(service)
        status = self._status(target, self._read_deployment(target))
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
        if not _TAG.match(tag):
            raise UsageError(
                f"{tag!r} is not a valid image tag",
                hint="letters, digits, _ . - (at most 128, not starting with . or -)",
            )
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
        dep = self._read_deployment(target)
        container = dep.spec.template.spec.containers[0].name
        patch = {
            "spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}
        }
        started = time.monotonic()
        with self._errors(f"setting the image of deployment {target.deployment!r}"):
            dep = self._request(
                "PATCH", self._deployments(target.deployment), body=patch, content_type=SMP
            )
        progress(f"deployment/{target.deployment} {container}={image}")
        return self._rollout_result(target, dep, started, timeout_s, progress)

    def restore(
        self, service: str, release: Release, timeout_s: float, progress: Progress
    ) -> RestartResult:
        """As `kubectl rollout undo --to-revision`: the recorded revision's pod template (from
        its ReplicaSet) back into the Deployment; by image when that ReplicaSet is gone."""
        target = self._target(service)
        dep = self._read_deployment(target)
        template = self._revision_template(dep, release.revision) if release.revision else None
        if template is None:
            progress(f"revision {release.revision} is gone: setting image {release.image}")
            return self.set_image(service, release.image, timeout_s, progress)
        started = time.monotonic()
        patch = [{"op": "replace", "path": "/spec/template", "value": template}]
        with self._errors(f"rolling back deployment {target.deployment!r}"):
            dep = self._request(
                "PATCH",
                self._deployments(target.deployment),
                body=patch,
                content_type="application/json-patch+json",
            )
        progress(f"deployment/{target.deployment} rolled back to revision {release.revision}")
        return self._rollout_result(target, dep, started, timeout_s, progress)

    def _revision_template(self, dep: Any, revision: str) -> dict[str, Any] | None:
        with self._errors(f"listing replica sets of deployment {dep.metadata.name!r}"):
            items = self._request(
                "GET",
                f"/apis/apps/v1/namespaces/{quote(self.namespace)}/replicasets",
                {"labelSelector": _selector(dep.spec.selector)},
            )["items"]
        for rs in items:
            owners = rs.metadata.owner_references or []
            mine = any(o.uid == dep.metadata.uid for o in owners)
            if mine and (rs.metadata.annotations or {}).get(REVISION) == revision:
                template = json.loads(json.dumps(rs["spec"]["template"]))
                template.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
                return dict(template)
        return None

    def _rollout_result(
        self, target: _Target, dep: Any, started: float, timeout_s: float, progress: Progress
    ) -> RestartResult:
        done, reason = self._follow_rollout(dep, started + timeout_s, progress)
        status = self._status(target, self._read_deployment(target))
        result = RestartResult(
            service=target.service,
            healthy=done,
            seconds=time.monotonic() - started,
            status=status,
            reason=reason,
        )
        if not done:
            result.reason += _not_ready(status)
            result.last_logs = self._last_logs(status)
        return result

    def request_log(self, service: str, since: datetime) -> list[LogLine]:
        return list(self.logs([service], since=since))

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
            dep = self._read_deployment(self._target(service))
            for pod in self._pods(dep, live_only=True):
                names = [c.name for c in pod.spec.containers]
                pods.extend((pod.metadata.name, c) for c in names)
        if not pods:
            return iter(())
        multi = len({c for _, c in pods}) > 1
        since_s = max(1, int((datetime.now(UTC) - since).total_seconds())) if since else None
        if follow:
            return self._follow_logs(pods, tail, since_s, previous, multi)
        return self._collect_logs(pods, tail, since_s, previous, multi)

    def _collect_logs(
        self,
        pods: list[tuple[str, str]],
        tail: int | None,
        since_s: int | None,
        previous: bool,
        multi: bool,
    ) -> Iterator[LogLine]:
        def fetch(item: tuple[str, str]) -> list[LogLine] | TravellrError:
            pod, container = item
            try:
                return list(
                    self._pod_log_lines(
                        pod,
                        container=container,
                        tail=tail,
                        since_s=since_s,
                        previous=previous,
                        source=f"{pod}/{container}" if multi else pod,
                    )
                )
            except TravellrError as exc:
                return exc

        with ThreadPoolExecutor(max_workers=min(8, len(pods))) as pool:
            results = list(pool.map(fetch, pods))
        errors = [r for r in results if isinstance(r, TravellrError)]
        if errors and len(errors) == len(results):
            raise errors[0]
        notes = [
            LogLine(None, pod, f"[no logs: {r.message}]")
            for (pod, _), r in zip(pods, results, strict=True)
            if isinstance(r, TravellrError)
        ]
        merged = [line for r in results if isinstance(r, list) for line in r]
        epoch = datetime.min.replace(tzinfo=UTC)
        merged.sort(key=lambda line: line.time or epoch)  # stable: a pod's order is kept
        return iter(notes + merged)

    def _follow_logs(
        self,
        pods: list[tuple[str, str]],
        tail: int | None,
        since_s: int | None,
        previous: bool,
        multi: bool,
    ) -> Iterator[LogLine]:
        lines: queue.Queue[LogLine | None] = queue.Queue(maxsize=10000)
        stop = threading.Event()

        def pump(pod: str, container: str) -> None:
            source = f"{pod}/{container}" if multi else pod
            try:
                for line in self._pod_log_lines(
                    pod,
                    container=container,
                    tail=tail,
                    since_s=since_s,
                    previous=previous,
                    follow=True,
                    source=source,
                    stop=stop,
                ):
                    lines.put(line)
            except TravellrError as exc:
                lines.put(LogLine(None, source, f"[no logs: {exc.message}]"))
            finally:
                lines.put(None)

        for pod, container in pods:
            threading.Thread(target=pump, args=(pod, container), daemon=True).start()

        def drain() -> Iterator[LogLine]:
            open_streams = len(pods)
            try:
                while open_streams:
                    line = lines.get()
                    if line is None:
                        open_streams -= 1
                    else:
                        yield line
            finally:
                stop.set()

        return drain()

    def _pod_log_lines(
        self,
        pod: str,
        *,
        container: str | None = None,
        tail: int | None = None,
        since_s: int | None = None,
        previous: bool = False,
        follow: bool = False,
        source: str | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[LogLine]:
        from kubernetes.client.exceptions import ApiException

        query: dict[str, Any] = {
            "timestamps": True,
            "container": container,
            "tailLines": tail,
            "sinceSeconds": since_s,
            "previous": previous or None,
            "follow": follow or None,
        }
        # following: no read timeout, a quiet pod may say nothing for long
        timeout = (REQUEST_TIMEOUT[0], None) if follow else REQUEST_TIMEOUT

        with self._errors(f"reading the log of pod {pod!r}"):
            try:
                response = self._request(
                    "GET", self._core_path("pods", pod, "log"), query, timeout=timeout, stream=True
                )
            except ApiException as exc:
                if exc.status != 400:
                    raise
                # the kubelet's own word: waiting to start, no previous container...
                raise OperationFailed(
                    f"no log from pod {pod!r}: {_status_message(exc)}",
                    hint="--previous shows the log of the container that last crashed",
                ) from None
        name = source or pod
        try:
            pending = b""
            with self._errors(f"reading the log of pod {pod!r}"):
                for chunk in response.stream(4096, decode_content=True):
                    pending += chunk
                    *complete, pending = pending.split(b"\n")
                    for raw in complete:
                        yield _log_line(name, raw)
                    if stop is not None and stop.is_set():
                        return
                if pending:
                    yield _log_line(name, pending)
        finally:
            response.release_conn()

    # -- resource usage ----------------------------------------------------------------------
    def _pod_metrics(self, dep: Any) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        group, version, plural = METRICS
        selector = _selector(dep.spec.selector)
        with self._errors("reading pod metrics (metrics.k8s.io)"):
            try:
                listing = self._request(
                    "GET",
                    f"/apis/{group}/{version}/namespaces/{quote(self.namespace)}/{plural}",
                    {"labelSelector": selector},
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
                raise OperationFailed(
                    "the metrics API (metrics.k8s.io/v1beta1) is not available in this"
                    f" cluster (context {self._context_name!r})",
                    hint="install metrics-server; `kubectl top pods` needs it too",
                ) from None
        return {item["metadata"]["name"]: item for item in listing.get("items", [])}

    def stats(self, service: str | None = None) -> list[ResourceUsage]:
        """Per-pod CPU and memory (metrics.k8s.io) against each pod's requests and limits."""
        targets = [self._target(service)] if service else None
        deployments: list[tuple[_Target, Any]] = []
        if targets:
            deployments = [(t, self._read_deployment(t)) for t in targets]
        else:
            for st in self.status():
                t = self._target(st.name)
                deployments.append((t, self._read_deployment(t)))
        usage: list[ResourceUsage] = []
        for target, dep in deployments:
            metrics = self._pod_metrics(dep)
            for pod in self._pods(dep, live_only=True):
                usage.append(_usage(target.service, pod, metrics.get(pod.metadata.name)))
        return usage

    def top(self, service: str) -> list[ProcessList]:
        """``kubectl top pods --containers`` for the service's pods."""
        target = self._target(service)
        dep = self._read_deployment(target)
        metrics = self._pod_metrics(dep)
        result = []
        for pod in self._pods(dep, live_only=True):
            item = metrics.get(pod.metadata.name) or {}
            rows = [
                [
                    c.get("name", ""),
                    _format_cpu(_quantity(c.get("usage", {}).get("cpu"))),
                    _format_bytes(_quantity(c.get("usage", {}).get("memory"))),
                ]
                for c in item.get("containers", [])
            ]
            result.append(
                ProcessList(
                    instance=pod.metadata.name,
                    titles=["CONTAINER", "CPU(cores)", "MEMORY(bytes)"],
                    processes=rows,
                )
            )
        return result

    # -- scale, up, down ---------------------------------------------------------------------
    def scale(self, service: str, replicas: int) -> ServiceStatus:
        if replicas < 0:
            raise UsageError(f"replicas must be 0 or more, not {replicas}")
        target = self._target(service)
        self._read_deployment(target)
        with self._errors(f"scaling deployment {target.deployment!r}"):
            self._request(
                "PATCH",
                self._deployments(target.deployment, "scale"),
                body={"spec": {"replicas": replicas}},
                content_type=MERGE_PATCH,
            )
        return self._status(target, self._read_deployment(target))

    def down(self, service: str | None = None) -> None:
        for name in [service] if service else self.services():
            target = self._target(name)
            dep = self._read_deployment(target)
            current = int(dep.spec.replicas or 0)
            if current == 0:
                continue
            patch = {
                "metadata": {"annotations": {REPLICAS_BEFORE_DOWN: str(current)}},
                "spec": {"replicas": 0},
            }
            with self._errors(f"scaling deployment {target.deployment!r} to 0"):
                self._request(
                    "PATCH", self._deployments(target.deployment), body=patch, content_type=SMP
                )

    def up(self, service: str | None = None) -> None:
        for name in [service] if service else self.services():
            target = self._target(name)
            dep = self._read_deployment(target)
            if int(dep.spec.replicas or 0) > 0:
                continue
            before = (dep.metadata.annotations or {}).get(REPLICAS_BEFORE_DOWN, "1")
            patch = {
                "metadata": {"annotations": {REPLICAS_BEFORE_DOWN: None}},
                "spec": {"replicas": max(1, int(before))},
            }
            with self._errors(f"scaling deployment {target.deployment!r} up"):
                self._request(
                    "PATCH", self._deployments(target.deployment), body=patch, content_type=SMP
                )

    # -- describe ----------------------------------------------------------------------------
    def describe(self, instance: str) -> dict[str, Any]:
        """One pod as ``kubectl describe pod`` shows it, its events included."""
        from kubernetes.client.exceptions import ApiException

        with self._errors(f"reading pod {instance!r}"):
            try:
                pod = self._request("GET", self._core_path("pods", instance))
            except ApiException as exc:
                if exc.status != 404:
                    raise
                pod = None
        if pod is None:
            self._check_namespace()
            raise UsageError(
                f"pod {instance!r} not found in namespace {self.namespace!r}",
                hint="`travellr-ops service status` lists the pods",
            )
        with self._errors(f"listing events of pod {instance!r}"):
            events = self._request(
                "GET",
                self._core_path("events"),
                {"fieldSelector": f"involvedObject.kind=Pod,involvedObject.name={instance}"},
            )["items"]
        return _describe_pod(pod, events)

    def rollback_revision(self, now: Release, to: str | None) -> Release | None:
        """As `kubectl rollout undo [--to-revision N]` counts: a Deployment's revisions are
        numbered, the one before ``now``'s is one less."""
        if to is None:
            if not (now.revision and now.revision.isdigit()):
                return None
            return Release(now.service, self.name, now.image, revision=str(int(now.revision) - 1))
        return Release(now.service, self.name, "", revision=to) if to.isdigit() else None


# -- helpers (pure) ------------------------------------------------------------------------------
#: attribute names whose JSON key is not their plain camelCase
_JSON_KEYS = {
    "image_id": "imageID",
    "container_id": "containerID",
    "pod_ip": "podIP",
    "pod_i_ps": "podIPs",
    "host_ip": "hostIP",
    "cluster_ip": "clusterIP",
}


class _Obj(dict[str, Any]):
    """A Kubernetes JSON object whose fields read like the client's models: ``pod.spec.node_name``.

    Missing fields read as None. List results are read with ``obj["items"]`` (``items`` is
    dict's own method).
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        key = _JSON_KEYS.get(name)
        if key is None:
            head, *rest = name.split("_")
            key = head + "".join(part[:1].upper() + part[1:] for part in rest)
        return self.get(key)


def _wrap(value: Any) -> Any:
    """JSON made readable by attribute, all the way down."""
    if isinstance(value, dict):
        return _Obj({k: _wrap(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _sdk(module: str) -> Any:
    """A module of the (untyped) kubernetes package, imported now."""
    import importlib

    return importlib.import_module(module)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _connection_reason(reason: BaseException | None) -> str:
    text = str(reason or "no answer")
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return text.split(": ", 1)[-1].splitlines()[0]


def _status_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if body:
        try:
            data = json.loads(body)
            if isinstance(data, dict) and data.get("message"):
                return str(data["message"])
        except (ValueError, TypeError):
            pass
        if isinstance(body, bytes | str):
            text = body.decode() if isinstance(body, bytes) else body
            if text.strip():
                return text.strip().splitlines()[0]
    return str(getattr(exc, "reason", "") or exc)


def _selector(selector: Any) -> str:
    parts = [f"{k}={v}" for k, v in sorted((selector.match_labels or {}).items())]
    for expr in selector.match_expressions or []:
        op = expr.operator
        values = ",".join(expr.get("values") or [])
        if op == "In":
            parts.append(f"{expr.key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{expr.key} notin ({values})")
        elif op == "Exists":
            parts.append(expr.key)
        elif op == "DoesNotExist":
            parts.append(f"!{expr.key}")
    return ",".join(parts)


def _rollout_state(dep: Any) -> tuple[bool | None, str]:
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


def _not_ready(status: ServiceStatus) -> str:
    """Why the pods that are not ready are not: "ImagePullBackOff", "CrashLoopBackOff"..."""
    why = [
        f"{i.name} {i.last_termination}"
        for i in status.instances
        if not i.ready and i.last_termination and i.state != "Terminating"
    ]
    return f"; pods not ready: {', '.join(why)}" if why else ""


def _termination(pod: Any) -> str | None:
    reasons: list[str] = []
    for cs in (pod.status.container_statuses if pod.status else None) or []:
        last = cs.last_state.terminated if cs.last_state else None
        if last is not None and last.reason:
            reasons.append(f"{last.reason} (exit {last.exit_code})")
        elif cs.state and cs.state.terminated and cs.state.terminated.reason:
            t = cs.state.terminated
            reasons.append(f"{t.reason} (exit {t.exit_code})")
        waiting = cs.state.waiting if cs.state else None
        if waiting is not None and waiting.reason and waiting.reason != "ContainerCreating":
            reasons.append(waiting.reason)
    return ", ".join(reasons) or None


def _instance(pod: Any) -> Instance:
    status = pod.status
    statuses = (status.container_statuses if status else None) or []
    ready = (
        any(c.type == "Ready" and c.status == "True" for c in (status.conditions or []))
        if status
        else False
    )
    state = (status.phase if status else None) or "Pending"
    if pod.metadata.deletion_timestamp is not None:
        state = "Terminating"
    else:
        for cs in statuses:
            if cs.state and cs.state.waiting and cs.state.waiting.reason:
                state = cs.state.waiting.reason
    first = statuses[0] if statuses else None
    ports = [
        f"{p.container_port}/{p.protocol or 'TCP'}"
        for c in pod.spec.containers
        for p in (c.ports or [])
    ]
    return Instance(
        name=pod.metadata.name,
        state=state,
        ready=ready,
        health="healthy" if ready else "unhealthy",
        restarts=sum(int(cs.restart_count or 0) for cs in statuses),
        started_at=_parse_stamp(status.start_time) if status and status.start_time else None,
        image=pod.spec.containers[0].image if pod.spec.containers else "",
        image_digest=(first.image_id or None) if first else None,  # imageID
        ports=ports,
        node=pod.spec.node_name,
        last_termination=_termination(pod),
    )


def _quantity(value: Any) -> Decimal | None:
    if value is None:
        return None
    parse_quantity = _sdk("kubernetes.utils.quantity").parse_quantity
    try:
        return Decimal(parse_quantity(value))
    except (ValueError, TypeError):
        return None


def _sum_resources(pod: Any, kind: str, name: str) -> Decimal | None:
    total: Decimal | None = Decimal(0)
    for c in pod.spec.containers:
        values = getattr(c.resources, kind, None) if c.resources else None
        q = _quantity((values or {}).get(name))
        if q is None:
            return None  # one container without it: the pod as a whole has no bound
        total = (total or Decimal(0)) + q
    return total


def _usage(service: str, pod: Any, metrics: dict[str, Any] | None) -> ResourceUsage:
    cpu = mem = None
    if metrics:
        cpu = Decimal(0)
        mem = Decimal(0)
        for c in metrics.get("containers", []):
            cpu += _quantity(c.get("usage", {}).get("cpu")) or 0
            mem += _quantity(c.get("usage", {}).get("memory")) or 0
    cpu_limit = _sum_resources(pod, "limits", "cpu")
    cpu_request = _sum_resources(pod, "requests", "cpu")
    mem_limit = _sum_resources(pod, "limits", "memory")
    cpu_basis = cpu_limit or cpu_request
    return ResourceUsage(
        instance=pod.metadata.name,
        service=service,
        cpu_pct=round(float(cpu / cpu_basis * 100), 1) if cpu is not None and cpu_basis else None,
        memory_bytes=int(mem) if mem is not None else None,
        memory_limit_bytes=int(mem_limit) if mem_limit else None,
        memory_pct=round(float(mem / mem_limit * 100), 1)
        if mem is not None and mem_limit
        else None,
        cpu_request=_format_cpu(cpu_request),
        cpu_limit=_format_cpu(cpu_limit),
    )


def _format_cpu(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return f"{int(value * 1000)}m"


def _format_bytes(value: Decimal | None) -> str:
    if value is None:
        return "-"
    return f"{int(value / (1024 * 1024))}Mi"


def _log_line(source: str, raw: bytes) -> LogLine:
    text = raw.decode("utf-8", "replace").rstrip("\r")
    stamp, sep, rest = text.partition(" ")
    if sep and len(stamp) >= 20 and stamp[4] == "-" and stamp.endswith("Z"):
        return LogLine(_parse_stamp(stamp), source, rest)
    return LogLine(None, source, text)


def _parse_stamp(stamp: str) -> datetime | None:
    # RFC 3339 with up to 9 fractional digits; Python takes at most 6
    body = stamp.rstrip("Z")
    if "." in body:
        head, frac = body.split(".", 1)
        body = f"{head}.{frac[:6]}"
    try:
        return datetime.fromisoformat(body).replace(tzinfo=UTC)
    except ValueError:
        return None


def _when(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def _describe_pod(pod: Any, events: list[Any]) -> dict[str, Any]:
    meta, spec, status = pod.metadata, pod.spec, pod.status
    statuses = {cs.name: cs for cs in (status.container_statuses or [])}
    containers = []
    for c in spec.containers:
        cs = statuses.get(c.name)
        state: dict[str, Any] = {}
        last: dict[str, Any] | None = None
        if cs is not None and cs.state is not None:
            if cs.state.running:
                state = {"running": True, "started_at": _when(cs.state.running.started_at)}
            elif cs.state.waiting:
                state = {"waiting": cs.state.waiting.reason, "message": cs.state.waiting.message}
            elif cs.state.terminated:
                state = {
                    "terminated": cs.state.terminated.reason,
                    "exit_code": cs.state.terminated.exit_code,
                }
        if cs is not None and cs.last_state and cs.last_state.terminated:
            t = cs.last_state.terminated
            last = {
                "reason": t.reason,
                "exit_code": t.exit_code,
                "finished_at": _when(t.finished_at),
            }
        probe = c.readiness_probe
        containers.append(
            {
                "name": c.name,
                "image": c.image,
                "ready": bool(cs and cs.ready),
                "restarts": int(cs.restart_count or 0) if cs else 0,
                "state": state,
                "last_termination": last,
                "requests": dict((c.resources.requests or {}) if c.resources else {}),
                "limits": dict((c.resources.limits or {}) if c.resources else {}),
                "readiness_probe": (
                    f"http-get :{probe.http_get.port}{probe.http_get.path}"
                    f" delay={probe.initial_delay_seconds or 0}s period={probe.period_seconds}s"
                    if probe is not None and probe.http_get is not None
                    else None
                ),
            }
        )
    owner = next(iter(meta.owner_references or []), None)
    events_sorted = sorted(
        events,
        key=lambda e: e.last_timestamp or e.event_time or e.metadata.creation_timestamp,
    )
    return {
        "name": meta.name,
        "namespace": meta.namespace,
        "node": spec.node_name,
        "phase": status.phase,
        "ip": status.pod_ip,
        "started_at": _when(status.start_time),
        "labels": dict(meta.labels or {}),
        "controlled_by": f"{owner.kind}/{owner.name}" if owner else None,
        "qos_class": status.qos_class,
        "conditions": {c.type: c.status for c in (status.conditions or [])},
        "containers": containers,
        "events": [
            {
                "type": e.type,
                "reason": e.reason,
                "count": e.count,
                "last_seen": _when(e.last_timestamp or e.event_time),
                "from": e.source.component if e.source else None,
                "message": e.message,
            }
            for e in events_sorted
        ],
    }
