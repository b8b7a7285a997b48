"""A simulated node for the testbed control plane: what a scheduler and a kubelet would do.

kube-apiserver and kube-controller-manager run for real (scripts/testbed/k8s.sh), but nothing
schedules or runs pods. This process plays that part, through the real API:

- registers the Node ``testbed-node`` (address 127.0.0.1, kubelet port = our HTTPS server);
- binds every pending pod to it and marks it Running, then Ready once its readiness probe's
  initialDelaySeconds has passed (scaled by ``--time-scale``);
- finishes graceful deletes (the kubelet's final delete with grace period 0);
- serves ``/containerLogs/...`` over HTTPS (the apiserver proxies ``kubectl logs`` here), with
  tailLines, sinceSeconds/sinceTime, timestamps, follow, previous and limitBytes;
- keeps ``PodMetrics`` objects (a CRD ``pods.metrics.k8s.io``, owned by their pods) so that
  ``/apis/metrics.k8s.io/v1beta1/...`` (``kubectl top pods``) answers;
- serves ``/exec/...`` (the apiserver proxies ``kubectl exec`` and the client's exec stream
  here) over a websocket, v4.channel.k8s.io as the 1.20 kubelet speaks it: the command runs as
  a process on this machine (in a scratch folder, with the container's literal ``env``
  values), its stdin, stdout, stderr and exit code carried on the channels; a command that
  cannot be started ends as dockershim's does (runc's message on stdout, exit code 126). SPDY
  (kubectl 1.20's exec) is not served.

Images are "run" by their tag, so tests can stage failures (a container whose ``command`` is
set runs that instead of the image's program, so it never crashes: a debug copy):
- a tag containing ``broken`` never becomes Ready (its health checks answer 503);
- a tag containing ``crashloop`` or ``oom`` keeps crashing: waiting in ``CrashLoopBackOff``,
  last terminated with reason ``Error`` (exit 1) or ``OOMKilled`` (exit 137), its restart count
  growing;
- a tag containing ``missing`` never pulls: its containers wait in ``ImagePullBackOff`` (the
  ``Failed`` event says ``ErrImagePull``: not found), never started, never Ready;
- a tag containing ``errors`` becomes Ready, but a share of the API requests in its log answer
  500: 20 %, or the number right after ``errors`` (``v2-errors50``: 50 %).
Pod annotations ``sim.travellr.io/cpu`` and ``sim.travellr.io/memory`` (quantities such as
``850m`` and ``400Mi``) set what the metrics report for each container of the pod.
The pod annotation ``sim.travellr.io/log-files`` (paths on this machine, comma-separated)
makes its containers' log the lines of those files instead, merged by each line's own time
(ISO or combined-format stamp), e.g. the access and app logs of a real backend process
serving the test's requests, as a backend that writes both to its standard output would
show them; such a log is read as it stands (``follow`` ends at its end).

Run:  python k8s_node_sim.py --kubeconfig D/kubeconfig --cert D/kubelet.crt --key D/kubelet.key
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import heapq
import json
import logging
import signal
import ssl
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

NODE_NAME = "testbed-node"
CPU_ANNOTATION = "sim.travellr.io/cpu"
MEMORY_ANNOTATION = "sim.travellr.io/memory"
LOG_FILES_ANNOTATION = "sim.travellr.io/log-files"
#: the most read from the end of each file of LOG_FILES_ANNOTATION
LOG_FILE_TAIL_BYTES = 4 << 20
METRICS_GROUP = "metrics.k8s.io"
METRICS_VERSION = "v1beta1"
#: seconds between two lines of a simulated container's log
LOG_INTERVAL_S = 1.0

log = logging.getLogger("k8s_node_sim")


def now() -> datetime:
    return datetime.now(UTC)


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339nano(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).replace("Z", "+00:00")
    return datetime.fromisoformat(text)


def image_tag(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def crash_reason(image: str) -> tuple[str, int] | None:
    """(termination reason, exit code) for images that keep crashing, else None."""
    tag = image_tag(image)
    if "oom" in tag:
        return "OOMKilled", 137
    if "crashloop" in tag:
        return "Error", 1
    return None


def never_pulls(image: str) -> bool:
    return "missing" in image_tag(image)


def becomes_ready(image: str) -> bool:
    tag = image_tag(image)
    return "broken" not in tag and crash_reason(image) is None and not never_pulls(image)


def metrics_crd() -> dict[str, Any]:
    """The CRD that stands in for metrics-server's aggregated API (same paths, same kind)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"pods.{METRICS_GROUP}",
            # *.k8s.io groups need this annotation; "unapproved" says what it is.
            "annotations": {"api-approved.kubernetes.io": "unapproved, testbed stand-in"},
        },
        "spec": {
            "group": METRICS_GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": "pods",
                "singular": "podmetrics",
                "kind": "PodMetrics",
                "listKind": "PodMetricsList",
            },
            "versions": [
                {
                    "name": METRICS_VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "timestamp": {"type": "string"},
                                "window": {"type": "string"},
                                "containers": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def error_pct(image: str) -> float:
    """The share of API requests (in %) an ``errors`` tag answers with 500; 0 for others."""
    tag = image_tag(image)
    if "errors" not in tag:
        return 0.0
    digits = ""
    for char in tag.split("errors", 1)[1]:
        if not char.isdigit():
            break
        digits += char
    return float(digits) if digits else 20.0


def log_line(pod: str, image: str, index: int) -> str:
    """The index-th line a simulated Travellr container writes."""
    if index == 0:
        return f"travellr-backend {image_tag(image)} listening on port 5000 (pod {pod})"
    if not becomes_ready(image):
        return "GET /api/health 503 4ms - MongoDB connection refused"
    pct = error_pct(image)
    if pct:
        # every line an /api/* request; request n fails when n * pct crosses a multiple of 100
        status = 500 if int(index * pct // 100) > int((index - 1) * pct // 100) else 200
        return f"GET /api/trips?page={index % 7} {status} {12 + index % 7}ms"
    if index % 5 == 0:
        return f"GET /api/trips?page={index // 5} 200 {12 + index % 7}ms"
    return f"GET /api/health 200 {2 + index % 3}ms"


def line_time(text: str) -> datetime | None:
    """The time a log line carries: a leading ISO stamp, or a combined-format [stamp]."""
    head = text.split(" ", 1)[0]
    if head[:4].isdigit() and "T" in head:
        try:
            return parse_time(head)
        except ValueError:
            return None
    start, end = text.find("["), text.find("]")
    if 0 <= start < end:
        try:
            return datetime.strptime(text[start + 1 : end], "%d/%b/%Y:%H:%M:%S %z")
        except ValueError:
            return None
    return None


def file_lines(paths: list[str]) -> list[tuple[datetime, str]]:
    """The whole lines of the last LOG_FILE_TAIL_BYTES of each file, merged by time (a line
    without a time takes its predecessor's)."""
    merged: list[tuple[datetime, int, int, str]] = []
    for order, path in enumerate(paths):
        try:
            with open(path.strip(), "rb") as handle:
                size = handle.seek(0, 2)
                handle.seek(max(0, size - LOG_FILE_TAIL_BYTES))
                data = handle.read()
        except OSError:
            continue
        if size > LOG_FILE_TAIL_BYTES:
            data = data[data.find(b"\n") + 1 :]
        when = datetime.min.replace(tzinfo=UTC)
        for n, raw in enumerate(data.decode("utf-8", "replace").splitlines()):
            when = line_time(raw) or when
            merged.append((when, order, n, raw))
    merged.sort()
    return [(when, raw) for when, _, _, raw in merged]


class NodeSimulator:
    """Reconciles pods into a running-looking state; serves logs; reports metrics."""

    def __init__(
        self,
        kubeconfig: str,
        context: str | None,
        cert: str,
        key: str,
        time_scale: float = 1.0,
        metrics_interval_s: float = 5.0,
    ) -> None:
        from kubernetes import client, config

        self._client_mod = client
        api_client = config.new_client_from_config(config_file=kubeconfig, context=context)
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.ext = client.ApiextensionsV1Api(api_client)
        self.cert, self.key = cert, key
        self.time_scale = time_scale
        self.metrics_interval_s = metrics_interval_s
        self.stopping = threading.Event()
        self._pods: dict[tuple[str, str], Any] = {}  # (namespace, name) -> latest V1Pod
        self._lock = threading.Lock()
        self._timers: list[tuple[float, str, str]] = []  # (due, namespace, name)
        self._wake = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self.kubelet_port = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._start_kubelet_server()
        self.ensure_metrics_crd()
        self._register_node()
        for target in (self._watch_pods, self._run_timers, self._tick):
            thread = threading.Thread(target=target, name=target.__name__, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        with self._wake:
            self._wake.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- the node ----------------------------------------------------------------------------
    def _register_node(self) -> None:
        c = self._client_mod
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE_NAME,
                "labels": {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux"},
            },
        }
        try:
            self.core.create_node(body)
        except c.ApiException as exc:
            if exc.status != 409:
                raise
        stamp = rfc3339(now())
        status = {
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": NODE_NAME},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
                "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110"},
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "simulated kubelet is posting ready status",
                        "lastHeartbeatTime": stamp,
                        "lastTransitionTime": stamp,
                    }
                ],
                "nodeInfo": {
                    "kubeletVersion": "v1.20.2-sim",
                    "kubeProxyVersion": "v1.20.2-sim",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "containerRuntimeVersion": "sim://1",
                    "osImage": "testbed",
                    "kernelVersion": "",
                    "machineID": "",
                    "systemUUID": "",
                    "bootID": "",
                },
            }
        }
        self.core.patch_node_status(NODE_NAME, status)

    # -- metrics CRD -------------------------------------------------------------------------
    def ensure_metrics_crd(self) -> None:
        c = self._client_mod
        try:
            self.ext.create_custom_resource_definition(metrics_crd())
        except c.ApiException as exc:
            if exc.status != 409:
                raise
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            crd = self.ext.read_custom_resource_definition(f"pods.{METRICS_GROUP}")
            conditions = (crd.status.conditions if crd.status else None) or []
            if any(x.type == "Established" and x.status == "True" for x in conditions):
                return
            time.sleep(0.1)
        raise RuntimeError("the PodMetrics CRD did not become established")

    # -- pods --------------------------------------------------------------------------------
    def _watch_pods(self) -> None:
        from kubernetes import watch

        c = self._client_mod
        while not self.stopping.is_set():
            try:
                listing = self.core.list_pod_for_all_namespaces()
                for pod in listing.items:
                    self._handle(pod)
                version = listing.metadata.resource_version
                w = watch.Watch()
                for event in w.stream(
                    self.core.list_pod_for_all_namespaces,
                    resource_version=version,
                    timeout_seconds=60,
                ):
                    if self.stopping.is_set():
                        w.stop()
                        break
                    pod = event["object"]
                    if event["type"] == "DELETED":
                        with self._lock:
                            self._pods.pop((pod.metadata.namespace, pod.metadata.name), None)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        self._handle(pod)
            except c.ApiException as exc:
                if exc.status != 410:
                    log.warning("pod watch: %s", exc.reason)
                    time.sleep(0.5)
            except Exception as exc:  # keep the node alive through apiserver hiccups
                if self.stopping.is_set():
                    return
                log.warning("pod watch: %r", exc)
                time.sleep(0.5)

    def _handle(self, pod: Any) -> None:
        key = (pod.metadata.namespace, pod.metadata.name)
        with self._lock:
            self._pods[key] = pod
        try:
            self._reconcile(pod)
        except self._client_mod.ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("pod %s/%s: %s %s", *key, exc.status, exc.reason)

    def _reconcile(self, pod: Any) -> None:
        meta, spec, status = pod.metadata, pod.spec, pod.status
        if meta.deletion_timestamp is not None:
            if spec.node_name:  # the kubelet's part of a graceful delete
                for container in spec.containers:
                    self._event(pod, "Normal", "Killing", f"Stopping container {container.name}")
                self.core.delete_namespaced_pod(
                    meta.name,
                    meta.namespace,
                    # in the body: the apiserver ignores query options when a body is sent
                    body={"gracePeriodSeconds": 0, "preconditions": {"uid": meta.uid}},
                )
            return
        if not spec.node_name:
            self.core.create_namespaced_pod_binding(
                meta.name,
                meta.namespace,
                {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": meta.name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME},
                },
                _preload_content=False,  # the client cannot parse the Status it returns
            )
            self._event(
                pod,
                "Normal",
                "Scheduled",
                f"Successfully assigned {meta.namespace}/{meta.name} to {NODE_NAME}",
                component="default-scheduler",
            )
            self._start_pod(pod)
            return
        if status is None or status.phase in (None, "Pending") or not status.container_statuses:
            self._start_pod(pod)
            return
        if status.phase == "Running":
            self._maybe_ready(pod)

    def _start_pod(self, pod: Any) -> None:
        started = now()
        statuses = []
        for container in pod.spec.containers:
            statuses.append(self._container_status(pod, container, started, ready=False))
        self._patch_status(pod, started, statuses)
        for container in pod.spec.containers:
            image, name = container.image, container.name
            if never_pulls(image):
                self._event(pod, "Normal", "Pulling", f'Pulling image "{image}"')
                self._event(
                    pod,
                    "Warning",
                    "Failed",
                    f'Failed to pull image "{image}": manifest for {image} not found',
                )
                self._event(pod, "Warning", "Failed", "Error: ErrImagePull")
                self._event(pod, "Normal", "BackOff", f'Back-off pulling image "{image}"')
                continue
            self._event(pod, "Normal", "Pulled", f'Container image "{image}" already present')
            self._event(pod, "Normal", "Created", f"Created container {name}")
            if crash_reason(image) and not container.command:
                self._event(pod, "Warning", "BackOff", "Back-off restarting failed container")
                continue
            self._event(pod, "Normal", "Started", f"Started container {name}")
            if not becomes_ready(image):
                self._event(
                    pod,
                    "Warning",
                    "Unhealthy",
                    "Readiness probe failed: HTTP probe failed with statuscode: 503",
                )
        self._schedule_readiness(pod, started)
        self._write_metrics(pod)

    def _event(
        self, pod: Any, kind: str, reason: str, message: str, component: str = "kubelet"
    ) -> None:
        """Record an Event about the pod, as the scheduler or kubelet would."""
        meta = pod.metadata
        stamp = rfc3339(now())
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta.name}.{time.time_ns():x}", "namespace": meta.namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta.name,
                "namespace": meta.namespace,
                "uid": meta.uid,
            },
            "type": kind,
            "reason": reason,
            "message": message,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": component, "host": NODE_NAME},
        }
        try:
            self.core.create_namespaced_event(meta.namespace, body)
        except self._client_mod.ApiException as exc:
            log.debug("event for %s: %s", meta.name, exc.reason)

    def _readiness_delay(self, container: Any) -> float:
        probe = container.readiness_probe
        delay = float(probe.initial_delay_seconds or 0) if probe else 0.0
        return delay * self.time_scale

    def _schedule_readiness(self, pod: Any, started: datetime) -> None:
        delays = [self._readiness_delay(c) for c in pod.spec.containers]
        due = time.monotonic() + max(delays or [0.0])
        with self._wake:
            heapq.heappush(self._timers, (due, pod.metadata.namespace, pod.metadata.name))
            self._wake.notify()

    def _maybe_ready(self, pod: Any) -> None:
        statuses = pod.status.container_statuses or []
        started = parse_time(pod.status.start_time) or now()
        by_name = {s.name: s for s in statuses}
        changed = False
        new = []
        for container in pod.spec.containers:
            current = by_name.get(container.name)
            ready = bool(current and current.ready)
            restarts = current.restart_count if current else 0
            if not ready and becomes_ready(container.image):
                running_since = (
                    parse_time(current.state.running.started_at)
                    if current and current.state and current.state.running
                    else started
                ) or started
                elapsed = (now() - running_since).total_seconds()
                if elapsed + 0.05 >= self._readiness_delay(container):
                    ready = True
                    changed = True
            new.append(
                self._container_status(pod, container, started, ready=ready, restarts=restarts)
            )
        if changed:
            self._patch_status(pod, started, new)

    def _container_status(
        self, pod: Any, container: Any, started: datetime, ready: bool, restarts: int = 0
    ) -> dict[str, Any]:
        digest = hashlib.sha256(container.image.encode()).hexdigest()
        cid = hashlib.sha256(f"{pod.metadata.uid}/{container.name}".encode()).hexdigest()
        status: dict[str, Any] = {
            "name": container.name,
            "image": container.image,
            "imageID": f"sim://{container.image}@sha256:{digest}",
            "containerID": f"sim://{cid}",
            "ready": ready,
            "started": True,
            "restartCount": restarts,
            "state": {"running": {"startedAt": rfc3339(started)}},
        }
        if never_pulls(container.image):
            status.update(imageID="", containerID="", started=False)
            status["state"] = {
                "waiting": {
                    "reason": "ImagePullBackOff",
                    "message": f'Back-off pulling image "{container.image}"',
                }
            }
            return status
        crash = None if container.command else crash_reason(container.image)
        if crash is not None:
            reason, code = crash
            status["started"] = False
            status["restartCount"] = max(restarts, 1)
            status["state"] = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off restarting failed container {container.name}",
                }
            }
            status["lastState"] = {
                "terminated": {
                    "reason": reason,
                    "exitCode": code,
                    "startedAt": rfc3339(started),
                    "finishedAt": rfc3339(now()),
                }
            }
        return status

    def _patch_status(self, pod: Any, started: datetime, statuses: list[dict[str, Any]]) -> None:
        ready = all(s["ready"] for s in statuses)
        stamp = rfc3339(now())

        def cond(kind: str, ok: bool) -> dict[str, Any]:
            return {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": stamp}

        body = {
            "status": {
                "phase": "Running",
                "hostIP": "127.0.0.1",
                "podIP": "127.0.0.1",
                "podIPs": [{"ip": "127.0.0.1"}],
                "startTime": rfc3339(started),
                "qosClass": "Burstable",
                "conditions": [
                    cond("Initialized", True),
                    cond("Ready", ready),
                    cond("ContainersReady", ready),
                    cond("PodScheduled", True),
                ],
                "containerStatuses": statuses,
            }
        }
        self.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, body)

    # -- timers: readiness delays, crash restarts, metrics -------------------------------------
    def _run_timers(self) -> None:
        while not self.stopping.is_set():
            with self._wake:
                while not self._timers and not self.stopping.is_set():
                    self._wake.wait(1.0)
                if self.stopping.is_set():
                    return
                due, namespace, name = self._timers[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._wake.wait(min(wait, 1.0))
                    continue
                heapq.heappop(self._timers)
            try:
                pod = self.core.read_namespaced_pod(name, namespace)
            except self._client_mod.ApiException:
                continue
            if pod.status and pod.status.phase == "Running" and not pod.metadata.deletion_timestamp:
                try:
                    self._maybe_ready(pod)
                except self._client_mod.ApiException as exc:
                    log.warning("readiness of %s/%s: %s", namespace, name, exc.reason)

    def _tick(self) -> None:
        while not self.stopping.wait(self.metrics_interval_s):
            with self._lock:
                pods = list(self._pods.values())
            for pod in pods:
                if pod.metadata.deletion_timestamp or not pod.spec.node_name:
                    continue
                try:
                    self._count_crashes(pod)
                    self._write_metrics(pod)
                except self._client_mod.ApiException as exc:
                    if exc.status not in (404, 409):
                        log.warning("tick %s: %s", pod.metadata.name, exc.reason)
                except Exception as exc:
                    log.warning("tick %s: %r", pod.metadata.name, exc)

    def _count_crashes(self, pod: Any) -> None:
        statuses = (pod.status.container_statuses if pod.status else None) or []
        if not any(crash_reason(s.image or "") for s in statuses):
            return
        started = parse_time(pod.status.start_time) or now()
        by_name = {s.name: s for s in statuses}
        new = []
        for container in pod.spec.containers:
            current = by_name.get(container.name)
            restarts = (current.restart_count if current else 0) + (
                1 if crash_reason(container.image) else 0
            )
            ready = bool(current and current.ready)
            new.append(
                self._container_status(pod, container, started, ready=ready, restarts=restarts)
            )
        self._patch_status(pod, started, new)

    def _write_metrics(self, pod: Any) -> None:
        meta = pod.metadata
        annotations = meta.annotations or {}
        seed = int(hashlib.sha256(meta.name.encode()).hexdigest()[:4], 16)
        containers = [
            {
                "name": c.name,
                "usage": {
                    "cpu": annotations.get(CPU_ANNOTATION, f"{20 + seed % 30}m"),
                    "memory": annotations.get(MEMORY_ANNOTATION, f"{90 + seed % 40}Mi"),
                },
            }
            for c in pod.spec.containers
        ]
        body = {
            "apiVersion": f"{METRICS_GROUP}/{METRICS_VERSION}",
            "kind": "PodMetrics",
            "metadata": {
                "name": meta.name,
                "namespace": meta.namespace,
                "labels": dict(meta.labels or {}),
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Pod", "name": meta.name, "uid": meta.uid}
                ],
            },
            "timestamp": rfc3339(now()),
            "window": "30s",
            "containers": containers,
        }
        c = self._client_mod
        try:
            self.custom.patch_namespaced_custom_object(
                METRICS_GROUP, METRICS_VERSION, meta.namespace, "pods", meta.name, body
            )
        except c.ApiException as exc:
            if exc.status != 404:
                raise
            with contextlib.suppress(c.ApiException):  # the CRD may be gone (tests remove it)
                self.custom.create_namespaced_custom_object(
                    METRICS_GROUP, METRICS_VERSION, meta.namespace, "pods", body
                )

    # -- the kubelet's log endpoint ------------------------------------------------------------
    def pod(self, namespace: str, name: str) -> Any | None:
        with self._lock:
            return self._pods.get((namespace, name))

    def _start_kubelet_server(self) -> None:
        sim = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("kubelet: " + fmt, *args)

            def do_GET(self) -> None:
                if self.path.startswith("/exec/"):
                    sim._serve_exec(self)
                else:
                    sim._serve_logs(self)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self.kubelet_port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, name="kubelet", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _serve_logs(self, req: BaseHTTPRequestHandler) -> None:
        url = urlsplit(req.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "containerLogs":
            self._reply(req, 404, "not found")
            return
        _, namespace, name, container_name = parts
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        pod = self.pod(namespace, name)
        if pod is None:
            self._reply(req, 404, f'pod "{name}" not found')
            return
        container = next((c for c in pod.spec.containers if c.name == container_name), None)
        statuses = {s.name: s for s in (pod.status.container_statuses or [])}
        status = statuses.get(container_name)
        if container is None or status is None:
            self._reply(req, 400, f'container "{container_name}" in pod "{name}" is not available')
            return
        previous = query.get("previous") == "true"
        as_it_stands = previous
        started = parse_time(pod.status.start_time) or now()
        if previous:
            if not status.restart_count:
                self._reply(
                    req,
                    400,
                    f'previous terminated container "{container_name}" in pod "{name}" not found',
                )
                return
            lines = self._previous_lines(name, container.image, started)
        else:
            if status.state and status.state.waiting:
                self._reply(
                    req,
                    400,
                    f'container "{container_name}" in pod "{name}" is waiting to start: '
                    f"{status.state.waiting.reason}",
                )
                return
            files = (pod.metadata.annotations or {}).get(LOG_FILES_ANNOTATION)
            if files:
                lines = file_lines(files.split(","))
                as_it_stands = True
            else:
                lines = self._current_lines(name, container.image, started, now())
        since = self._since(query)
        if since is not None:
            lines = [(t, text) for t, text in lines if t >= since]
        if "tailLines" in query:
            tail = int(query["tailLines"])
            lines = lines[-tail:] if tail > 0 else []
        stamps = query.get("timestamps") == "true"
        limit = int(query["limitBytes"]) if "limitBytes" in query else None

        def render(t: datetime, text: str) -> bytes:
            return ((rfc3339nano(t) + " " if stamps else "") + text + "\n").encode()

        req.send_response(200)
        req.send_header("Content-Type", "text/plain")
        req.end_headers()
        sent = 0
        try:
            for t, text in lines:
                data = render(t, text)
                if limit is not None and sent + len(data) > limit:
                    req.wfile.write(data[: limit - sent])
                    return
                req.wfile.write(data)
                sent += len(data)
            req.wfile.flush()
            if query.get("follow") != "true" or as_it_stands:
                return
            index = self._line_count(started, now())
            while not self.stopping.is_set() and self.pod(namespace, name) is not None:
                due = started + timedelta(seconds=index * LOG_INTERVAL_S)
                pause = (due - now()).total_seconds()
                if pause > 0:
                    time.sleep(min(pause, 0.5))
                    continue
                req.wfile.write(render(due, log_line(name, container.image, index)))
                req.wfile.flush()
                index += 1
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            return

    # -- the kubelet's exec endpoint ----------------------------------------------------------
    def _serve_exec(self, req: BaseHTTPRequestHandler) -> None:
        url = urlsplit(req.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 4:
            self._reply(req, 404, "not found")
            return
        _, namespace, name, container_name = parts
        query = parse_qs(url.query)
        flag = lambda key: query.get(key, ["0"])[-1] in ("1", "true")  # noqa: E731
        pod = self.pod(namespace, name)
        if pod is None or not pod.status or not pod.status.container_statuses:
            # the watch may not have brought the pod's start yet: a kubelet knows it at once
            with contextlib.suppress(self._client_mod.ApiException):
                pod = self.core.read_namespaced_pod(name, namespace)
        container = None
        if pod is not None:
            container = next((c for c in pod.spec.containers if c.name == container_name), None)
        statuses = {s.name: s for s in ((pod.status.container_statuses if pod else None) or [])}
        status = statuses.get(container_name)
        if pod is None or container is None or status is None or not status.state.running:
            self._reply(req, 404, f'container not found ("{container_name}")')
            return
        key = req.headers.get("Sec-WebSocket-Key")
        offered = [p.strip() for p in req.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if not key or EXEC_PROTOCOL not in offered:
            self._reply(req, 400, f"this kubelet speaks only {EXEC_PROTOCOL} over a websocket")
            return
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        req.send_response(101, "Switching Protocols")
        req.send_header("Upgrade", "websocket")
        req.send_header("Connection", "Upgrade")
        req.send_header("Sec-WebSocket-Accept", accept)
        req.send_header("Sec-WebSocket-Protocol", EXEC_PROTOCOL)
        req.end_headers()
        req.wfile.flush()
        req.close_connection = True
        _ExecSession(req, query.get("command", []), container, flag("input"), flag("tty")).run()

    @staticmethod
    def _line_count(started: datetime, until: datetime) -> int:
        return max(0, int((until - started).total_seconds() / LOG_INTERVAL_S) + 1)

    def _current_lines(
        self, pod: str, image: str, started: datetime, until: datetime
    ) -> list[tuple[datetime, str]]:
        count = self._line_count(started, until)
        return [
            (started + timedelta(seconds=i * LOG_INTERVAL_S), log_line(pod, image, i))
            for i in range(count)
        ]

    @staticmethod
    def _previous_lines(pod: str, image: str, started: datetime) -> list[tuple[datetime, str]]:
        crash = crash_reason(image)
        end = (
            "FATAL: JavaScript heap out of memory"
            if crash and crash[0] == "OOMKilled"
            else ("Error: connect ECONNREFUSED mongodb:27017")
        )
        base = started - timedelta(seconds=3)
        return [
            (base, f"travellr-backend {image_tag(image)} starting (pod {pod})"),
            (base + timedelta(seconds=1), "connecting to MongoDB"),
            (base + timedelta(seconds=2), end),
        ]

    @staticmethod
    def _since(query: dict[str, str]) -> datetime | None:
        if "sinceSeconds" in query:
            return now() - timedelta(seconds=int(query["sinceSeconds"]))
        if "sinceTime" in query:
            return parse_time(query["sinceTime"])
        return None

    @staticmethod
    def _reply(req: BaseHTTPRequestHandler, code: int, message: str) -> None:
        body = message.encode()
        req.send_response(code)
        req.send_header("Content-Type", "text/plain")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
EXEC_PROTOCOL = "v4.channel.k8s.io"


class _ExecSession:
    """One exec on an upgraded connection: frames [channel byte + data], 0 stdin from the
    client, 1 stdout, 2 stderr, 3 the final Status, 4 resize (ignored)."""

    def __init__(
        self,
        req: BaseHTTPRequestHandler,
        command: list[str],
        container: Any,
        stdin: bool,
        tty: bool,
    ) -> None:
        self.req = req
        self.command = command
        self.container = container
        self.stdin = stdin
        self.tty = tty
        self._write_lock = threading.Lock()

    def send(self, opcode: int, payload: bytes) -> None:
        size = len(payload)
        if size < 126:
            head = bytes([0x80 | opcode, size])
        elif size < 1 << 16:
            head = bytes([0x80 | opcode, 126]) + size.to_bytes(2, "big")
        else:
            head = bytes([0x80 | opcode, 127]) + size.to_bytes(8, "big")
        with self._write_lock:
            self.req.wfile.write(head + payload)
            self.req.wfile.flush()

    def frames(self) -> Any:
        """(opcode, payload) of each frame the client sends, unmasked, until it closes."""
        read = self.req.rfile.read
        while True:
            head = read(2)
            if len(head) < 2:
                return
            opcode, size = head[0] & 0x0F, head[1] & 0x7F
            if size == 126:
                size = int.from_bytes(read(2), "big")
            elif size == 127:
                size = int.from_bytes(read(8), "big")
            mask = read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = read(size)
            yield opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))

    def status(self, code: int) -> bytes:
        if code == 0:
            return json.dumps({"metadata": {}, "status": "Success"}).encode()
        shown = " ".join(self.command)
        return json.dumps(
            {
                "metadata": {},
                "status": "Failure",
                "message": f"command terminated with non-zero exit code: error executing"
                f" command [{shown}], exit code {code}",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
            }
        ).encode()

    def run(self) -> None:
        import os
        import subprocess
        import tempfile

        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOSTNAME": "sim"}
        for var in self.container.env or []:
            if var.value is not None:
                env[var.name] = var.value
        try:
            with tempfile.TemporaryDirectory(prefix="sim-exec-") as cwd:
                try:
                    proc = subprocess.Popen(
                        self.command,
                        stdin=subprocess.PIPE if self.stdin else subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT if self.tty else subprocess.PIPE,
                        cwd=cwd,
                        env=env,
                    )
                except OSError as exc:
                    why = (
                        "executable file not found in $PATH"
                        if isinstance(exc, FileNotFoundError)
                        else "permission denied"
                    )
                    first = self.command[0] if self.command else ""
                    message = (
                        "OCI runtime exec failed: exec failed: container_linux.go:370: starting"
                        f' container process caused: exec: "{first}": {why}: unknown\r\n'
                    )
                    self.send(0x2, b"\x01" + message.encode())
                    self.send(0x2, b"\x03" + self.status(126))
                    self.send(0x8, b"")
                    return
                pumps = [threading.Thread(target=self._pump, args=(proc.stdout, 1), daemon=True)]
                if proc.stderr is not None:
                    pumps.append(
                        threading.Thread(target=self._pump, args=(proc.stderr, 2), daemon=True)
                    )
                for pump in pumps:
                    pump.start()
                threading.Thread(target=self._feed, args=(proc,), daemon=True).start()
                code = proc.wait()
                for pump in pumps:
                    pump.join()
                self.send(0x2, b"\x03" + self.status(code))
                self.send(0x8, b"")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError) as exc:
            log.debug("exec: connection ended: %r", exc)

    def _pump(self, pipe: Any, channel: int) -> None:
        with contextlib.suppress(OSError, ValueError):
            while data := pipe.read1(65536):
                self.send(0x2, bytes([channel]) + data)

    def _feed(self, proc: Any) -> None:
        """The client's stdin frames into the process; a client that goes away kills it."""
        with contextlib.suppress(OSError, ValueError):
            for opcode, payload in self.frames():
                if opcode == 0x8:
                    break
                if opcode in (0x1, 0x2) and payload[:1] == b"\x00" and proc.stdin is not None:
                    proc.stdin.write(payload[1:])
                    proc.stdin.flush()
            else:
                proc.kill()
                return
        if proc.poll() is None:
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--context", default=None)
    parser.add_argument("--cert", required=True, help="kubelet serving certificate (127.0.0.1)")
    parser.add_argument("--key", required=True)
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="multiply readiness delays by this"
    )
    parser.add_argument("--metrics-interval", type=float, default=5.0)
    parser.add_argument("--ready-file", help="write {kubelet_port} here once serving")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("kubernetes", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    sim = NodeSimulator(
        args.kubeconfig,
        args.context,
        args.cert,
        args.key,
        time_scale=args.time_scale,
        metrics_interval_s=args.metrics_interval,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    sim.start()
    log.info("node %s up; kubelet endpoint https://127.0.0.1:%d", NODE_NAME, sim.kubelet_port)
    if args.ready_file:
        Path(args.ready_file).write_text(json.dumps({"kubelet_port": sim.kubelet_port}))
    done.wait()
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
