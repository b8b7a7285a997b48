"""The looks doctor takes, each through the ops code the matching command runs.

No check probes anything itself: `health`, `service status`, `db ping` (with the replica
set's members), `db indexes analyze`, `db slow` (the profiler's record), `cache stats` (and
`cache bigkeys --sample`), `monitor once`, the monitor's stored memory samples (fitted as
`service profile --leak` fits), `deploy history`, `maintenance status` with the store's
maintenance windows, and `incident list --open` do the work; a check only keeps the values
the rules read. A server that refuses or times out is something a check
*saw* (``reachable: False`` with the error's kind), not a check that failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from travellr_ops.errors import AuthError, ServiceError
from travellr_ops.runtime import Runtime

if TYPE_CHECKING:
    from travellr_ops.adapters.redis import RedisAdapter
    from travellr_ops.ops.cache import PrefixShare
    from travellr_ops.ops.db.queries import SlowOperation
    from travellr_ops.ops.monitor.history import MetricHistory
    from travellr_ops.settings import Settings

Facts = dict[str, Any]
#: a check: (one-line summary, facts)
CheckFn = Callable[[Runtime], tuple[str, Facts]]


@dataclass(frozen=True)
class CheckDef:
    name: str
    #: the command whose ops code it runs (shown with the evidence)
    source: str
    fn: CheckFn
    #: only when a service platform is configured
    needs_platform: bool = False


def _unreachable(exc: ServiceError) -> Facts:
    return {"reachable": False, "kind": exc.kind, "error": exc.message}


# -- health -------------------------------------------------------------------------------------
def health(rt: Runtime) -> tuple[str, Facts]:
    report = rt.health(fresh=True, timeout_s=rt.settings.doctor.client_timeout_s)
    checks = [
        {
            "name": c.name,
            "target": c.target,
            "verdict": str(c.verdict),
            "latency_ms": c.latency_ms,
            "detail": c.detail,
        }
        for c in report.checks
    ]
    bad = [f"{c['name']} {c['verdict']}" for c in checks if c["verdict"] != "ok"]
    return f"{report.verdict}" + (f" ({', '.join(bad)})" if bad else ""), {
        "verdict": str(report.verdict),
        "checks": checks,
        "maintenance": report.maintenance,
    }


# -- platform -----------------------------------------------------------------------------------
def platform(rt: Runtime) -> tuple[str, Facts]:
    from travellr_ops.ops.service import status

    with rt.platform() as p:
        report = status(p)
    services = []
    for svc in report.services:
        services.append(
            {
                "name": svc.name,
                "available": svc.available,
                "desired": svc.desired,
                "ready": svc.ready,
                "stopped": svc.stopped,
                "image": svc.image,
                "message": svc.message,
                "conditions": list(svc.conditions),
                "instances": [
                    {
                        "name": i.name,
                        "state": i.state,
                        "ready": i.ready,
                        "restarts": i.restarts,
                        "image": i.image,
                        "last_termination": i.last_termination,
                        "started_at": i.started_at.isoformat() if i.started_at else None,
                    }
                    for i in svc.instances
                ],
            }
        )
    summary = ", ".join(f"{svc.name} {svc.ready}/{svc.desired}" for svc in report.services)
    return f"{report.platform}: {summary}", {"platform": report.platform, "services": services}


# -- MongoDB ------------------------------------------------------------------------------------
def mongodb(rt: Runtime) -> tuple[str, Facts]:
    from travellr_ops.ops.db.server import ping

    s = rt.settings
    with rt.mongo() as mongo:
        report = ping(
            mongo, history=s.state_dir / "db-seen.json", look_around=False, platform=s.platform
        )
    facts: Facts = {
        "uri": report.uri,
        "ok": report.ok,
        "latency_ms": report.latency_ms,
        "role": report.role,
        "topology": report.topology,
        "version": report.version,
        "set_name": report.set_name,
        # the replica set's members as replSetGetStatus gives them (None: not a replica set,
        # or their states could not be read: ``member_notes`` says why)
        "members": None
        if report.members is None
        else [
            {
                "name": m.name,
                "state": m.state,
                "health": m.health,
                "lag_s": m.lag_s,
                "self": m.self,
            }
            for m in report.members
        ],
        "member_notes": report.notes,
    }
    if report.problem is not None:
        p = report.problem
        facts["problem"] = {"kind": p.kind, "message": p.message, "hint": p.hint}
        return f"{p.kind}: {p.message}", facts
    members = facts["members"]
    states = f", {len(members)} member(s)" if members else ""
    return f"{report.role}, ping {report.latency_ms} ms{states}", facts


def slow_ops(rt: Runtime) -> tuple[str, Facts]:
    """`db slow` over the last doctor.slow_ops_window_s: what the profiler recorded."""
    from datetime import UTC, timedelta

    from travellr_ops.ops.db.queries import slow

    s = rt.settings
    d = s.doctor
    min_ms = s.thresholds.db_query_ms if d.slow_ops_min_ms is None else d.slow_ops_min_ms
    since = datetime.now(UTC) - timedelta(seconds=d.slow_ops_window_s)
    try:
        with rt.mongo() as mongo:
            report = slow(mongo, since, min_ms, d.slow_ops_limit)
    except AuthError as exc:
        # a user without the profile privilege (dbAdmin): what it cannot read is a note, as
        # `db indexes analyze` takes it, not a diagnosis that cannot conclude
        return f"the profiler cannot be read: {exc.message}", {
            "readable": False,
            "error": exc.message,
        }
    theirs = [o for o in report.operations if not _own_operation(o)]
    # as `db slow --json` gives them, less the client's name (ours are already left out)
    operations = [{k: v for k, v in asdict(o).items() if k != "app"} for o in theirs]
    profiler = report.profiler
    facts: Facts = {
        "readable": True,
        "profiler": {
            "level": profiler.level,
            "name": profiler.level_name,
            "slowms": profiler.slowms,
        },
        "window_s": d.slow_ops_window_s,
        "min_ms": min_ms,
        "limit": d.slow_ops_limit,
        # the newest ``limit`` were read: there may be more
        "limited": len(report.operations) >= d.slow_ops_limit,
        "ignored_own": len(report.operations) - len(theirs),
        "operations": operations,
        "notes": report.notes,
    }
    head = f"{len(operations)} operation(s) over {min_ms:g} ms"
    return head + f" (profiler {profiler.level_name})", facts


def _own_operation(op: SlowOperation) -> bool:
    """travellr-ops's own reads (mongod records our appName), and explains: a person's or a
    tool's look at a plan, never the app's work (a server that records no appName still
    shows doctor's own `db indexes analyze` explains as slow commands)."""
    return op.app == "travellr-ops" or (op.op == "command" and op.query == "explain")


def indexes(rt: Runtime) -> tuple[str, Facts]:
    from travellr_ops.ops.db.indexes import analyze_app

    report = analyze_app(rt)
    findings = [
        {
            "kind": f.kind,
            "collection": f.collection,
            "subject": f.subject,
            "detail": f.detail,
            "command": f.fix.command if f.fix else None,
            "declared": bool(f.fix and f.fix.declared),
        }
        for f in report.findings
    ]
    serious = [f for f in findings if f["kind"] in SERIOUS_INDEX_FINDINGS]
    return f"{len(serious)} query/index problem(s) of {len(report.queries)} shapes", {
        "source": report.source,
        "findings": findings,
    }


#: the analyze findings that slow queries down (redundant and unused indexes do not)
SERIOUS_INDEX_FINDINGS = ("collscan", "poor_ratio", "in_memory_sort", "missing_required")


# -- Redis --------------------------------------------------------------------------------------
def cache(rt: Runtime) -> tuple[str, Facts]:
    from travellr_ops.ops.cache import bigkeys, stats

    s = rt.settings
    try:
        with rt.redis() as redis:
            oom_before = _oom_errors(redis)
            report = stats(
                redis, s.doctor.window_s, s.doctor.cache_sample, s.thresholds.cache_hit_rate_pct
            )
            oom_errors = _oom_errors(redis)
            big = bigkeys(redis, s.doctor.cache_sample, 3, s.cache.scan_count)
    except ServiceError as exc:
        return f"not reachable: {exc.message}", _unreachable(exc)
    t = report.total
    lookups = report.window_hits + report.window_misses
    usual = _usual_hit_rate(rt)
    facts: Facts = {
        "reachable": True,
        "target": report.target,
        "used_memory": t.used_memory,
        "maxmemory": t.maxmemory,
        "policy": t.maxmemory_policy,
        "evicted_keys": t.evicted_keys,
        "keys": sum(db["keys"] for db in t.databases.values()),
        "oom_errors": oom_errors,
        "oom_errors_window": oom_errors - oom_before,
        "hit_rate_pct": report.hit_rate_pct,
        "window_s": report.window_s,
        "window_lookups": lookups,
        "window_hit_rate_pct": report.window_hit_rate_pct,
        "threshold_pct": report.threshold_pct,
        "usual_hit_rate_pct": usual,
        # the key families by the memory they hold (estimated from the sample), largest first
        "prefixes": _families(report.prefixes),
        "bigkeys": [{"key": k.key, "bytes": k.bytes} for k in big.keys],
    }
    rate = report.window_hit_rate_pct
    return (
        f"{facts['keys']} keys, hit rate "
        + ("-" if rate is None else f"{rate:g} %")
        + f" of {lookups} lookups, policy {t.maxmemory_policy}"
    ), facts


def _families(prefixes: list[PrefixShare]) -> list[Facts]:
    """The three key families holding the most memory (estimated from the sample)."""
    ranked = sorted(prefixes, key=lambda p: -p.estimated_keys * (p.avg_bytes or 0))
    return [
        {
            "prefix": p.prefix,
            "share_pct": p.share_pct,
            "estimated_keys": p.estimated_keys,
            "estimated_bytes": round(p.estimated_keys * (p.avg_bytes or 0)),
        }
        for p in ranked[:3]
    ]


def _oom_errors(redis: RedisAdapter) -> int:
    """Writes refused for want of memory since Redis started (INFO errorstats)."""
    count = 0
    for node in redis.primaries():
        oom = node.info("errorstats").get("errorstat_OOM")
        count += int(oom.get("count", 0)) if isinstance(oom, dict) else 0
    return count


def _usual_hit_rate(rt: Runtime) -> float | None:
    """The median hit rate the monitor recorded over the last hour (None: none judged)."""
    from travellr_ops.ops.monitor.history import load_histories, open_history
    from travellr_ops.store import StoreError
    from travellr_ops.vocab.stats import percentile

    now = time.time()
    try:
        with rt.store() as store:
            found = load_histories(open_history(store), now - 3600, now)
    except StoreError:
        return None
    history = found.get("cache_hit_rate_pct")
    if history is None:
        return None
    judged = [
        v
        for v, verdict in zip(history.values, history.verdicts, strict=True)
        if v is not None and verdict in ("ok", "breach")
    ]
    return percentile(judged, 50)


# -- API, latency, errors, CPU/memory, disks: one `monitor once` sample ------------------------
def api(rt: Runtime) -> tuple[str, Facts]:
    from travellr_ops.ops.monitor.once import sample_once

    # not kept in the monitor's history: see sample_once
    sample = sample_once(rt, window_s=rt.settings.doctor.window_s, keep=False).sample
    metrics = [
        {
            "key": m.key,
            "name": m.name,
            "subject": m.subject,
            "value": m.value,
            "unit": m.unit,
            "verdict": str(m.verdict),
            "threshold": m.threshold,
            "detail": m.detail,
        }
        for m in sample.metrics
    ]
    breaches = [m.key for m in sample.metrics if m.verdict == "breach"]
    return (f"breached: {', '.join(breaches)}" if breaches else "within thresholds"), {
        "metrics": metrics,
        "maintenance": sample.maintenance,
    }


# -- memory over time: the monitor's stored samples ---------------------------------------------
def memory_trend(rt: Runtime) -> tuple[str, Facts]:
    """Each service's memory over the monitor's samples of the last doctor.leak_window_s,
    fitted as `service profile --leak` fits a process's (least squares, growing/flat/
    insufficient).

    The monitor stores memory as a percentage (``memory_pct``, one row per service per
    sample), not in bytes. Without a platform it is the local process's resident size as a
    share of this machine's memory (psutil's memory_percent), which converts back to MB; on
    a platform it is a share of the container's or pod's memory limit, which is not stored,
    so the trend stays in percentage points per hour there.
    """
    from travellr_ops.ops.monitor.history import load_histories, open_history

    s = rt.settings
    now = time.time()
    window = s.doctor.leak_window_s
    with rt.store() as store:
        found = load_histories(open_history(store), now - window, now)
    memory = [
        h
        for h in found.values()
        if h.metric == "memory_pct" and h.subject not in ("", "host")  # a service's, not the host's
    ]
    machine = _machine_memory() if s.platform == "none" else None
    services = [_trend(h, machine, s) for h in memory]
    shown = [
        f"{t['service']} {t['verdict']}"
        + (f" {t['rate']:g} {t['unit']}" if t["verdict"] != "insufficient" else "")
        + f" ({t['samples']} samples)"
        for t in services
    ]
    return (", ".join(shown) or "no memory samples"), {
        "window_s": window,
        "min_span_s": s.doctor.leak_min_span_s,
        "services": services,
    }


def _machine_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def _trend(history: MetricHistory, machine_bytes: int | None, s: Settings) -> Facts:
    from travellr_ops.ops.profile import fit_leak

    points = [(t, v) for t, v in zip(history.times, history.values, strict=True) if v is not None]
    if machine_bytes is not None:
        unit, threshold = "MB/h", s.thresholds.leak_mb_per_h
        samples = [(t, round(v / 100 * machine_bytes)) for t, v in points]
        base = f"memory_pct x this machine's {machine_bytes / 1e9:.1f} GB"
    else:
        # fit_leak reads its values as bytes and its rate in MB/h: fed percentage points
        # times 1e6, its "MB" are percentage points of the limit (and its 1 MB noise floor,
        # one point: the stored values are rounded to 0.1)
        unit, threshold = "%/h", s.doctor.leak_pct_per_h
        samples = [(t, round(v * 1e6)) for t, v in points]
        base = "memory_pct of the container's/pod's limit"
    fit = fit_leak(history.subject, 0, samples, threshold)
    # a line through a few minutes of readings extrapolates warm-up to an hourly rate
    verdict = "insufficient" if fit.minutes * 60 < s.doctor.leak_min_span_s else fit.verdict
    return {
        "service": history.subject,
        "samples": len(samples),
        "minutes": fit.minutes,
        "verdict": verdict,
        "leak": verdict == "growing" and not fit.ok,
        "rate": fit.mb_per_h,
        "unit": unit,
        "r_squared": fit.r_squared,
        "threshold": threshold,
        "first": round(samples[0][1] / 1e6, 1) if samples else None,
        "last": round(samples[-1][1] / 1e6, 1) if samples else None,
        "value_unit": "MB" if machine_bytes is not None else "%",
        "base": base,
    }


# -- context: deploys, maintenance, incidents ----------------------------------------------------
def deploy(rt: Runtime) -> tuple[str, Facts]:
    from travellr_ops.ops.deploy.history import History

    history = History(rt.settings.state_dir, rt.settings.store.timeout_s)
    try:
        entries = history.entries(limit=10)
    finally:
        history.close()
    now = time.time()
    recent = []
    for e in entries:
        try:
            started = datetime.fromisoformat(e.started_at).timestamp()
        except ValueError:
            continue
        if now - started <= rt.settings.doctor.deploy_recent_s:
            recent.append(
                {
                    "id": e.id,
                    "kind": e.kind,
                    "service": e.service,
                    "started_at": e.started_at,
                    "ago_s": round(now - started),
                    "outcome": e.outcome,
                    "image_from": e.image_from,
                    "image_to": e.image_to,
                    "user": e.user,
                }
            )
    return f"{len(recent)} deploy(s) in the last {rt.settings.doctor.deploy_recent_s:g} s", {
        "recent": recent
    }


def maintenance(rt: Runtime) -> tuple[str, Facts]:
    from travellr_ops.ops import maintenance_windows as windows
    from travellr_ops.ops.maintenance import status

    s = rt.settings
    now = time.time()
    with rt.store() as store:
        window = windows.active(store, now)
        known = windows.windows(store, now - 7 * 86400)
    last = known[-1] if known else None
    facts: Facts = {
        "window": None
        if window is None
        else {"started": window.started, "until": window.until, "by": window.by},
        "last_window": None
        if last is None
        else {"started": last.started, "end": last.end, "by": last.by, "reason": last.reason},
    }
    try:
        with rt.redis() as redis:
            flag = status(redis, s.maintenance.key)
    except ServiceError as exc:
        facts.update(_unreachable(exc))
        return f"flag unknown ({exc.message})", facts
    facts.update(
        {
            "reachable": True,
            "on": flag.on,
            "since": flag.since,
            "by": flag.by,
            "message": flag.message,
            "until": flag.until,
            "expires_in_s": flag.expires_in_s,
        }
    )
    if not flag.on:
        return "off", facts
    # the flag is forgotten when travellr-ops opened no window for it, or its window is over
    facts["forgotten"] = window is None
    return (
        f"on since {flag.since} by {flag.by}" + (" (forgotten)" if window is None else "")
    ), facts


def incident(rt: Runtime) -> tuple[str, Facts]:
    from travellr_ops.ops.incident import record
    from travellr_ops.ops.incident.procedure import store_for

    store = store_for(rt.settings)
    try:
        found = record.listing(store, only_open=True)
    finally:
        store.close()
    items = [
        {"id": i.id, "title": i.title, "severity": i.severity, "opened": record.iso(i.opened_at)}
        for i in found
    ]
    return f"{len(items)} open", {"open": items}


CHECKS: dict[str, CheckDef] = {
    c.name: c
    for c in (
        CheckDef("health", "health", health),
        CheckDef("platform", "service status", platform, needs_platform=True),
        CheckDef("mongodb", "db ping", mongodb),
        CheckDef("indexes", "db indexes analyze", indexes),
        CheckDef("slow_ops", "db slow", slow_ops),
        CheckDef("cache", "cache stats; cache bigkeys --sample", cache),
        CheckDef("api", "monitor once", api),
        CheckDef("memory_trend", "the monitor's stored memory samples", memory_trend),
        CheckDef("deploy", "deploy history", deploy),
        CheckDef("maintenance", "maintenance status; the store's windows", maintenance),
        CheckDef("incident", "incident list", incident),
    )
}

_CONTEXT = ("health", "platform", "deploy", "incident")
#: the checks each symptom's runbook procedure walks through (no symptom: all of them)
FOR_SYMPTOM: dict[str, tuple[str, ...]] = {
    "down": (*_CONTEXT, "mongodb", "cache", "api", "maintenance"),
    "db": (*_CONTEXT, "mongodb", "indexes"),
    "memory": (*_CONTEXT, "cache", "api", "memory_trend"),
    "cache": (*_CONTEXT, "cache", "api", "maintenance"),
    "cpu": (*_CONTEXT, "api", "indexes", "slow_ops", "mongodb"),
    "slow": (*_CONTEXT, "api", "indexes", "slow_ops", "mongodb", "cache"),
    "leak": (*_CONTEXT, "api", "memory_trend"),
}
