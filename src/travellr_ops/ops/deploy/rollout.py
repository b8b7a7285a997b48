"""`deploy run`: preflight, backup, record what runs, roll out, the health gate, and an
automatic rollback on failure or on a signal."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from travellr_ops.adapters.platform_types import Progress
from travellr_ops.errors import ExitCode, TravellrError, UsageError
from travellr_ops.ops.deploy.audit import StepAudit
from travellr_ops.ops.deploy.history import History
from travellr_ops.ops.deploy.notify import Notifier
from travellr_ops.ops.deploy.preflight import PreflightFailed, preflight
from travellr_ops.ops.deploy.report import (
    LOCK,
    DeployFailed,
    DeployReport,
    restart_summary,
    short_id,
    to_dict,
    utc_now,
)
from travellr_ops.ops.deploy.signals import Signals, Terminated
from travellr_ops.ops.deploy.tools import Tools
from travellr_ops.safety import Change, Guard, _user

if TYPE_CHECKING:
    from travellr_ops.ops.deploy.gate import GateResult, Sample


def run(
    tools: Tools,
    guard: Guard,
    service: str,
    tag: str,
    *,
    watch_s: float | None = None,
    backup: bool = True,
    progress: Progress = lambda message: None,
    on_sample: Callable[[Sample], None] = lambda sample: None,
) -> DeployReport:
    s = tools.settings
    watch_s = s.deploy.watch_s if watch_s is None else watch_s
    if watch_s <= 0:
        raise UsageError(f"--watch must be more than 0 seconds, not {watch_s:g}")
    platform = tools.platform
    (current,) = platform.status(service)  # an unknown service: exit 2 with the known ones
    image = platform.image_for(service, tag)  # an invalid tag: exit 2
    before = platform.release(service)
    report = DeployReport("deploy", current.name, platform.name, image, guard.dry_run)
    report.plan = [
        f"preflight: settings, servers, platform, image {image}, disk, lock, maintenance"
        + (", tests" if s.deploy.test_command else ""),
        "backup: skipped (--no-backup)" if not backup else "backup create",
        f"record what runs now: {before.image} ({len(before.image_ids)} instance(s))"
        + (f", revision {before.revision}" if before.revision else ""),
        f"roll out {current.name} on {platform.name} to {image}, wait until healthy",
        f"watch {watch_s:g} s, a sample every {s.deploy.sample_interval_s:g} s: health,"
        f" API p95 < {s.thresholds.api_response_ms:g} ms, error rate"
        f" < {s.thresholds.error_rate_pct:g} %, no new restarts;"
        f" {s.deploy.fail_after} failing samples in a row roll back",
        f"on failure: roll back to {before.image} ({short_id(before.image_id)}), wait healthy",
    ]
    change = Change(
        action=f"deploy run {current.name}",
        summary=f"deploy {image} to {current.name} on {platform.name} (runs {before.image} now)",
        details=report.plan,
        target=current.name,
    )
    report.before = before
    with guard.mutation(change, lock=LOCK) as go:
        if not go:
            report.outcome = "dry_run"
            return report
        return _run(tools, guard, report, watch_s, backup, progress, on_sample)


def _run(
    tools: Tools,
    guard: Guard,
    report: DeployReport,
    watch_s: float,
    backup: bool,
    progress: Progress,
    on_sample: Callable[[Sample], None],
) -> DeployReport:
    s, platform, service = tools.settings, tools.platform, report.service
    history = History(s.state_dir, s.store.timeout_s)
    notifier = Notifier(s, progress)
    started = time.monotonic()
    report.started_at = utc_now()
    report.id = history.start(
        kind="deploy",
        service=service,
        platform=platform.name,
        started_at=report.started_at,
        user=_user(),
        host=socket.gethostname(),
        image_to=report.image,
        # what runs as the deploy starts: step 3 records it again after the backup, but a
        # deploy stopped before that must still say what the platform should run
        image_from=report.before.image if report.before else None,
        image_id_from=report.before.image_id if report.before else None,
        revision_from=report.before.revision if report.before else None,
    )
    audit = StepAudit(guard, report)
    notifier.send("start", f"deploy {report.id}: {report.image} to {service} started by {_user()}")

    def finish(outcome: str, reason: str | None = None) -> DeployReport:
        report.outcome = outcome
        report.finished_at = utc_now()
        report.duration_s = round(time.monotonic() - started, 1)
        with contextlib.suppress(TravellrError):
            report.now = platform.release(service)
        now = report.now
        history.update(
            report.id or 0,
            report=to_dict(report),
            outcome=outcome,
            finished_at=report.finished_at,
            duration_s=report.duration_s,
            reason=reason,
            backup=report.backup,
            image_id_to=now.image_id if now and outcome == "succeeded" else None,
            revision_to=now.revision if now else None,
        )
        history.close()
        return report

    # 1. preflight: nothing has changed yet
    with audit.step("preflight"):
        pre = preflight(
            tools, service, report.image, backup=backup, lock_held=True, progress=progress
        )
    report.preflight = pre.steps
    if not pre.ok:
        failed = PreflightFailed(pre)
        finish("preflight_failed", failed.message)
        notifier.send("failure", f"deploy {report.id} of {report.image}: {failed.message}")
        raise DeployFailed(report, failed.message, failed.exit_code, failed.kind)
    # 2. backup
    if backup:
        try:
            with audit.step("backup"):
                report.backup = tools.backup()
        except TravellrError as exc:
            report.backup = None
            message = f"backup failed, nothing was rolled out: {exc.message}"
            finish("backup_failed", message)
            notifier.send("failure", f"deploy {report.id} of {report.image}: {message}")
            raise DeployFailed(report, message, exc.exit_code, exc.kind) from None
    else:
        report.backup = "skipped"
    # 3. record what runs now
    with audit.step("record"):
        before = report.before = platform.release(service)
        history.update(
            report.id or 0,
            image_from=before.image,
            image_id_from=before.image_id,
            revision_from=before.revision,
            backup=report.backup,
        )
    # 4-5. roll out and watch; a signal rolls back too
    with Signals(progress) as signals:
        return _roll_out(
            tools, report, watch_s, progress, on_sample, audit, notifier, finish, signals
        )


def _roll_out(
    tools: Tools,
    report: DeployReport,
    watch_s: float,
    progress: Progress,
    on_sample: Callable[[Sample], None],
    audit: StepAudit,
    notifier: Notifier,
    finish: Callable[[str, str | None], DeployReport],
    signals: Signals,
) -> DeployReport:
    """Steps 4-6: roll out, watch, and roll back on failure or on a signal."""
    from travellr_ops.ops.deploy.gate import Gate, watch

    s, platform, service = tools.settings, tools.platform, report.service
    before = report.before
    assert before is not None
    reason: str | None = None
    interrupted: ExitCode | None = None
    try:
        signals.cancel_on_signal()
        with audit.step("rollout"):
            rolled = platform.set_image(service, report.image, s.deploy.rollout_timeout_s, progress)
        report.rollout = restart_summary(rolled)
        if not rolled.healthy:
            reason = f"rollout: {rolled.reason}"
        else:
            progress(f"{service} runs {report.image}; watching for {watch_s:g} s")
            gate = Gate(s, platform, tools.http, service, since=datetime.now(UTC))
            try:
                with audit.step("watch"):
                    result: GateResult = watch(
                        gate,
                        watch_s,
                        s.deploy.sample_interval_s,
                        s.deploy.fail_after,
                        _collect(report, on_sample),
                    )
            finally:
                gate.close()
            if not result.passed:
                reason = f"health gate: {result.failure}"
                report.failed_at = result.failed_at
    except KeyboardInterrupt:
        interrupted, reason = ExitCode.INTERRUPTED, "interrupted (Ctrl-C) during the deploy"
    except Terminated:
        interrupted, reason = ExitCode.TERMINATED, "terminated (SIGTERM) during the deploy"
    except TravellrError as exc:
        reason = f"{exc.message}"
        if exc.exit_code == ExitCode.UNAVAILABLE:
            # the platform is gone midway: a rollback cannot reach it either
            report.failure = reason
            finish("failed", reason)
            notifier.send("failure", f"deploy {report.id} of {report.image} failed: {reason}")
            raise DeployFailed(
                report, f"deploy failed midway: {reason}", exc.exit_code, exc.kind
            ) from None
    if reason is None:
        finish("succeeded", None)
        notifier.send(
            "success",
            f"deploy {report.id}: {report.image} on {service} passed"
            f" the health gate ({len(report.samples)} samples)",
        )
        return report
    # 6. roll back to exactly what step 3 recorded; signals from now on are noted, not obeyed
    signals.shield()
    report.failure = reason
    report.failed_at = report.failed_at or utc_now()
    progress(f"{reason}; rolling back to {before.image}")
    notifier.send(
        "rollback",
        f"deploy {report.id} of {report.image}: {reason}; rolling back to {before.image}",
    )
    try:
        with audit.step("rollback"):
            back = platform.restore(service, before, s.deploy.rollout_timeout_s, progress)
    except TravellrError as exc:
        # e.g. the platform stopped answering: nothing more can be done from here
        message = f"{reason}; the rollback to {before.image} could not be done: {exc.message}"
        finish("rollback_failed", message)
        notifier.send("failure", f"deploy {report.id} of {report.image}: {message}")
        raise DeployFailed(report, message, exc.exit_code, exc.kind) from None
    report.rollback = restart_summary(back)
    if not back.healthy:
        finish("rollback_failed", f"{reason}; rollback: {back.reason}")
        notifier.send(
            "failure", f"deploy {report.id}: rollback to {before.image} failed: {back.reason}"
        )
        raise DeployFailed(
            report,
            f"{reason}; the rollback did not become healthy either: {back.reason}",
            ExitCode.CHECK_FAILED,
            "rollback_failed",
        )
    outcome = "interrupted" if interrupted else "rolled_back"
    finish(outcome, reason)
    notifier.send("failure", f"deploy {report.id} of {report.image} rolled back: {reason}")
    message = f"{reason}; rolled back to {before.image}, healthy again"
    if interrupted is not None:
        raise DeployFailed(report, message, interrupted, "interrupted")
    raise DeployFailed(report, message, ExitCode.CHECK_FAILED, "rolled_back")


def _collect(report: DeployReport, on_sample: Callable[[Sample], None]) -> Callable[[Sample], None]:
    def collect(sample: Sample) -> None:
        report.samples.append(sample)
        on_sample(sample)

    return collect
