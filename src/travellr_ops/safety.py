"""The one mechanism every mutating command goes through.

``Guard.mutation`` gives each change the same treatment: refused in read-only mode, announced,
``--dry-run`` (say what would change, change nothing), a confirmation prompt unless ``--yes``
(refused when there is no terminal), an optional named lock, and an audit-log record of the
outcome. In a protected environment (production) the plan names the environment and the
confirmation is its name typed out, or ``--yes --confirm-env NAME`` without a terminal.
Ops code asks the guard; it never prompts, locks or audits by itself.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from travellr_ops.errors import LockHeld, Refused, TravellrError
from travellr_ops.redact import mask

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Change:
    """What a mutating command is about to do, in words a person can approve."""

    action: str  # "cache clear"
    summary: str  # "delete 1,204 keys matching 'search:*' in redis://127.0.0.1:6379/0"
    details: Sequence[str] = ()  # a sample of what is affected
    target: str = ""
    #: why the person makes it (`--reason`), kept in the audit log as ``user_reason``
    reason: str = ""
    #: what the change ended with, filled in while it runs (e.g. ``exit_code`` of a command
    #: run in a container): kept in the audit entry as ``result``
    results: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


class AuditLog:
    """Append-only JSON lines: who did what, to what, how it ended, how long it took."""

    def __init__(self, path: Path, environment: str | None = None) -> None:
        self.path = path
        #: the named environment every record of this log's writer is about
        self.environment = environment

    def record(self, **entry: Any) -> None:
        entry = {"time": utcnow().isoformat(timespec="milliseconds"), **entry}
        if self.environment is not None:
            entry.setdefault("environment", self.environment)
        line = mask(json.dumps(entry, default=str)) + "\n"
        log.info("audit log %s: %s", self.path, line.strip())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND with one write per record keeps concurrent writers' lines whole.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


@dataclass
class LockInfo:
    pid: int
    host: str
    since: str
    command: str


class FileLock:
    """A named lock on a file, held with flock so the kernel frees it when its holder dies.

    A lock file left behind by a dead holder is therefore free to take; ``acquire`` reports
    such a takeover so that the user learns an earlier run died.
    """

    def __init__(self, directory: Path, name: str, command: str = "") -> None:
        self.name = name
        self.path = directory / f"{name}.lock"
        self.command = command
        self._fd: int | None = None
        self.took_over: LockInfo | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_lock_info(fd)
                os.close(fd)
                who = (
                    f"pid {holder.pid} on {holder.host} since {holder.since} ({holder.command})"
                    if holder
                    else "another process"
                )
                raise LockHeld(
                    f"the {self.name} lock is held by {who}",
                    hint=f"wait for that run to finish; the lock file is {self.path}",
                ) from None
            # The holder we waited on may have unlinked the file after we opened it: then we
            # locked an orphan inode and must start again on the file now at the path.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.took_over = _read_lock_info(fd)
        info = LockInfo(os.getpid(), socket.gethostname(), utcnow().isoformat(), self.command)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info.__dict__).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_lock_info(fd: int) -> LockInfo | None:
    try:
        raw = os.pread(fd, 4096, 0)
        return LockInfo(**json.loads(raw)) if raw.strip() else None
    except (OSError, ValueError, TypeError):
        return None


@dataclass
class Guard:
    """Decides whether, and under which lock, a change may go ahead, and records it."""

    state_dir: Path
    command: str = ""  # the command line, secrets masked
    yes: bool = False
    dry_run: bool = False
    read_only: bool = False
    interactive: bool = False
    #: asks a person; returns their answer (the CLI passes a Rich prompt on stderr)
    confirm: Callable[[str], bool] = field(default=lambda prompt: False)
    #: shows the plan to a person (the CLI prints to stderr)
    announce: Callable[[str], None] = field(default=lambda message: None)
    #: something a person must learn even from cron (shown with --quiet too)
    warn: Callable[[str], None] = field(default=lambda message: None)
    #: the incident these changes belong to (`--incident ID`), named in their audit records
    incident: str = ""
    #: the named environment the changes go to (named in the plan and in every audit record)
    environment: str | None = None
    #: a protected environment: a change needs the environment's name typed, or --yes together
    #: with ``confirm_env`` naming it
    protected: bool = False
    #: `--confirm-env NAME`: the environment the user said they mean to change
    confirm_env: str | None = None
    #: asks a person to type something; returns what they typed
    ask: Callable[[str], str] = field(default=lambda prompt: "")
    #: shows one line of the plan headed by the environment's name (red when protected)
    announce_env: Callable[[str, bool, str], None] | None = None

    @property
    def audit(self) -> AuditLog:
        return AuditLog(self.state_dir / "audit.log", self.environment)

    def lock(self, name: str) -> FileLock:
        """A named lock (backup, restore, deploy) in the state directory."""
        return FileLock(self.state_dir / "locks", name, self.command)

    @contextmanager
    def mutation(
        self,
        change: Change,
        *,
        lock: str | None = None,
        confirm: bool = True,
        mutates_servers: bool = True,
    ) -> Iterator[bool]:
        """Yield True when the change is to be carried out, False on --dry-run.

        One rule for every change to a server: asked on a terminal, refused without one unless
        ``--yes``. Raises Refused in read-only mode (when ``mutates_servers``), or when the
        change gets no confirmation; LockHeld when ``lock`` is taken by a live process. Every
        refusal is recorded in the audit log (outcome ``refused``, with the reason).
        ``confirm=False`` only for changes that touch no server (a backup being written).
        """
        if not confirm and mutates_servers:
            raise ValueError(f"{change.action}: a change to a server is always confirmed")
        if self.read_only and mutates_servers:
            self._refuse(
                change,
                "read-only",
                f"read-only mode: refusing to {change.action}",
                hint="run without --read-only (and unset TRAVELLR_READ_ONLY) to make changes",
            )
        if self.dry_run:
            self._plan(f"dry run: would {change.summary}", change)
            yield False
            return
        if confirm and self.confirm_env is not None:
            self._check_confirm_env(change)
        if self.protected and confirm:
            self._confirm_protected(change)
        elif confirm and not self.yes:
            self._plan(f"about to {change.summary}", change)
            if not self.interactive:
                self._refuse(
                    change,
                    "no terminal to confirm on, and no --yes",
                    f"refusing to {change.action} without confirmation: no terminal to ask on",
                    hint="pass --yes to confirm (or --dry-run to see what would change)",
                )
            if not self.confirm(f"{change.action}: go ahead?"):
                self._refuse(change, "declined", f"{change.action} not confirmed; nothing changed")
        file_lock = self.lock(lock) if lock else None
        if file_lock is not None:
            try:
                file_lock.acquire()
            except LockHeld as exc:
                self._record(change, "refused", 0.0, reason="lock held", error=exc.message)
                raise
            if file_lock.took_over is not None:
                dead = file_lock.took_over
                self.warn(
                    f"took over a stale {lock} lock left by pid {dead.pid} on {dead.host}"
                    f" (started {dead.since}); that run did not finish"
                )
        started = time.monotonic()
        try:
            yield True
        except KeyboardInterrupt:
            self._record(change, "interrupted", time.monotonic() - started)
            raise
        except TravellrError as exc:
            self._record(change, "failed", time.monotonic() - started, error=exc.message)
            raise
        except Exception as exc:
            self._record(change, "failed", time.monotonic() - started, error=repr(exc))
            raise
        else:
            self._record(change, "ok", time.monotonic() - started)
        finally:
            if file_lock is not None:
                file_lock.release()

    @property
    def _name_to_type(self) -> str:
        return self.environment or "protected"

    def _plan(self, headline: str, change: Change) -> None:
        """The plan, headed by the environment's name when one is named."""
        if self.environment is None and not self.protected:
            self.announce(headline)
        elif self.announce_env is not None:
            self.announce_env(self._name_to_type, self.protected, headline)
        else:
            self.announce(f"{self._name_to_type}: {headline}")
        for line in change.details:
            self.announce(f"  {line}")

    def _check_confirm_env(self, change: Change) -> None:
        """--confirm-env names the environment the user means: another one (or none selected)
        is a mistake, in any environment, protected or not."""
        name = self.environment if not self.protected else self._name_to_type
        if self.confirm_env == name:
            return
        this = f"this is {name}" if name else "no environment is selected"
        self._plan(f"about to {change.summary}", change)
        self._refuse(
            change,
            f"--confirm-env {self.confirm_env} does not name {name or 'the environment'}",
            f"refusing to {change.action}: {this}, but --confirm-env says "
            f"{self.confirm_env!r}; nothing changed",
            hint="check which environment you mean (--env NAME); --confirm-env must name it",
        )

    def _confirm_protected(self, change: Change) -> None:
        """A change to a protected environment goes ahead only once its name is given: typed
        at the prompt, or --yes --confirm-env NAME. Anything else changes nothing."""
        name = self._name_to_type
        self._plan(f"about to {change.summary}", change)
        if self.yes and self.confirm_env == name:
            return
        if not self.interactive:
            self._refuse(
                change,
                f"{name} is protected: no terminal to type its name on, and no "
                f"--yes --confirm-env {name}",
                f"refusing to {change.action} in protected environment {name} without its name",
                hint=f"pass --yes --confirm-env {name} (or --dry-run to see what would change)",
            )
        typed = self.ask(f"{change.action} in {name}: type {name} to go ahead").strip()
        if typed != name:
            self._refuse(
                change,
                "declined" if not typed else f"typed {typed!r}, not {name!r}",
                f"{change.action} not confirmed: {name!r} was not typed; nothing changed",
            )

    def _refuse(
        self, change: Change, reason: str, message: str, hint: str | None = None
    ) -> NoReturn:
        self._record(change, "refused", 0.0, reason=reason)
        raise Refused(message, hint=hint)

    def _record(
        self, change: Change, outcome: str, duration: float, error: str = "", reason: str = ""
    ) -> None:
        entry: dict[str, Any] = {
            "user": _user(),
            "host": socket.gethostname(),
            "command": self.command,
            "action": change.action,
            "summary": change.summary,
            "target": change.target,
            "outcome": outcome,
            "duration_s": round(duration, 3),
        }
        if reason:
            entry["reason"] = reason
        if change.reason:
            entry["user_reason"] = change.reason
        if error:
            entry["error"] = error
        if change.results:
            entry["result"] = dict(change.results)
        if self.incident:
            entry["incident"] = self.incident
        self.audit.record(**entry)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
