"""The messages as webhooks take them, and their delivery.

Each message is kept in the store (``alert_deliveries``) once per webhook before anything is
sent, so a webhook that is down or answers an error gets it at a later run (until
``alerts.retry_for_s``); the monitor's exit code never depends on it. The messages of one
webhook go out in order: after its first failure in a run, the rest wait for the next run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from travellr_ops.errors import TravellrError
from travellr_ops.ops.alerts.episodes import Message, open_alerts
from travellr_ops.ops.alerts.rules import label
from travellr_ops.redact import mask
from travellr_ops.settings import AlertWebhook, Settings
from travellr_ops.store import Store
from travellr_ops.vocab.timespec import format_duration

if TYPE_CHECKING:
    from travellr_ops.adapters.http import HttpAdapter

log = logging.getLogger(__name__)

_ICON = {
    "opened": ":red_circle:",
    "reminder": ":large_orange_circle:",
    "resolved": ":white_check_mark:",
}


def where(url: str) -> str:
    """A webhook as it may be shown: its scheme and host (the path of most is a secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…"


def malformed(url: str) -> str | None:
    """Why the URL cannot be a webhook (None: it can)."""
    if url != url.strip() or any(c.isspace() for c in url):
        return "contains white space"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is no number or out of range
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https"):
        return f"scheme must be http or https, not {parts.scheme or '(none)'!r}"
    if not parts.hostname:
        return "no host"
    return None


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def _metric_line(m: dict[str, Any]) -> str:
    value = "no answer" if m["value"] is None else f"{m['value']:g} {m['unit']}".strip()
    limit = ""
    if m["threshold"] is not None and m["value"] is not None:
        sign = "≤" if m["direction"] == "max" else "≥"
        limit = f" (limit {sign} {m['threshold']:g})"
    detail = f": {m['detail']}" if m["detail"] else ""
    return f"{m['metric']} {m['verdict']}, {value}{limit}{detail}"


def text(message: Message, environment: str | None) -> str:
    """The message for people (Slack's ``text``)."""
    where_ = f" [{environment}]" if environment else ""
    if message.event == "opened":
        head = f"OPENED{where_}: {message.headline}"
    elif message.event == "reminder":
        since = format_duration(message.time - message.opened)
        head = f"STILL OPEN after {since}{where_}: {message.headline}"
    else:
        took = format_duration(message.time - message.opened)
        head = f"RESOLVED after {took}{where_}: {message.headline}"
    lines = [f"{_ICON[message.event]} travellr-ops alert #{message.episode} {head}"]
    if message.event != "resolved":
        lines += [f"• {_metric_line(m)}" for m in message.details.get("metrics", [])]
        for symptom in message.details.get("symptoms", []):
            lines.append(f"caused by it, {symptom['name']}:")
            lines += [f"  • {_metric_line(m)}" for m in symptom["metrics"]]
    return mask("\n".join(lines))


def body(message: Message, webhook: AlertWebhook, environment: str | None) -> dict[str, Any]:
    said = text(message, environment)
    if webhook.format == "slack":
        return {"text": said, "username": "travellr-ops"}
    return {
        "source": "travellr-ops",
        "environment": environment,
        "event": message.event,
        "episode": message.episode,
        "root_cause": message.component,
        "root_cause_name": label(message.component),
        "kind": message.kind,
        "headline": message.headline,
        "opened": _iso(message.opened),
        "resolved": _iso(message.resolved),
        "time": _iso(message.time),
        "metrics": message.details.get("metrics", []),
        "symptoms": message.details.get("symptoms", []),
        "text": said,
    }


def enqueue(store: Store, messages: list[Message], settings: Settings) -> int:
    """Keep each message once per (well-formed) webhook; how many deliveries that makes."""
    hooks = [w for w in settings.alerts.webhooks if malformed(w.url) is None]
    rows = [
        (m.episode, m.event, m.time, w.url, w.format, json.dumps(body(m, w, settings.environment)))
        for m in messages
        for w in hooks
    ]
    if rows:
        with open_alerts(store).write("keeping the alert messages") as conn:
            conn.executemany(
                "INSERT INTO alert_deliveries (episode, event, created, webhook, format, body)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
    return len(rows)


@dataclass
class Delivered:
    sent: int = 0
    failed: int = 0
    #: still waiting after this run (failed now, or not tried before the deadline)
    pending: int = 0
    dropped: int = 0


def deliver(
    store: Store,
    http: HttpAdapter,
    settings: Settings,
    warn: Callable[[str], None],
    deadline: float | None = None,
) -> Delivered:
    """Send what is waiting, oldest first, until done or ``deadline`` (monotonic) passes."""
    done = Delivered()
    rows = open_alerts(store).query(
        "SELECT id, event, created, webhook, body, attempts FROM alert_deliveries"
        " WHERE state = 'pending' ORDER BY id",
        doing="reading the alert messages",
    )
    failed_hooks: set[str] = set()
    give_up = time.time() - settings.alerts.retry_for_s
    for row_id, event, created, url, document, attempts in rows:
        if created < give_up:
            _update(store, row_id, "dropped", attempts, "kept longer than alerts.retry_for_s")
            message = f"alert {event} to {where(url)} dropped after {attempts} attempts"
            log.warning(message)
            warn(message)
            done.dropped += 1
            continue
        if url in failed_hooks or (deadline is not None and time.monotonic() > deadline):
            done.pending += 1
            continue
        error = _post(http, url, json.loads(document))
        if error is None:
            _update(store, row_id, "sent", attempts + 1, "")
            done.sent += 1
            continue
        failed_hooks.add(url)
        _update(store, row_id, "pending", attempts + 1, error)
        message = f"alert {event} to webhook {where(url)} failed ({error}); retried at the next run"
        log.warning(message)
        warn(message)
        done.failed += 1
        done.pending += 1
    return done


def _post(http: HttpAdapter, url: str, document: dict[str, Any]) -> str | None:
    try:
        status = http.post_json(url, document)
    except TravellrError as exc:
        return exc.message.replace(url, where(url))
    return None if status < 300 else f"HTTP {status}"


def _update(store: Store, row_id: int, state: str, attempts: int, error: str) -> None:
    now = time.time()
    with store.write("recording an alert delivery") as conn:
        conn.execute(
            "UPDATE alert_deliveries SET state = ?, attempts = ?, last_try = ?, last_error = ?,"
            " sent = CASE WHEN ? = 'sent' THEN ? ELSE sent END WHERE id = ?",
            (state, attempts, now, error, state, now, row_id),
        )
