"""The recovery objectives as a user sees them: the recoverable window, its gaps and the RPO
in `backup list` and the metrics file; an archive that stopped as a breach in the monitor and
the morning checklist; restores that cannot reach a moment saying what they can; restore
drills (`verify --restore-test --random`) recorded and judged by `checklist monthly`. All on
real servers: a SecantusDB replica set, and for the checklists redis-server and the backend."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cli import invoke
from fixtures_servers import Backend, MongoServer, RedisServer, ServerSet, seed
from test_metrics_file import families
from travellr_ops.settings import Settings

pytestmark = [pytest.mark.mongo]


@pytest.fixture(scope="module")
def rs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    server = MongoServer(tmp_path_factory.mktemp("rpo-rs")).start()
    try:
        yield server
    finally:
        server.stop()


_dbs = iter(range(10_000))


def settings_for(server: MongoServer, tmp: Path, **backup: Any) -> Settings:
    return Settings(
        mongo={"uri": server.uri_for(f"rpo{next(_dbs)}"), "timeout_s": 3.0},
        backup={"dir": tmp / "backups", **backup},
        state_dir=tmp / "state",
        api={"url": "http://127.0.0.1:9"},
        redis={"url": "redis://127.0.0.1:9/0", "timeout_s": 0.5},
        monitor={"window_s": 0.2, "api_probes": 1},
    )


def insert(server: MongoServer, s: Settings, n: int, start: int = 0) -> None:
    client = server.client(s.mongo.uri.rsplit("/", 1)[1])
    try:
        client.get_default_database().bookings.insert_many(
            [{"_id": i, "seats": 1} for i in range(start, start + n)]
        )
    finally:
        client.close()


def count(server: MongoServer, db: str) -> int:
    client = server.client(db)
    try:
        return int(client[db].bookings.count_documents({}))
    finally:
        client.close()


def ok(*args: str, settings: Settings) -> Any:
    result = invoke(*args, "--json", settings=settings)
    assert result.exit_code == 0, result.stderr
    return result.json()


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_window_gaps_and_rpo_in_list_metrics_monitor_and_restore(
    rs: MongoServer, tmp_path: Path
) -> None:
    s = settings_for(rs, tmp_path, rpo_target_s=4.0)
    db = s.mongo.uri.rsplit("/", 1)[1]
    insert(rs, s, 50)
    first = ok("backup", "create", settings=s)["name"]
    listing = ok("backup", "list", settings=s)
    window = listing["window"]
    # no archive yet: the newest backup is the recovery point
    assert window["newest_from"] == f"backup {first}"
    assert window["oldest"] == window["newest"] and window["gaps"] == []
    assert 0 <= window["rpo_s"] < 4 and window["rpo_breach"] is False
    # ... and the promise is the backups' own age limit, not the archive's seconds
    assert window["rpo_target_s"] == s.backup.max_age_hours * 3600

    time.sleep(1.1)
    insert(rs, s, 50, 50)
    second = ok("backup", "create", settings=s)["name"]
    ok("backup", "oplog-archive", settings=s)  # starts after the newest backup
    insert(rs, s, 25, 100)
    time.sleep(1.1)
    archived = ok("backup", "oplog-archive", settings=s)
    assert archived["entries"] == 25
    prom = tmp_path / "textfile" / "backup.prom"
    listed = invoke("backup", "list", "--json", "--metrics-file", str(prom), settings=s)
    assert listed.exit_code == 0, listed.stderr
    window = listed.json()["window"]
    assert window["newest_from"] == "oplog archive"
    assert window["rpo_s"] < 4 and not window["rpo_breach"]
    # the first backup is restorable to its own moment only: a gap up to the second one
    [gap] = window["gaps"]
    assert gap["start"] == window["oldest"] and first in gap["reason"]
    rows = {b["name"]: b for b in listed.json()["backups"]}
    assert rows[first]["reaches"] == window["oldest"]
    assert rows[second]["reaches"] == window["newest"]
    assert rows[second]["restore_tested_at"] is None

    value = {s.name: s.value for f in families(prom).values() for s in f.samples}  # type: ignore[attr-defined]
    assert value["travellr_backup_rpo_target_seconds"] == 4
    assert value["travellr_backup_recoverable_gaps"] == 1
    newest = value["travellr_backup_recoverable_newest_timestamp_seconds"]
    assert int(newest) == int(epoch(window["newest"]))
    assert value["travellr_backup_rpo_seconds"] < 4

    human = invoke("backup", "list", settings=s)
    assert "recoverable window:" in human.stdout and "1 gap(s)" in human.stdout
    assert "RPO now:" in human.stdout and "ok" in human.stdout

    # everything archived comes back: --until latest
    restored = invoke("backup", "restore", second, "--db", db + "_latest", "--until", "latest",
                      "--yes", "--json", settings=s)  # fmt: skip
    assert restored.exit_code == 0, restored.stderr
    assert "--until latest:" in restored.stderr and "oplog archive" in restored.stderr
    assert count(rs, db + "_latest") == 125
    # the first backup cannot be rolled forward: it says to what it can
    past = invoke("backup", "restore", first, "--db", db + "_x", "--until", window["newest"],
                  "--yes", settings=s)  # fmt: skip
    assert past.exit_code == 1
    assert "restores to that moment only" in past.stderr and "archive covers from" in past.stderr
    own = invoke("backup", "restore", first, "--db", db + "_own", "--until", "latest", "--yes",
                 settings=s)  # fmt: skip
    assert own.exit_code == 0, own.stderr
    assert "the backup's own moment" in own.stderr
    assert count(rs, db + "_own") == 50
    # a moment past the archive names the newest it can reach
    later = datetime.fromtimestamp(epoch(window["newest"]) + 60, UTC).isoformat()
    future = invoke("backup", "restore", second, "--db", db + "_y", "--until", later, "--yes",
                    settings=s)  # fmt: skip
    assert future.exit_code == 1, future.stderr
    assert "that is the newest this backup can reach" in future.stderr

    # the archive stops: past the target, the very next look is a breach
    time.sleep(max(0.0, epoch(window["newest"]) + 4.5 - time.time()))
    stale = invoke("backup", "list", "--json", settings=s)
    assert stale.json()["window"]["rpo_breach"] is True
    assert "RPO breach" in stale.stderr
    sample = invoke("monitor", "once", "--json", settings=s).json()
    [rpo] = [m for m in sample["metrics"] if m["name"] == "backup_rpo_s"]
    assert rpo["verdict"] == "breach" and rpo["value"] > 4 and rpo["threshold"] == 4
    assert "oplog archive" in rpo["detail"]


def test_monitor_rpo_is_idle_without_backups_and_unknown_when_unreadable(
    rs: MongoServer, tmp_path: Path
) -> None:
    s = settings_for(rs, tmp_path)
    sample = invoke("monitor", "once", "--json", settings=s).json()
    [rpo] = [m for m in sample["metrics"] if m["name"] == "backup_rpo_s"]
    assert rpo["verdict"] == "idle" and "no whole backup" in rpo["detail"]
    archive = s.backup.dir / "oplog-archive"
    archive.mkdir(parents=True)
    (archive / "state.json").write_text("{not json")
    sample = invoke("monitor", "once", "--json", settings=s).json()
    [rpo] = [m for m in sample["metrics"] if m["name"] == "backup_rpo_s"]
    assert rpo["verdict"] == "unknown" and "unreadable" in rpo["detail"]


def test_random_restore_test_is_recorded_and_listed(rs: MongoServer, tmp_path: Path) -> None:
    s = settings_for(rs, tmp_path)
    insert(rs, s, 40)
    names = {ok("backup", "create", settings=s)["name"]}
    time.sleep(1.1)
    names.add(ok("backup", "create", settings=s)["name"])
    bad = invoke("backup", "verify", sorted(names)[0], "--random", settings=s)
    assert bad.exit_code == 2 and "--random" in bad.stderr

    prom = tmp_path / "verify.prom"
    verified = invoke("backup", "verify", "--random", "--restore-test", "--json",
                      "--metrics-file", str(prom), settings=s)  # fmt: skip
    assert verified.exit_code == 0, verified.stderr
    result = verified.json()
    assert result["picked"] == "random" and result["name"] in names
    assert result["restore_test"]["restore_s"] > 0
    rows = {b["name"]: b for b in ok("backup", "list", settings=s)["backups"]}
    tested = rows[result["name"]]
    assert tested["restore_test_s"] == result["restore_test"]["restore_s"]
    assert tested["restore_test_ok"] is True and tested["restore_tested_at"]
    [other] = names - {result["name"]}
    assert rows[other]["restore_tested_at"] is None
    with sqlite3.connect(s.state_dir / "travellr-ops.db") as conn:
        stored = conn.execute("SELECT backup, ok, picked FROM backup_restore_tests").fetchall()
    assert stored == [(result["name"], 1, "random")]
    value = {s.name: s.value for f in families(prom).values() for s in f.samples}  # type: ignore[attr-defined]
    assert value["travellr_backup_last_restore_test_ok"] == 1
    assert value["travellr_backup_last_restore_test_duration_seconds"] == tested["restore_test_s"]

    # over many drills every backup gets its turn
    for _ in range(12):
        if all(r["restore_tested_at"] for r in rows.values()):
            break
        invoke("backup", "verify", "--random", "--restore-test", settings=s)
        rows = {b["name"]: b for b in ok("backup", "list", settings=s)["backups"]}
    assert all(r["restore_tested_at"] for r in rows.values())


# --------------------------------------------------------------- checklists on the sandbox


@pytest.fixture(scope="module")
def sandbox(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RedisServer, MongoServer, Backend]]:
    made = ServerSet(tmp_path_factory.mktemp("rpo-sandbox"))
    try:
        redis = made.redis()
        mongo = made.mongo()
        seed(mongo.uri)
        backend = made.backend(redis_url=redis.url, mongo_uri=mongo.uri)
        yield redis, mongo, backend
    finally:
        made.discard()


CALM = {
    "api_response_ms": 60_000.0,
    "db_query_ms": 60_000.0,
    "cpu_pct": 1000.0,
    "memory_pct": 100.0,
    "disk_pct": 100.0,
}


@pytest.fixture
def sandbox_settings(
    sandbox: tuple[RedisServer, MongoServer, Backend], tmp_path: Path
) -> Callable[..., Settings]:
    redis, mongo, backend = sandbox

    def make(**backup: Any) -> Settings:
        return Settings(
            platform="none",
            state_dir=tmp_path / "state",
            disk_paths=[tmp_path],
            mongo={"uri": mongo.uri, "timeout_s": 2.0},
            redis={"url": redis.url, "timeout_s": 2.0},
            api={"url": backend.url, "timeout_s": 5.0},
            backup={"dir": tmp_path / "backups", **backup},
            logs={"access_log": backend.access_log, "app_log": backend.app_log},
            thresholds=CALM,
            monitor={"window_s": 0.3, "api_probes": 2},
            checklist={"cache_window_s": 0.3},
        )

    return make


@pytest.mark.redis
def test_morning_backup_step_fails_when_the_archive_stopped(
    sandbox_settings: Callable[..., Settings],
) -> None:
    s = sandbox_settings(rpo_target_s=3.0)
    name = ok("backup", "create", settings=s)["name"]
    ok("backup", "verify", name, settings=s)
    ok("backup", "oplog-archive", settings=s)

    def backup_step() -> dict[str, Any]:
        result = invoke("checklist", "morning", "--json", settings=s)
        return {st["name"]: st for st in result.json()["steps"]}["backup"]

    fresh = backup_step()
    assert fresh["verdict"] == "pass", fresh["detail"]
    assert "RPO" in fresh["detail"] and fresh["data"]["rpo_s"] < 3
    time.sleep(3.5)  # nothing archives any more
    stale = backup_step()
    assert stale["verdict"] == "fail"
    assert "over backup.rpo_target_s = 3 s" in stale["detail"]
    assert "oplog archive" in stale["detail"]


@pytest.mark.redis
def test_monthly_fails_when_the_newest_restore_test_is_too_old(
    sandbox_settings: Callable[..., Settings],
) -> None:
    s = sandbox_settings(drill_max_age_days=1.0)
    name = ok("backup", "create", settings=s)["name"]

    def drills() -> dict[str, Any]:
        result = invoke("checklist", "monthly", "--json", "--yes", settings=s)
        return {st["name"]: st for st in result.json()["steps"]}

    never = drills()
    assert never["restore-drills"]["verdict"] == "fail"
    assert "no restore test recorded" in never["restore-drills"]["detail"]
    # the monthly's own restore test counts for the next run, with its restore time
    assert never["restore-test"]["verdict"] == "pass"
    fresh = drills()["restore-drills"]
    assert fresh["verdict"] == "pass", fresh["detail"]
    assert fresh["data"]["newest"] == name and fresh["data"]["restore_s"] > 0

    # two days later: the drill schedule lapsed
    with sqlite3.connect(s.state_dir / "travellr-ops.db") as conn:
        conn.execute("UPDATE backup_restore_tests SET time = time - 2 * 86400")
    lapsed = drills()["restore-drills"]
    assert lapsed["verdict"] == "fail"
    assert "2.0 days ago" in lapsed["detail"]
    assert "over backup.drill_max_age_days = 1" in lapsed["detail"]
