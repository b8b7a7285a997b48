"""The runbook's 'Service Down' procedures, on whichever platform the settings name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from travellr_ops.adapters.platform import ServicePlatform, ServiceStatus
from travellr_ops.errors import UsageError
from travellr_ops.safety import Change, Guard


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
