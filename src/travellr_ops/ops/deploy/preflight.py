"""`deploy preflight`: every check before a deploy changes anything, one step each with its
verdict and how long it took; `deploy run` starts with it."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from travellr_ops.adapters.platform_types import Progress, ServicePlatform
from travellr_ops.errors import ExitCode, LockHeld, TravellrError
from travellr_ops.ops.deploy.report import LOCK
from travellr_ops.ops.health import HealthReport
from travellr_ops.runtime import Runtime
from travellr_ops.safety import Guard
from travellr_ops.settings import Settings
from travellr_ops.vocab.units import format_bytes
from travellr_ops.vocab.verdict import Verdict, exit_code_of

Outcome = tuple[Verdict, str]


@dataclass
class PreflightStep:
    name: str
    verdict: Verdict  # ok, warn, fail, down, skipped
    duration_ms: float
    detail: str = ""


@dataclass
class PreflightReport:
    steps: list[PreflightStep]
    ok: bool = field(init=False)

    def __post_init__(self) -> None:
        self.ok = self.exit_code == ExitCode.OK

    @property
    def exit_code(self) -> ExitCode:
        # a warning says what could not be checked beforehand; it does not stop a deploy
        return exit_code_of(s.verdict for s in self.steps if s.verdict != Verdict.WARN)

    @property
    def failed(self) -> list[PreflightStep]:
        return [s for s in self.steps if s.verdict in (Verdict.FAIL, Verdict.DOWN)]


class PreflightFailed(TravellrError):
    def __init__(self, report: PreflightReport) -> None:
        failed = [f"{s.name}: {s.detail}" for s in report.failed]
        super().__init__(
            "preflight failed, nothing was changed: " + "; ".join(failed),
            hint="fix what failed, then deploy again (`deploy preflight` checks alone)",
        )
        self.exit_code = report.exit_code
        self.kind = "unreachable" if report.exit_code == ExitCode.UNAVAILABLE else "check_failed"
        self.report = report


def preflight(
    rt: Runtime, service: str, tag: str | None, *, backup: bool = True
) -> PreflightReport:
    """`deploy preflight`: the checks of a deploy of ``tag`` (or of any release, without one)
    to ``service``, while no deploy runs."""
    with rt.platform() as platform:
        (current,) = platform.status(service)  # an unknown service: exit 2 with the known ones
        image = platform.image_for(current.name, tag) if tag else None  # a bad tag: exit 2
        return checks(rt, platform, current.name, image, backup=backup, lock_held=False)


def checks(
    rt: Runtime,
    platform: ServicePlatform,
    service: str,
    image: str | None,
    *,
    backup: bool,
    lock_held: bool,
    progress: Progress = lambda message: None,
) -> PreflightReport:
    """Every pre-deployment check, one step each, with its verdict and how long it took;
    ``lock_held``: the caller holds the deploy lock (a deploy), so it is not checked."""
    s = rt.settings
    steps: list[PreflightStep] = []

    def step(name: str, check: Callable[[], Outcome]) -> None:
        started = time.perf_counter()
        try:
            verdict, detail = check()
        except TravellrError as exc:
            verdict = Verdict.DOWN if exc.exit_code == ExitCode.UNAVAILABLE else Verdict.FAIL
            detail = exc.message
        ms = round((time.perf_counter() - started) * 1000, 1)
        steps.append(PreflightStep(name, verdict, ms, detail))
        progress(f"preflight {name}: {verdict}{' - ' + detail if detail else ''}")

    step("settings valid", lambda: (Verdict.OK, f"platform {s.platform}"))
    health: list[HealthReport] = []

    def servers() -> Outcome:
        health.append(rt.health(fresh=True))
        down = [
            f"{c.name} {c.target}: {c.detail}"
            for c in health[0].checks
            if c.verdict == Verdict.DOWN
        ]
        if down:
            return Verdict.DOWN, "; ".join(down)
        return Verdict.OK, f"{len(health[0].checks)} checks"

    step("servers reachable", servers)

    def platform_healthy() -> Outcome:
        if not health:
            return Verdict.SKIPPED, "no health report"
        bad = [
            f"{c.name} {c.target}: {c.detail}"
            for c in health[0].checks
            if c.name in ("service", "api") and c.verdict == Verdict.FAIL
        ]
        return (Verdict.FAIL, "; ".join(bad)) if bad else (Verdict.OK, "services and API healthy")

    step("platform healthy", platform_healthy)
    if image is not None:

        def exists() -> Outcome:
            found = platform.image_exists(image)
            if found is None:
                if s.deploy.image_check:
                    return _in_registry(rt, s.deploy.image_check, image)
                return Verdict.WARN, (
                    f"cannot check before the rollout: {platform.name}'s nodes pull"
                    f" {image} themselves (set deploy.image_check to the registry's URL);"
                    " an image that never pulls is rolled back at the rollout's deadline"
                )
            if found:
                return Verdict.OK, f"{image} is there"
            return Verdict.FAIL, f"no image {image}"

        step("image exists", exists)
    if backup:
        step("disk for a backup", lambda: _disk_for_backup(rt))
    if not lock_held:
        step("no other deploy", lambda: _lock_free(rt.guard))
    step("maintenance mode", lambda: _maintenance(health[0] if health else None))
    if s.deploy.test_command:
        step("tests", lambda: _tests(s))
    return PreflightReport(steps)


#: the manifest types a registry may hold for an image (Docker v2, OCI, and their lists)
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


def _in_registry(rt: Runtime, registry: str, image: str) -> Outcome:
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
    with rt.http() as http:
        answer = http.get(url, headers={"Accept": MANIFEST_TYPES})
    if answer.status == 200:
        return Verdict.OK, f"{image} is in {registry}"
    if answer.status == 404:
        return Verdict.FAIL, f"no image {image} in {registry}"
    if answer.status in (401, 403):
        return (
            Verdict.DOWN,
            f"{registry} refused to say whether it holds {image} (HTTP {answer.status})",
        )
    return Verdict.DOWN, f"{registry} answered HTTP {answer.status} for {image}"


def _disk_for_backup(rt: Runtime) -> Outcome:
    size = _database_size(rt)
    where = rt.settings.backup.dir.absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    if size is None:
        return Verdict.OK, f"{format_bytes(free)} free (database size unknown)"
    # a gzipped dump is smaller than the data; the whole size is a safe estimate
    if size > free:
        return (
            Verdict.FAIL,
            f"the database ({format_bytes(size)}) > {format_bytes(free)} free in {where}",
        )
    return Verdict.OK, f"{format_bytes(free)} free for about {format_bytes(size)}"


def _database_size(rt: Runtime) -> int | None:
    """Data and indexes, in bytes (None when the server does not say)."""
    from travellr_ops.ops.db.server import stats

    try:
        with rt.mongo() as mongo:
            totals = stats(mongo, per_collection=False)
    except TravellrError:
        return None
    return (totals.data_bytes or 0) + (totals.index_bytes or 0)


def _lock_free(guard: Guard) -> Outcome:
    lock = guard.lock(LOCK)
    try:
        lock.acquire()
    except LockHeld as exc:
        return Verdict.FAIL, exc.message
    lock.release()
    return Verdict.OK, "no deploy running"


def _maintenance(report: HealthReport | None) -> Outcome:
    if report is None or not report.maintenance:
        return Verdict.OK, "off"
    message = report.maintenance.get("message", "")
    return (
        Verdict.FAIL,
        f"on ({message}): the gate's probes would get 503s; `maintenance off` first",
    )


def _tests(s: Settings) -> Outcome:
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
        return Verdict.FAIL, f"`{command}` did not finish within {s.deploy.test_timeout_s:g} s"
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        return Verdict.FAIL, f"`{command}` exited {done.returncode}: {tail}"
    return Verdict.OK, f"`{command}` exited 0"
