"""`deploy rollback`: back to the previous release (or a named one), as `kubectl rollout
undo` does, then wait until healthy."""

from __future__ import annotations

import socket
import time

from travellr_ops.adapters.platform_types import Release, ServicePlatform
from travellr_ops.errors import CheckFailed, ExitCode, UsageError
from travellr_ops.ops.deploy.audit import StepAudit
from travellr_ops.ops.deploy.history import History
from travellr_ops.ops.deploy.notify import Notifier
from travellr_ops.ops.deploy.report import (
    LOCK,
    DeployFailed,
    DeployReport,
    restart_summary,
    short_id,
    to_dict,
    utc_now,
)
from travellr_ops.ops.deploy.signals import shielded
from travellr_ops.runtime import Runtime
from travellr_ops.safety import Change, _user
from travellr_ops.settings import Settings


def rollback(rt: Runtime, service: str, to: str | None = None) -> DeployReport:
    """Back to the previous release (or revision/tag ``to``), then wait until healthy; through
    ``rt.guard``, progress to ``rt.notify``."""
    with rt.platform() as platform:
        return _rollback(rt, platform, service, to)


def _rollback(rt: Runtime, platform: ServicePlatform, service: str, to: str | None) -> DeployReport:
    s, guard, progress = rt.settings, rt.guard, rt.notify
    (current,) = platform.status(service)
    now = platform.release(service)
    target = _rollback_target(s, platform, current.name, now, to)
    if target.image and not target.image_id and platform.image_exists(target.image) is False:
        raise CheckFailed(
            f"no image {target.image} on {platform.name}: nothing was changed",
            hint="`deploy history` lists the releases that ran; build or pull the image first",
        )
    report = DeployReport("rollback", current.name, platform.name, target.image, guard.dry_run)
    report.before = now
    report.plan = [
        f"roll {current.name} back from {now.image} to {target.image}"
        + (f" (revision {target.revision})" if target.revision else "")
        + (f" ({short_id(target.image_id)})" if target.image_id else ""),
        "wait until healthy",
    ]
    change = Change(
        action=f"deploy rollback {current.name}",
        summary=f"roll {current.name} on {platform.name} back to {target.image}",
        details=report.plan,
        target=current.name,
    )
    with guard.mutation(change, lock=LOCK) as go:
        if not go:
            report.outcome = "dry_run"
            return report
        history = History(s.state_dir, s.store.timeout_s)
        started = time.monotonic()
        report.started_at = utc_now()
        report.id = history.start(
            kind="rollback",
            service=current.name,
            platform=platform.name,
            started_at=report.started_at,
            user=_user(),
            host=socket.gethostname(),
            image_from=now.image,
            image_id_from=now.image_id,
            revision_from=now.revision,
            image_to=target.image,
            reason=f"requested: {to or 'previous release'}",
        )
        Notifier(s, progress).send(
            "rollback", f"rollback {report.id}: {current.name} to {target.image} by {_user()}"
        )
        with shielded(progress), StepAudit(guard, report).step("rollback"):
            back = platform.restore(current.name, target, s.deploy.rollout_timeout_s, progress)
        report.rollback = restart_summary(back)
        report.now = platform.release(current.name)
        report.outcome = "succeeded" if back.healthy else "failed"
        report.finished_at = utc_now()
        report.duration_s = round(time.monotonic() - started, 1)
        history.update(
            report.id,
            report=to_dict(report),
            outcome=report.outcome,
            finished_at=report.finished_at,
            duration_s=report.duration_s,
            image_id_to=report.now.image_id,
            revision_to=report.now.revision,
        )
        history.close()
        if not back.healthy:
            raise DeployFailed(
                report,
                f"rolled back to {target.image}, but it is not healthy: {back.reason}",
                ExitCode.CHECK_FAILED,
                "rollback_failed",
            )
    return report


def _rollback_target(
    s: Settings, platform: ServicePlatform, service: str, now: Release, to: str | None
) -> Release:
    history = History(s.state_dir, s.store.timeout_s)
    try:
        entries = history.entries(service)
    finally:
        history.close()
    if to is not None:
        numbered = platform.rollback_revision(now, to)
        if numbered is not None:
            return numbered
        image = platform.image_for(service, to)
        for e in entries:  # the image ID it had when it last ran, if it ever did
            if e.image_from == image and e.image_id_from:
                return Release(service, platform.name, image, {"recorded": e.image_id_from})
        return Release(service, platform.name, image)
    # the release before the one running now: the newest one a recorded deploy or rollback
    # started from that is not what runs now (a failed release is never a target)
    for e in entries:
        differs = e.image_from != now.image or (
            e.image_id_from and now.image_id and e.image_id_from != now.image_id
        )
        if e.image_from and differs:
            ids = {"recorded": e.image_id_from} if e.image_id_from else {}
            return Release(service, platform.name, e.image_from, ids, e.revision_from)
    previous = platform.rollback_revision(now, None)
    if previous is not None:
        return previous
    raise UsageError(
        f"no earlier release of {service} in the deploy history to roll back to",
        hint="name one: `deploy rollback --to TAG`",
    )
