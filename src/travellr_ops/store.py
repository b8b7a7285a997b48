"""The one local SQLite store in the state directory, shared by the command groups.

Each group owns its tables and declares them as a list of migration steps under its own name
(``store.migrate("monitor", MONITOR_SCHEMA)``); the ``schema`` table records how many steps
of each group have run, so a group adds a table or a column by appending a step, and groups
never touch each other's versions. WAL mode lets a live monitor, a cron job and a report read
and write at once; writers queue behind each other for up to ``timeout_s`` (busy timeout).

Errors (a locked, corrupt or unwritable file) become ``StoreError`` with the path and a hint.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from travellr_ops.errors import TravellrError

FILENAME = "travellr-ops.db"


class StoreError(TravellrError):
    """The history store could not be read or written."""


def store_path(state_dir: Path) -> Path:
    return state_dir / FILENAME


class Store:
    def __init__(self, path: Path, timeout_s: float = 5.0) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            with self.errors("opening"):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # autocommit mode: transactions are explicit (BEGIN IMMEDIATE in `write`)
                conn = sqlite3.connect(
                    self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False
                )
                try:
                    conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
                    self._use_wal(conn)
                    conn.execute("PRAGMA synchronous = NORMAL")
                except BaseException:
                    conn.close()
                    raise
                self._conn = conn
        return self._conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL once. Connections racing to switch a brand-new file get SQLITE_BUSY
        at once, without the busy handler, so the switch is retried up to the timeout."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "locked" in text or "busy" in text:
                raise StoreError(
                    f"history store {self.path} is locked by another writer ({doing}); "
                    f"waited {self.timeout_s:g} s",
                    hint="another travellr-ops may hold it; raise store.timeout_s",
                ) from None
            raise StoreError(
                f"history store {self.path}: {text} ({doing})",
                hint="check the state directory's permissions and free space (state_dir)",
            ) from None
        except sqlite3.DatabaseError as exc:  # "file is not a database", malformed image
            raise StoreError(
                f"history store {self.path} is damaged: {exc} ({doing})",
                hint=f"move it aside (mv {self.path} {self.path}.bad); a new one is made "
                "on the next run",
            ) from None
        except OSError as exc:
            raise StoreError(
                f"history store {self.path}: {exc.strerror or exc} ({doing})"
            ) from None

    @contextmanager
    def write(self, doing: str) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE) so that concurrent writers
        wait on the busy timeout instead of failing half-way."""
        with self.errors(doing):
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = (), doing: str = "reading") -> list[Any]:
        with self.errors(doing):
            return self.conn.execute(sql, params).fetchall()

    def rows(self, sql: str, params: Sequence[Any] = (), doing: str = "reading") -> Iterator[Any]:
        """The rows one at a time, for results too large to hold twice (a week of samples)."""
        with self.errors(doing):
            yield from self.conn.execute(sql, params)

    def migrate(self, component: str, steps: Sequence[str]) -> None:
        """Run the steps of ``component`` that have not run yet (each one SQL script)."""
        with self.write(f"updating the {component} tables") as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema (component TEXT PRIMARY KEY, version INTEGER)"
            )
            row = conn.execute(
                "SELECT version FROM schema WHERE component = ?", (component,)
            ).fetchone()
            done = int(row[0]) if row else 0
            if done > len(steps):
                raise StoreError(
                    f"history store {self.path} has {component} tables of a newer travellr-ops "
                    f"(version {done}, this one knows {len(steps)})",
                    hint="upgrade travellr-ops, or point state_dir elsewhere",
                )
            for step in steps[done:]:
                for statement in step.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            if done < len(steps):
                conn.execute(
                    "INSERT INTO schema (component, version) VALUES (?, ?) "
                    "ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                    (component, len(steps)),
                )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
