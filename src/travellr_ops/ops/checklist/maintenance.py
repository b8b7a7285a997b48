"""The runbook's Maintenance Checklist: before, during and after a maintenance window."""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

from travellr_ops.ops import maintenance as flag_ops
from travellr_ops.ops.checklist.logs import backend_errors
from travellr_ops.ops.checklist.morning import judge
from travellr_ops.ops.checklist.routine import previous
from travellr_ops.ops.checklist.runner import Outcome, Step, failed, passed, unknown
from travellr_ops.runtime import Runtime
from travellr_ops.vocab.verdict import Verdict


def before(
    rt: Runtime,
    message: str | None,
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
        Step("backup", "a fresh backup, verified", check=lambda: fresh_backup(rt)),
        plan_step,
        Step(
            "users-notified",
            "users told of the maintenance window (status page, email)",
            kind="manual",
        ),
        Step("baseline", "the error rate before", check=lambda: baseline(rt)),
        Step(
            "maintenance-on",
            "maintenance mode on, with its message and end",
            check=lambda: maintenance_on(rt, message, until, reason),
            depends_on=("backup", "plan"),
        ),
        Step(
            "backend-503",
            "the backend answers 503 (maintenance)",
            check=lambda: answers_maintenance(rt),
            depends_on=("maintenance-on",),
        ),
    ]


def during(rt: Runtime) -> list[Step]:
    return [
        Step(
            "maintenance-state",
            "maintenance mode on: by whom, time left",
            check=lambda: state(rt),
        ),
        Step(
            "backend-503",
            "the backend answers 503 (maintenance)",
            check=lambda: answers_maintenance(rt),
        ),
    ]


def after(rt: Runtime) -> list[Step]:
    ended: dict[str, float] = {}
    return [
        Step("maintenance-off", "maintenance mode off", check=lambda: maintenance_off(rt, ended)),
        Step(
            "health",
            "every service healthy",
            check=lambda: judge(rt.health(fresh=True).checks, "checks"),
            depends_on=("maintenance-off",),
        ),
        Step(
            "error-rate",
            "the error rate compared with before",
            check=lambda: error_rate_after(rt, ended),
            depends_on=("maintenance-off",),
        ),
        Step("logs", "no ERROR in the backend's logs since before", check=lambda: logs_since(rt)),
        Step("smoke-test", "what changed works for users (smoke test done)", kind="manual"),
        Step("users-notified", "users told the maintenance is over", kind="manual"),
    ]


# ------------------------------------------------------------------------------------ before


def fresh_backup(rt: Runtime) -> Outcome:
    """`backup create`, then `backup verify` of what it wrote (checksums)."""
    from travellr_ops.ops.backup.create import create
    from travellr_ops.ops.backup.manage import verify

    s = rt.settings
    with rt.dump() as dump:
        made = create(s, dump, rt.guard, rt.progress, rt.notify)
        if made.dry_run:
            return unknown(f"dry run: {made.name} not written")
        checked = verify(s, made.name, restore_test=False, dump=lambda: dump, progress=rt.progress)
    if not checked.ok:
        return failed(
            f"{made.name} failed verification: {'; '.join(checked.problems)}", name=made.name
        )
    return passed(
        f"{made.name}: {made.documents:,} documents in {len(made.collections)} collections,"
        f" verified ({checked.files_checked} files)",
        name=made.name,
    )


def _error_rate(rt: Runtime, window_s: float) -> dict[str, Any]:
    """The 5xx share of the access log's requests in the last ``window_s`` seconds, counted as
    `monitor` counts it (the monitor's reader, wherever the log is): travellr-ops's own requests
    and the 503s served inside a recorded maintenance window left out, so that before and after
    compare alike."""
    from travellr_ops.ops import logsource
    from travellr_ops.ops.monitor import maintenance_time
    from travellr_ops.ops.monitor.sources import AccessLog

    found = maintenance_time.recorded(rt, time.time() - window_s)
    log = AccessLog(logsource.reader(rt.settings, "access", rt.platform_factory()), window_s)
    try:
        counts = log.read(maintenance_time.second_in(found) if found else None)
    finally:
        log.close()
    return {
        "requests": counts.requests,
        "errors": counts.errors,
        "error_rate_pct": counts.rate_pct,
        "window_s": window_s,
        "left_out": counts.left_out(),
        "enough": counts.requests >= rt.settings.monitor.min_requests,
    }


def _describe(rate: dict[str, Any]) -> str:
    if rate["error_rate_pct"] is None:
        return f"no requests in the last {rate['window_s']:.0f} s"
    text = (
        f"{rate['error_rate_pct']:g} % ({rate['errors']} of {rate['requests']} requests 5xx"
        f" in the last {rate['window_s']:.0f} s"
    )
    if rate.get("enough") is False:
        text += ", too few to judge"
    return text + ")"


def baseline(rt: Runtime) -> Outcome:
    rate = _error_rate(rt, rt.settings.monitor.error_window_s)
    return passed(f"error rate {_describe(rate)}", **rate)


def maintenance_on(
    rt: Runtime, message: str | None, until: datetime | None, reason: str | None
) -> Outcome:
    done = flag_ops.switch_on(rt, message=message, until=until, reason=reason)
    if not done.applied:
        return unknown("dry run: maintenance mode not turned on")
    assert done.flag is not None
    return passed(f"on{done.ends}: {done.flag['message']}", flag=done.flag)


def answers_maintenance(rt: Runtime) -> Outcome:
    s = rt.settings
    url = s.api.url.rstrip("/") + s.api.health_path
    with rt.http() as http:
        response = http.get(url)
    body = response.body if isinstance(response.body, dict) else {}
    if response.status == 503 and body.get("status") == "maintenance":
        return passed(f"{url}: HTTP 503 maintenance: {body.get('message', '')}".rstrip(": "))
    return failed(f"{url}: HTTP {response.status} {body.get('status', '')}, not 503 maintenance")


# ------------------------------------------------------------------------------------ during


def state(rt: Runtime) -> Outcome:
    with rt.redis() as redis:
        current = flag_ops.status(redis, rt.settings.maintenance.key)
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


def maintenance_off(rt: Runtime, ended: dict[str, float]) -> Outcome:
    done = flag_ops.switch_off(rt)
    if not done.applied:
        return unknown("dry run: maintenance mode not turned off")
    # The access log counts by whole seconds: the rate after is read from the next second on,
    # so that no 503 of the window itself is counted; start it now.
    ended["at"] = time.time()
    time.sleep(math.ceil(ended["at"]) - ended["at"])
    return passed("off" if done.was_on else "off (it was off already)", was_on=done.was_on)


def error_rate_after(rt: Runtime, ended: dict[str, float]) -> Outcome:
    """The 5xx share since maintenance ended (the 503s of the window itself do not count),
    against the threshold and the rate `maintenance before` measured, both counted alike;
    a side with fewer than monitor.min_requests requests is not judged ("insufficient")."""
    window = time.time() - ended.get("at", time.time())
    now = _error_rate(rt, window)
    run = previous(rt, "maintenance-before")
    was = run.data("baseline") if run else {}
    before_rate = was.get("error_rate_pct") if was.get("enough", True) else None
    compared = (
        f"; before: {_describe(was)}" if was else "; no `maintenance before` run to compare with"
    )
    limit = rt.settings.thresholds.error_rate_pct
    least = rt.settings.monitor.min_requests
    rate = now["error_rate_pct"]
    data = {"after": now, "before": was or None}
    if rate is None:  # the log answered; nobody called: too few requests, not unknown
        return Outcome(
            Verdict.INSUFFICIENT,
            f"no requests since maintenance ended (travellr-ops's own not counted){compared}",
            data,
        )
    if not now["enough"]:
        return Outcome(
            Verdict.INSUFFICIENT,
            f"error rate {_describe(now)}: under the {least} requests needed to judge{compared}",
            data,
        )
    if rate > limit and (before_rate is None or rate > before_rate):
        return failed(f"error rate {_describe(now)} over {limit:g} %{compared}", **data)
    return passed(f"error rate {_describe(now)}{compared}", **data)


def logs_since(rt: Runtime) -> Outcome:
    run = previous(rt, "maintenance-before")
    since = datetime.fromisoformat(run.started_at) if run else None
    tail = max(rt.settings.checklist.log_tail_lines, 1000)
    found = backend_errors(rt, tail, since)
    scope = f"since {run.started_at}" if run else f"in the last {tail} lines"
    if found.errors:
        newest = found.errors[-rt.settings.checklist.show_error_lines :]
        return failed(f"{len(found.errors)} ERROR lines {scope} in {found.source}", newest=newest)
    return passed(f"no ERROR lines {scope} in {found.source}")
