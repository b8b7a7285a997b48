"""Restore tests kept in the shared store (``backup_restore_tests``): which backup, when, how
long the restore took and whether it matched its manifest. `backup list` shows each backup's
newest one; `checklist monthly` judges the age of the newest passing one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from travellr_ops.store import Store

COMPONENT = "backup"
SCHEMA = [
    """
    CREATE TABLE backup_restore_tests (
        time REAL NOT NULL,
        backup TEXT NOT NULL,
        ok INTEGER NOT NULL,
        seconds REAL NOT NULL,
        documents INTEGER NOT NULL DEFAULT 0,
        picked TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX backup_restore_tests_by_backup ON backup_restore_tests (backup, time)
    """,
]


@dataclass
class RestoreTest:
    #: when the test ended (epoch seconds)
    time: float
    backup: str
    ok: bool
    #: how long restoring into the scratch database took
    seconds: float
    documents: int
    #: how the backup was chosen: "named", "latest" or "random"
    picked: str
    detail: str

    @property
    def at(self) -> str:
        return datetime.fromtimestamp(self.time, UTC).isoformat(timespec="seconds")

    @property
    def age_days(self) -> float:
        return (datetime.now(UTC).timestamp() - self.time) / 86400


def open_drills(store: Store) -> Store:
    store.migrate(COMPONENT, SCHEMA)
    return store


def record(store: Store, test: RestoreTest) -> None:
    with open_drills(store).write("recording a restore test") as conn:
        conn.execute(
            "INSERT INTO backup_restore_tests (time, backup, ok, seconds, documents, picked,"
            " detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                test.time,
                test.backup,
                int(test.ok),
                test.seconds,
                test.documents,
                test.picked,
                test.detail,
            ),
        )


_COLUMNS = "time, backup, ok, seconds, documents, picked, detail"


def _test(row: tuple[float, str, int, float, int, str, str]) -> RestoreTest:
    t, backup, ok, seconds, documents, picked, detail = row
    return RestoreTest(t, backup, bool(ok), seconds, documents, picked, detail)


def newest_per_backup(store: Store) -> dict[str, RestoreTest]:
    """Each backup's newest restore test."""
    if not store.path.exists():  # nothing recorded yet: a listing creates no store
        return {}
    rows = open_drills(store).query(
        f"SELECT {_COLUMNS} FROM backup_restore_tests ORDER BY time",
        doing="reading the restore tests",
    )
    return {test.backup: test for test in map(_test, rows)}


def newest(store: Store, *, passed: bool) -> RestoreTest | None:
    """The newest restore test (only passing ones with ``passed``)."""
    if not store.path.exists():
        return None
    rows = open_drills(store).query(
        f"SELECT {_COLUMNS} FROM backup_restore_tests"
        + (" WHERE ok = 1" if passed else "")
        + " ORDER BY time DESC LIMIT 1",
        doing="reading the restore tests",
    )
    return _test(rows[0]) if rows else None
