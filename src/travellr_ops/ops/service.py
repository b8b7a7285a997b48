"""The runbook's 'Service Down' procedures, on whichever platform the settings name.

Every function takes a ``ServicePlatform`` (compose or Kubernetes): the procedure is the same,
only the adapter differs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from travellr_ops.adapters.platform_types import (
    LogLine,
    ProcessList,
    Progress,
    ResourceUsage,
    RestartResult,
    ServicePlatform,
    ServiceStatus,
)
from travellr_ops.errors import CheckFailed, UsageError
from travellr_ops.runtime import Runtime
from travellr_ops.safety import Change, Guard
from travellr_ops.settings import Thresholds
from travellr_ops.vocab.timespec import parse_since


# -- status -----------------------------------------------------------------------------------
@dataclass
class ServiceStatusReport:
    """`service status`: every service (or one) and its instances; ``ok`` when all available."""

    platform: str
    ok: bool
    services: list[ServiceStatus]


def status(platform: ServicePlatform, service: str | None = None) -> ServiceStatusReport:
    services = platform.status(service)
    return ServiceStatusReport(platform.name, all(s.available for s in services), services)


# -- restart ----------------------------------------------------------------------------------
@dataclass
class ServiceRestartReport:
    service: str
    platform: str
    dry_run: bool
    result: RestartResult | None = None


class RestartFailed(CheckFailed):
    """The service did not come back running and healthy; carries what was seen."""

    def __init__(self, result: RestartResult) -> None:
        super().__init__(
            f"{result.service} did not come back healthy: {result.reason}",
            hint=f"see `travellr-ops service logs {result.service} --tail 100`",
        )
        self.result = result


def restart_service(
    rt: Runtime, service: str, timeout_s: float | None = None
) -> ServiceRestartReport:
    """`service restart`: ``restart`` on the platform of ``rt``, through its Guard, waiting
    ``timeout_s`` (default: the platform's own setting) for the service to be healthy."""
    if timeout_s is None:
        s = rt.settings
        kubernetes = s.platform == "kubernetes"
        timeout_s = s.kubernetes.rollout_timeout_s if kubernetes else s.compose.restart_timeout_s
    with rt.platform() as platform:
        return restart(platform, rt.guard, service, timeout_s, rt.notify)


def restart(
    platform: ServicePlatform,
    guard: Guard,
    service: str,
    timeout_s: float,
    progress: Progress,
) -> ServiceRestartReport:
    """Restart ``service`` and wait until it is running and healthy again (guarded).

    Raises RestartFailed (exit 1) when it dies or stays unhealthy; the audit log records that.
    """
    if timeout_s <= 0:
        raise UsageError(f"--timeout must be more than 0 seconds, not {timeout_s:g}")
    (current,) = platform.status(service)  # an unknown service fails here, before any prompt
    change = Change(
        action=f"service restart {current.name}",
        summary=f"restart {current.name} on {platform.name}"
        f" ({len(current.instances)} instance(s), {current.ready}/{current.desired} ready now)"
        f" and wait up to {timeout_s:g} s for it to be healthy",
        details=[f"{i.name}: {i.state}" for i in current.instances],
        target=current.name,
    )
    with guard.mutation(change) as go:
        if not go:
            return ServiceRestartReport(current.name, platform.name, dry_run=True)
        result = platform.restart(service, timeout_s, progress)
        if not result.healthy:
            raise RestartFailed(result)
    return ServiceRestartReport(current.name, platform.name, dry_run=False, result=result)


# -- up / down --------------------------------------------------------------------------------
@dataclass
class LifecycleReport:
    """`service up` / `service down`: what was asked, and the services afterwards."""

    action: str
    service: str | None
    platform: str
    dry_run: bool
    services: list[ServiceStatus] = field(default_factory=list)


def up(platform: ServicePlatform, guard: Guard, service: str | None = None) -> LifecycleReport:
    """Create and start the service (or the whole stack): `docker-compose up -d [SERVICE]`."""
    return _lifecycle("up", platform, guard, service)


def down(platform: ServicePlatform, guard: Guard, service: str | None = None) -> LifecycleReport:
    """Stop and remove the service (or the whole stack): `docker-compose down [SERVICE]`."""
    return _lifecycle("down", platform, guard, service)


def _lifecycle(
    action: str, platform: ServicePlatform, guard: Guard, service: str | None
) -> LifecycleReport:
    before = platform.status(service)  # an unknown service fails here, before any prompt
    what = service or "every service"
    verb = "create and start" if action == "up" else "stop and remove"
    change = Change(
        action=f"service {action} {service or ''}".strip(),
        summary=f"{verb} {what} on {platform.name}",
        details=[f"{s.name}: {s.ready}/{s.desired} ready" for s in before],
        target=service or "all",
    )
    with guard.mutation(change) as go:
        if not go:
            return LifecycleReport(action, service, platform.name, True, before)
        if action == "up":
            platform.up(service)
        else:
            platform.down(service)
    return LifecycleReport(action, service, platform.name, False, platform.status(service))


# -- logs -------------------------------------------------------------------------------------
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LEVEL_WORD = re.compile(r"\b(DEBUG|INFO|WARN(?:ING)?|ERROR|ERR|CRITICAL|FATAL|PANIC)\b")
_LEVEL_RANK = {"DEBUG": 0, "INFO": 1, "WARN": 2, "WARNING": 2, "ERR": 3, "ERROR": 3}
_LEVEL_RANK |= {"CRITICAL": 4, "FATAL": 4, "PANIC": 4}


def log_filter(grep: str | None, level: str | None) -> Any:
    """A predicate on log text: the ``grep`` regex (case-insensitive) and at least ``level``."""
    pattern = None
    if grep:
        try:
            pattern = re.compile(grep, re.IGNORECASE)
        except re.error as exc:
            raise UsageError(f"--grep {grep!r} is not a valid regular expression: {exc}") from None
    floor = None
    if level:
        name = level.upper()
        if name not in _LEVEL_RANK:
            raise UsageError(f"--level {level!r} is not one of {', '.join(LEVELS)}")
        floor = _LEVEL_RANK[name]

    def keep(text: str) -> bool:
        if pattern is not None and not pattern.search(text):
            return False
        if floor is not None:
            found = _LEVEL_WORD.search(text.upper())
            if found is None or _LEVEL_RANK[found.group(1)] < floor:
                return False
        return True

    return keep


def logs(
    platform: ServicePlatform,
    services: Sequence[str],
    *,
    tail: int | None = None,
    since: datetime | str | None = None,
    follow: bool = False,
    grep: str | None = None,
    level: str | None = None,
    previous: bool = False,
) -> Iterator[LogLine]:
    """The services' log lines, interleaved by time, filtered as they stream past. ``since``:
    the window's start, or text of the tool's time grammar (``--since``: 10m, 1h30m, a time).

    Nothing is held whole: lines flow from the platform through the filter to the caller.
    """
    if tail is not None and tail < 0:
        raise UsageError(f"--tail must be 0 or more, not {tail}")
    keep = log_filter(grep, level)
    start = parse_since(since) if isinstance(since, str) else since
    for name in services:
        platform.status(name)  # unknown names fail now, with the known ones listed
    lines = platform.logs(services, tail=tail, since=start, follow=follow, previous=previous)
    return (line for line in lines if keep(line.text))


# -- stats and top ----------------------------------------------------------------------------
@dataclass
class ServiceStatsReport:
    """`service stats`: usage per instance, and which of them breach the thresholds."""

    platform: str
    ok: bool
    cpu_threshold_pct: float
    memory_threshold_pct: float
    usage: list[ResourceUsage]
    breaches: list[str] = field(default_factory=list)


def stats(
    platform: ServicePlatform, thresholds: Thresholds, service: str | None = None
) -> ServiceStatsReport:
    usage = platform.stats(service)
    breaches = []
    for u in usage:
        if u.cpu_pct is not None and u.cpu_pct > thresholds.cpu_pct:
            breaches.append(f"{u.instance}: CPU {u.cpu_pct:.1f} % > {thresholds.cpu_pct:g} %")
        if u.memory_pct is not None and u.memory_pct > thresholds.memory_pct:
            breaches.append(
                f"{u.instance}: memory {u.memory_pct:.1f} % > {thresholds.memory_pct:g} %"
            )
    return ServiceStatsReport(
        platform=platform.name,
        ok=not breaches,
        cpu_threshold_pct=thresholds.cpu_pct,
        memory_threshold_pct=thresholds.memory_pct,
        usage=usage,
        breaches=breaches,
    )


def top(platform: ServicePlatform, service: str) -> list[ProcessList]:
    """The processes in each instance of ``service`` (the runbook's `docker exec ... top`)."""
    return platform.top(service)


# -- scale and describe (issue 7) -----------------------------------------------------------------
@dataclass
class ScaleResult:
    """`service scale`: the replica count before and after (``dry_run``: nothing changed)."""

    service: str
    platform: str
    before: int
    after: int
    dry_run: bool
    status: ServiceStatus | None = None


def scale(platform: ServicePlatform, guard: Guard, service: str, replicas: int) -> ScaleResult:
    """Set the number of instances of ``service`` (``kubectl scale --replicas``), guarded."""
    if replicas < 0:
        raise UsageError(f"--replicas must be 0 or more, not {replicas}")
    (current,) = platform.status(service)
    change = Change(
        action=f"service scale {service}",
        summary=f"scale {service} on {platform.name} from {current.desired} to {replicas} replicas",
        target=service,
    )
    with guard.mutation(change) as go:
        if not go:
            return ScaleResult(service, platform.name, current.desired, current.desired, True)
        status = platform.scale(service, replicas)
    return ScaleResult(service, platform.name, current.desired, replicas, False, status)


def describe(platform: ServicePlatform, instance: str) -> dict[str, Any]:
    """One instance (pod/container) in detail, its recent events included."""
    return platform.describe(instance)
