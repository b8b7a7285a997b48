"""The mutation guard, the audit log and named locks (logic with no server behind it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from travellr_ops.errors import LockHeld, Refused
from travellr_ops.safety import Change, FileLock, Guard

CHANGE = Change("cache clear", "delete 3 keys matching 'search:*'", ["search:1"], "redis://h")


def guard(tmp_path: Path, **kw: object) -> tuple[Guard, list[str]]:
    said: list[str] = []
    g = Guard(
        state_dir=tmp_path,
        command="travellr-ops cache clear",
        announce=said.append,
        warn=said.append,
        **kw,  # type: ignore[arg-type]
    )
    return g, said


def test_dry_run_says_what_would_change_and_does_nothing(tmp_path: Path) -> None:
    g, said = guard(tmp_path, dry_run=True)
    with g.mutation(CHANGE) as go:
        assert go is False
    assert said[0] == "dry run: would delete 3 keys matching 'search:*'"
    assert "search:1" in said[1]
    assert g.audit.entries() == []


def test_no_terminal_and_no_yes_is_refused(tmp_path: Path) -> None:
    g, _ = guard(tmp_path, interactive=False)
    ran = False
    with pytest.raises(Refused, match="without confirmation"), g.mutation(CHANGE):
        ran = True
    assert not ran
    (entry,) = g.audit.entries()
    assert (entry["action"], entry["outcome"]) == ("cache clear", "refused")
    assert entry["reason"] == "no terminal to confirm on, and no --yes"
    assert entry["command"] == "travellr-ops cache clear" and entry["user"]


def test_every_change_to_a_server_is_confirmed(tmp_path: Path) -> None:
    g, _ = guard(tmp_path, interactive=False)
    with pytest.raises(ValueError, match="always confirmed"), g.mutation(CHANGE, confirm=False):
        pytest.fail("must not run")


def test_declined_prompt_changes_nothing_and_is_audited(tmp_path: Path) -> None:
    g, _ = guard(tmp_path, interactive=True, confirm=lambda prompt: False)
    with pytest.raises(Refused), g.mutation(CHANGE):
        pytest.fail("must not run")
    assert [(e["outcome"], e["reason"]) for e in g.audit.entries()] == [("refused", "declined")]


def test_confirmed_change_is_audited_with_outcome_and_duration(tmp_path: Path) -> None:
    g, _ = guard(tmp_path, interactive=True, confirm=lambda prompt: True)
    with g.mutation(CHANGE) as go:
        assert go is True
    (entry,) = g.audit.entries()
    assert entry["action"] == "cache clear"
    assert entry["outcome"] == "ok"
    assert entry["command"] == "travellr-ops cache clear"
    assert {"time", "user", "host", "duration_s", "target"} <= entry.keys()
    assert oct((tmp_path / "audit.log").stat().st_mode & 0o777) == "0o600"


def test_failure_is_audited_and_reraised(tmp_path: Path) -> None:
    g, _ = guard(tmp_path, yes=True)
    with pytest.raises(RuntimeError), g.mutation(CHANGE):
        raise RuntimeError("boom")
    (entry,) = g.audit.entries()
    assert entry["outcome"] == "failed"
    assert "boom" in entry["error"]


def test_secrets_never_reach_the_audit_log(tmp_path: Path) -> None:
    g = Guard(state_dir=tmp_path, yes=True, command="x --redis-url redis://:pw1@h:1/0")
    change = Change(
        "cache clear", "delete keys in redis://:pw2@h:1/0", target="mongodb://u:pw3@h/db"
    )
    with g.mutation(change):
        pass
    text = (tmp_path / "audit.log").read_text()
    assert "pw1" not in text and "pw2" not in text and "pw3" not in text
    assert text.count("***") == 3


def test_read_only_refuses_before_anything(tmp_path: Path) -> None:
    g, said = guard(tmp_path, read_only=True, yes=True)
    with pytest.raises(Refused, match="read-only"), g.mutation(CHANGE):
        pytest.fail("must not run")
    assert said == []
    assert [(e["outcome"], e["reason"]) for e in g.audit.entries()] == [("refused", "read-only")]
    # A change that touches no server (writing a backup file) is allowed in read-only mode.
    with g.mutation(CHANGE, mutates_servers=False, confirm=False) as go:
        assert go


def test_lock_held_by_a_live_process_is_refused(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from travellr_ops.safety import FileLock
                lock = FileLock(Path({str(tmp_path)!r}) / "locks", "backup", "backup create")
                lock.acquire()
                print("held", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        g, _ = guard(tmp_path, yes=True)
        with pytest.raises(LockHeld) as err, g.mutation(CHANGE, lock="backup"):
            pytest.fail("must not run")
        assert f"pid {holder.pid}" in err.value.message
        assert "backup create" in err.value.message
        (refusal,) = g.audit.entries()
        assert (refusal["outcome"], refusal["reason"]) == ("refused", "lock held")
        assert f"pid {holder.pid}" in refusal["error"]
    finally:
        holder.kill()
        holder.wait()
    # Its holder is dead: the lock is free again, and the takeover is reported.
    g, said = guard(tmp_path, yes=True)
    with g.mutation(CHANGE, lock="backup") as go:
        assert go
        info = json.loads((tmp_path / "locks" / "backup.lock").read_text())
        assert info["pid"] == os.getpid()
    assert any(f"stale backup lock left by pid {holder.pid}" in line for line in said)
    assert not (tmp_path / "locks" / "backup.lock").exists()


def test_lock_is_exclusive_within_one_process_too(tmp_path: Path) -> None:
    first = FileLock(tmp_path, "deploy")
    first.acquire()
    try:
        with pytest.raises(LockHeld):
            FileLock(tmp_path, "deploy").acquire()
    finally:
        first.release()
    with FileLock(tmp_path, "deploy") as again:
        assert again.took_over is None
