"""The runbook's Maintenance Checklist: before, during and after a maintenance window."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

from travellr_ops.ops import maintenance as flag_ops
from travellr_ops.ops.checklist.logs import backend_errors
from travellr_ops.ops.checklist.morning import judge
from travellr_ops.ops.checklist.routine import previous
from travellr_ops.ops.checklist.runner import Outcome, Step, failed, passed, unknown
from travellr_ops.runtime import Runtime
from travellr_ops.safety import Change


def before(
    servers: Runtime,
    message: str,
    until: datetime | None,
    reason: str | None,
    plan: str | None,
) -> list[Step]:
    plan_step = (
        Step("plan", "the maintenance plan recorded", check=lambda: passed(plan, plan=plan))
        if plan
        else Step(
            "plan",
            "the plan (what changes, how to roll back, who does it) is written and the team told",
            kind="manual",
        )
    )
    return [
        Step("backup", "a fresh backup, verified", check=lambda: fresh_backup(servers)),
        plan_step,
        Step(
            "users-notified",
            "users told of the maintenance window (status page, email)",
            kind="manual",
        ),
        Step("baseline", "the error rate before", check=lambda: baseline(servers)),
        Step(
            "maintenance-on",
            "maintenance mode on, with its message and end",
            check=lambda: maintenance_on(servers, message, until, reason),
            depends_on=("backup", "plan"),
        ),
        Step(
            "backend-503",
            "the backend answers 503 (maintenance)",
            check=lambda: answers_maintenance(servers),
            depends_on=("maintenance-on",),
        ),
    ]


def during(servers: Runtime) -> list[Step]:
    return [
        Step(
            "maintenance-state",
            "maintenance mode on: by whom, time left",
            check=lambda: state(servers),
        ),
        Step(
            "backend-503",
            "the backend answers 503 (maintenance)",
            check=lambda: answers_maintenance(servers),
        ),
    ]


def after(servers: Runtime) -> list[Step]:
    ended: dict[str, float] = {}
    return [
        Step(
            "maintenance-off", "maintenance mode off", check=lambda: maintenance_off(servers, ended)
        ),
        Step(
            "health",
            "every service healthy",
            check=lambda: judge(servers.health(fresh=True).checks, "checks"),
            depends_on=("maintenance-off",),
        ),
        Step(
            "error-rate",
            "the error rate compared with before",
            check=lambda: error_rate_after(servers, ended),
            depends_on=("maintenance-off",),
        ),
        Step(
            "logs", "no ERROR in the backend's logs since before", check=lambda: logs_since(servers)
        ),
        Step("smoke-test", "what changed works for users (smoke test done)", kind="manual"),
        Step("users-notified", "users told the maintenance is over", kind="manual"),
    ]


# ------------------------------------------------------------------------------------ before


def fresh_backup(servers: Runtime) -> Outcome:
    """`backup create`, then `backup verify` of what it wrote (checksums)."""
    from travellr_ops.ops.backup.create import create
    from travellr_ops.ops.backup.manage import verify

    s = servers.settings
    with servers.dump() as dump:
        made = create(s, dump, servers.guard, servers.progress, servers.notify)
        if made.dry_run:
            return unknown(f"dry run: {made.name} not written")
        checked = verify(
            s, made.name, restore_test=False, dump=lambda: dump, progress=servers.progress
        )
    if not checked.ok:
        return failed(
            f"{made.name} failed verification: {'; '.join(checked.problems)}", name=made.name
        )
    return passed(
        f"{made.name}: {made.documents:,} documents in {len(made.collections)} collections,"
        f" verified ({checked.files_checked} files)",
        name=made.name,
    )


def _error_rate(servers: Runtime, window_s: float) -> dict[str, Any]:
    """The 5xx share of the access log's requests in the last ``window_s`` seconds (the
    monitor's own reader)."""
    from travellr_ops.ops.monitor.sources import AccessLog

    log = AccessLog(servers.settings.logs.access_log, window_s)
    try:
        counts = log.read()
    finally:
        log.close()
    rate = round(counts.errors * 100 / counts.requests, 2) if counts.requests else None
    return {
        "requests": counts.requests,
        "errors": counts.errors,
        "error_rate_pct": rate,
        "window_s": window_s,
    }


def _describe(rate: dict[str, Any]) -> str:
    if rate["error_rate_pct"] is None:
        return f"no requests in the last {rate['window_s']:.0f} s"
    return (
        f"{rate['error_rate_pct']:g} % ({rate['errors']} of {rate['requests']} requests 5xx"
        f" in the last {rate['window_s']:.0f} s)"
    )


def baseline(servers: Runtime) -> Outcome:
    rate = _error_rate(servers, servers.settings.monitor.error_window_s)
    return passed(f"error rate {_describe(rate)}", **rate)


def maintenance_on(
    servers: Runtime, message: str, until: datetime | None, reason: str | None
) -> Outcome:
    key = servers.settings.maintenance.key
    flag = flag_ops.flag_value(message, reason, flag_ops.who(), datetime.now(UTC), until)
    ends = f" until {flag['until']}" if until else " until `maintenance off`"
    with servers.redis() as redis:
        change = Change(
            action="maintenance on",
            summary=f"turn maintenance mode on in {redis.display_url} ({key}){ends}:"
            " the backend answers 503 to every request meanwhile",
            details=[f"message: {message}", f"by: {flag['by']}"]
            + ([f"reason: {reason}"] if reason else []),
            target=redis.display_url,
        )
        with servers.guard.mutation(change) as proceed:
            if not proceed:
                return unknown("dry run: maintenance mode not turned on")
            flag_ops.turn_on(redis, key, flag, until)
    return passed(f"on{ends}: {message}", flag=flag)


def answers_maintenance(servers: Runtime) -> Outcome:
    s = servers.settings
    url = s.api.url.rstrip("/") + s.api.health_path
    with servers.http() as http:
        response = http.get(url)
    body = response.body if isinstance(response.body, dict) else {}
    if response.status == 503 and body.get("status") == "maintenance":
        return passed(f"{url}: HTTP 503 maintenance: {body.get('message', '')}".rstrip(": "))
    return failed(f"{url}: HTTP {response.status} {body.get('status', '')}, not 503 maintenance")


# ------------------------------------------------------------------------------------ during


def state(servers: Runtime) -> Outcome:
    with servers.redis() as redis:
        current = flag_ops.status(redis, servers.settings.maintenance.key)
    if not current.on:
        return failed("maintenance mode is off: the backend is serving requests")
    left = (
        "no end set (until `maintenance off`)"
        if current.expires_in_s is None
        else f"{current.expires_in_s / 60:.0f} min left (until {current.until})"
    )
    return passed(
        f"on since {current.since} by {current.by}: {current.message}; {left}",
        by=current.by,
        since=current.since,
        until=current.until,
        expires_in_s=current.expires_in_s,
    )


# ------------------------------------------------------------------------------------- after


def maintenance_off(servers: Runtime, ended: dict[str, float]) -> Outcome:
    key = servers.settings.maintenance.key
    with servers.redis() as redis:
        current = flag_ops.status(redis, key)
        change = Change(
            action="maintenance off",
            summary=f"turn maintenance mode off in {redis.display_url} ({key})",
            details=[f"on since {current.since} by {current.by}: {current.message}"]
            if current.on
            else ["(it is off already)"],
            target=redis.display_url,
        )
        with servers.guard.mutation(change) as proceed:
            if not proceed:
                return unknown("dry run: maintenance mode not turned off")
            was_on = flag_ops.turn_off(redis, key)
    # The access log counts by whole seconds: the rate after is read from the next second on,
    # so that no 503 of the window itself is counted; start it now.
    ended["at"] = time.time()
    time.sleep(math.ceil(ended["at"]) - ended["at"])
    return passed("off" if was_on else "off (it was off already)", was_on=was_on)


def error_rate_after(servers: Runtime, ended: dict[str, float]) -> Outcome:
    """The 5xx share since maintenance ended (the 503s of the window itself do not count),
    against the threshold and the rate `maintenance before` measured."""
    window = time.time() - ended.get("at", time.time())
    now = _error_rate(servers, window)
    run = previous(servers, "maintenance-before")
    was = run.data("baseline") if run else {}
    before_rate = was.get("error_rate_pct")
    compared = (
        f"; before: {_describe(was)}" if was else "; no `maintenance before` run to compare with"
    )
    limit = servers.settings.thresholds.error_rate_pct
    rate = now["error_rate_pct"]
    data = {"after": now, "before": was or None}
    if rate is None:
        return unknown(f"no requests since maintenance ended{compared}", **data)
    if rate > limit and (before_rate is None or rate > before_rate):
        return failed(f"error rate {_describe(now)} over {limit:g} %{compared}", **data)
    return passed(f"error rate {_describe(now)}{compared}", **data)


def logs_since(servers: Runtime) -> Outcome:
    run = previous(servers, "maintenance-before")
    since = datetime.fromisoformat(run.started_at) if run else None
    tail = max(servers.settings.checklist.log_tail_lines, 1000)
    found = backend_errors(servers, tail, since)
    scope = f"since {run.started_at}" if run else f"in the last {tail} lines"
    if found.errors:
        newest = found.errors[-servers.settings.checklist.show_error_lines :]
        return failed(f"{len(found.errors)} ERROR lines {scope} in {found.source}", newest=newest)
    return passed(f"no ERROR lines {scope} in {found.source}")
