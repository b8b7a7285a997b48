"""The runbook's Routine Maintenance: the weekly and the monthly tasks."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from travellr_ops.ops.checklist import morning
from travellr_ops.ops.checklist.logs import backend_errors
from travellr_ops.ops.checklist.routine import previous
from travellr_ops.ops.checklist.runner import (
    Outcome,
    Step,
    failed,
    passed,
    unknown,
)
from travellr_ops.runtime import Runtime
from travellr_ops.vocab.units import format_bytes
from travellr_ops.vocab.verdict import Verdict

#: how many of the backend log's newest lines the weekly review reads at most
WEEK_OF_LINES = 200_000


def weekly(rt: Runtime) -> list[Step]:
    return [
        Step("error-logs", "the week's ERROR lines reviewed", check=lambda: week_of_errors(rt)),
        Step("db-size", "database size and growth since last week", check=lambda: db_size(rt)),
        Step("indexes", "index analysis (`db indexes analyze`)", check=lambda: indexes(rt)),
        Step("security-audit", "dependency audit (`security audit`)", check=lambda: audit(rt)),
        Step(
            "security-logs",
            "the week's security logs (`security logs --since 7d`)",
            check=lambda: security_logs(rt),
        ),
        Step("cache", "cache performance", check=lambda: morning.cache(rt)),
        Step("incidents", "the week's incidents read", check=lambda: incidents(rt, 7)),
        Step(
            "dependency-updates",
            "dependency updates reviewed (security patches applied)",
            kind="manual",
        ),
    ]


def monthly(rt: Runtime) -> list[Step]:
    return [
        Step(
            "performance",
            "performance review (the month's monitor history)",
            check=lambda: performance(rt),
        ),
        Step("disk-trend", "disk space trend", check=lambda: disk_trend(rt)),
        Step(
            "backup-retention",
            "backups cover the retention, without gaps",
            check=lambda: backup_retention(rt),
        ),
        Step("pitr-chain", "the point-in-time chain has no gap", check=lambda: pitr_chain(rt)),
        Step(
            "restore-drills",
            "a restore test ran within backup.drill_max_age_days (before this run's own)",
            check=lambda: restore_drills(rt),
        ),
        Step(
            "restore-test",
            "the newest backup restored into a scratch database and compared",
            check=lambda: restore_test(rt),
        ),
        Step("security-review", "security posture (`security check`)", check=lambda: posture(rt)),
        Step("incidents", "the month's incidents reviewed", check=lambda: incidents(rt, 30)),
        Step(
            "access-review",
            "access rights reviewed (who can reach production; stale accounts removed)",
            kind="manual",
        ),
        Step("capacity", "capacity plan reviewed against the trends", kind="manual"),
    ]


# ------------------------------------------------------------------------------------ weekly


def incidents(rt: Runtime, days: int) -> Outcome:
    """The period's incidents (and any still open), from `incident`'s records. One closed
    without its Document step has no post-incident record worth the name: that fails."""
    from travellr_ops.ops.incident import procedure, record

    since = time.time() - days * 86400
    store = procedure.store_for(rt.settings)
    try:
        found = [
            record.get(store, i.id)
            for i in record.listing(store)
            if i.opened_at >= since or i.closed_at is None
        ]
    finally:
        store.close()
    rows = [f"{i.id} sev {i.severity} {i.status}: {i.title}" for i in found]
    undocumented = [
        i.id for i in found if i.closed_at is not None and i.step_time("document") is None
    ]
    still_open = [i.id for i in found if i.closed_at is None]
    detail = f"{len(found)} incident(s) in the last {days} days"
    if still_open:
        detail += f"; still open: {', '.join(still_open)}"
    if undocumented:
        return failed(
            f"{detail}; closed without the Document step: {', '.join(undocumented)}", incidents=rows
        )
    return passed(detail, incidents=rows)


def week_of_errors(rt: Runtime) -> Outcome:
    since = datetime.now(UTC) - timedelta(days=7)
    found = backend_errors(rt, WEEK_OF_LINES, since)
    messages = Counter(_message(line) for line in found.errors)
    top = [f"{n} x {text}" for text, n in messages.most_common(5)]
    where = f"in the last 7 days of {found.source}"
    if len(found.errors) > rt.settings.checklist.max_error_lines:
        return failed(
            f"{len(found.errors)} ERROR lines {where}", count=len(found.errors), newest=top
        )
    return passed(f"{len(found.errors)} ERROR lines {where}", count=0)


def _message(line: str) -> str:
    """An ERROR line without its time stamp and key=value fields: what repeats."""
    words = line.split()
    if words and words[0][:1].isdigit():
        words = words[1:]
    return " ".join(w for w in words if "=" not in w)[:120]


def db_size(rt: Runtime) -> Outcome:
    from travellr_ops.ops.db.server import stats

    with rt.mongo() as mongo:
        report = stats(mongo)
    now = {
        "database": report.database,
        "data_bytes": report.data_bytes,
        "storage_bytes": report.storage_bytes,
        "index_bytes": report.index_bytes,
        "documents": report.documents,
    }
    text = (
        f"{report.database}: {format_bytes(report.data_bytes or 0)} data,"
        f" {format_bytes(report.index_bytes or 0)} indexes, {report.documents or 0:,} documents"
    )
    last = previous(rt, "weekly")
    was = last.data("db-size") if last else {}
    if was.get("data_bytes") is not None and report.data_bytes is not None:
        grown = report.data_bytes - int(was["data_bytes"])
        docs = (report.documents or 0) - int(was.get("documents") or 0)
        sign = "+" if grown >= 0 else "-"
        text += (
            f"; {sign}{format_bytes(abs(grown))}, {docs:+,} documents since {last.started_at}"
            if last
            else ""
        )
    else:
        text += "; no earlier weekly run to compare with"
    return passed(text, **now)


def indexes(rt: Runtime) -> Outcome:
    from travellr_ops.ops.db.indexes import analyze_app

    report = analyze_app(rt)
    if report.findings:
        lines = [f"{f.kind} {f.collection}: {f.subject}" for f in report.findings]
        fixes = [f.fix.command for f in report.findings if f.fix is not None]
        return failed(f"{len(report.findings)} finding(s): {'; '.join(lines)}", newest=fixes[:5])
    return passed(f"{len(report.queries)} queries explained, no finding ({report.source})")


def audit(rt: Runtime) -> Outcome:
    from travellr_ops.ops.security import osvdb
    from travellr_ops.ops.security.audit import audit as run_audit

    sec = rt.settings.security
    result = run_audit(sec.backend_dir, sec, database=osvdb.location(rt.settings.state_dir))
    sources = ", ".join(f"{s.name} {s.state}" for s in result.sources)
    text = (
        f"{len(result.findings)} finding(s), {len(result.at_level)} at or above {result.level},"
        f" in {result.packages} packages ({sources})"
    )
    if result.status == "vulnerable":
        top = [f"{f.package} {f.installed}: {f.advisory} {f.severity}" for f in result.at_level]
        return failed(text, newest=top[:5])
    if result.status == "unknown":
        return unknown(f"no advisory source answered: {text}")
    return passed(text)


def security_logs(rt: Runtime) -> Outcome:
    from travellr_ops.ops.security.review import parse_window, review

    report = review(rt, [], parse_window("7d"))
    if not report.read_any:
        errors = "; ".join(f.error for f in report.files if f.error)
        return unknown(f"no log could be read: {errors}")
    text = (
        f"{report.requests:,} requests, {sum(report.denied.values())} denied,"
        f" {report.failed_logins} failed logins, {report.rate_limit_hits} rate-limit hits"
    )
    if report.suspects:
        ips = [
            f"{s.ip} ({s.failures} failures from {s.detected_at})" for s in report.suspects.values()
        ]
        return failed(f"brute-force suspects: {', '.join(ips)}; {text}")
    return passed(text)


# ----------------------------------------------------------------------------------- monthly


def _history(rt: Runtime, days: float) -> list[Any]:
    from travellr_ops.ops.monitor.history import load, open_history

    now = time.time()
    with rt.store() as store:
        return load(open_history(store), now - days * 86400, now + 1)


def performance(rt: Runtime) -> Outcome:
    rows = _history(rt, 30)
    judged = [
        r for r in rows if r.threshold is not None and r.verdict in (Verdict.OK, Verdict.BREACH)
    ]
    if not judged:
        return unknown(
            "no monitor samples in the last 30 days (run `monitor once` from cron, or"
            " `checklist morning`, which adds one)"
        )
    per_metric: dict[str, list[bool]] = {}
    for r in judged:
        if not r.maintenance:
            per_metric.setdefault(r.key, []).append(r.verdict == Verdict.BREACH)
    limit = rt.settings.checklist.monthly_breach_pct
    shares = {key: sum(flags) * 100 / len(flags) for key, flags in per_metric.items() if flags}
    bad = {k: v for k, v in shares.items() if v > limit}
    samples = len({r.time for r in rows})
    data = {"samples": samples, "breach_pct": {k: round(v, 1) for k, v in shares.items()}}
    if bad:
        listed = ", ".join(f"{k} {v:.0f} %" for k, v in sorted(bad.items()))
        return failed(f"over {limit:g} % of {samples} samples breached: {listed}", **data)
    return passed(f"{samples} samples, no metric breached in over {limit:g} % of them", **data)


def disk_trend(rt: Runtime) -> Outcome:
    rows = [r for r in _history(rt, 30) if r.metric == "disk_pct" and r.value is not None]
    if not rows:
        return unknown("no disk samples in the monitor history of the last 30 days")
    limit = rt.settings.thresholds.disk_pct
    lines, bad = [], []
    for subject in sorted({r.subject for r in rows}):
        series = [r for r in rows if r.subject == subject]
        first, last = series[0], series[-1]
        days = (last.time - first.time) / 86400
        per_day = (last.value - first.value) / days if days >= 1 else None
        text = f"{subject} {last.value:.0f} %"
        if per_day is not None:
            text += f" ({per_day:+.2f} points/day over {days:.0f} days"
            if per_day > 0:
                full_in = (limit - last.value) / per_day
                text += f", {limit:g} % in {max(full_in, 0):.0f} days"
                if full_in < 30:
                    bad.append(subject)
            text += ")"
        if last.value > limit:
            bad.append(subject)
        lines.append(text)
    if bad:
        return failed("; ".join(lines))
    return passed("; ".join(lines))


def backup_retention(rt: Runtime) -> Outcome:
    """Whole backups reach back over the retention, with no gap over backup.max_age_hours."""
    from travellr_ops.ops.backup.manage import list_backups

    s = rt.settings
    listing = list_backups(s)
    good = [b for b in listing.backups if b.status == "complete"]
    if not good:
        return failed(f"no backup in {s.backup.dir}")
    problems = []
    oldest_days = good[0].age_hours / 24
    if oldest_days < s.backup.retention_days - 1:
        problems.append(
            f"the oldest backup is {oldest_days:.1f} days old: the retention is"
            f" {s.backup.retention_days} days"
        )
    in_window = [b for b in good if b.age_hours <= s.backup.retention_days * 24]
    for older, newer in pairwise(in_window):
        gap = older.age_hours - newer.age_hours
        if gap > s.backup.max_age_hours:
            problems.append(f"{gap:.0f} h without a backup after {older.name}")
    if good[-1].age_hours > s.backup.max_age_hours:
        problems.append(f"the newest backup is {good[-1].age_hours:.1f} h old")
    text = f"{len(good)} backups, the oldest {oldest_days:.1f} days old"
    if problems:
        return failed(f"{text}: {'; '.join(problems)}")
    return passed(text)


def pitr_chain(rt: Runtime) -> Outcome:
    from travellr_ops.ops.backup.manage import list_backups

    archive = list_backups(rt.settings).oplog_archive
    if archive is None:
        return failed("no oplog archive: no point-in-time recovery (`backup oplog-archive`)")
    text = f"{archive['files']} archive files, covered to {archive['covered_to']} ({archive['lag_s']} s ago)"
    if archive["gaps"]:
        return failed(f"{archive['gaps']} gap(s) in the oplog archive; {text}")
    return passed(text)


def restore_drills(rt: Runtime) -> Outcome:
    """The newest restore test in the store (`backup verify --restore-test [--random]`, from
    cron or a checklist): it passed, and is at most backup.drill_max_age_days old."""
    from travellr_ops.ops.backup.drills import newest

    limit = rt.settings.backup.drill_max_age_days
    with rt.store() as history:
        last = newest(history, passed=False)
    if last is None:
        return failed(
            "no restore test recorded: schedule `backup verify --restore-test --random` (cron)",
            newest=None,
        )
    data = {
        "newest": last.backup,
        "at": last.at,
        "age_days": round(last.age_days, 2),
        "restore_s": last.seconds,
        "ok": last.ok,
    }
    text = (
        f"the newest restore test ({last.backup}, {last.picked}) ran {last.at},"
        f" {last.age_days:.1f} days ago; restored in {last.seconds:g} s"
    )
    if not last.ok:
        return failed(f"{text}, and failed: {last.detail}", **data)
    if last.age_days > limit:
        return failed(
            f"{text}: over backup.drill_max_age_days = {limit:g}; schedule"
            " `backup verify --restore-test --random` (cron)",
            **data,
        )
    return passed(text, **data)


def restore_test(rt: Runtime) -> Outcome:
    """`backup verify latest --restore-test`: restored into a scratch database, counts and
    indexes compared with the manifest, the scratch database dropped."""
    from travellr_ops.ops.backup.manage import verify

    with rt.dump() as dump, rt.store() as history:
        result = verify(
            rt.settings,
            "latest",
            restore_test=True,
            dump=lambda: dump,
            progress=rt.progress,
            history=history,
        )
    data = {"name": result.name, "restore_test": result.restore_test}
    if not result.ok:
        return failed(f"{result.name}: {'; '.join(result.problems)}", **data)
    test = result.restore_test or {}
    return passed(
        f"{result.name} restored into {test.get('database')} in {test.get('seconds')} s;"
        " counts and indexes match; dropped",
        **data,
    )


def posture(rt: Runtime) -> Outcome:
    from travellr_ops.ops.security.posture import check

    checks = check(rt)
    bad = [c for c in checks if c.verdict == Verdict.FAIL]
    unknowns = [c for c in checks if c.verdict == Verdict.UNKNOWN]
    if bad:
        return failed(
            "; ".join(f"{c.name}: {c.detail}" for c in bad), newest=[c.fix for c in bad if c.fix]
        )
    # as `security check`: a check that cannot tell (e.g. CONFIG disabled) is not a failure
    notes = "".join(f"; {c.name} unknown: {c.detail}" for c in unknowns)
    return passed(f"{len(checks)} checks, none failed{notes}")
