"""The Kubernetes API as this tool speaks to it: REST requests through the official client's
transport, answers read by attribute, and every error turned into one of the project's.

The client's generated API classes and models are not used: importing and building them
(pydantic) costs about 0.6 s per command, which kubectl does not pay. The ``kubernetes``
package is imported when the first request is made, never before.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from travellr_ops.errors import (
    AuthError,
    ConfigError,
    OperationFailed,
    TravellrError,
    Unreachable,
    UsageError,
)

if TYPE_CHECKING:
    from travellr_ops.settings import KubernetesSettings

IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
#: (connect, read) seconds for ordinary API calls; watches and log streams set their own
REQUEST_TIMEOUT = (5.0, 30.0)
SMP = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
METRICS = ("metrics.k8s.io", "v1beta1", "pods")

_FORBIDDEN = re.compile(
    r'User "(?P<user>[^"]*)" cannot (?P<verb>\S+) resource "(?P<resource>[^"]+)"'
    r'(?: in API group "(?P<group>[^"]*)")?'
    r'(?: in the namespace "(?P<namespace>[^"]*)")?'
)


class KubeClient:
    """One cluster and namespace (kubeconfig and context, or the pod's own service account)."""

    def __init__(self, k8s: KubernetesSettings) -> None:
        self.k8s = k8s
        self.namespace = k8s.namespace
        self._api: Any = None
        self.context_name = k8s.context or ""

    # -- connection ----------------------------------------------------------------------------
    @property
    def api(self) -> Any:
        """The ApiClient, built on first use from the kubeconfig (or the pod's own account)."""
        if self._api is None:
            self._api = self._connect()
        return self._api

    def _connect(self) -> Any:
        from kubernetes import client

        config = sdk("kubernetes.config")

        path = self.k8s.kubeconfig
        if path is None and IN_CLUSTER_TOKEN.exists() and not self.k8s.context:
            try:
                config.load_incluster_config()
                self.context_name = "in-cluster"
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
            raise ConfigError(f"cannot read kubeconfig {path}: {first_line(exc)}") from None
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
        self.context_name = wanted
        try:
            return config.new_client_from_config(config_file=str(path), context=wanted)
        except (config.ConfigException, OSError, ValueError) as exc:
            raise ConfigError(f"kubeconfig {path}, context {wanted!r}: {first_line(exc)}") from None

    @property
    def server(self) -> str:
        return str(self.api.configuration.host) if self._api is not None else "?"

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    # -- requests ------------------------------------------------------------------------------
    def request(
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
        (``dep.status.ready_replicas``). With ``stream`` the raw response is returned, open.
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
        return wrap(json.loads(response.data))

    def deployments_path(self, name: str = "", sub: str = "") -> str:
        return self._path(
            f"/apis/apps/v1/namespaces/{quote(self.namespace)}/deployments", name, sub
        )

    def core_path(self, kind: str, name: str = "", sub: str = "") -> str:
        return self._path(f"/api/v1/namespaces/{quote(self.namespace)}/{kind}", name, sub)

    @staticmethod
    def _path(base: str, name: str, sub: str) -> str:
        return base + (f"/{quote(name)}" if name else "") + (f"/{sub}" if sub else "")

    # -- errors --------------------------------------------------------------------------------
    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
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
                    f" {first_line(reason)}",
                    hint="check the cluster's certificate-authority in the kubeconfig",
                ) from None
            raise Unreachable(
                f"cannot reach the Kubernetes API server at {self.server} while {doing}:"
                f" {_connection_reason(reason)}",
                hint=f"is the cluster up? check context {self.context_name!r} in the kubeconfig",
            ) from None
        except (HTTPError, OSError) as exc:
            raise Unreachable(
                f"lost the Kubernetes API server at {self.server} while {doing}: {first_line(exc)}",
                hint=f"is the cluster up? check context {self.context_name!r}",
            ) from None
        except ConfigException as exc:
            raise ConfigError(f"kubeconfig problem while {doing}: {first_line(exc)}") from None

    def _api_error(self, exc: Any, doing: str) -> TravellrError:
        status = int(exc.status or 0)
        message = status_message(exc)
        if status == 401:
            return AuthError(
                f"the Kubernetes API server at {self.server} rejected the credentials of"
                f" context {self.context_name!r} (401 Unauthorized)",
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

    # -- the objects the platform reads --------------------------------------------------------
    def read_deployment(self, name: str) -> Any:
        """The Deployment; UsageError naming what is missing (it, or its namespace)."""
        from kubernetes.client.exceptions import ApiException

        with self.errors(f"reading deployment {name!r}"):
            try:
                return self.request("GET", self.deployments_path(name))
            except ApiException as exc:
                if exc.status != 404:
                    raise
        self.check_namespace()
        raise UsageError(
            f"deployment {name!r} not found in namespace {self.namespace!r}"
            f" (context {self.context_name!r})",
            hint="check the service name, or kubernetes.backend_deployment / kubernetes.namespace",
        )

    def check_namespace(self) -> None:
        """ConfigError when the namespace does not exist (silence when we may not look)."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.request("GET", f"/api/v1/namespaces/{quote(self.namespace)}")
        except ApiException as exc:
            if exc.status == 404:
                raise ConfigError(
                    f"namespace {self.namespace!r} does not exist (context {self.context_name!r})",
                    hint="fix kubernetes.namespace (TRAVELLR_KUBERNETES__NAMESPACE)",
                ) from None
            # no right to read namespaces: say nothing more than the missing deployment

    def pods(self, deployment: Any, live_only: bool = False) -> list[Any]:
        """The Deployment's pods by name; ``live_only`` leaves out those being deleted."""
        with self.errors(f"listing pods of deployment {deployment.metadata.name!r}"):
            pods = self.request(
                "GET", self.core_path("pods"), {"labelSelector": selector(deployment.spec.selector)}
            )["items"]
        if live_only:
            pods = [p for p in pods if p.metadata.deletion_timestamp is None]
        return sorted(pods, key=lambda p: p.metadata.name)

    def pod_metrics(self, deployment: Any) -> dict[str, Any]:
        """metrics.k8s.io readings of the Deployment's pods, by pod name."""
        from kubernetes.client.exceptions import ApiException

        group, version, plural = METRICS
        with self.errors("reading pod metrics (metrics.k8s.io)"):
            try:
                listing = self.request(
                    "GET",
                    f"/apis/{group}/{version}/namespaces/{quote(self.namespace)}/{plural}",
                    {"labelSelector": selector(deployment.spec.selector)},
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
                raise OperationFailed(
                    "the metrics API (metrics.k8s.io/v1beta1) is not available in this"
                    f" cluster (context {self.context_name!r})",
                    hint="install metrics-server; `kubectl top pods` needs it too",
                ) from None
        return {item["metadata"]["name"]: item for item in listing.get("items", [])}


# -- JSON read by attribute ----------------------------------------------------------------------
#: attribute names whose JSON key is not their plain camelCase
_JSON_KEYS = {
    "image_id": "imageID",
    "container_id": "containerID",
    "pod_ip": "podIP",
    "pod_i_ps": "podIPs",
    "host_ip": "hostIP",
    "cluster_ip": "clusterIP",
}


class KubeObject(dict[str, Any]):
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


def wrap(value: Any) -> Any:
    """JSON made readable by attribute, all the way down."""
    if isinstance(value, dict):
        return KubeObject({k: wrap(v) for k, v in value.items()})
    if isinstance(value, list):
        return [wrap(v) for v in value]
    return value


def selector(label_selector: Any) -> str:
    """A LabelSelector as the ``labelSelector`` query parameter writes it."""
    parts = [f"{k}={v}" for k, v in sorted((label_selector.match_labels or {}).items())]
    for expr in label_selector.match_expressions or []:
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


def sdk(module: str) -> Any:
    """A module of the (untyped) kubernetes package, imported now."""
    return importlib.import_module(module)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def status_message(exc: Any) -> str:
    """The API server's own message in an ApiException (its Status body), else its reason."""
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


def _connection_reason(reason: BaseException | None) -> str:
    text = str(reason or "no answer")
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return text.split(": ", 1)[-1].splitlines()[0]
