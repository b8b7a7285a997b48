"""What a `deploy run` or `deploy rollback` reports, and how a failed one says so.

Both end in a ``DeployReport`` (also stored whole in the deploy history); a deploy that did
not land raises ``DeployFailed`` carrying it, with the exit code of what went wrong.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from travellr_ops.adapters.platform_types import Release, RestartResult
from travellr_ops.errors import ExitCode, TravellrError

if TYPE_CHECKING:
    from travellr_ops.ops.deploy.gate import GateSample
    from travellr_ops.ops.deploy.preflight import PreflightStep

#: the lock every deploy and rollback holds: one change to a service at a time
LOCK = "deploy"


@dataclass
class DeployReport:
    kind: str  # deploy | rollback
    service: str
    platform: str
    image: str
    dry_run: bool
    outcome: str = "running"
    id: int | None = None
    started_at: str = ""
    finished_at: str | None = None
    duration_s: float | None = None
    plan: list[str] = field(default_factory=list)
    preflight: list[PreflightStep] = field(default_factory=list)
    backup: str | None = None
    before: Release | None = None
    rollout: dict[str, Any] | None = None
    samples: list[GateSample] = field(default_factory=list)
    failure: str | None = None
    failed_at: str | None = None
    rollback: dict[str, Any] | None = None
    now: Release | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in ("succeeded", "dry_run")


class DeployFailed(TravellrError):
    """The deploy did not land; carries the report (what failed, samples, what runs now)."""

    def __init__(self, report: DeployReport, message: str, code: ExitCode, kind: str) -> None:
        super().__init__(message, hint=f"`travellr-ops deploy history` shows deploy {report.id}")
        self.exit_code = code
        self.kind = kind
        self.report = report


def to_dict(report: DeployReport) -> dict[str, Any]:
    return {**asdict(report), "ok": report.ok}


def restart_summary(result: RestartResult) -> dict[str, Any]:
    """A rollout's or a rollback's outcome as the report keeps it."""
    return {
        "healthy": result.healthy,
        "seconds": round(result.seconds, 1),
        "reason": result.reason,
        "last_logs": result.last_logs,
    }


def short_id(image_id: str | None) -> str:
    """An image ID as `docker images` shows it (12 hex digits)."""
    if not image_id:
        return "no image ID"
    return image_id.rsplit("sha256:", 1)[-1][:12]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
