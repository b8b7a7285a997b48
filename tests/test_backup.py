"""`backup`: against real SecantusDB servers (replica set and standalone) on 127.0.0.1.

Each test works in a database and a backup directory of its own on the module's servers;
fault tests that stop a server start one of their own.
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cli import invoke
from fixtures_servers import MongoServer
from helpers_backup import (
    backup_names,
    create,
    fail_command,
    fail_off,
    raw_state,
    seed,
    settings_for,
    spawn_create,
    wait_until,
)
from servers import need

pytestmark = pytest.mark.mongo

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    server = MongoServer(tmp_path_factory.mktemp("backup-rs")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    server = MongoServer(tmp_path_factory.mktemp("backup-sa"), standalone=True).start()
    try:
        yield server
    finally:
        server.stop()


_counter = iter(range(10_000))


@pytest.fixture
def dbname() -> str:
    return f"travellr{next(_counter)}"


def index_specs(server: MongoServer, db: str) -> dict[str, list[Any]]:
    client = server.client()
    specs = {
        name: sorted(
            (sorted((k, str(v)) for k, v in spec.items() if k not in ("ns", "v")))
            for spec in client[db][name].list_indexes()
        )
        for name in client[db].list_collection_names()
    }
    client.close()
    return specs


# ----------------------------------------------------------------------------- format


def test_create_writes_a_mongodump_layout_with_a_manifest(
    rs: MongoServer, dbname: str, tmp_path: Path
) -> None:
    seed(rs, dbname)
    s = settings_for(rs.uri_for(dbname), tmp_path)
    name = create(s)
    path = tmp_path / "backups" / name
    assert name.startswith("backup-") and len(name) == len("backup-2024-01-01T10-00-00")
    files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
    assert files == [
        "manifest.json",
        "oplog.bson.gz",
        *[f"{dbname}/{c}.{kind}" for c in ("searches", "trips", "users")
          for kind in ("bson.gz", "metadata.json.gz")],
    ]  # fmt: skip
    for p in path.rglob("*"):
        assert (p.stat().st_mode & 0o777) == (0o700 if p.is_dir() else 0o600), p
    assert (path.stat().st_mode & 0o777) == 0o700
    # mongodump's metadata format
    from bson import json_util

    meta = json_util.loads(gzip.decompress((path / dbname / "users.metadata.json.gz").read_bytes()))
    assert meta["collectionName"] == "users" and meta["type"] == "collection"
    assert {i["name"] for i in meta["indexes"]} == {"_id_", "email_1"}
    assert "options" in meta and "uuid" in meta

    doc = invoke("backup", "list", "--json", settings=s).json()
    [row] = doc["backups"]
    assert row["documents"] == 1000 and row["collections"] == 3 and row["status"] == "complete"
    assert row["pitr"] is True and doc["gap"] is False
    manifest = (path / "manifest.json").read_text()
    for key in ("server_version", "topology", "sha256", "oplog", "started_at", "finished_at"):
        assert key in manifest


def test_round_trip_gives_back_every_byte_and_index(
    rs: MongoServer, dbname: str, tmp_path: Path
) -> None:
    seed(rs, dbname, users=3000)
    s = settings_for(rs.uri_for(dbname), tmp_path, parallelism=2)
    before, indexes = raw_state(rs, dbname), index_specs(rs, dbname)
    name = create(s)
    client = rs.client()
    client.drop_database(dbname)
    client.close()
    assert raw_state(rs, dbname) == {}

    result = invoke("backup", "restore", name, "--yes", settings=s)
    assert result.exit_code == 0, result.stderr
    assert raw_state(rs, dbname) == before
    assert index_specs(rs, dbname) == indexes


def test_standalone_backup_restores_but_cannot_roll_forward(
    standalone: MongoServer, dbname: str, tmp_path: Path
) -> None:
    seed(standalone, dbname)
    s = settings_for(standalone.uri_for(dbname), tmp_path)
    before = raw_state(standalone, dbname)
    name = create(s)
    assert not (tmp_path / "backups" / name / "oplog.bson.gz").exists()
    until = invoke("backup", "restore", name, "--drop", "--yes", "--until", "2030-01-01T00:00:00Z",
                   settings=s)  # fmt: skip
    assert until.exit_code == 2 and "without an oplog" in until.stderr
    result = invoke("backup", "restore", name, "--db", dbname + "copy", "--yes", settings=s)
    assert result.exit_code == 0, result.stderr
    assert raw_state(standalone, dbname + "copy") == before


def test_only_chosen_collections(rs: MongoServer, dbname: str, tmp_path: Path) -> None:
    seed(rs, dbname)
    s = settings_for(rs.uri_for(dbname), tmp_path)
    name = create(s, "--collections", "trips")
    manifest = invoke("backup", "list", "--json", settings=s).json()["backups"][0]
    assert manifest["collections"] == 1
    bad = invoke("backup", "create", "--collections", "nope", settings=s)
    assert bad.exit_code == 2 and "nope" in bad.stderr
    assert backup_names(s) == [name]


def test_parallelism_is_chosen_from_the_cores_when_unset_and_reported(
    rs: MongoServer, dbname: str, tmp_path: Path
) -> None:
    seed(rs, dbname, users=50)
    s = settings_for(rs.uri_for(dbname), tmp_path)
    assert s.backup.parallelism is None
    cores = os.cpu_count() or 1  # the server runs on this machine too
    auto = {
        "parallelism": max(1, min(8, cores // 2)),
        "parallelism_source": f"auto: server {cores} cores, local {cores} cores",
    }
    created = invoke("backup", "create", "--json", settings=s)
    assert created.exit_code == 0, created.stderr
    assert {k: created.json()[k] for k in auto} == auto
    name = created.json()["name"]
    restored = invoke("backup", "restore", name, "--db", dbname + "p", "--yes", "--json",
                      settings=s)  # fmt: skip
    assert restored.exit_code == 0, restored.stderr
    assert {k: restored.json()[k] for k in auto} == auto
    human = invoke("backup", "restore", name, "--db", dbname + "p", "--drop", "--yes", settings=s)
    assert f"{auto['parallelism']} collection(s) at a time (auto: server" in human.stdout

    s.backup.parallelism = 3
    chosen = invoke("backup", "restore", name, "--db", dbname + "q", "--yes", "--json",
                    settings=s)  # fmt: skip
    assert chosen.json()["parallelism"] == 3
    assert chosen.json()["parallelism_source"] == "backup.parallelism"


# ------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", ["../../etc", "/etc", "backup-2020-01-01T00-00-00", "x"])
def test_names_that_are_not_our_backups_are_refused(
    rs: MongoServer, dbname: str, tmp_path: Path, name: str
) -> None:
    s = settings_for(rs.uri_for(dbname), tmp_path)
    for command in (["verify", name], ["restore", name, "--yes"]):
        result = invoke("backup", *command, settings=s)
        assert result.exit_code == 2, result.stderr
        assert "Traceback" not in result.stderr


def test_restore_without_a_terminal_asks_for_yes_and_names_what_it_overwrites(
    rs: MongoServer, dbname: str, tmp_path: Path
) -> None:
    seed(rs, dbname)
    s = settings_for(rs.uri_for(dbname), tmp_path)
    name = create(s)
    refused = invoke("backup", "restore", name, settings=s)
    assert refused.exit_code == 4 and "--drop" in refused.stderr
    asked = invoke("backup", "restore", name, "--drop", settings=s)
    assert asked.exit_code == 4
    assert f"{dbname}.users: DROP 500 documents" in asked.stderr
    declined = invoke(
        "backup", "restore", name, "--drop", settings=s, interactive=True, input="n\n"
    )
    assert declined.exit_code == 4
    dry = invoke("backup", "restore", name, "--drop", "--dry-run", settings=s)
    assert dry.exit_code == 0 and "would restore" in dry.stderr


# -------------------------------------------------------------------------------- faults


def test_a_flipped_byte_fails_verify_and_restore_refuses_before_writing(
    rs: MongoServer, dbname: str, tmp_path: Path
) -> None:
    seed(rs, dbname)
    s = settings_for(rs.uri_for(dbname), tmp_path)
    name = create(s)
    assert invoke("backup", "verify", name, settings=s).exit_code == 0
    target = tmp_path / "backups" / name / dbname / "users.bson.gz"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))

    verify = invoke("backup", "verify", "--json", settings=s)  # the latest, by default
    assert verify.exit_code == 1
    assert verify.json()["name"] == name
    problems = verify.json()["problems"]
    assert any("users.bson.gz" in p and "checksum" in p for p in problems)
    listed = invoke("backup", "list", "--json", settings=s).json()["backups"][0]
    assert listed["verify_result"] == "fail" and listed["verified_at"]

    client = rs.client()
    client[dbname].users.insert_one({"_id": "written after the backup"})
    before = raw_state(rs, dbname)
    restore = invoke("backup", "restore", name, "--drop", "--yes", settings=s)
    assert restore.exit_code == 1
    assert "damaged" in restore.stderr and "users.bson.gz" in restore.stderr
    assert raw_state(rs, dbname) == before
    client.close()


def test_verify_restore_test_compares_counts_and_indexes_and_drops_the_scratch_db(
    rs: MongoServer, dbname: str, tmp_path: Path
) -> None:
    seed(rs, dbname)
    s = settings_for(rs.uri_for(dbname), tmp_path)
    name = create(s)
    result = invoke("backup", "verify", name, "--restore-test", "--json", settings=s)
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["ok"] and doc["restore_test"]["database"].startswith(dbname)
    client = rs.client()
    assert doc["restore_test"]["database"] not in client.list_database_names()
    client.close()
    row = invoke("backup", "list", "--json", settings=s).json()["backups"][0]
    assert row["verify_result"] == "restore-test ok"


def test_connection_lost_mid_create_exits_3_and_leaves_nothing(
    rs: MongoServer, dbname: str, tmp_path: Path
) -> None:
    seed(rs, dbname, users=3000)
    s = settings_for(rs.uri_for(dbname), tmp_path)
    fail_command(rs, ["getMore"], closeConnection=True)
    try:
        result = invoke("backup", "create", settings=s)
    finally:
        fail_off(rs)
    assert result.exit_code == 3, result.stderr
    assert backup_names(s) == []
    assert list((tmp_path / "backups").iterdir()) == []


def test_server_killed_mid_create(tmp_path: Path, dbname: str) -> None:
    """SIGKILL of the server, and of a create that was running: exit 3, no backup listed,
    and the killed run's leftovers go with the next clean."""
    server = MongoServer(tmp_path).start()
    try:
        seed(server, dbname, users=3000)
        s = settings_for(server.uri_for(dbname), tmp_path)
        # a create that waits inside the dump, then is killed itself
        fail_command(server, ["getMore"], blockConnection=True, blockTimeMS=20_000)
        proc = spawn_create(s, tmp_path)
        wait_until(lambda: any((tmp_path / "backups").glob(".tmp-backup-*")))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        fail_off(server)
        assert backup_names(s) == []
        listing = invoke("backup", "list", settings=s)
        assert "unfinished" in listing.stderr

        # the server dies while a create reads from it
        fail_command(server, ["getMore"], blockConnection=True, blockTimeMS=3000)
        killer = threading.Timer(1.0, server.kill)
        killer.start()
        result = invoke("backup", "create", settings=s)
        killer.join()
        assert result.exit_code == 3, result.stderr
        assert backup_names(s) == []

        clean = invoke("backup", "clean", "--yes", settings=s)
        assert clean.exit_code == 0, clean.stderr
        assert list((tmp_path / "backups").iterdir()) == []
    finally:
        server.stop()


def test_two_creates_at_once_one_exits_4(rs: MongoServer, dbname: str, tmp_path: Path) -> None:
    seed(rs, dbname, users=3000)
    s = settings_for(rs.uri_for(dbname), tmp_path)
    fail_command(rs, ["getMore"], mode={"times": 1}, blockConnection=True, blockTimeMS=3000)
    try:
        first = spawn_create(s, tmp_path)
        wait_until(lambda: any((tmp_path / "backups").glob(".tmp-backup-*")))
        second = invoke("backup", "create", settings=s)
        assert second.exit_code == 4
        assert "backup lock is held" in second.stderr
        _, err = first.communicate(timeout=60)
        assert first.returncode == 0, err.decode()
    finally:
        fail_off(rs)
    assert len(backup_names(s)) == 1


def test_a_stale_lock_of_a_dead_process_is_taken_over(
    rs: MongoServer, dbname: str, tmp_path: Path
) -> None:
    seed(rs, dbname)
    s = settings_for(rs.uri_for(dbname), tmp_path)
    locks = tmp_path / "state" / "locks"
    locks.mkdir(parents=True)
    (locks / "backup.lock").write_text(
        '{"pid": 999999, "host": "h", "since": "2020-01-01", "command": "backup create"}'
    )
    result = invoke("backup", "create", settings=s)
    assert result.exit_code == 0, result.stderr
    assert "stale backup lock" in result.stderr


def test_disk_full_during_create_fails_cleanly(
    rs: MongoServer, dbname: str, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        need("mounting a tmpfs needs root")
    client = rs.client()
    # incompressible documents: about 6 MB of backup for a 2 MB file system
    client[dbname].blobs.insert_many([{"b": os.urandom(60_000)} for _ in range(100)])
    client.close()
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        need(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        s = settings_for(rs.uri_for(dbname), tmp_path)
        s.backup.dir = mount
        result = invoke("backup", "create", settings=s)
        assert result.exit_code == 3, result.stderr
        assert "No space left" in result.stderr
        assert list(mount.iterdir()) == []
        assert backup_names(s) == []
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_an_interrupted_restore_leaves_the_target_as_it_was(
    rs: MongoServer, dbname: str, tmp_path: Path
) -> None:
    seed(rs, dbname, users=3000)
    s = settings_for(rs.uri_for(dbname), tmp_path, parallelism=1)
    name = create(s)
    client = rs.client()
    client[dbname].users.insert_one({"_id": "written after the backup"})
    client.close()
    before, indexes = raw_state(rs, dbname), index_specs(rs, dbname)
    # collections restore in manifest order (searches, trips, users), one insert each for
    # the first two: the third collection's insert loses its connection
    fail_command(rs, ["insert"], mode={"skip": 2}, closeConnection=True)
    try:
        result = invoke("backup", "restore", name, "--drop", "--yes", settings=s)
    finally:
        fail_off(rs)
    assert result.exit_code == 3, result.stderr
    assert f"nothing was changed in {dbname}" in result.stderr
    # no collection dropped or half-written, no staging collection left behind
    assert raw_state(rs, dbname) == before
    assert index_specs(rs, dbname) == indexes


def test_a_swap_that_fails_midway_names_what_was_replaced(
    rs: MongoServer, dbname: str, tmp_path: Path
) -> None:
    """The swap (a rename per collection) is the one step that is not all or nothing."""
    seed(rs, dbname)
    s = settings_for(rs.uri_for(dbname), tmp_path)
    name = create(s)
    backed_up = raw_state(rs, dbname)
    client = rs.client()
    for coll in ("searches", "trips", "users"):
        client[dbname][coll].insert_one({"_id": "written after the backup"})
    client.close()
    before = raw_state(rs, dbname)
    fail_command(rs, ["renameCollection"], mode={"skip": 1}, errorCode=2)
    try:
        result = invoke("backup", "restore", name, "--drop", "--yes", settings=s)
    finally:
        fail_off(rs)
    assert result.exit_code == 3, result.stderr
    assert "Replaced: searches; NOT replaced (still as before): trips, users" in result.stderr
    after = raw_state(rs, dbname)
    assert after == {**before, "searches": backed_up["searches"]}  # no staging collection left


def _bad_gzip_crc(path: Path) -> None:
    """Damage the gzip trailer's CRC-32 (the data still inflates, the check fails at the end),
    then rewrite the manifest so that its size and SHA-256 match the damaged file: a backup
    damaged before its manifest was written."""
    from travellr_ops.ops.backup import store

    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF
    path.write_bytes(bytes(data))
    backup = next(p for p in path.parents if (p / store.MANIFEST).is_file())
    manifest = store.read_manifest(backup)
    rel = str(path.relative_to(backup))
    manifest.files[rel] = store.FileEntry(path.stat().st_size, store.sha256_of(path))
    store.write_manifest(backup, manifest)


def test_a_corrupt_file_with_consistent_checksums_leaves_the_target_as_it_was(
    rs: MongoServer, dbname: str, tmp_path: Path
) -> None:
    seed(rs, dbname, users=3000)
    s = settings_for(rs.uri_for(dbname), tmp_path, parallelism=1)
    name = create(s)
    client = rs.client()
    client[dbname].users.insert_one({"_id": "written after the backup"})
    client[dbname].trips.delete_many({"_id": {"$lt": 100}})
    client[dbname].later.insert_one({"_id": 1})
    client.close()
    before, indexes = raw_state(rs, dbname), index_specs(rs, dbname)
    # users restores last (manifest order): searches and trips are written completely first
    _bad_gzip_crc(tmp_path / "backups" / name / dbname / "users.bson.gz")
    verify = invoke("backup", "verify", name, settings=s)
    assert verify.exit_code == 1 and "does not decompress" in verify.stdout + verify.stderr

    result = invoke("backup", "restore", name, "--drop", "--yes", settings=s)
    assert result.exit_code == 1, result.stderr  # a damaged backup, as with a bad checksum
    assert "users.bson.gz does not decompress" in result.stderr
    assert f"nothing was changed in {dbname}" in result.stderr
    assert raw_state(rs, dbname) == before
    assert index_specs(rs, dbname) == indexes


# ---------------------------------------------------------------------------- retention


def test_clean_keeps_the_newest_verified_and_removes_the_rest_past_retention(
    rs: MongoServer, dbname: str, tmp_path: Path
) -> None:
    seed(rs, dbname, users=50)
    s = settings_for(rs.uri_for(dbname), tmp_path, parallelism=1)
    names = [create(s) for _ in range(3)]
    assert invoke("backup", "verify", names[0], settings=s).exit_code == 0
    backups = tmp_path / "backups"
    old = datetime.now(UTC) - timedelta(days=10)
    aged = []
    for i, name in enumerate(names):
        new = (old + timedelta(days=i)).strftime("backup-%Y-%m-%dT%H-%M-%S")
        (backups / name).rename(backups / new)
        aged.append(new)
    fresh = create(s)

    listing = invoke("backup", "list", "--json", settings=s).json()
    assert [b["over_retention"] for b in listing["backups"]] == [True, True, True, False]

    dry = invoke("backup", "clean", "--keep-days", "7", "--keep-last", "1", "--dry-run",
                 settings=s)  # fmt: skip
    assert dry.exit_code == 0, dry.stderr
    assert aged[1] in dry.stderr and aged[2] in dry.stderr
    assert len(backup_names(s)) == 4
    no_tty = invoke("backup", "clean", "--keep-days", "7", settings=s)
    assert no_tty.exit_code == 4
    done = invoke("backup", "clean", "--keep-days", "7", "--keep-last", "1", "--yes", "--json",
                  settings=s)  # fmt: skip
    assert done.exit_code == 0, done.stderr
    assert sorted(done.json()["delete"]) == sorted(aged[1:])
    assert backup_names(s) == [aged[0], fresh]


def test_list_flags_a_gap_when_the_newest_backup_is_old(
    rs: MongoServer, dbname: str, tmp_path: Path
) -> None:
    seed(rs, dbname, users=10)
    s = settings_for(rs.uri_for(dbname), tmp_path)
    empty = invoke("backup", "list", settings=s)
    assert empty.exit_code == 1 and "no backup" in empty.stderr
    name = create(s)
    old = (datetime.now(UTC) - timedelta(days=2)).strftime("backup-%Y-%m-%dT%H-%M-%S")
    (tmp_path / "backups" / name).rename(tmp_path / "backups" / old)
    result = invoke("backup", "list", settings=s)
    assert result.exit_code == 1 and "daily backups are missing" in result.stderr


def test_metrics_file_is_written_for_node_exporter(
    rs: MongoServer, dbname: str, tmp_path: Path
) -> None:
    seed(rs, dbname, users=10)
    s = settings_for(rs.uri_for(dbname), tmp_path)
    metrics = tmp_path / "textfile" / "travellr_backup.prom"
    result = invoke("backup", "create", "--metrics-file", str(metrics), settings=s)
    assert result.exit_code == 0
    text = metrics.read_text()
    assert 'travellr_backup_last_run_success{command="create"} 1' in text
    assert "travellr_backup_last_success_timestamp_seconds" in text
    assert "travellr_backup_last_size_bytes" in text
    bad = settings_for("mongodb://127.0.0.1:9/x", tmp_path)
    bad.mongo.timeout_s = 0.3
    failed = invoke("backup", "create", "--metrics-file", str(metrics), settings=bad)
    assert failed.exit_code == 3
    assert 'travellr_backup_last_run_success{command="create"} 0' in metrics.read_text()
