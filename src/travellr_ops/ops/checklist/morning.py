"""The runbook's morning checklist (Daily Operations)."""

from __future__ import annotations

from travellr_ops.ops.checklist.logs import backend_errors
from travellr_ops.ops.checklist.runner import Outcome, Step, failed, passed, unknown
from travellr_ops.ops.health import Check
from travellr_ops.runtime import Runtime
from travellr_ops.vocab.verdict import Verdict


def steps(rt: Runtime) -> list[Step]:
    """The steps; a failed one names its likely cause, as `doctor` finds it."""
    from travellr_ops.ops.doctor.explain import name_causes

    return name_causes(rt, _steps(rt))


def _steps(rt: Runtime) -> list[Step]:
    return [
        Step("services", "every service running and healthy", check=lambda: services(rt)),
        Step(
            "backend-errors",
            f"ERROR lines in the backend's last {rt.settings.checklist.log_tail_lines} log lines",
            check=lambda: errors_in_logs(rt),
        ),
        Step("metrics", "the key metrics against their thresholds", check=lambda: metrics(rt)),
        Step("cache", "cache hit rate", check=lambda: cache(rt)),
        Step("backup", "the newest backup: its age, and verified", check=lambda: backup(rt)),
        Step("disk", "disk space", check=lambda: disk(rt)),
    ]


def judge(checks: list[Check], what: str) -> Outcome:
    """Health checks as one verdict: a check that did not answer makes it unknown, as in
    `health` (a degraded backend is what a down server causes)."""
    bad = [c for c in checks if c.verdict in (Verdict.FAIL, Verdict.WARN, Verdict.DOWN)]
    lines = [f"{c.name} {c.target}: {c.verdict} {c.detail}".strip() for c in bad]
    data = {"checks": [f"{c.name} {c.target}: {c.verdict} {c.detail}".strip() for c in checks]}
    if any(c.verdict == Verdict.DOWN for c in bad):
        return unknown("; ".join(lines), **data)
    if bad:
        return failed("; ".join(lines), **data)
    notes = [f"{c.name}: maintenance" for c in checks if c.verdict == Verdict.MAINTENANCE]
    return passed(f"{len(checks)} {what} ok" + (f" ({', '.join(notes)})" if notes else ""), **data)


def services(rt: Runtime) -> Outcome:
    report = rt.health()
    return judge([c for c in report.checks if c.name != "disk"], "checks")


def disk(rt: Runtime) -> Outcome:
    report = rt.health()
    return judge([c for c in report.checks if c.name == "disk"], "file systems")


def errors_in_logs(rt: Runtime) -> Outcome:
    s = rt.settings.checklist
    found = backend_errors(rt, s.log_tail_lines)
    newest = found.errors[-s.show_error_lines :] if s.show_error_lines else []
    where = f"the last {found.read} lines of {found.source}"
    if len(found.errors) > s.max_error_lines:
        return failed(
            f"{len(found.errors)} ERROR lines in {where}", count=len(found.errors), newest=newest
        )
    return passed(f"{len(found.errors)} ERROR lines in {where}", count=len(found.errors))


def metrics(rt: Runtime) -> Outcome:
    """`monitor once`: every key metric sampled, judged, and added to the monitor history."""
    from travellr_ops.ops.monitor.once import sample_once

    taken = sample_once(rt)
    sample = taken.sample
    if taken.not_recorded is not None:
        rt.notify(f"metrics not added to the monitor history: {taken.not_recorded.message}")
    values = {m.key: m.value for m in sample.metrics}

    def line(m: object) -> str:
        from travellr_ops.ops.monitor.metrics import Metric

        assert isinstance(m, Metric)
        limit = f" (threshold {m.threshold:g} {m.unit})" if m.threshold is not None else ""
        value = "unknown" if m.value is None else f"{m.value:g} {m.unit}"
        return f"{m.key} {value}{limit}{': ' + m.detail if m.verdict == Verdict.UNKNOWN else ''}"

    if sample.alarms:
        return failed("breached: " + "; ".join(line(m) for m in sample.alarms), values=values)
    if sample.unknown:
        return unknown("unknown: " + "; ".join(line(m) for m in sample.unknown), values=values)
    note = " (maintenance mode is on: breaches are not alarms)" if sample.maintenance else ""
    # a rate over too few events is neither within nor over its threshold: say so, with the
    # counts, so that a quiet morning is not read as a good one
    thin = [m for m in sample.metrics if m.verdict == Verdict.INSUFFICIENT]
    judged = len(sample.metrics) - len(thin)
    if thin:
        note += "; too few events to judge: " + "; ".join(f"{m.key} ({m.detail})" for m in thin)
    return passed(f"{judged} metrics within their thresholds{note}", values=values)


def cache(rt: Runtime) -> Outcome:
    """`cache stats`: the hit rate over a short window (checklist.cache_window_s), judged over
    at least monitor.cache_min_lookups lookups. The cumulative rate since Redis started is
    shown beside it, never judged: it holds every cold start and every lookup of keys that
    are no cache (the backend's maintenance flag is read, a miss, on each request), so on a
    healthy sandbox it stays under 50 % however warm the cache is."""
    from travellr_ops.ops.cache import stats

    s = rt.settings
    with rt.redis() as redis:
        # one key sampled: the breakdown is not wanted, and each sampled key is a lookup
        report = stats(redis, s.checklist.cache_window_s, 1, s.thresholds.cache_hit_rate_pct)
    rate = report.window_hit_rate_pct
    over = f"over the last {report.window_s:g} s"
    lookups = report.window_hits + report.window_misses
    total = report.total.keyspace_hits + report.total.keyspace_misses
    since = (
        f"; since Redis started: {report.hit_rate_pct:g} % of {total} lookups (not judged)"
        if report.hit_rate_pct is not None
        else ""
    )
    data = {
        "hit_rate_pct": rate,
        "lookups": lookups,
        "threshold_pct": report.threshold_pct,
        "since_start_pct": report.hit_rate_pct,
        "since_start_lookups": total,
    }
    least = s.monitor.cache_min_lookups
    if rate is None or lookups < least:
        return Outcome(
            Verdict.INSUFFICIENT,
            f"{lookups} lookups {over}, under the {least} needed to judge{since}",
            data,
        )
    text = f"hit rate {rate:g} % of {lookups} lookups {over} (threshold {report.threshold_pct:g} %)"
    if rate >= report.threshold_pct:
        return passed(text + since, **data)
    return failed(text + since, **data)


def backup(rt: Runtime) -> Outcome:
    """The newest whole backup: not older than backup.max_age_hours, and verified."""
    from travellr_ops.ops.backup.manage import list_backups

    s = rt.settings
    listing = list_backups(s)
    good = [b for b in listing.backups if b.status == "complete"]
    notes = [w for w in listing.warnings if "unfinished" in w]
    if not good:
        return failed(f"no backup in {s.backup.dir}", newest=None)
    newest = good[-1]
    data = {"newest": newest.name, "age_hours": newest.age_hours, "verify": newest.verify_result}
    problems = []
    if newest.age_hours > s.backup.max_age_hours:
        problems.append(
            f"{newest.name} is {newest.age_hours:.1f} h old"
            f" (over backup.max_age_hours = {s.backup.max_age_hours:g})"
        )
    if newest.verify_result is None:
        problems.append(f"{newest.name} was never verified (`backup verify {newest.name}`)")
    elif newest.verify_result == "fail":
        problems.append(f"{newest.name} failed its verification at {newest.verified_at}")
    if problems:
        return failed("; ".join(problems + notes), **data)
    return passed(
        f"{newest.name}, {newest.age_hours:.1f} h old, verified {newest.verified_at}"
        f" ({newest.verify_result})" + "".join(f"; {n}" for n in notes),
        **data,
    )
