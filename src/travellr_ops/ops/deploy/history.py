"""Deploy history: one row per deploy or rollback in the shared SQLite store (state_dir).

A row is written when a deploy starts (outcome ``running``, with its pid) and completed when
it ends, so that a deploy killed with SIGKILL leaves a row that says so.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from travellr_ops.store import Store, store_path

SCHEMA = [
    """
    CREATE TABLE deploys (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        service TEXT NOT NULL,
        platform TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        outcome TEXT NOT NULL,
        user TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        image_from TEXT,
        image_id_from TEXT,
        revision_from TEXT,
        image_to TEXT,
        image_id_to TEXT,
        revision_to TEXT,
        backup TEXT,
        reason TEXT,
        duration_s REAL,
        report TEXT
    );
    CREATE INDEX deploys_by_service ON deploys (service, id)
    """
]

COLUMNS = [
    *("id", "kind", "service", "platform", "started_at", "finished_at", "outcome", "user"),
    *("host", "pid", "image_from", "image_id_from", "revision_from", "image_to"),
    *("image_id_to", "revision_to", "backup", "reason", "duration_s"),
]

#: outcomes after which the platform runs the new release ("inconclusive_kept": the gate
#: could not judge it, deploy.on_inconclusive = keep)
LANDED = ("succeeded", "inconclusive_kept")
#: outcomes after which the platform runs what ran before ("inconclusive": rolled back because
#: the gate could not judge the release, which is not the release failing)
RESTORED = ("rolled_back", "preflight_failed", "backup_failed", "interrupted", "inconclusive")
#: outcomes after which nobody knows what runs: the deploy stopped between the two
UNSETTLED = ("failed", "rollback_failed")


@dataclass
class Entry:
    id: int
    kind: str  # deploy | rollback
    service: str
    platform: str
    started_at: str
    finished_at: str | None
    outcome: str
    user: str
    host: str
    pid: int
    image_from: str | None
    image_id_from: str | None
    revision_from: str | None
    image_to: str | None
    image_id_to: str | None
    revision_to: str | None
    backup: str | None
    reason: str | None
    duration_s: float | None

    @property
    def expected_image(self) -> tuple[str | None, str | None]:
        """(image, image ID) the platform should run after this entry, as it ended."""
        if self.outcome in LANDED:
            return self.image_to, self.image_id_to
        return self.image_from, self.image_id_from


class History:
    def __init__(self, state_dir: Path, timeout_s: float = 5.0) -> None:
        self.store = Store(store_path(state_dir), timeout_s)
        self._ready = False

    def _migrated(self) -> Store:
        if not self._ready:
            self.store.migrate("deploy", SCHEMA)
            self._ready = True
        return self.store

    def start(self, **values: Any) -> int:
        values.setdefault("pid", os.getpid())
        values.setdefault("outcome", "running")
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self._migrated().write("recording a deploy") as conn:
            cursor = conn.execute(
                f"INSERT INTO deploys ({names}) VALUES ({marks})", list(values.values())
            )
            return int(cursor.lastrowid or 0)

    def update(self, entry_id: int, report: Any = None, **values: Any) -> None:
        if report is not None:
            values["report"] = json.dumps(report, default=str)
        sets = ", ".join(f"{k} = ?" for k in values)
        with self._migrated().write("recording a deploy") as conn:
            conn.execute(f"UPDATE deploys SET {sets} WHERE id = ?", [*values.values(), entry_id])

    def entries(self, service: str | None = None, limit: int | None = None) -> list[Entry]:
        sql = f"SELECT {', '.join(COLUMNS)} FROM deploys"
        params: list[Any] = []
        if service is not None:
            sql += " WHERE service = ?"
            params.append(service)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self._migrated().query(sql, params, "reading the deploy history")
        return [Entry(*row) for row in rows]

    def last(self, service: str) -> Entry | None:
        found = self.entries(service, limit=1)
        return found[0] if found else None

    def last_landed(self, service: str, before: int | None = None) -> list[Entry]:
        """Succeeded deploys and rollbacks of ``service``, newest first."""
        return [
            e
            for e in self.entries(service)
            if e.outcome == "succeeded" and (before is None or e.id < before)
        ]

    def report(self, entry_id: int) -> dict[str, Any] | None:
        rows = self._migrated().query("SELECT report FROM deploys WHERE id = ?", [entry_id])
        return json.loads(rows[0][0]) if rows and rows[0][0] else None

    def close(self) -> None:
        self.store.close()
