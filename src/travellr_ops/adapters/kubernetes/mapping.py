"""Kubernetes objects read as the tool's own types: a Deployment as a ServiceStatus, a pod as an
Instance, metrics as ResourceUsage, a pod and its events as ``kubectl describe`` shows them.

Pure functions of the API's JSON (read by attribute, see ``client.KubeObject``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from travellr_ops.adapters.kubernetes.client import sdk
from travellr_ops.adapters.log_streams import stamp_time
from travellr_ops.adapters.platform_types import Instance, ResourceUsage, ServiceStatus
from travellr_ops.vocab.units import format_bytes

REVISION = "deployment.kubernetes.io/revision"


def service_status(service: str, dep: Any, pods: list[Any]) -> ServiceStatus:
    """The Deployment as ``service``: available when every desired replica is updated and
    available and the controller has seen the latest spec; stopped at 0 replicas."""
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
        f"{c.type}={c.status}" + (f" ({c.reason})" if c.reason else "") for c in st.conditions or []
    ]
    instances = [instance(p) for p in pods]
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
        name=service,
        platform="kubernetes",
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


def not_ready(status: ServiceStatus) -> str:
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


def instance(pod: Any) -> Instance:
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
        started_at=stamp_time(status.start_time) if status else None,
        image=pod.spec.containers[0].image if pod.spec.containers else "",
        image_digest=(first.image_id or None) if first else None,  # imageID
        ports=ports,
        node=pod.spec.node_name,
        last_termination=_termination(pod),
    )


# -- resources -----------------------------------------------------------------------------------
def quantity(value: Any) -> Decimal | None:
    """A resource quantity ("250m", "512Mi") as a number (cores, bytes); None for none."""
    if value is None:
        return None
    parse_quantity = sdk("kubernetes.utils.quantity").parse_quantity
    try:
        return Decimal(parse_quantity(value))
    except (ValueError, TypeError):
        return None


def _sum_resources(pod: Any, kind: str, name: str) -> Decimal | None:
    total: Decimal | None = Decimal(0)
    for c in pod.spec.containers:
        values = getattr(c.resources, kind, None) if c.resources else None
        q = quantity((values or {}).get(name))
        if q is None:
            return None  # one container without it: the pod as a whole has no bound
        total = (total or Decimal(0)) + q
    return total


def usage(service: str, pod: Any, metrics: dict[str, Any] | None) -> ResourceUsage:
    """A pod's CPU and memory (its metrics.k8s.io reading) against its limits or requests."""
    cpu = mem = None
    if metrics:
        cpu = Decimal(0)
        mem = Decimal(0)
        for c in metrics.get("containers", []):
            cpu += quantity(c.get("usage", {}).get("cpu")) or 0
            mem += quantity(c.get("usage", {}).get("memory")) or 0
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
        cpu_request=format_cpu(cpu_request),
        cpu_limit=format_cpu(cpu_limit),
    )


def container_rows(metrics: dict[str, Any]) -> list[list[str]]:
    """One pod's containers as ``kubectl top pods --containers`` lists them."""
    return [
        [
            c.get("name", ""),
            format_cpu(quantity(c.get("usage", {}).get("cpu"))) or "-",
            _format_memory(quantity(c.get("usage", {}).get("memory"))),
        ]
        for c in metrics.get("containers", [])
    ]


def format_cpu(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return f"{int(value * 1000)}m"


def _format_memory(value: Decimal | None) -> str:
    return "-" if value is None else format_bytes(float(value))


# -- describe ------------------------------------------------------------------------------------
def _when(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def describe_pod(pod: Any, events: list[Any]) -> dict[str, Any]:
    """One pod as ``kubectl describe pod`` shows it, its events oldest first."""
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
