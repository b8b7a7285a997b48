"""`health`: the runbook's ./scripts/health-check.sh, every check at once.

The API's health endpoint is probed first, alone (a few ms), so that its latency is the
server's; then every other check runs concurrently, so the total time is close to the slowest
check, not the sum.
Verdicts (``vocab.verdict``): ok; warn (answered, but a threshold is breached); fail
(answered unhealthy); down (no answer); maintenance (the backend is deliberately closed).
The report's word is healthy, unhealthy (a warn or fail), unreachable (a check down) or
maintenance, and its exit code the shared one of its checks: down 3, warn or fail 1.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from travellr_ops.adapters.http import HttpAdapter
from travellr_ops.adapters.mongo import MongoAdapter
from travellr_ops.adapters.platform_types import ServicePlatform
from travellr_ops.adapters.redis import RedisAdapter
from travellr_ops.errors import ExitCode, ServiceError, TravellrError
from travellr_ops.redact import mask
from travellr_ops.settings import Settings
from travellr_ops.vocab.units import format_bytes
from travellr_ops.vocab.verdict import Verdict, exit_code_of, worst


@dataclass
class Check:
    name: str
    target: str
    verdict: Verdict
    latency_ms: float | None = None
    detail: str = ""


@dataclass
class HealthReport:
    #: healthy, unhealthy, unreachable or maintenance
    verdict: Verdict
    checks: list[Check]
    duration_ms: float
    maintenance: dict[str, Any] | None = None

    @property
    def exit_code(self) -> ExitCode:
        return exit_code_of(c.verdict for c in self.checks)


def _overall(checks: list[Check], maintenance: dict[str, Any] | None) -> Verdict:
    """The report's word: a check down makes it unreachable, a warn or fail unhealthy."""
    decisive = worst(c.verdict for c in checks)
    if decisive == Verdict.DOWN:
        return Verdict.UNREACHABLE
    if decisive is not None and not decisive.fine:
        return Verdict.UNHEALTHY
    if decisive == Verdict.MAINTENANCE or maintenance:
        return Verdict.MAINTENANCE
    return Verdict.HEALTHY


def check_all(
    settings: Settings,
    http: HttpAdapter,
    mongo: MongoAdapter,
    redis: RedisAdapter,
    platform: Callable[[], ServicePlatform] | None = None,
) -> HealthReport:
    """Every check at once. ``platform`` builds the service platform (inside its probe, so a
    platform that cannot even be set up is reported like any other server that is down)."""
    started = time.perf_counter()
    limits = settings.thresholds
    # the maintenance flag is read beside the checks (submitted first, below); an API probe
    # waits for it only when the API answers 503
    flag: Future[dict[str, Any] | None]
    probes: list[tuple[str, str, Callable[[], Check | list[Check]]]] = []
    api_urls = [settings.api.url.rstrip("/") + settings.api.health_path]
    api_urls += settings.api.extra_health_urls
    http.prepare(api_urls)  # one HTTP client for every probe, built before they start
    for url in api_urls:
        probe = _api_probe(http, url, limits.api_response_ms, lambda: flag.result())
        probes.append(("api", url, probe))
    probes.append(("mongodb", mongo.display_uri, lambda: _mongo(mongo, limits.db_query_ms)))
    probes.append(("redis", redis.display_url, lambda: _redis(redis, limits.memory_pct)))
    for path in _disk_paths(settings):
        probes.append(("disk", str(path), lambda p=path: _disk(p, limits.disk_pct)))  # type: ignore[misc]
    if platform is not None:
        probes.append(("service", settings.platform, lambda: _services(platform())))

    def run(probe: tuple[str, str, Callable[[], Check | list[Check]]]) -> list[Check]:
        name, target, fn = probe
        try:
            found = fn()
        except TravellrError as exc:  # a server down, or e.g. no kubeconfig to ask with
            return [Check(name, mask(target), Verdict.DOWN, detail=exc.message)]
        return found if isinstance(found, list) else [found]

    with ThreadPoolExecutor(len(probes) + 1, thread_name_prefix="health") as pool:
        flag = pool.submit(_maintenance, settings, redis)
        # the API's health endpoint first and alone: beside the other checks its latency was
        # theirs too (threads contending in this process, and the backend's own health check
        # waiting on the database our checks were asking)
        checks = run(probes[0])
        checks += [check for found in pool.map(run, probes[1:]) for check in found]
        maintenance = flag.result()
    duration = (time.perf_counter() - started) * 1000
    return HealthReport(_overall(checks, maintenance), checks, round(duration, 1), maintenance)


def _maintenance(settings: Settings, redis: RedisAdapter) -> dict[str, Any] | None:
    try:
        raw = redis.get(settings.maintenance.key)
    except ServiceError:
        return None  # the redis check reports that
    if raw is None:
        return None
    try:
        value = json.loads(raw)
        return value if isinstance(value, dict) else {"message": str(value)}
    except ValueError:
        return {"message": raw.decode("utf-8", "replace")}


def _api_probe(
    http: HttpAdapter,
    url: str,
    limit_ms: float,
    flag: Callable[[], dict[str, Any] | None],
) -> Callable[[], Check]:
    def probe() -> Check:
        response = http.get(url)
        latency = round(response.latency_ms, 1)
        body = response.body if isinstance(response.body, dict) else {}
        status = str(body.get("status", ""))
        maintenance = flag() if response.status == 503 else None
        if response.status == 503 and (status == Verdict.MAINTENANCE or maintenance):
            detail = f"maintenance: {body.get('message') or (maintenance or {}).get('message', '')}"
            return Check("api", url, Verdict.MAINTENANCE, latency, detail.strip(": "))
        if response.status >= 400:
            failing = [k for k, v in body.get("checks", {}).items() if not _truthy(v)]
            why = f" ({', '.join(failing)} failing)" if failing else ""
            return Check(
                "api", url, Verdict.FAIL, latency, f"HTTP {response.status} {status}{why}".strip()
            )
        version = f" version {body['version']}" if "version" in body else ""
        if latency > limit_ms:
            return Check("api", url, Verdict.WARN, latency, f"slow: over {limit_ms:g} ms{version}")
        return Check("api", url, Verdict.OK, latency, f"HTTP {response.status}{version}")

    return probe


def _truthy(check: Any) -> bool:
    return bool(check.get("ok")) if isinstance(check, dict) else bool(check)


def _mongo(mongo: MongoAdapter, limit_ms: float) -> Check:
    quick = mongo.preflight()  # a refused port is known now, not after the driver's timeout
    if quick is not None:
        return Check("mongodb", mongo.display_uri, Verdict.DOWN, None, quick.message)
    latency = round(mongo.ping(), 1)
    hello = mongo.hello()
    if hello.get("setName"):
        role = (
            "primary"
            if hello.get("isWritablePrimary")
            else ("secondary" if hello.get("secondary") else "no primary")
        )
        topology = f"replica set {hello['setName']}, {role}"
    else:
        role = "standalone"
        topology = "standalone"
    if role == "no primary":
        return Check("mongodb", mongo.display_uri, Verdict.FAIL, latency, topology)
    if latency > limit_ms:
        return Check("mongodb", mongo.display_uri, Verdict.WARN, latency, f"slow ping; {topology}")
    return Check("mongodb", mongo.display_uri, Verdict.OK, latency, topology)


def _redis(redis: RedisAdapter, memory_limit_pct: float) -> Check:
    latency = round(redis.ping(), 1)
    memory = redis.info("memory")
    used = int(memory.get("used_memory", 0))
    maxmemory = int(memory.get("maxmemory", 0))
    detail = f"memory {format_bytes(used)}"
    if maxmemory:
        pct = used * 100 / maxmemory
        detail += f" of {format_bytes(maxmemory)} ({pct:.0f}%)"
        if pct > memory_limit_pct:
            return Check(
                "redis", redis.display_url, Verdict.WARN, latency, detail + " over threshold"
            )
    return Check("redis", redis.display_url, Verdict.OK, latency, detail)


def _services(platform: ServicePlatform) -> list[Check]:
    """One check per service the platform runs: ok when every desired instance is ready."""
    checks = []
    for svc in platform.status():
        target = f"{platform.name}:{svc.name}"
        detail = f"{svc.ready}/{svc.desired} ready"
        if svc.image:
            detail += f", {svc.image}"
        if svc.available and svc.desired > 0:
            checks.append(Check("service", target, Verdict.OK, None, detail))
        else:
            why = svc.message or "; ".join(svc.conditions)
            checks.append(
                Check("service", target, Verdict.FAIL, None, f"{detail}{': ' + why if why else ''}")
            )
    if not checks:
        return [Check("service", platform.name, Verdict.FAIL, None, "no Travellr services found")]
    return checks


def _disk_paths(settings: Settings) -> list[Path]:
    """One path per file system among the configured ones (nearest existing ancestor)."""
    seen: dict[int, Path] = {}
    for path in [*settings.disk_paths, settings.backup.dir, settings.state_dir]:
        existing = path.absolute()
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        seen.setdefault(existing.stat().st_dev, existing)
    return list(seen.values())


def _disk(path: Path, limit_pct: float) -> Check:
    usage = shutil.disk_usage(path)
    pct = usage.used * 100 / usage.total if usage.total else 0.0
    detail = f"{pct:.0f}% used, {format_bytes(usage.free)} free"
    verdict = Verdict.WARN if pct > limit_pct else Verdict.OK
    return Check("disk", str(path), verdict, None, detail)
