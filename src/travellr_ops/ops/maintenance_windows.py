"""The maintenance windows travellr-ops opened, kept in the shared store.

The flag itself lives in Redis (see ops.maintenance), so while Redis is down, or after the flag
expired, only this record can say whether a moment was inside maintenance. `maintenance on`
opens a window (closing one still open: a new flag replaces the old), `maintenance off` closes
it; a window with an ``until`` ends by itself then, as the flag's expiry does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from travellr_ops.store import Store

COMPONENT = "maintenance"
SCHEMA = [
    """
    CREATE TABLE maintenance_windows (
        id INTEGER PRIMARY KEY,
        started REAL NOT NULL,
        until REAL,
        ended REAL,
        target TEXT NOT NULL DEFAULT '',
        by TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX maintenance_windows_by_start ON maintenance_windows (started)
    """,
]


@dataclass(frozen=True)
class Window:
    started: float
    #: when it ends by itself (the flag's expiry); None: at `maintenance off`
    until: float | None
    #: when `maintenance off` closed it; None: not closed
    ended: float | None
    target: str = ""
    by: str = ""
    reason: str = ""

    @property
    def end(self) -> float | None:
        """When the window ends (None: still open, with no end in sight)."""
        ends = [t for t in (self.until, self.ended) if t is not None]
        return min(ends) if ends else None

    def covers(self, moment: float) -> bool:
        end = self.end
        return self.started <= moment and (end is None or moment < end)


def _opened(store: Store) -> Store:
    store.migrate(COMPONENT, SCHEMA)
    return store


def record_on(
    store: Store,
    *,
    until: float | None,
    target: str,
    by: str,
    reason: str | None,
    now: float | None = None,
) -> None:
    """A window opens now (closing one still open)."""
    moment = time.time() if now is None else now
    with _opened(store).write("recording a maintenance window") as conn:
        conn.execute("UPDATE maintenance_windows SET ended = ? WHERE ended IS NULL", (moment,))
        conn.execute(
            "INSERT INTO maintenance_windows (started, until, target, by, reason)"
            " VALUES (?, ?, ?, ?, ?)",
            (moment, until, target, by, reason or ""),
        )


def record_off(store: Store, now: float | None = None) -> None:
    """The open window (if any) closes now."""
    moment = time.time() if now is None else now
    with _opened(store).write("closing a maintenance window") as conn:
        conn.execute("UPDATE maintenance_windows SET ended = ? WHERE ended IS NULL", (moment,))


def windows(store: Store, since: float, until: float | None = None) -> list[Window]:
    """Windows that overlap [since, until) (until None: up to now and beyond), oldest first."""
    rows = _opened(store).query(
        "SELECT started, until, ended, target, by, reason FROM maintenance_windows"
        " WHERE started < ? AND (ended IS NULL OR ended > ?) ORDER BY started",
        (float("inf") if until is None else until, since),
    )
    found = [Window(*row) for row in rows]
    return [w for w in found if w.end is None or w.end > since]


def active(store: Store, now: float | None = None) -> Window | None:
    """The window covering now, if any."""
    moment = time.time() if now is None else now
    found = [w for w in windows(store, moment, moment + 1e-6) if w.covers(moment)]
    return found[-1] if found else None


def covering(found: list[Window], moment: float) -> Window | None:
    """The window among these that covers the moment."""
    return next((w for w in reversed(found) if w.covers(moment)), None)
