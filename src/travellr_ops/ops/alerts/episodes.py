"""Alert episodes in the shared store: one per root-cause component while it is wrong.

An episode is *pending* while fewer than ``alerts.open_after`` samples in a row found its
breach (a source that does not answer opens it at once), *open* from then (message "opened"), and *resolved* after ``alerts.resolve_after``
clean samples in a row (message "resolved"). An open episode whose last message is older than
``alerts.repeat_s`` is sent again ("reminder"). An episode resolves when its cause answers
again *and* what it caused is over (``rules.linger``): the error rate of the last minutes
still counts the outage's 503s, and that is the same episode, not a new one of the API. Nothing else sends anything, so a cron job
every minute and a live monitor beside it share the episodes and never repeat each other.

While maintenance is on (the flag, or a window the store recorded, which still answers while
Redis is down) the episodes are left as they are: nothing opens, nothing resolves, nothing is
reminded. When it ends, the next sample compares with the episodes of before it, so only what
is new since maintenance began is reported (and what was open before and is still wrong stays
quiet, as it was reported already).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from travellr_ops.ops.alerts.rules import Problem, label, linger
from travellr_ops.ops.monitor.metrics import Metric
from travellr_ops.settings import AlertSettings
from travellr_ops.store import Store

COMPONENT = "alerts"
SCHEMA = [
    """
    CREATE TABLE alert_episodes (
        id INTEGER PRIMARY KEY,
        component TEXT NOT NULL,
        state TEXT NOT NULL,
        kind TEXT NOT NULL,
        first_seen REAL NOT NULL,
        opened REAL,
        last_seen REAL NOT NULL,
        last_sent REAL,
        resolved REAL,
        bad INTEGER NOT NULL DEFAULT 0,
        clean INTEGER NOT NULL DEFAULT 0,
        headline TEXT NOT NULL DEFAULT '',
        details TEXT NOT NULL DEFAULT '{}',
        messages INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX alert_episodes_by_state ON alert_episodes (state, component);
    CREATE TABLE alert_deliveries (
        id INTEGER PRIMARY KEY,
        episode INTEGER NOT NULL,
        event TEXT NOT NULL,
        created REAL NOT NULL,
        webhook TEXT NOT NULL,
        format TEXT NOT NULL,
        body TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        last_try REAL,
        last_error TEXT NOT NULL DEFAULT '',
        sent REAL
    );
    CREATE INDEX alert_deliveries_by_state ON alert_deliveries (state, id)
    """,
]

Event = Literal["opened", "reminder", "resolved"]


def open_alerts(store: Store) -> Store:
    store.migrate(COMPONENT, SCHEMA)
    return store


def metric_doc(m: Metric) -> dict[str, Any]:
    return {
        "metric": m.key,
        "verdict": str(m.verdict),
        "value": m.value,
        "unit": m.unit,
        "threshold": m.threshold,
        "direction": m.direction,
        "detail": m.detail,
    }


def problem_doc(problem: Problem) -> dict[str, Any]:
    return {
        "metrics": [metric_doc(m) for m in problem.metrics],
        "symptoms": [
            {"component": c, "name": label(c), "metrics": [metric_doc(m) for m in ms]}
            for c, ms in problem.symptoms.items()
        ],
    }


@dataclass
class Message:
    """One change of an episode, to be sent to every webhook."""

    event: Event
    episode: int
    component: str
    kind: str
    opened: float
    #: the sample's time (when the change was seen)
    time: float
    headline: str
    details: dict[str, Any] = field(default_factory=dict)
    resolved: float | None = None


_COLUMNS = (
    "id, component, state, kind, first_seen, opened, last_seen, last_sent, bad, clean, "
    "headline, details"
)


@dataclass
class _Episode:
    id: int
    component: str
    state: str
    kind: str
    first_seen: float
    opened: float | None
    last_seen: float
    last_sent: float | None
    bad: int
    clean: int
    headline: str
    details: str

    def message(self, event: Event, now: float) -> Message:
        return Message(
            event,
            self.id,
            self.component,
            self.kind,
            self.opened if self.opened is not None else self.first_seen,
            now,
            self.headline,
            json.loads(self.details),
            now if event == "resolved" else None,
        )


def advance(
    store: Store,
    found: dict[str, Problem],
    now: float,
    settings: AlertSettings,
    keep_days: float = 30.0,
) -> list[Message]:
    """Move the episodes on by one sample (its problems by root cause): the messages due.
    Resolved episodes and handled messages older than ``keep_days`` are deleted."""
    messages: list[Message] = []
    with open_alerts(store).write("updating the alert episodes") as conn:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM alert_episodes WHERE state IN ('pending', 'open')"
        ).fetchall()
        live = {row[1]: _Episode(*row) for row in rows}
        opened = [c for c, ep in live.items() if ep.state == "open"]
        found = linger(found, opened, settings.depends_on)
        for component, problem in found.items():
            details = json.dumps(problem_doc(problem))
            ep = live.get(component)
            if ep is None:
                cursor = conn.execute(
                    "INSERT INTO alert_episodes (component, state, kind, first_seen, last_seen,"
                    " headline, details) VALUES (?, 'pending', ?, ?, ?, ?, ?)",
                    (component, problem.kind, now, now, problem.headline, details),
                )
                ep = _Episode(
                    int(cursor.lastrowid or 0), component, "pending", problem.kind, now, None,
                    now, None, 0, 0, problem.headline, details,
                )  # fmt: skip
            ep.bad, ep.clean, ep.last_seen = ep.bad + 1, 0, now
            ep.details = details
            if not problem.lingering:  # it keeps the name it was opened with
                ep.kind, ep.headline = problem.kind, problem.headline
            event: Event | None = None
            # a source that does not answer is no noise; one slow probe may be
            needed = 1 if problem.kind == "down" else settings.open_after
            if ep.state == "pending" and ep.bad >= needed:
                ep.state, ep.opened, event = "open", now, "opened"
            elif ep.state == "open" and now - (ep.last_sent or now) >= settings.repeat_s:
                event = "reminder"
            if event is not None:
                ep.last_sent = now
                messages.append(ep.message(event, now))
            conn.execute(
                "UPDATE alert_episodes SET state = ?, kind = ?, opened = ?, last_seen = ?,"
                " last_sent = ?, bad = ?, clean = 0, headline = ?, details = ?,"
                " messages = messages + ? WHERE id = ?",
                (
                    ep.state, ep.kind, ep.opened, now, ep.last_sent, ep.bad, ep.headline,
                    ep.details, int(event is not None), ep.id,
                ),
            )  # fmt: skip
        # an episode of its own that a root cause now explains is not over: it stays open,
        # quietly, while it is listed under that cause
        explained = {c for problem in found.values() for c in problem.symptoms}
        for component, ep in live.items():
            if component in found or (component in explained and ep.state == "open"):
                continue
            if ep.state == "pending":  # gone before it counted: it never was an episode
                conn.execute("DELETE FROM alert_episodes WHERE id = ?", (ep.id,))
                continue
            ep.clean += 1
            if ep.clean < settings.resolve_after:
                conn.execute("UPDATE alert_episodes SET clean = ? WHERE id = ?", (ep.clean, ep.id))
                continue
            conn.execute(
                "UPDATE alert_episodes SET state = 'resolved', resolved = ?, last_sent = ?,"
                " clean = ?, messages = messages + 1 WHERE id = ?",
                (now, now, ep.clean, ep.id),
            )
            messages.append(ep.message("resolved", now))
        old = now - keep_days * 86400
        conn.execute("DELETE FROM alert_episodes WHERE state = 'resolved' AND resolved < ?", (old,))
        conn.execute(
            "DELETE FROM alert_deliveries WHERE state != 'pending' AND created < ?", (old,)
        )
    return messages


@dataclass
class EpisodeRow:
    id: int
    component: str
    state: str
    kind: str
    opened: float | None
    resolved: float | None
    headline: str
    messages: int


def episodes(store: Store, since: float) -> list[EpisodeRow]:
    """The episodes seen since then (pending ones included), oldest first."""
    rows = open_alerts(store).query(
        "SELECT id, component, state, kind, opened, resolved, headline, messages"
        " FROM alert_episodes WHERE last_seen >= ? OR state IN ('pending', 'open') ORDER BY id",
        (since,),
        doing="reading the alert episodes",
    )
    return [EpisodeRow(*row) for row in rows]
