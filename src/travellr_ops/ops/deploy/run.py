"""`deploy run`, `rollback`, `preflight`, `status`, `history`: the runbook's Deployment section.

Every function takes its servers as a ``Tools`` (the platform, an HTTP client, the `health`
check and `backup create` as callables), so the procedure is the same on both platforms.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from travellr_ops.adapters.http import HttpAdapter
from travellr_ops.adapters.platform_types import Release, RestartResult, ServicePlatform
from travellr_ops.errors import (
    CheckFailed,
    ExitCode,
    LockHeld,
    TravellrError,
    UsageError,
)
from travellr_ops.ops.deploy.history import UNSETTLED, Entry, History
from travellr_ops.ops.deploy.notify import Notifier
from travellr_ops.ops.health import DOWN, FAIL, WARN, HealthReport, human_bytes
from travellr_ops.safety import Change, Guard, _user
from travellr_ops.settings import Settings

if TYPE_CHECKING:
    # the gate (and the access-log parser it brings) only for `deploy run`: `deploy rollback`
    # is timed against `docker-compose up -d`, and every import is on its clock
    from travellr_ops.ops.deploy.gate import GateResult, Sample

Progress = Callable[[str], None]
LOCK = "deploy"


@dataclass
class Tools:
    settings: Settings
    platform: ServicePlatform
    http: HttpAdapter
    #: the whole `health` check (every server, the platform)
    health: Callable[[], HealthReport]
    #: `backup create`; returns the backup's name
    backup: Callable[[], str]
    #: the database's size in bytes (for the backup's disk estimate), None when unknown
    database_size: Callable[[], int | None]


# -- preflight --------------------------------------------------------------------------------
@dataclass
class Step:
    name: str
    verdict: str  # ok, fail, down, skip
    duration_ms: float
    detail: str = ""


@dataclass
class PreflightReport:
    ok: bool
    steps: list[Step]

    @property
    def exit_code(self) -> ExitCode:
        if any(s.verdict == DOWN for s in self.steps):
            return ExitCode.UNAVAILABLE
        return ExitCode.OK if self.ok else ExitCode.CHECK_FAILED


class PreflightFailed(TravellrError):
    def __init__(self, report: PreflightReport) -> None:
        failed = [f"{s.name}: {s.detail}" for s in report.steps if s.verdict in (FAIL, DOWN)]
        super().__init__(
            "preflight failed, nothing was changed: " + "; ".join(failed),
            hint="fix what failed, then deploy again (`deploy preflight` checks alone)",
        )
        self.exit_code = report.exit_code
        self.kind = "unreachable" if report.exit_code == ExitCode.UNAVAILABLE else "check_failed"
        self.report = report


def preflight(
    tools: Tools,
    service: str,
    image: str | None,
    *,
    backup: bool = True,
    guard: Guard | None = None,
    lock_held: bool = False,
    progress: Progress = lambda message: None,
) -> PreflightReport:
    """Every pre-deployment check, one step each, with its verdict and how long it took."""
    s = tools.settings
    steps: list[Step] = []

    def step(name: str, check: Callable[[], tuple[str, str]]) -> None:
        started = time.perf_counter()
        try:
            verdict, detail = check()
        except TravellrError as exc:
            verdict = DOWN if exc.exit_code == ExitCode.UNAVAILABLE else FAIL
            detail = exc.message
        ms = round((time.perf_counter() - started) * 1000, 1)
        steps.append(Step(name, verdict, ms, detail))
        progress(f"preflight {name}: {verdict}{' - ' + detail if detail else ''}")

    step("settings valid", lambda: ("ok", f"platform {s.platform}"))
    health: list[HealthReport] = []

    def servers() -> tuple[str, str]:
        health.append(tools.health())
        down = [f"{c.name} {c.target}: {c.detail}" for c in health[0].checks if c.verdict == DOWN]
        return (DOWN, "; ".join(down)) if down else ("ok", f"{len(health[0].checks)} checks")

    step("servers reachable", servers)

    def platform() -> tuple[str, str]:
        if not health:
            return "skip", "no health report"
        bad = [
            f"{c.name} {c.target}: {c.detail}"
            for c in health[0].checks
            if c.name in ("service", "api") and c.verdict == FAIL
        ]
        return (FAIL, "; ".join(bad)) if bad else ("ok", "services and API healthy")

    step("platform healthy", platform)
    if image is not None:

        def exists() -> tuple[str, str]:
            found = tools.platform.image_exists(image)
            if found is None:
                if s.deploy.image_check:
                    return _in_registry(tools, s.deploy.image_check, image)
                return WARN, (
                    f"cannot check before the rollout: {tools.platform.name}'s nodes pull"
                    f" {image} themselves (set deploy.image_check to the registry's URL);"
                    " an image that never pulls is rolled back at the rollout's deadline"
                )
            return ("ok", f"{image} is there") if found else (FAIL, f"no image {image}")

        step("image exists", exists)
    if backup:
        step("disk for a backup", lambda: _disk_for_backup(tools))
    if not lock_held and guard is not None:
        step("no other deploy", lambda: _lock_free(guard))
    step("maintenance mode", lambda: _maintenance(health[0] if health else None))
    if s.deploy.test_command:
        step("tests", lambda: _tests(s))
    ok = all(x.verdict in ("ok", "skip", WARN) for x in steps)
    return PreflightReport(ok, steps)


#: the manifest types a registry may hold for an image (Docker v2, OCI, and their lists)
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


def _in_registry(tools: Tools, registry: str, image: str) -> tuple[str, str]:
    """Ask the registry for the image's manifest (Docker Registry HTTP API v2)."""
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        repository, reference = image.split("@", 1)
    else:
        repository, _, reference = image.rpartition(":") if ":" in last else (image, "", "latest")
    host = registry.split("://", 1)[-1].rstrip("/")
    if repository.startswith(host + "/"):  # the reference names the registry itself
        repository = repository[len(host) + 1 :]
    url = f"{registry.rstrip('/')}/v2/{repository}/manifests/{reference}"
    answer = tools.http.get(url, headers={"Accept": MANIFEST_TYPES})
    if answer.status == 200:
        return "ok", f"{image} is in {registry}"
    if answer.status == 404:
        return FAIL, f"no image {image} in {registry}"
    if answer.status in (401, 403):
        return DOWN, f"{registry} refused to say whether it holds {image} (HTTP {answer.status})"
    return DOWN, f"{registry} answered HTTP {answer.status} for {image}"


def _disk_for_backup(tools: Tools) -> tuple[str, str]:
    size = tools.database_size()
    where = tools.settings.backup.dir.absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    if size is None:
        return "ok", f"{human_bytes(free)} free (database size unknown)"
    # a gzipped dump is smaller than the data; the whole size is a safe estimate
    if size > free:
        return FAIL, f"the database ({human_bytes(size)}) > {human_bytes(free)} free in {where}"
    return "ok", f"{human_bytes(free)} free for about {human_bytes(size)}"


def _lock_free(guard: Guard) -> tuple[str, str]:
    lock = guard.lock(LOCK)
    try:
        lock.acquire()
    except LockHeld as exc:
        return FAIL, exc.message
    lock.release()
    return "ok", "no deploy running"


def _maintenance(report: HealthReport | None) -> tuple[str, str]:
    if report is None or not report.maintenance:
        return "ok", "off"
    message = report.maintenance.get("message", "")
    return FAIL, f"on ({message}): the gate's probes would get 503s; `maintenance off` first"


def _tests(s: Settings) -> tuple[str, str]:
    command = s.deploy.test_command or ""
    try:
        done = subprocess.run(
            command,
            shell=True,
            cwd=s.deploy.test_dir,
            capture_output=True,
            text=True,
            timeout=s.deploy.test_timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return FAIL, f"`{command}` did not finish within {s.deploy.test_timeout_s:g} s"
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        return FAIL, f"`{command}` exited {done.returncode}: {tail}"
    return "ok", f"`{command}` exited 0"


# -- run --------------------------------------------------------------------------------------
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
    preflight: list[Step] = field(default_factory=list)
    backup: str | None = None
    before: Release | None = None
    rollout: dict[str, Any] | None = None
    samples: list[Sample] = field(default_factory=list)
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


class _Terminated(BaseException):
    """SIGTERM during the rollout or the watch (raised in the main thread, like Ctrl-C)."""


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
        f"on failure: roll back to {before.image} ({_short(before.image_id)}), wait healthy",
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
    report.started_at = _now()
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
    audit = _Audit(guard, report)
    notifier.send("start", f"deploy {report.id}: {report.image} to {service} started by {_user()}")

    def finish(outcome: str, reason: str | None = None) -> DeployReport:
        report.outcome = outcome
        report.finished_at = _now()
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
    with _Signals(progress) as signals:
        return _roll_out(
            tools, report, watch_s, progress, on_sample, audit, notifier, finish, signals
        )


def _roll_out(
    tools: Tools,
    report: DeployReport,
    watch_s: float,
    progress: Progress,
    on_sample: Callable[[Sample], None],
    audit: _Audit,
    notifier: Notifier,
    finish: Callable[[str, str | None], DeployReport],
    signals: _Signals,
) -> DeployReport:
    """Steps 4-6: roll out, watch, and roll back on failure or on a signal."""
    from travellr_ops.ops.deploy.gate import Gate, watch

    s, platform, service = tools.settings, tools.platform, report.service
    before = report.before
    assert before is not None
    reason: str | None = None
    interrupted: ExitCode | None = None
    try:
        with signals.cancellable():
            with audit.step("rollout"):
                rolled = platform.set_image(
                    service, report.image, s.deploy.rollout_timeout_s, progress
                )
            report.rollout = _result(rolled)
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
    except _Terminated:
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
    report.failed_at = report.failed_at or _now()
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
    report.rollback = _result(back)
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


def _result(result: RestartResult) -> dict[str, Any]:
    return {
        "healthy": result.healthy,
        "seconds": round(result.seconds, 1),
        "reason": result.reason,
        "last_logs": result.last_logs,
    }


class _Audit:
    """Every step's start and end in the audit log."""

    def __init__(self, guard: Guard, report: DeployReport) -> None:
        self.guard, self.report = guard, report

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        base = {
            "action": f"{self.report.kind} {name}",
            "deploy_id": self.report.id,
            "target": self.report.service,
            "image": self.report.image,
            "user": _user(),
            "command": self.guard.command,
        }
        self.guard.audit.record(**base, phase="start")
        started = time.monotonic()
        outcome = "ok"
        try:
            yield
        except BaseException as exc:
            outcome = "failed" if isinstance(exc, Exception) else "interrupted"
            raise
        finally:
            self.guard.audit.record(
                **base,
                phase="end",
                outcome=outcome,
                duration_s=round(time.monotonic() - started, 3),
            )


class _Signals:
    """Ctrl-C and SIGTERM from the rollout to the end of the rollback.

    During the rollout and the watch the first one stops them (KeyboardInterrupt or
    _Terminated) and, in the same handler, shields what follows: a second signal that comes
    while the rollback starts or runs is noted, not obeyed, since a half-done rollback would
    leave the service on neither release. The handlers are the process's own again on exit.
    """

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.active = threading.current_thread() is threading.main_thread()
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if self.active:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._old[signum] = signal.getsignal(signum)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)

    @contextlib.contextmanager
    def cancellable(self) -> Iterator[None]:
        if self.active:
            signal.signal(signal.SIGINT, self._stop)
            signal.signal(signal.SIGTERM, self._stop)
        yield

    def _stop(self, signum: int, frame: Any) -> None:
        self.shield()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt()
        raise _Terminated()

    def shield(self) -> None:
        if self.active:
            signal.signal(signal.SIGINT, self._note)
            signal.signal(signal.SIGTERM, self._note)

    def _note(self, signum: int, frame: Any) -> None:
        self.progress(f"{signal.Signals(signum).name}: the rollback goes on until it is done")


@contextlib.contextmanager
def _shielded(progress: Progress) -> Iterator[None]:
    """During a rollback Ctrl-C and SIGTERM are noted, not obeyed: a half-done rollback
    would leave the service on neither release."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: Any) -> None:
        progress(f"{signal.Signals(signum).name}: the rollback goes on until it is done")

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


# -- rollback ---------------------------------------------------------------------------------
def rollback(
    tools: Tools,
    guard: Guard,
    service: str,
    to: str | None = None,
    progress: Progress = lambda message: None,
) -> DeployReport:
    """Back to the previous release (or revision/tag ``to``), then wait until healthy."""
    s, platform = tools.settings, tools.platform
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
        + (f" ({_short(target.image_id)})" if target.image_id else ""),
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
        report.started_at = _now()
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
        with _shielded(progress), _Audit(guard, report).step("rollback"):
            back = platform.restore(current.name, target, s.deploy.rollout_timeout_s, progress)
        report.rollback = _result(back)
        report.now = platform.release(current.name)
        report.outcome = "succeeded" if back.healthy else "failed"
        report.finished_at = _now()
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
        if to.isdigit() and platform.name == "kubernetes":
            return Release(service, platform.name, "", revision=to)
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
    if platform.name == "kubernetes" and now.revision and now.revision.isdigit():
        return Release(service, platform.name, now.image, revision=str(int(now.revision) - 1))
    raise UsageError(
        f"no earlier release of {service} in the deploy history to roll back to",
        hint="name one: `deploy rollback --to TAG`",
    )


# -- status and history -----------------------------------------------------------------------
@dataclass
class StatusReport:
    service: str
    platform: str
    now: Release
    last: Entry | None
    #: the platform agrees with the last recorded deploy
    in_sync: bool
    message: str


def status(tools: Tools, service: str) -> StatusReport:
    s, platform = tools.settings, tools.platform
    (current,) = platform.status(service)
    now = platform.release(current.name)
    history = History(s.state_dir, s.store.timeout_s)
    try:
        last = history.last(current.name)
    finally:
        history.close()
    if last is None:
        return StatusReport(
            current.name,
            platform.name,
            now,
            None,
            True,
            f"{current.name} runs {now.image}; no deploy recorded yet",
        )
    if last.outcome == "running" and _alive(last.pid, last.host):
        return StatusReport(
            current.name,
            platform.name,
            now,
            last,
            True,
            f"deploy {last.id} of {last.image_to} is running now (pid {last.pid})",
        )
    image, image_id = last.expected_image
    if last.outcome in UNSETTLED:
        return StatusReport(
            current.name,
            platform.name,
            now,
            last,
            False,
            f"{last.kind} {last.id} of {last.image_to} did not finish ({last.outcome}:"
            f" {last.reason}): {current.name} runs {now.image} ({_short(now.image_id)}),"
            f" the release before it was {last.image_from} ({_short(last.image_id_from)});"
            " `deploy rollback` restores that, or deploy again",
        )
    if last.outcome == "running":
        return StatusReport(
            current.name,
            platform.name,
            now,
            last,
            False,
            f"deploy {last.id} of {last.image_to} (pid {last.pid} on {last.host}) was killed"
            f" before it finished: {current.name} runs {now.image} ({_short(now.image_id)}),"
            f" the release before it was {last.image_from} ({_short(last.image_id_from)});"
            " `deploy rollback` restores that, or deploy again",
        )
    same = now.image == image and (not image_id or not now.image_id or now.image_id == image_id)
    if not same:
        return StatusReport(
            current.name,
            platform.name,
            now,
            last,
            False,
            f"{current.name} runs {now.image} ({_short(now.image_id)}), but the last recorded"
            f" {last.kind} ({last.id}, {last.outcome}) left {image} ({_short(image_id)}):"
            " changed by hand since, or by a deploy that was killed",
        )
    return StatusReport(
        current.name,
        platform.name,
        now,
        last,
        True,
        f"{current.name} runs {now.image} as {last.kind} {last.id} ({last.outcome}) left it",
    )


def history(settings: Settings, service: str | None, limit: int | None) -> list[Entry]:
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be 1 or more, not {limit}")
    h = History(settings.state_dir, settings.store.timeout_s)
    try:
        return h.entries(service, limit)
    finally:
        h.close()


def _alive(pid: int, host: str) -> bool:
    if host != socket.gethostname():
        return True  # another machine's deploy: we cannot tell, so we do not call it dead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _short(image_id: str | None) -> str:
    if not image_id:
        return "no image ID"
    return image_id.rsplit("sha256:", 1)[-1][:12]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def to_dict(report: DeployReport) -> dict[str, Any]:
    return {**asdict(report), "ok": report.ok}
