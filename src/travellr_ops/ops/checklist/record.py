"""Checklist runs in the shared store: ``checklist_runs`` and ``checklist_steps``.

Every run is kept with who ran it, when, how it ended and each step's result, so that
`checklist last` can say when each routine last ran and what failed, `checklist morning`
can warn of an overdue weekly or monthly routine, and `maintenance after` can compare with
the figures `maintenance before` took.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from travellr_ops.ops.checklist.runner import DONE, RunReport, StepResult
from travellr_ops.store import Store
from travellr_ops.vocab.verdict import Verdict

COMPONENT = "checklist"
SCHEMA = [
    """
    CREATE TABLE checklist_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        routine TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        by TEXT NOT NULL,
        command TEXT NOT NULL DEFAULT '',
        verdict TEXT NOT NULL,
        exit_code INTEGER NOT NULL
    );
    CREATE INDEX checklist_runs_by_routine ON checklist_runs (routine, started_at);
    CREATE TABLE checklist_steps (
        run_id INTEGER NOT NULL REFERENCES checklist_runs (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        name TEXT NOT NULL,
        title TEXT NOT NULL,
        kind TEXT NOT NULL,
        verdict TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        duration_s REAL NOT NULL,
        depends_on TEXT NOT NULL DEFAULT '[]',
        data TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (run_id, position)
    )
    """,
]


def open_store(store: Store) -> Store:
    store.migrate(COMPONENT, SCHEMA)
    return store


def record(store: Store, report: RunReport, command: str) -> int:
    """Store the run and its steps; the run's id."""
    with store.write("recording a checklist run") as conn:
        cursor = conn.execute(
            "INSERT INTO checklist_runs (routine, started_at, finished_at, by, command, verdict,"
            " exit_code) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                report.routine,
                report.started_at,
                report.finished_at,
                report.by,
                command,
                report.verdict,
                report.exit_code,
            ),
        )
        run_id = int(cursor.lastrowid or 0)
        conn.executemany(
            "INSERT INTO checklist_steps (run_id, position, name, title, kind, verdict, detail,"
            " duration_s, depends_on, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    run_id,
                    position,
                    s.name,
                    s.title,
                    s.kind,
                    s.verdict,
                    s.detail,
                    s.duration_s,
                    json.dumps(s.depends_on),
                    json.dumps(s.data, default=str),
                )
                for position, s in enumerate(report.steps)
            ],
        )
    return run_id


@dataclass
class PastRun:
    id: int
    routine: str
    started_at: str
    finished_at: str
    by: str
    command: str
    verdict: Verdict
    exit_code: int
    age_days: float
    steps: list[StepResult] = field(default_factory=list)

    @property
    def problems(self) -> list[StepResult]:
        return [s for s in self.steps if s.verdict not in DONE]

    def data(self, step: str) -> dict[str, Any]:
        return next((s.data for s in self.steps if s.name == step), {})


def last(store: Store, routine: str, now: datetime | None = None) -> PastRun | None:
    """The newest run of ``routine`` with its steps; None when it never ran."""
    rows = store.query(
        "SELECT id, routine, started_at, finished_at, by, command, verdict, exit_code"
        " FROM checklist_runs WHERE routine = ? ORDER BY started_at DESC, id DESC LIMIT 1",
        (routine,),
        doing="reading the checklist runs",
    )
    if not rows:
        return None
    run_id, name, started, finished, by, command, verdict, code = rows[0]
    now = now or datetime.now(UTC)
    age = (now - datetime.fromisoformat(started)).total_seconds() / 86400
    steps = [
        StepResult(
            name=step,
            title=title,
            kind=kind,
            verdict=Verdict(step_verdict),
            detail=detail,
            duration_s=duration,
            depends_on=json.loads(depends),
            data=json.loads(data),
        )
        for step, title, kind, step_verdict, detail, duration, depends, data in store.query(
            "SELECT name, title, kind, verdict, detail, duration_s, depends_on, data"
            " FROM checklist_steps WHERE run_id = ? ORDER BY position",
            (run_id,),
            doing="reading the checklist steps",
        )
    ]
    return PastRun(
        run_id,
        name,
        started,
        finished,
        by,
        command,
        Verdict(verdict),
        int(code),
        round(age, 2),
        steps,
    )
