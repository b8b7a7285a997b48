"""One sample of every key metric, all sources at once.

A sample spans a window (``monitor.window_s`` for `monitor once`, the interval when live):
the API is probed repeatedly across it, and the cache hit rate and CPU are deltas over it.
Every source runs in its own thread, so a sample takes about the window plus the slowest
source, not their sum. A source that fails makes its metrics "unknown" with the reason;
the others still come out.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from travellr_ops.errors import ServiceError, TravellrError
from travellr_ops.ops.cache import hit_rate
from travellr_ops.ops.monitor.metrics import Metric, Sample, judged, unknown
from travellr_ops.ops.monitor.sources import (
    AccessLog,
    HostUsage,
    LocalProcesses,
    Usage,
    op_latencies,
    run_query,
    server_ports,
)
from travellr_ops.settings import Settings
from travellr_ops.vocab.stats import percentile
from travellr_ops.vocab.verdict import Verdict

if TYPE_CHECKING:
    from travellr_ops.adapters.http import HttpAdapter
    from travellr_ops.adapters.mongo import MongoAdapter
    from travellr_ops.adapters.platform_types import ServicePlatform
    from travellr_ops.adapters.redis import RedisAdapter
    from travellr_ops.runtime import Runtime

#: what each source yields when it fails: (metric name, unit, threshold attribute)
_Names = list[tuple[str, str, str | None]]
_API: _Names = [
    ("api_response_p95_ms", "ms", "api_response_ms"),
    ("api_response_p50_ms", "ms", None),
    ("api_response_max_ms", "ms", None),
]
_DB: _Names = [("db_query_ms", "ms", "db_query_ms")]
_CACHE: _Names = [("cache_hit_rate_pct", "%", "cache_hit_rate_pct")]
_ERRORS: _Names = [("error_rate_pct", "%", "error_rate_pct")]
_BUSINESS: _Names = [("active_users", "users", None), ("booking_conversion_pct", "%", None)]


@contextmanager
def open_sampler(rt: Runtime) -> Iterator[Sampler]:
    """A sampler over the run context's servers; every client closed when the block ends."""
    s = rt.settings
    with (
        rt.http(1 + len(s.monitor.api_paths)) as http,
        rt.mongo() as mongo,
        rt.redis() as redis,
    ):
        sampler = Sampler(s, http, mongo, redis, rt.platform_factory())
        try:
            yield sampler
        finally:
            sampler.close()


def _rounded(values: list[float], pct: float) -> float | None:
    found = percentile(values, pct)
    return None if found is None else round(found, 1)


class Sampler:
    """Samples the key metrics; keeps what the next sample's deltas need."""

    def __init__(
        self,
        settings: Settings,
        http: HttpAdapter,
        mongo: MongoAdapter,
        redis: RedisAdapter,
        platform: Callable[[], ServicePlatform] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.http = http
        self.mongo = mongo
        self.redis = redis
        self._platform_factory = platform
        self._platform: ServicePlatform | None = None
        self._clock = clock
        api = settings.api.url.rstrip("/")
        self.api_urls = [api + settings.api.health_path] + [
            p if "://" in p else api + "/" + p.lstrip("/") for p in settings.monitor.api_paths
        ]
        self.access_log = AccessLog(
            settings.logs.access_log, settings.monitor.error_window_s, clock
        )
        self._usage: LocalProcesses | HostUsage | None = None
        if platform is None:
            ports = server_ports(
                {
                    "backend": settings.api.url,
                    "mongodb": settings.mongo.uri,
                    "redis": settings.redis.url,
                }
            )
            self._usage = LocalProcesses(ports) if ports else HostUsage()
        self._redis_before: dict[str, tuple[int, int]] | None = None
        self._oplat_before: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self.access_log.close()
        if self._platform is not None:
            self._platform.close()

    # ---------------------------------------------------------------------------- sample

    def sample(self, window_s: float | None = None) -> Sample:
        window = self.settings.monitor.window_s if window_s is None else window_s
        started = time.perf_counter()
        end = started + window
        self.http.prepare(self.api_urls)
        mongo_down = self.mongo.preflight()
        mongo_reason = mongo_down.message if mongo_down else None
        if self._usage is not None:
            self._usage.prime()
        from travellr_ops.ops.backup.objectives import RPO_METRICS, rpo_metrics

        tasks: list[tuple[_Names, Callable[[], list[Metric]]]] = [
            (_API, lambda: self._api(end)),
            (_DB, lambda: self._db(mongo_reason, end)),
            (_CACHE, lambda: self._cache(end)),
            ([], lambda: self._resources(end)),
            ([], self._disks),
            (_ERRORS, lambda: self._errors(end)),
            (_BUSINESS, lambda: self._business(mongo_reason)),
            (RPO_METRICS, lambda: rpo_metrics(self.settings, self._clock())),
        ]
        with ThreadPoolExecutor(len(tasks) + 1, thread_name_prefix="monitor") as pool:
            flag = pool.submit(self._maintenance)
            results = list(pool.map(self._guarded, tasks))
            maintenance = flag.result()
        metrics = [m for found in results for m in found]
        duration = (time.perf_counter() - started) * 1000
        return Sample(self._clock(), window, round(duration, 1), maintenance, metrics)

    def _guarded(self, task: tuple[_Names, Callable[[], list[Metric]]]) -> list[Metric]:
        names, fn = task
        try:
            return fn()
        except TravellrError as exc:
            limits = self.settings.thresholds
            return [
                unknown(name, unit, exc.message, getattr(limits, attr) if attr else None)
                for name, unit, attr in names
            ]

    @staticmethod
    def _wait_until(end: float) -> None:
        left = end - time.perf_counter()
        if left > 0:
            time.sleep(left)

    def _maintenance(self) -> dict[str, Any] | None:
        try:
            raw = self.redis.get(self.settings.maintenance.key)
        except ServiceError:
            return None  # the cache metric reports Redis itself
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return {"message": raw.decode("utf-8", "replace")}
        return value if isinstance(value, dict) else {"message": str(value)}

    # ------------------------------------------------------------------------------- API

    def _api(self, end: float) -> list[Metric]:
        probes = self.settings.monitor.api_probes
        limit = self.settings.thresholds.api_response_ms

        def probe_one(url: str) -> tuple[str, list[float], int, str]:
            """Probes spread across the window: latencies, 5xx answers, last failure."""
            latencies: list[float] = []
            server_errors = 0
            failure = ""
            span = max(end - time.perf_counter(), 0.0)
            for i in range(probes):
                self._wait_until(end - span + span * i / probes)
                try:
                    response = self.http.get(url)
                except ServiceError as exc:
                    failure = exc.message
                    continue
                latencies.append(response.latency_ms)
                server_errors += response.status >= 500
            return url, latencies, server_errors, failure

        with ThreadPoolExecutor(len(self.api_urls), thread_name_prefix="monitor-api") as pool:
            found = list(pool.map(probe_one, self.api_urls))
        latencies = [lat for _, lats, _, _ in found for lat in lats]
        if not latencies:
            raise ServiceError(found[0][3] or "no API probe answered")
        sent = probes * len(self.api_urls)
        notes = []

        def tail_ms(values: list[float]) -> float:
            """An endpoint's p95; one that never answered is the slowest of all."""
            value = percentile(values, 95)
            return math.inf if value is None else value

        slowest = max(found, key=lambda f: tail_ms(f[1]))
        if len(self.api_urls) > 1 and slowest[1]:
            notes.append(f"slowest {slowest[0]} p95 {tail_ms(slowest[1]):.1f} ms")
        failed = sent - len(latencies)
        if failed:
            notes.append(f"{failed} of {sent} probes got no answer: {found[0][3] or 'see -v'}")
        errors = sum(f[2] for f in found)
        if errors:
            notes.append(f"{errors} of {sent} probes answered 5xx")
        detail = f"{len(latencies)} probes of {len(self.api_urls)} endpoint(s)"
        detail = "; ".join([detail, *notes])
        p95_ms = _rounded(latencies, 95)
        return [
            judged("api_response_p95_ms", p95_ms, "ms", limit, source="probes", detail=detail),
            Metric(
                "api_response_p50_ms",
                _rounded(latencies, 50),
                "ms",
                Verdict.INFO,
                source="probes",
            ),
            Metric(
                "api_response_max_ms", round(max(latencies), 1), "ms", Verdict.INFO, source="probes"
            ),
        ]

    # ----------------------------------------------------------------------------- MongoDB

    def _db(self, mongo_down: str | None, end: float) -> list[Metric]:
        if mongo_down:
            raise ServiceError(mongo_down)
        limit = self.settings.thresholds.db_query_ms
        cfg = self.settings.monitor
        status = self.mongo.optional_command("serverStatus", admin=True) or {}
        before = op_latencies(status) if self._oplat_before is None else self._oplat_before
        times: list[float] = []
        per_query: list[tuple[str, float]] = []
        for query in cfg.db_queries:
            runs = [run_query(self.mongo, query)[1] for _ in range(cfg.db_query_runs)]
            times += runs
            per_query.append((query.name, percentile(runs, 50) or 0.0))
        metrics: list[Metric] = []
        if times:
            name, median = max(per_query, key=lambda q: q[1])
            metrics.append(
                judged(
                    "db_query_ms",
                    _rounded(times, 95),
                    "ms",
                    limit,
                    source="timed queries",
                    detail=f"p95 of {len(times)} runs of {len(per_query)} queries; "
                    f"slowest {name} (median {median:.1f} ms)",
                )
            )
        self._wait_until(end)
        after = op_latencies(self.mongo.optional_command("serverStatus", admin=True) or {})
        self._oplat_before = after
        if after is None or before is None:
            for m in metrics:
                m.detail += "; serverStatus.opLatencies not reported by this server"
        elif after[1] > before[1]:
            avg_ms = (after[0] - before[0]) / (after[1] - before[1]) / 1000
            metrics.append(
                judged(
                    "db_op_latency_ms",
                    round(avg_ms, 2),
                    "ms",
                    limit,
                    source="serverStatus.opLatencies",
                    detail=f"server's mean over {after[1] - before[1]} operations",
                )
            )
        return metrics

    def _business(self, mongo_down: str | None) -> list[Metric]:
        if mongo_down:
            raise ServiceError(mongo_down)
        cfg = self.settings.monitor
        users, _ = run_query(self.mongo, cfg.active_users)
        bookings, _ = run_query(self.mongo, cfg.conversion_bookings)
        searches, _ = run_query(self.mongo, cfg.conversion_searches)
        conversion = round(bookings * 100 / searches, 2) if searches else None
        return [
            Metric(
                "active_users",
                users,
                "users",
                Verdict.INFO,
                source="query",
                detail=_describe(cfg.active_users),
            ),
            Metric(
                "booking_conversion_pct",
                conversion,
                "%",
                Verdict.INFO,
                source="query",
                detail=f"{bookings:.0f} bookings / {searches:.0f} searches "
                f"({_describe(cfg.conversion_searches)})",
            ),
        ]

    # ------------------------------------------------------------------------------ Redis

    def _cache(self, end: float) -> list[Metric]:
        nodes = self.redis.primaries()
        with self._lock:
            before = self._redis_before
        if before is None:
            before = {n.name: _lookups(n.info("stats")) for n in nodes}
        self._wait_until(end)
        after = {n.name: _lookups(n.info("stats")) for n in nodes}
        with self._lock:
            self._redis_before = after
        hits = sum(after[k][0] - before.get(k, after[k])[0] for k in after)
        misses = sum(after[k][1] - before.get(k, after[k])[1] for k in after)
        where = f"{len(nodes)} primaries" if self.redis.is_cluster else "1 server"
        detail = f"{hits} hits, {misses} misses in the window ({where})"
        lookups = hits + misses
        rate = hit_rate(hits, misses)
        metric = judged(
            "cache_hit_rate_pct",
            rate,
            "%",
            self.settings.thresholds.cache_hit_rate_pct,
            "min",
            source="INFO keyspace_hits/misses delta",
            detail=detail,
        )
        if lookups < self.settings.monitor.cache_min_lookups and metric.verdict != Verdict.IDLE:
            metric.verdict = Verdict.IDLE
            metric.detail += f"; fewer than {self.settings.monitor.cache_min_lookups} lookups"
        return [metric]

    # ----------------------------------------------------------------------- CPU, memory

    def _resources(self, end: float) -> list[Metric]:
        limits = self.settings.thresholds
        self._wait_until(end)
        if self._usage is not None:
            usages = self._usage.read()
            source = "host" if isinstance(self._usage, HostUsage) else "local process"
        else:
            try:
                usages = self._platform_usage()
            except TravellrError as exc:
                return [
                    unknown("cpu_pct", "%", exc.message, limits.cpu_pct),
                    unknown("memory_pct", "%", exc.message, limits.memory_pct),
                ]
            source = self.settings.platform
        metrics = []
        for u in usages:
            if u.cpu_pct is None and u.memory_pct is None:
                metrics.append(unknown("cpu_pct", "%", u.detail, limits.cpu_pct, u.service))
                metrics.append(unknown("memory_pct", "%", u.detail, limits.memory_pct, u.service))
                continue
            for name, value, limit in (
                ("cpu_pct", u.cpu_pct, limits.cpu_pct),
                ("memory_pct", u.memory_pct, limits.memory_pct),
            ):
                metrics.append(
                    judged(
                        name, value, "%", limit, subject=u.service, source=source, detail=u.detail
                    )
                )
        return metrics

    def _platform_usage(self) -> list[Usage]:
        assert self._platform_factory is not None
        if self._platform is None:
            self._platform = self._platform_factory()
        by_service: dict[str, list[Any]] = {}
        for usage in self._platform.stats():
            by_service.setdefault(usage.service, []).append(usage)
        found = []
        for service, instances in sorted(by_service.items()):
            cpus = [i.cpu_pct for i in instances if i.cpu_pct is not None]
            mems = [i.memory_pct for i in instances if i.memory_pct is not None]
            found.append(
                Usage(
                    service,
                    max(cpus) if cpus else None,
                    max(mems) if mems else None,
                    f"busiest of {len(instances)} instance(s)",
                )
            )
        return found

    # ------------------------------------------------------------------------------ disks

    def _disks(self) -> list[Metric]:
        limit = self.settings.thresholds.disk_pct
        metrics = []
        named: list[tuple[str, Path]] = [(str(p), p) for p in self.settings.disk_paths]
        named.append(("backups", self.settings.backup.dir))
        seen: dict[int, Metric] = {}
        for label, path in named:
            existing = path.absolute()
            while not existing.exists() and existing != existing.parent:
                existing = existing.parent
            device = existing.stat().st_dev
            if device in seen:
                seen[device].detail += f", {label}"
                continue
            usage = shutil.disk_usage(existing)
            pct = round(usage.used * 100 / usage.total, 1) if usage.total else 0.0
            metric = judged(
                "disk_pct", pct, "%", limit, subject=label, source="statvfs", detail=f"{existing}"
            )
            seen[device] = metric
            metrics.append(metric)
        # the MongoDB data volume, where the server reports it (mongod 4.4+ dbStats)
        try:
            if self.mongo.preflight() is None:
                stats = self.mongo.command("dbStats")
                used, total = stats.get("fsUsedSize"), stats.get("fsTotalSize")
                if used and total:
                    metrics.append(
                        judged(
                            "disk_pct",
                            round(float(used) * 100 / float(total), 1),
                            "%",
                            limit,
                            subject="mongodb",
                            source="dbStats fsUsedSize/fsTotalSize",
                        )
                    )
        except TravellrError:
            pass  # MongoDB's own metrics report it down
        return metrics

    # ------------------------------------------------------------------------ error rate

    def _errors(self, end: float) -> list[Metric]:
        self._wait_until(end)
        counts = self.access_log.read()
        rate = round(counts.errors * 100 / counts.requests, 2) if counts.requests else None
        return [
            judged(
                "error_rate_pct",
                rate,
                "%",
                self.settings.thresholds.error_rate_pct,
                source="access log",
                detail=f"{counts.errors} of {counts.requests} requests 5xx in the last "
                f"{counts.span_s:g} s ({self.access_log.path})",
            )
        ]


def _lookups(info: dict[str, Any]) -> tuple[int, int]:
    return int(info.get("keyspace_hits", 0)), int(info.get("keyspace_misses", 0))


def _describe(query: Any) -> str:
    what = (
        f"distinct {query.distinct} of {query.collection}" if query.distinct else query.collection
    )
    if query.time_field and query.within_h:
        what += f", {query.time_field} in the last {query.within_h:g} h"
    return str(what)
