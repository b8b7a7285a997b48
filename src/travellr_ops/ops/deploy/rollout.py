"""`deploy run`: preflight, backup, record what runs, roll out, the health gate, and an
automatic rollback on failure or on a signal."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NoReturn

from travellr_ops.adapters.platform_types import Release, ServicePlatform
from travellr_ops.errors import ExitCode, TravellrError
from travellr_ops.ops.deploy.audit import StepAudit
from travellr_ops.ops.deploy.history import LANDED, History
from travellr_ops.ops.deploy.notify import Notifier
from travellr_ops.ops.deploy.preflight import PreflightFailed, checks
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
from travellr_ops.runtime import Runtime
from travellr_ops.safety import Change, _user

if TYPE_CHECKING:
    from travellr_ops.adapters.http import HttpAdapter
    from travellr_ops.ops.deploy.gate import GateSample

OnSample = Callable[["GateSample"], None]


def run(
    rt: Runtime,
    service: str,
    tag: str,
    *,
    watch_s: float | None = None,
    backup: bool = True,
    on_sample: OnSample = lambda sample: None,
) -> DeployReport:
    """Deploy ``tag`` to ``service`` through ``rt.guard`` (dry run, confirmation, the deploy
    lock); progress goes to ``rt.notify``. Raises DeployFailed when it did not land."""
    s = rt.settings
    watch_s = s.deploy.watch_s if watch_s is None else watch_s
    with rt.platform() as platform:
        (current,) = platform.status(service)  # an unknown service: exit 2 with the known ones
        image = platform.image_for(service, tag)  # an invalid tag: exit 2
        before = platform.release(service)
        report = DeployReport("deploy", current.name, platform.name, image, rt.guard.dry_run)
        report.before = before
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
            f" {s.deploy.fail_after} failing samples in a row roll back; each sample sends"
            f" {s.deploy.probes} GETs to the health endpoint and to each of"
            f" {len(s.deploy.smoke_paths)} smoke path(s); too few requests to judge"
            f" (< {s.deploy.min_requests}) extend the watch up to {s.deploy.extend_s:g} s,"
            f" then {s.deploy.on_inconclusive} (inconclusive)",
            f"on failure: roll back to {before.image} ({short_id(before.image_id)}), wait healthy",
        ]
        change = Change(
            action=f"deploy run {current.name}",
            summary=f"deploy {image} to {current.name} on {platform.name}"
            f" (runs {before.image} now)",
            details=report.plan,
            target=current.name,
        )
        with rt.guard.mutation(change, lock=LOCK) as go:
            if not go:
                report.outcome = "dry_run"
                return report
            with rt.http() as http:
                return _Deploy(rt, platform, http, report).run(watch_s, backup, on_sample)


def backup(rt: Runtime) -> str:
    """`backup create` before the rollout; the backup's name."""
    from travellr_ops.ops.backup.create import create

    with rt.dump() as dump:
        return create(rt.settings, dump, rt.guard, rt.progress, rt.warn).name


class _Deploy:
    """One deploy from its first record in the history to its last."""

    def __init__(
        self, rt: Runtime, platform: ServicePlatform, http: HttpAdapter, report: DeployReport
    ) -> None:
        self.rt, self.platform, self.http, self.report = rt, platform, http, report
        self.settings = rt.settings
        self.history = History(self.settings.state_dir, self.settings.store.timeout_s)
        self.notifier = Notifier(self.settings, rt.notify)
        self.audit = StepAudit(rt.guard, report)
        self.started = time.monotonic()

    def run(self, watch_s: float, backup_first: bool, on_sample: OnSample) -> DeployReport:
        report, service = self.report, self.report.service
        before = report.before
        report.started_at = utc_now()
        report.id = self.history.start(
            kind="deploy",
            service=service,
            platform=self.platform.name,
            started_at=report.started_at,
            user=_user(),
            host=socket.gethostname(),
            image_to=report.image,
            # what runs as the deploy starts: step 3 records it again after the backup, but a
            # deploy stopped before that must still say what the platform should run
            image_from=before.image if before else None,
            image_id_from=before.image_id if before else None,
            revision_from=before.revision if before else None,
        )
        self.notifier.send(
            "start", f"deploy {report.id}: {report.image} to {service} started by {_user()}"
        )
        # 1. preflight: nothing has changed yet
        with self.audit.step("preflight"):
            pre = checks(
                self.rt,
                self.platform,
                service,
                report.image,
                backup=backup_first,
                lock_held=True,
                progress=self.rt.notify,
            )
        report.preflight = pre.steps
        if not pre.ok:
            failed = PreflightFailed(pre)
            self.fail("preflight_failed", failed.message, failed.exit_code, failed.kind)
        # 2. backup
        if backup_first:
            try:
                with self.audit.step("backup"):
                    report.backup = backup(self.rt)
            except TravellrError as exc:
                report.backup = None
                message = f"backup failed, nothing was rolled out: {exc.message}"
                self.fail("backup_failed", message, exc.exit_code, exc.kind)
        else:
            report.backup = "skipped"
        # 3. record what runs now
        with self.audit.step("record"):
            before = report.before = self.platform.release(service)
            self.history.update(
                report.id or 0,
                image_from=before.image,
                image_id_from=before.image_id,
                revision_from=before.revision,
                backup=report.backup,
            )
        # 4-6. roll out and watch; a failure or a signal rolls back
        with Signals(self.rt.notify) as signals:
            return self.roll_out(before, watch_s, on_sample, signals)

    def roll_out(
        self, before: Release, watch_s: float, on_sample: OnSample, signals: Signals
    ) -> DeployReport:
        from travellr_ops.ops.deploy.gate import Gate, watch

        s, report, service, progress = (
            self.settings,
            self.report,
            self.report.service,
            self.rt.notify,
        )
        reason: str | None = None
        interrupted: ExitCode | None = None
        inconclusive = False
        try:
            signals.cancel_on_signal()
            with self.audit.step("rollout"):
                rolled = self.platform.set_image(
                    service, report.image, s.deploy.rollout_timeout_s, progress
                )
            report.rollout = restart_summary(rolled)
            if not rolled.healthy:
                reason = f"rollout: {rolled.reason}"
            else:
                progress(f"{service} runs {report.image}; watching for {watch_s:g} s")
                gate = Gate(s, self.platform, self.http, service, since=datetime.now(UTC))

                def collect(sample: GateSample) -> None:
                    report.samples.append(sample)
                    on_sample(sample)

                try:
                    with self.audit.step("watch"):
                        result = watch(
                            gate,
                            watch_s,
                            s.deploy.sample_interval_s,
                            s.deploy.fail_after,
                            collect,
                            extend_s=s.deploy.extend_s,
                        )
                finally:
                    gate.close()
                if not result.passed:
                    reason = f"health gate: {result.failure}"
                    report.failed_at = result.failed_at
                    inconclusive = result.inconclusive
        except KeyboardInterrupt:
            interrupted, reason = ExitCode.INTERRUPTED, "interrupted (Ctrl-C) during the deploy"
        except Terminated:
            interrupted, reason = ExitCode.TERMINATED, "terminated (SIGTERM) during the deploy"
        except TravellrError as exc:
            reason = f"{exc.message}"
            if exc.exit_code == ExitCode.UNAVAILABLE:
                # the platform is gone midway: a rollback cannot reach it either
                report.failure = reason
                self.fail(
                    "failed",
                    f"deploy failed midway: {reason}",
                    exc.exit_code,
                    exc.kind,
                    notice=f"deploy {report.id} of {report.image} failed: {reason}",
                    reason=reason,
                )
        if reason is None:
            self.finish("succeeded", None)
            self.notifier.send(
                "success",
                f"deploy {report.id}: {report.image} on {service} passed"
                f" the health gate ({len(report.samples)} samples)",
            )
            return report
        if inconclusive and s.deploy.on_inconclusive == "keep":
            report.failure = reason
            self.fail(
                "inconclusive_kept",
                f"{reason}; {report.image} kept (deploy.on_inconclusive = keep)",
                ExitCode.UNAVAILABLE,
                "inconclusive",
                reason=reason,
            )
        # signals from now on are noted, not obeyed
        signals.shield()
        self.roll_back(before, reason, interrupted, inconclusive)

    def roll_back(
        self,
        before: Release,
        reason: str,
        interrupted: ExitCode | None,
        inconclusive: bool = False,
    ) -> NoReturn:
        """Step 6: back to exactly what step 3 recorded."""
        s, report, progress = self.settings, self.report, self.rt.notify
        report.failure = reason
        report.failed_at = report.failed_at or utc_now()
        progress(f"{reason}; rolling back to {before.image}")
        self.notifier.send(
            "rollback",
            f"deploy {report.id} of {report.image}: {reason}; rolling back to {before.image}",
        )
        try:
            with self.audit.step("rollback"):
                back = self.platform.restore(
                    report.service, before, s.deploy.rollout_timeout_s, progress
                )
        except TravellrError as exc:
            # e.g. the platform stopped answering: nothing more can be done from here
            message = f"{reason}; the rollback to {before.image} could not be done: {exc.message}"
            self.fail("rollback_failed", message, exc.exit_code, exc.kind)
        report.rollback = restart_summary(back)
        if not back.healthy:
            self.fail(
                "rollback_failed",
                f"{reason}; the rollback did not become healthy either: {back.reason}",
                ExitCode.CHECK_FAILED,
                "rollback_failed",
                notice=f"deploy {report.id}: rollback to {before.image} failed: {back.reason}",
                reason=f"{reason}; rollback: {back.reason}",
            )
        outcome = "interrupted" if interrupted else "rolled_back"
        if inconclusive:
            outcome = "inconclusive"  # not a failure of the release: nothing could be judged
        self.finish(outcome, reason)
        self.notifier.send("failure", f"deploy {report.id} of {report.image} rolled back: {reason}")
        message = f"{reason}; rolled back to {before.image}, healthy again"
        if interrupted is not None:
            raise DeployFailed(report, message, interrupted, "interrupted")
        if inconclusive:
            raise DeployFailed(report, message, ExitCode.UNAVAILABLE, "inconclusive")
        raise DeployFailed(report, message, ExitCode.CHECK_FAILED, "rolled_back")

    def fail(
        self,
        outcome: str,
        message: str,
        code: ExitCode,
        kind: str,
        *,
        notice: str | None = None,
        reason: str | None = None,
    ) -> NoReturn:
        """End the deploy as ``outcome``: recorded (with ``reason``, else ``message``), the
        webhooks told (``notice``, else the message), DeployFailed raised."""
        report = self.report
        self.finish(outcome, reason or message)
        self.notifier.send("failure", notice or f"deploy {report.id} of {report.image}: {message}")
        raise DeployFailed(report, message, code, kind) from None

    def finish(self, outcome: str, reason: str | None) -> None:
        report = self.report
        report.outcome = outcome
        report.finished_at = utc_now()
        report.duration_s = round(time.monotonic() - self.started, 1)
        with contextlib.suppress(TravellrError):
            report.now = self.platform.release(report.service)
        now = report.now
        self.history.update(
            report.id or 0,
            report=to_dict(report),
            outcome=outcome,
            finished_at=report.finished_at,
            duration_s=report.duration_s,
            reason=reason,
            backup=report.backup,
            image_id_to=now.image_id if now and outcome in LANDED else None,
            revision_to=now.revision if now else None,
        )
        self.history.close()
