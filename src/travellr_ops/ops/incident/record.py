"""Incident records in the shared SQLite store: the incident, its timestamped entries (notes
and steps) and the evidence captured at opening.

Every change is one ``BEGIN IMMEDIATE`` transaction of the store, so two engineers noting on
one incident at once both land: the second waits on the busy timeout, it never overwrites.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from travellr_ops.errors import UsageError
from travellr_ops.settings import IncidentContact
from travellr_ops.store import Store

COMPONENT = "incident"
SCHEMA = [
    """
    CREATE TABLE incidents (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        severity INTEGER NOT NULL,
        opened_at REAL NOT NULL,
        opened_by TEXT NOT NULL,
        closed_at REAL,
        closed_by TEXT
    );
    CREATE TABLE incident_entries (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        incident TEXT NOT NULL REFERENCES incidents (id),
        time REAL NOT NULL,
        kind TEXT NOT NULL,
        step TEXT NOT NULL DEFAULT '',
        text TEXT NOT NULL DEFAULT '',
        author TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX incident_entries_by_incident ON incident_entries (incident, seq);
    CREATE TABLE incident_evidence (
        incident TEXT NOT NULL REFERENCES incidents (id),
        source TEXT NOT NULL,
        state TEXT NOT NULL,
        duration_ms REAL,
        detail TEXT NOT NULL DEFAULT '',
        data TEXT NOT NULL DEFAULT 'null',
        PRIMARY KEY (incident, source)
    )
    """,
]

#: the runbook's five steps, in order; Identify is taken at `incident open`
STEPS = ("identify", "contain", "eradicate", "recover", "document")
LATER_STEPS = STEPS[1:]
LEVEL_NAMES = {1: "operations", 2: "engineering", 3: "senior engineering"}


@dataclass
class Entry:
    time: float
    #: opened, step, note, closed
    kind: str
    step: str
    text: str
    author: str


@dataclass
class Evidence:
    source: str
    #: ok (answered), down (did not answer: the detail says why), timeout (still not
    #: answered when the capture's time was up), skipped (does not apply here)
    state: str
    duration_ms: float | None
    detail: str
    data: Any = None


@dataclass
class Incident:
    id: str
    title: str
    severity: int
    opened_at: float
    opened_by: str
    closed_at: float | None = None
    closed_by: str | None = None
    entries: list[Entry] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "open" if self.closed_at is None else "closed"

    def step_time(self, step: str) -> float | None:
        """When ``step`` was first entered."""
        return next((e.time for e in self.entries if e.kind == "step" and e.step == step), None)

    @property
    def duration_s(self) -> float | None:
        return None if self.closed_at is None else self.closed_at - self.opened_at

    @property
    def time_to_recovery_s(self) -> float | None:
        recovered = self.step_time("recover")
        return None if recovered is None else recovered - self.opened_at


def open_store(store: Store) -> Store:
    store.migrate(COMPONENT, SCHEMA)
    return store


def iso(t: float | None) -> str:
    if t is None:
        return ""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def check_severity(severity: int) -> None:
    if severity not in (1, 2, 3):
        raise UsageError(
            f"severity must be 1, 2 or 3, not {severity}",
            hint="1: operations handle it, 2: engineering is called, 3: senior engineering",
        )


def escalation(severity: int, contacts: list[IncidentContact]) -> dict[str, Any]:
    """The level the severity calls, and who is on it and on the levels below (engaged)."""
    check_severity(severity)
    return {
        "level": severity,
        "name": f"Level {severity} ({LEVEL_NAMES[severity]})",
        "call": [c.model_dump() for c in contacts if c.level == severity],
        "engaged": [c.model_dump() for c in contacts if c.level < severity],
    }


def create(store: Store, title: str, severity: int, author: str, now: float) -> Incident:
    """A new open incident, its ID ``INC-YYYYMMDD-N`` (N counts that day's incidents)."""
    check_severity(severity)
    if not title.strip():
        raise UsageError("an incident needs a title", hint='e.g. incident open "API 500s"')
    day = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
    with store.write("opening an incident") as conn:
        # inside BEGIN IMMEDIATE: two openings at once cannot pick the same number
        taken = conn.execute(
            "SELECT id FROM incidents WHERE id LIKE ?", (f"INC-{day}-%",)
        ).fetchall()
        number = max((int(row[0].rsplit("-", 1)[1]) for row in taken), default=0) + 1
        incident_id = f"INC-{day}-{number}"
        conn.execute(
            "INSERT INTO incidents (id, title, severity, opened_at, opened_by) "
            "VALUES (?, ?, ?, ?, ?)",
            (incident_id, title.strip(), severity, now, author),
        )
        conn.execute(
            "INSERT INTO incident_entries (incident, time, kind, step, text, author) "
            "VALUES (?, ?, 'opened', 'identify', ?, ?)",
            (incident_id, now, f"opened at severity {severity}", author),
        )
    return get(store, incident_id)


def save_evidence(store: Store, incident_id: str, evidence: list[Evidence], now: float) -> None:
    down = [e.source for e in evidence if e.state in ("down", "timeout")]
    summary = f"evidence captured from {len(evidence)} source(s)" + (
        f"; no answer from {', '.join(down)}" if down else ""
    )
    with store.write("saving the incident evidence") as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO incident_evidence "
            "(incident, source, state, duration_ms, detail, data) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (incident_id, e.source, e.state, e.duration_ms, e.detail, json.dumps(e.data))
                for e in evidence
            ],
        )
        conn.execute(
            "INSERT INTO incident_entries (incident, time, kind, step, text, author) "
            "VALUES (?, ?, 'step', 'identify', ?, '')",
            (incident_id, now, summary),
        )


def add_entry(
    store: Store, incident_id: str, kind: str, text: str, author: str, now: float, step: str = ""
) -> None:
    """A note, or the start of a step (with an optional text). Notes belong to the step under
    way when they are made."""
    if kind == "step" and step not in LATER_STEPS:
        raise UsageError(
            f"unknown step {step!r}",
            hint=f"one of: {', '.join(LATER_STEPS)} (identify is taken at `incident open`)",
        )
    if kind == "note" and not text.strip():
        raise UsageError("a note needs some text")
    with store.write("adding to an incident") as conn:
        _require(conn, incident_id)
        if kind == "note":
            row = conn.execute(
                "SELECT step FROM incident_entries WHERE incident = ? AND kind IN "
                "('step', 'opened') ORDER BY seq DESC LIMIT 1",
                (incident_id,),
            ).fetchone()
            step = row[0] if row else "identify"
        conn.execute(
            "INSERT INTO incident_entries (incident, time, kind, step, text, author) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (incident_id, now, kind, step, text.strip(), author),
        )


def close(store: Store, incident_id: str, author: str, now: float, text: str = "") -> None:
    with store.write("closing an incident") as conn:
        closed = _require(conn, incident_id)
        if closed is not None:
            raise UsageError(
                f"incident {incident_id} was closed at {iso(closed)}",
                hint=f"add to it with `incident note {incident_id} TEXT`",
            )
        conn.execute(
            "UPDATE incidents SET closed_at = ?, closed_by = ? WHERE id = ?",
            (now, author, incident_id),
        )
        conn.execute(
            "INSERT INTO incident_entries (incident, time, kind, step, text, author) "
            "VALUES (?, ?, 'closed', 'document', ?, ?)",
            (incident_id, now, text.strip() or "closed", author),
        )


def _require(conn: Any, incident_id: str) -> float | None:
    """The incident's closing time (None while open); UsageError when there is none such."""
    row = conn.execute("SELECT closed_at FROM incidents WHERE id = ?", (incident_id,)).fetchone()
    if row is None:
        raise unknown(incident_id)
    return None if row[0] is None else float(row[0])


def unknown(incident_id: str) -> UsageError:
    return UsageError(
        f"no incident {incident_id!r}", hint="`travellr-ops incident list` shows the incidents"
    )


def get(store: Store, incident_id: str) -> Incident:
    rows = store.query(
        "SELECT id, title, severity, opened_at, opened_by, closed_at, closed_by FROM incidents "
        "WHERE id = ?",
        (incident_id,),
        doing="reading an incident",
    )
    if not rows:
        raise unknown(incident_id)
    incident = Incident(*rows[0])
    incident.entries = [
        Entry(*row)
        for row in store.query(
            "SELECT time, kind, step, text, author FROM incident_entries WHERE incident = ? "
            "ORDER BY seq",
            (incident_id,),
            doing="reading an incident",
        )
    ]
    incident.evidence = [
        Evidence(source, state, duration, detail, json.loads(data))
        for source, state, duration, detail, data in store.query(
            "SELECT source, state, duration_ms, detail, data FROM incident_evidence "
            "WHERE incident = ? ORDER BY rowid",
            (incident_id,),
            doing="reading an incident",
        )
    ]
    return incident


def listing(store: Store, only_open: bool = False) -> list[Incident]:
    """Every incident (newest first), without entries or evidence."""
    where = "WHERE closed_at IS NULL" if only_open else ""
    return [
        Incident(*row)
        for row in store.query(
            "SELECT id, title, severity, opened_at, opened_by, closed_at, closed_by "
            f"FROM incidents {where} ORDER BY opened_at DESC",
            doing="listing incidents",
        )
    ]


def exists(store: Store, incident_id: str) -> bool:
    return bool(
        store.query("SELECT 1 FROM incidents WHERE id = ?", (incident_id,), doing="reading")
    )
