"""`maintenance`: the flag the backend honours (the runbook's "Enable maintenance mode").

The flag is one Redis key (settings.maintenance.key) holding JSON
``{"message", "by", "reason", "since", "until"}``; while it exists the backend answers 503
and `health` reports "maintenance" instead of alarming. ``--until`` becomes the key's own
expiry, so the flag clears itself even when nobody is left to run `maintenance off`.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from travellr_ops.adapters.redis import RedisAdapter
from travellr_ops.runtime import Runtime
from travellr_ops.safety import Change

DEFAULT_MESSAGE = "down for maintenance"


def parse_until(text: str, now: datetime) -> datetime:
    """When maintenance ends: ``--until`` in the tool's time grammar (a duration such as
    ``90m`` or ``1h30m``, the next ``16:30`` UTC, or ``2026-11-28T16:30Z``), in whole seconds,
    so that the flag's "until" and the key's expiry say the same."""
    from travellr_ops.vocab.timespec import parse_until as until

    return until(text, "--until", now).astimezone(UTC).replace(microsecond=0)


def who() -> str:
    """user@host of whoever runs the command, for the flag's "by"."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


@dataclass
class MaintenanceStatus:
    on: bool
    key: str
    target: str
    message: str | None = None
    by: str | None = None
    reason: str | None = None
    since: str | None = None
    until: str | None = None
    #: seconds until the flag expires by itself; None: it stays until `maintenance off`
    expires_in_s: float | None = None


def flag_value(
    message: str, reason: str | None, by: str, since: datetime, until: datetime | None
) -> dict[str, Any]:
    """The flag in the format the backend reads (reason null when none was given)."""
    return {
        "message": message,
        "by": by,
        "reason": reason,
        "since": since.isoformat(timespec="seconds"),
        "until": until.isoformat(timespec="seconds") if until else None,
    }


def turn_on(redis: RedisAdapter, key: str, flag: dict[str, Any], until: datetime | None) -> None:
    redis.set(key, json.dumps(flag), expire_at=until.timestamp() if until else None)


def turn_off(redis: RedisAdapter, key: str) -> bool:
    """Clear the flag; whether it was on."""
    return redis.delete(key)


def status(redis: RedisAdapter, key: str) -> MaintenanceStatus:
    raw = redis.get(key)
    if raw is None:
        return MaintenanceStatus(False, key, redis.display_url)
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    # A flag set by hand (redis-cli SET key "text") still means maintenance to the backend.
    value: dict[str, Any] = (
        parsed if isinstance(parsed, dict) else {"message": raw.decode("utf-8", "replace")}
    )
    ttl_ms = redis.pttl(key)

    def text(name: str) -> str | None:
        item = value.get(name)
        return None if item is None else str(item)

    return MaintenanceStatus(
        on=True,
        key=key,
        target=redis.display_url,
        message=text("message"),
        by=text("by"),
        reason=text("reason"),
        since=text("since"),
        until=text("until"),
        expires_in_s=round(ttl_ms / 1000, 1) if ttl_ms >= 0 else None,
    )


@dataclass
class Switched:
    """What `maintenance on|off` did (or, on --dry-run, would do)."""

    #: False: a dry run, nothing changed
    applied: bool
    before: MaintenanceStatus
    #: the flag as it is now (as before on a dry run)
    after: MaintenanceStatus
    #: the flag turned on (None: turned off)
    flag: dict[str, Any] | None = None
    #: " until <time>" or " until `maintenance off`" (on only)
    ends: str = ""

    @property
    def was_on(self) -> bool:
        return self.before.on


def switch_on(
    rt: Runtime,
    *,
    message: str | None,
    until: datetime | None,
    reason: str | None,
    now: datetime | None = None,
) -> Switched:
    """Turn maintenance mode on through the run's guard (asked, --yes, --dry-run, audited):
    the one implementation behind `maintenance on` and `checklist maintenance before`."""
    key = rt.settings.maintenance.key
    text = message or DEFAULT_MESSAGE
    flag = flag_value(text, reason, who(), now or datetime.now(UTC), until)
    ends = f" until {flag['until']}" if until else " until `maintenance off`"
    with rt.redis() as redis:
        before = status(redis, key)
        replaces = (
            [f"(replaces the flag set by {before.by} since {before.since}: {before.message})"]
            if before.on
            else []
        )
        change = Change(
            action="maintenance on",
            summary=(
                f"turn maintenance mode on in {redis.display_url} ({key}){ends}:"
                " the backend answers 503 to every request meanwhile"
            ),
            details=[
                f"message: {text}",
                f"by: {flag['by']}",
                *([f"reason: {reason}"] if reason else []),
                *replaces,
            ],
            target=redis.display_url,
        )
        with rt.guard.mutation(change) as proceed:
            if not proceed:
                return Switched(False, before, before, flag, ends)
            turn_on(redis, key, flag, until)
            _record(rt, on=True, until=until, target=redis.display_url, flag=flag)
        return Switched(True, before, status(redis, key), flag, ends)


def switch_off(rt: Runtime) -> Switched:
    """Turn maintenance mode off through the run's guard: behind `maintenance off` and
    `checklist maintenance after`."""
    key = rt.settings.maintenance.key
    with rt.redis() as redis:
        before = status(redis, key)
        change = Change(
            action="maintenance off",
            summary=f"turn maintenance mode off in {redis.display_url} ({key})",
            details=[f"on since {before.since} by {before.by}: {before.message}"]
            if before.on
            else ["(it is off already)"],
            target=redis.display_url,
        )
        with rt.guard.mutation(change) as proceed:
            if not proceed:
                return Switched(False, before, before)
            if not turn_off(redis, key):  # it expired (or was cleared) since it was read
                before = MaintenanceStatus(False, key, redis.display_url)
            _record(rt, on=False)
        return Switched(True, before, status(redis, key))


def _record(
    rt: Runtime,
    *,
    on: bool,
    until: datetime | None = None,
    target: str = "",
    flag: dict[str, Any] | None = None,
) -> None:
    """Keep the window in the store, so that it is known while Redis cannot be read; the flag
    is set already, so a store that cannot be written is a warning, not a failure."""
    from travellr_ops.errors import TravellrError
    from travellr_ops.ops import maintenance_windows as record

    try:
        with rt.store() as store:
            if on:
                record.record_on(
                    store,
                    until=until.timestamp() if until else None,
                    target=target,
                    by=str((flag or {}).get("by") or ""),
                    reason=(flag or {}).get("reason"),
                )
            else:
                record.record_off(store)
    except TravellrError as exc:
        rt.warn(f"maintenance window not recorded in the store: {exc}")
