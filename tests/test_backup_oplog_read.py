"""`backup create` on a server that is slow to read a large oplog: the read gets its own
limit (backup.read_timeout_s), not the connection check's (mongo.timeout_s), and a read that
exceeds it is reported as such. Against real SecantusDB replica sets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import invoke
from fixtures_servers import MongoServer
from helpers_backup import backup_names, fail_command, fail_off, settings_for, wait_until

pytestmark = pytest.mark.mongo


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MongoServer]:
    """A server of the test's own: its answers are slowed down on purpose."""
    server = MongoServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


def _large_oplog(server: MongoServer, entries: int) -> None:
    client = server.client()
    for _ in range(entries // 1000):
        client.other.events.insert_many([{"n": i} for i in range(1000)])
    client.app.users.insert_many([{"_id": i, "name": f"user{i}"} for i in range(3000)])
    client.close()


def test_a_slow_server_is_not_cut_off_by_the_connection_timeout(
    server: MongoServer, tmp_path: Path
) -> None:
    """The issue's failure: while the server was busy scanning its oplog, the driver's
    heartbeat (limited by mongo.timeout_s) went unanswered and the driver cancelled the
    read in flight ("cannot reach MongoDB ... operation cancelled")."""
    _large_oplog(server, 30_000)
    backups = tmp_path / "backups"
    env = {
        **os.environ,
        # heartbeats every 0.5 s, each allowed mongo.timeout_s
        "TRAVELLR_MONGO__URI": server.uri_for("app") + "?heartbeatFrequencyMS=500",
        "TRAVELLR_MONGO__TIMEOUT_S": "0.5",
        "TRAVELLR_BACKUP__DIR": str(backups),
        "TRAVELLR_STATE_DIR": str(tmp_path / "state"),
    }
    # hold the dump until the tool is inside it, then make the server answer everything
    # (heartbeats, the oplog read) slower than mongo.timeout_s, as a busy server does
    fail_command(server, ["getMore"], mode={"times": 1}, blockConnection=True, blockTimeMS=2000)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "travellr_ops", "backup", "create"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
        )
        wait_until(lambda: any(backups.glob(".tmp-backup-*")))
        fail_command(server, ["hello", "isMaster", "find"], blockConnection=True, blockTimeMS=1500)
        _, err = proc.communicate(timeout=180)
    finally:
        fail_off(server)
    assert proc.returncode == 0, err.decode()
    [name] = [p.name for p in backups.iterdir() if p.name.startswith("backup-")]
    manifest = json.loads((backups / name / "manifest.json").read_text())
    assert manifest["oplog"] is not None
    assert [c["documents"] for c in manifest["collections"]] == [3000]


def test_a_read_past_backup_read_timeout_s_is_reported_as_a_timeout(
    server: MongoServer, tmp_path: Path
) -> None:
    _large_oplog(server, 2_000)
    s = settings_for(server.uri_for("app"), tmp_path, read_timeout_s=1.0)
    # the first find dumps app.users; the next one reads the oplog (and a retry, if any)
    fail_command(server, ["find"], mode={"skip": 1, "times": 2}, blockConnection=True,
                 blockTimeMS=4000)  # fmt: skip
    try:
        result = invoke("backup", "create", settings=s)
    finally:
        fail_off(server)
    assert result.exit_code == 3, result.stderr
    assert "timed out reading the oplog after 1 s" in result.stderr
    assert "backup.read_timeout_s" in result.stderr
    assert "cannot reach" not in result.stderr
    assert backup_names(s) == []
