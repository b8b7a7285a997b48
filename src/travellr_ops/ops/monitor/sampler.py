"""One sample of every key metric, taken so that the monitor does not move what it measures.

A sample spans a window (``monitor.window_s`` for `monitor once`, the interval when live) and
runs in three phases, never overlapping:

1. the window: the API probes spread across it (latency), beside only cheap reads (the cache
   and CPU deltas over the window, the maintenance flag, the file systems);
2. the timed queries, one after another, with nothing else of the monitor's running;
3. the server statistics (serverStatus, dbStats) and the business queries, the expensive part.

SecantusDB (and a busy mongod) serves the monitor's database work at the expense of the
backend's own queries: run beside the probes, it made the API latency the monitor reported,
and the CPU it read, figures of its own load. A live monitor takes phases 2 and 3 at most
every ``monitor.query_every_s`` / ``monitor.stats_every_s`` and shows their last figures (with
their age) in between. A source that fails makes its metrics "unknown" with the reason; the
others still come out.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from travellr_ops.errors import ServiceError, TravellrError
from travellr_ops.ops import logsource
from travellr_ops.ops.cache import hit_rate
from travellr_ops.ops.maintenance_windows import Window, covering
from travellr_ops.ops.monitor import maintenance_time
from travellr_ops.ops.monitor.metrics import Metric, Sample, judged, unknown
from travellr_ops.ops.monitor.sources import (
    MONITOR_AGENT,
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
def open_sampler(rt: Runtime, live: bool = False) -> Iterator[Sampler]:
    """A sampler over the run context's servers; every client closed when the block ends.
    ``live``: the database work at its slower cadence (see the module's docstring)."""
    s = rt.settings
    with (
        rt.http(1 + len(s.monitor.api_paths)) as http,
        rt.mongo() as mongo,
        rt.redis() as redis,
    ):
        sampler = Sampler(
            s,
            http,
            mongo,
            redis,
            rt.platform_factory(),
            maintenance_windows=lambda since: maintenance_time.recorded(rt, since),
            live=live,
        )
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
        *,
        maintenance_windows: Callable[[float], list[Window]] = lambda since: [],
        live: bool = False,
    ) -> None:
        self.settings = settings
        self._windows = maintenance_windows
        #: a live monitor takes the database work at its slower cadence (`monitor once`: always)
        self.live = live
        #: part -> (when taken, seconds it took, its metrics)
        self._slow: dict[str, tuple[float, float, list[Metric]]] = {}
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
            logsource.reader(settings, "access", platform), settings.monitor.error_window_s, clock
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
        self._oplat_missing = False
        self._lock = threading.Lock()

    def close(self) -> None:
        self.access_log.close()
        if self._platform is not None:
            self._platform.close()

    # ---------------------------------------------------------------------------- sample

    def sample(self, window_s: float | None = None) -> Sample:
        window = self.settings.monitor.window_s if window_s is None else window_s
        cfg = self.settings.monitor
        started = time.perf_counter()
        end = started + window
        self.http.prepare(self.api_urls)
        mongo_down = self.mongo.preflight()
        mongo_reason = mongo_down.message if mongo_down else None
        if self._usage is not None:
            self._usage.prime()
        from travellr_ops.ops.backup.objectives import RPO_METRICS, rpo_metrics

        if self._oplat_before is None and mongo_reason is None:
            # the start of the server's own latency delta, before anything is timed
            with contextlib.suppress(TravellrError):
                status = self.mongo.optional_command("serverStatus", admin=True) or {}
                self._oplat_before = op_latencies(status)
        # 1. the window: the probes, and only cheap reads beside them
        tasks: list[tuple[_Names, Callable[[], list[Metric]]]] = [
            (_API, lambda: self._api(end)),
            (_CACHE, lambda: self._cache(end)),
            ([], lambda: self._resources(end)),
            ([], self._disks),
            (RPO_METRICS, lambda: rpo_metrics(self.settings, self._clock())),
        ]
        with ThreadPoolExecutor(len(tasks) + 1, thread_name_prefix="monitor") as pool:
            flag = pool.submit(self._maintenance_flag)
            results = list(pool.map(self._guarded, tasks))
            redis_flag, redis_answered = flag.result()
        metrics = [m for found in results for m in found]
        recorded = self._windows(self._clock() - cfg.error_window_s)
        maintenance = self._maintenance(redis_flag, redis_answered, recorded)
        metrics += self._guarded((_ERRORS, lambda: self._errors(redis_flag, recorded)))
        # 2. the timed queries, alone
        down = mongo_reason is not None
        metrics += self._due(
            "queries", cfg.query_every_s, (_DB, lambda: self._db(mongo_reason)), down
        )
        # 3. the expensive statistics, after everything that is timed
        metrics += self._due(
            "stats", cfg.stats_every_s, ([], lambda: self._server_stats(mongo_reason)), down
        )
        metrics += self._due(
            "business", cfg.stats_every_s, (_BUSINESS, lambda: self._business(mongo_reason)), down
        )
        if self._oplat_missing:
            for m in metrics:
                if m.name == "db_query_ms" and "opLatencies" not in m.detail:
                    m.detail += "; serverStatus.opLatencies not reported by this server"
        duration = (time.perf_counter() - started) * 1000
        return Sample(self._clock(), window, round(duration, 1), maintenance, metrics)

    def _due(
        self,
        part: str,
        every_s: float,
        task: tuple[_Names, Callable[[], list[Metric]]],
        down: bool = False,
    ) -> list[Metric]:
        """The part's metrics: taken now, or (live, not due yet, its server answering: not
        ``down``) the last ones again, their age in the detail. A server that stopped
        answering is reported in the sample that sees it (the alerts name it as the root cause
        before the API's symptoms), not a minute later. A part is due ``every_s`` after it was last taken, or later when it
        took long: it may keep the database busy at most ``monitor.db_budget_pct`` of the time
        (on a loaded SecantusDB the timed queries took seconds, and every second of them the
        backend's own queries waited)."""
        now = time.monotonic()
        last = self._slow.get(part)
        if self.live and last is not None and not down:
            taken_at, took_s, metrics = last
            gap = max(every_s, took_s * 100 / max(self.settings.monitor.db_budget_pct, 1e-3))
            if now - taken_at < gap:
                age = f"taken {now - taken_at:.0f} s ago (again after {gap:.0f} s)"
                return [
                    replace(m, detail=f"{m.detail}; {age}" if m.detail else age) for m in metrics
                ]
        found = self._guarded(task)
        if any(m.verdict != Verdict.UNKNOWN for m in found) or not found:
            self._slow[part] = (now, time.monotonic() - now, found)
        else:
            self._slow.pop(part, None)  # a source down is asked again next sample
        return found

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

    def _maintenance_flag(self) -> tuple[dict[str, Any] | None, bool]:
        """(the flag in Redis, whether Redis answered)."""
        try:
            raw = self.redis.get(self.settings.maintenance.key)
        except ServiceError:
            return None, False  # the cache metric reports Redis itself
        if raw is None:
            return None, True
        try:
            value = json.loads(raw)
        except ValueError:
            return {"message": raw.decode("utf-8", "replace")}, True
        return (value if isinstance(value, dict) else {"message": str(value)}), True

    def _maintenance(
        self, flag: dict[str, Any] | None, answered: bool, recorded: list[Window]
    ) -> dict[str, Any] | None:
        """Maintenance now: the flag; while Redis cannot say (e.g. its own maintenance), the
        window travellr-ops recorded in the store."""
        if flag is not None or answered:
            return flag
        window = covering(recorded, self._clock())
        return None if window is None else maintenance_time.as_flag(window)

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
                    response = self.http.get(url, headers={"User-Agent": MONITOR_AGENT})
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
        p95 = judged("api_response_p95_ms", p95_ms, "ms", limit, source="probes", detail=detail)
        at_least(p95, len(latencies), self.settings.monitor.min_probes, "answered probes")
        return [
            p95,
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

    def _db(self, mongo_down: str | None) -> list[Metric]:
        """The representative queries, timed one after another."""
        if mongo_down:
            raise ServiceError(mongo_down)
        limit = self.settings.thresholds.db_query_ms
        cfg = self.settings.monitor
        times: list[float] = []
        per_query: list[tuple[str, float]] = []
        for query in cfg.db_queries:
            runs = [run_query(self.mongo, query)[1] for _ in range(cfg.db_query_runs)]
            times += runs
            per_query.append((query.name, percentile(runs, 50) or 0.0))
        if not times:
            return []
        name, median = max(per_query, key=lambda q: q[1])
        return [
            judged(
                "db_query_ms",
                _rounded(times, 95),
                "ms",
                limit,
                source="timed queries",
                detail=f"p95 of {len(times)} runs of {len(per_query)} queries, one at a time; "
                f"slowest {name} (median {median:.1f} ms)",
            )
        ]

    def _server_stats(self, mongo_down: str | None) -> list[Metric]:
        """The server's own mean operation latency since the previous statistics, and its
        data volume's use (mongod 4.4+ dbStats): the expensive commands, taken last."""
        if mongo_down:
            raise ServiceError(mongo_down)
        limit = self.settings.thresholds
        metrics: list[Metric] = []
        status = self.mongo.optional_command("serverStatus", admin=True) or {}
        after = op_latencies(status)
        before, self._oplat_before = self._oplat_before, after
        self._oplat_missing = after is None
        if after is not None and before is not None and after[1] > before[1]:
            avg_ms = (after[0] - before[0]) / (after[1] - before[1]) / 1000
            metrics.append(
                judged(
                    "db_op_latency_ms",
                    round(avg_ms, 2),
                    "ms",
                    limit.db_query_ms,
                    source="serverStatus.opLatencies",
                    detail=f"server's mean over {after[1] - before[1]} operations",
                )
            )
        stats = self.mongo.command("dbStats")
        used, total = stats.get("fsUsedSize"), stats.get("fsTotalSize")
        if used and total:
            metrics.append(
                judged(
                    "disk_pct",
                    round(float(used) * 100 / float(total), 1),
                    "%",
                    limit.disk_pct,
                    subject="mongodb",
                    source="dbStats fsUsedSize/fsTotalSize",
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
        at_least(metric, lookups, self.settings.monitor.cache_min_lookups, "lookups")
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
        return metrics

    # ------------------------------------------------------------------------ error rate

    def _errors(self, flag: dict[str, Any] | None, recorded: list[Window]) -> list[Metric]:
        """The 5xx share of the access log's requests in the error window: travellr-ops's own
        probes and the 503s maintenance served left out, too few requests insufficient."""
        now = self._clock()
        windows = list(recorded)
        from_flag = maintenance_time.from_flag(flag, now - self.settings.monitor.error_window_s)
        if from_flag is not None:
            windows.append(from_flag)
        counts = self.access_log.read(maintenance_time.second_in(windows) if windows else None)
        detail = (
            f"{counts.errors} of {counts.requests} requests 5xx in the last "
            f"{counts.span_s:g} s ({self.access_log.path})"
        )
        if counts.left_out():
            detail += f"; {counts.left_out()}"
        metric = judged(
            "error_rate_pct",
            counts.rate_pct,
            "%",
            self.settings.thresholds.error_rate_pct,
            source="access log",
            detail=detail,
        )
        at_least(metric, counts.requests, self.settings.monitor.min_requests, "requests")
        return [metric]


def at_least(metric: Metric, events: int, least: int, what: str) -> None:
    """A rate or percentile over fewer events than ``least`` is shown with its count but not
    judged: neither ok nor breach."""
    if events < least and metric.verdict in (Verdict.OK, Verdict.BREACH, Verdict.IDLE):
        metric.verdict = Verdict.INSUFFICIENT
        metric.detail += f"; {events} {what}, under the {least} needed to judge"


def _lookups(info: dict[str, Any]) -> tuple[int, int]:
    return int(info.get("keyspace_hits", 0)), int(info.get("keyspace_misses", 0))


def _describe(query: Any) -> str:
    what = (
        f"distinct {query.distinct} of {query.collection}" if query.distinct else query.collection
    )
    if query.time_field and query.within_h:
        what += f", {query.time_field} in the last {query.within_h:g} h"
    return str(what)
