"""`deploy preflight`: every check before a deploy changes anything, one step each with its
verdict and how long it took; `deploy run` starts with it."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from travellr_ops.adapters.platform_types import Progress
from travellr_ops.errors import ExitCode, LockHeld, TravellrError
from travellr_ops.ops.deploy.report import LOCK
from travellr_ops.ops.deploy.tools import Tools
from travellr_ops.ops.health import DOWN, FAIL, WARN, HealthReport, human_bytes
from travellr_ops.safety import Guard
from travellr_ops.settings import Settings


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
