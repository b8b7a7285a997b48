"""Point-in-time recovery: the oplog captured by `backup create`, `backup oplog-archive`, and
`backup restore --until`, against a real SecantusDB replica set."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cli import invoke
from fixtures_servers import MongoServer
from helpers_backup import create, raw_state, seed, settings_for

pytestmark = pytest.mark.mongo


@pytest.fixture(scope="module")
def rs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    server = MongoServer(tmp_path_factory.mktemp("pitr-rs")).start()
    try:
        yield server
    finally:
        server.stop()


_counter = iter(range(10_000))


@pytest.fixture
def dbname() -> str:
    return f"pitr{next(_counter)}"


def next_second() -> datetime:
    """Wait into a fresh second of the clock; the moment just before it is a clean cut."""
    now = time.time()
    time.sleep(int(now) + 1 - now + 0.05)
    return datetime.fromtimestamp(int(time.time()) - 0.001, UTC)


def writes_phase_one(server: MongoServer, db: str) -> None:
    client = server.client()
    d = client[db]
    d.users.insert_one({"_id": "new", "name": "New", "arr": [1, 2, 3, 4], "sub": {"a": 1, "b": 2}})
    d.users.update_one({"_id": "new"}, {"$set": {"name": "Renamed", "sub.a": 5}})
    d.users.update_one({"_id": "new"}, {"$unset": {"sub.b": ""}})
    d.users.update_one({"_id": "new"}, {"$push": {"arr": 9}})
    d.users.update_one({"_id": "new"}, {"$pop": {"arr": -1}})
    d.users.update_one({"_id": "new"}, {"$push": {"arr": {"$each": [], "$slice": 2}}})
    d.users.update_many({"active": True}, {"$inc": {"age": 1}, "$set": {"seen": True}})
    d.users.delete_many({"age": {"$gt": 60}})
    d.trips.replace_one({"_id": 3}, {"dest": "replaced", "price": 1})
    with client.start_session() as session, session.start_transaction():
        d.trips.insert_one({"_id": "txn1", "v": 1}, session=session)
        d.trips.insert_one({"_id": "txn2", "v": 2}, session=session)
        d.trips.update_one({"_id": 4}, {"$set": {"booked": True}}, session=session)
        d.trips.delete_one({"_id": 5}, session=session)
    client.close()


def writes_phase_two(server: MongoServer, db: str) -> None:
    client = server.client()
    d = client[db]
    d.users.update_one({"_id": "new"}, {"$set": {"name": "Later"}})
    d.trips.delete_many({"price": {"$lt": 100}})
    d.searches.insert_many([{"late": i} for i in range(10)])
    d.createdLater.insert_one({"x": 1})
    client.close()


def test_restore_until_gives_exactly_the_state_at_that_moment(
    rs: MongoServer, dbname: str, tmp_path: Path
) -> None:
    seed(rs, dbname)
    s = settings_for(rs.uri_for(dbname), tmp_path)
    name = create(s)
    next_second()
    writes_phase_one(rs, dbname)
    cut = next_second()
    at_cut = raw_state(rs, dbname)
    next_second()
    writes_phase_two(rs, dbname)
    final = raw_state(rs, dbname)
    time.sleep(1.1)
    archived = invoke("backup", "oplog-archive", "--json", settings=s)
    assert archived.exit_code == 0, archived.stderr
    assert archived.json()["entries"] > 10

    result = invoke("backup", "restore", name, "--db", dbname + "cut", "--until", cut.isoformat(),
                    "--yes", "--json", settings=s)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.json()["archived_applied"] > 0
    assert raw_state(rs, dbname + "cut") == at_cut

    # as far as the archive reaches: everything
    reach = invoke("backup", "oplog-archive", "--json", settings=s).json()["covered_to"]
    later = invoke("backup", "restore", name, "--db", dbname + "end", "--yes",
                   "--until", reach, settings=s)  # fmt: skip
    assert later.exit_code == 0, later.stderr
    assert raw_state(rs, dbname + "end") == final


def test_writes_during_the_dump_are_captured_so_the_backup_is_consistent_at_its_end(
    rs: MongoServer, dbname: str, tmp_path: Path
) -> None:
    from helpers_backup import fail_command, fail_off, spawn_create, wait_until

    seed(rs, dbname, users=3000)
    s = settings_for(rs.uri_for(dbname), tmp_path, parallelism=1)
    # hold the dump in its first getMore while the app keeps writing (long enough for the
    # writes to end first on a busy machine: later ones would not be in the backup)
    fail_command(rs, ["getMore"], mode={"times": 1}, blockConnection=True, blockTimeMS=5000)
    try:
        proc = spawn_create(s, tmp_path)
        wait_until(lambda: any((tmp_path / "backups").glob(".tmp-backup-*")))
        writes_phase_one(rs, dbname)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    finally:
        fail_off(rs)
    expected = raw_state(rs, dbname)
    [name] = [p.name for p in (tmp_path / "backups").iterdir() if p.name.startswith("backup-")]
    manifest = json.loads((tmp_path / "backups" / name / "manifest.json").read_text())
    assert manifest["oplog"]["entries"] > 0
    until = datetime.fromtimestamp(manifest["oplog"]["end"][0] + 0.999, UTC).isoformat()
    result = invoke("backup", "restore", name, "--db", dbname + "c", "--until", until, "--yes",
                    settings=s)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert raw_state(rs, dbname + "c") == expected


def test_until_before_the_backup_or_past_the_archive_is_refused(
    rs: MongoServer, dbname: str, tmp_path: Path
) -> None:
    seed(rs, dbname, users=10)
    s = settings_for(rs.uri_for(dbname), tmp_path)
    name = create(s)
    before = invoke("backup", "restore", name, "--db", "x" + dbname, "--yes",
                    "--until", "2020-01-01T00:00:00Z", settings=s)  # fmt: skip
    assert before.exit_code == 2 and "older backup" in before.stderr
    future = invoke("backup", "restore", name, "--db", "x" + dbname, "--yes",
                    "--until", "2999-01-01T00:00:00Z", settings=s)  # fmt: skip
    assert future.exit_code == 1 and "oplog archive" in future.stderr
    nonsense = invoke("backup", "restore", name, "--until", "yesterday-ish", settings=s)
    assert nonsense.exit_code == 2


def _archived(tmp_path: Path) -> list[Any]:
    from bson import decode_all

    directory = tmp_path / "backups" / "oplog-archive"
    state = json.loads((directory / "state.json").read_text())
    entries: list[Any] = []
    for f in state["files"]:
        entries += decode_all(
            (directory / f["file"]).read_bytes() and _gunzip(directory / f["file"])
        )
    return entries


def _gunzip(path: Path) -> bytes:
    import gzip

    return gzip.decompress(path.read_bytes())


def _oplog_since(server: MongoServer, db: str, after: Any) -> list[Any]:
    client = server.client()
    entries = list(
        client.local["oplog.rs"].find(
            {"ts": {"$gt": after}, "ns": {"$regex": f"^{db}\\."}}, sort=[("$natural", 1)]
        )
    )
    client.close()
    return entries


def test_archive_resumes_after_a_crash_without_gaps_or_duplicates(
    rs: MongoServer, dbname: str, tmp_path: Path
) -> None:
    from bson import Timestamp

    seed(rs, dbname, users=10)
    # two entries per file: file boundaries fall inside transactions (entries sharing a ts)
    s = settings_for(rs.uri_for(dbname), tmp_path, oplog_file_entries=2)
    name = create(s)
    manifest = json.loads((tmp_path / "backups" / name / "manifest.json").read_text())
    base = Timestamp(*manifest["oplog"]["end"])
    writes_phase_one(rs, dbname)
    first = invoke("backup", "oplog-archive", "--json", settings=s)
    assert first.exit_code == 0, first.stderr

    # a crash after a file was renamed into place, before the state named it: forget the
    # last file in the state, as that crash would have left it
    directory = tmp_path / "backups" / "oplog-archive"
    state = json.loads((directory / "state.json").read_text())
    lost = state["files"].pop()
    previous = state["files"][-1]
    state["position"] = previous["last"]
    same = [f for f in state["files"] if f["last"] == previous["last"]]
    state["at_position"] = sum(1 for e in _archived_entries(directory, same) if
                               [e["ts"].time, e["ts"].inc] == previous["last"])  # fmt: skip
    (directory / "state.json").write_text(json.dumps(state))

    writes_phase_two(rs, dbname)
    second = invoke("backup", "oplog-archive", "--json", settings=s)
    assert second.exit_code == 0, second.stderr
    assert lost["file"] in second.json()["adopted"]

    expected = _oplog_since(rs, dbname, base)
    got = [e for e in _archived(tmp_path) if e["ns"].startswith(dbname + ".")]
    assert [(e["ts"], e["op"], e["o"]) for e in got] == [
        (e["ts"], e["op"], e["o"]) for e in expected
    ]
    again = invoke("backup", "oplog-archive", "--json", settings=s)
    assert again.json()["entries"] == 0


def _archived_entries(directory: Path, files: list[dict[str, Any]]) -> list[Any]:
    from bson import decode_all

    entries: list[Any] = []
    for f in files:
        entries += decode_all(_gunzip(directory / f["file"]))
    return entries


def test_archive_reports_an_oplog_that_rolled_past_its_position(tmp_path: Path) -> None:
    server = MongoServer(tmp_path, extra=("--oplog-max-entries", "50")).start()
    try:
        seed_small = server.client()
        seed_small.rolled.t.insert_one({"_id": 0})
        seed_small.close()
        s = settings_for(server.uri_for("rolled"), tmp_path)
        assert invoke("backup", "oplog-archive", settings=s).exit_code == 0
        client = server.client()
        client.rolled.t.insert_one({"_id": 1})
        assert invoke("backup", "oplog-archive", settings=s).exit_code == 0
        # the server prunes its oplog every 1000 entries written
        client.rolled.t.insert_many([{"_id": i} for i in range(2, 1500)])
        client.close()
        result = invoke("backup", "oplog-archive", settings=s)
        assert result.exit_code == 1
        assert "rolled past" in result.stderr
        reset = invoke("backup", "oplog-archive", "--reset", settings=s)
        assert reset.exit_code == 0, reset.stderr
    finally:
        server.stop()


def test_replay_understands_mongods_update_format_and_applyops_transactions(
    rs: MongoServer, dbname: str
) -> None:
    """SecantusDB writes the other format; these entries are what mongod logs."""
    import bson
    from bson import Timestamp
    from bson.raw_bson import RawBSONDocument

    from travellr_ops.adapters.mongo import MongoAdapter
    from travellr_ops.adapters.mongo_dump import MongoDump
    from travellr_ops.ops.backup.restore import Until, replay

    client = rs.client()
    d = client[dbname]
    d.t.insert_one(
        {"_id": 1, "a": 1, "arr": [1, 2, 3, 4], "sub": {"x": 1, "y": 2, "deep": {"k": 1}}}
    )
    ns = f"{dbname}.t"
    ts = Timestamp(int(time.time()), 1)
    entries = [
        {"op": "u", "ns": ns, "o2": {"_id": 1}, "ts": ts,
         "o": {"$v": 2, "diff": {"u": {"a": 2}, "i": {"new": "n"}, "d": {"gone": False},
                                 "ssub": {"u": {"x": 5}, "d": {"y": False},
                                          "sdeep": {"i": {"k2": 2}}},
                                 "sarr": {"a": True, "l": 2, "u1": 20}}}},
        {"op": "u", "ns": ns, "o2": {"_id": 1}, "ts": ts, "o": {"$set": {"legacy": True}}},
        {"op": "c", "ns": "admin.$cmd", "ts": ts, "o": {"applyOps": [
            {"op": "i", "ns": ns, "o": {"_id": 2, "v": 1}},
            {"op": "d", "ns": ns, "o": {"_id": 1}},
            {"op": "i", "ns": ns, "o": {"_id": 1, "again": True}},
        ]}},
        {"op": "u", "ns": ns, "o2": {"_id": 2}, "ts": ts, "o": {"_id": 2, "replaced": True}},
    ]  # fmt: skip
    raw = iter([bson.encode(e) for e in entries[:2]])
    mongo = MongoAdapter(rs.uri_for(dbname), dbname)
    dump = MongoDump(mongo)
    until = Until.parse("2999-01-01T00:00:00Z")
    applied, skipped = replay(dump, raw, dbname, dbname, {"t"}, until)
    assert applied == 2 and not skipped
    assert d.t.find_one({"_id": 1}) == {
        "_id": 1, "a": 2, "arr": [1, 20], "sub": {"x": 5, "deep": {"k": 1, "k2": 2}},
        "new": "n", "legacy": True,
    }  # fmt: skip
    applied, _ = replay(dump, iter([bson.encode(e) for e in entries[2:]]), dbname, dbname,
                        {"t"}, until)  # fmt: skip
    assert applied == 2
    assert sorted(d.t.find(), key=lambda doc: doc["_id"]) == [
        {"_id": 1, "again": True},
        {"_id": 2, "replaced": True},
    ]
    assert RawBSONDocument  # raw documents are what the replay writes back
    mongo.close()
    client.close()


def snapshot(server: MongoServer, db: str) -> dict[str, list[bytes]]:
    """An independent record of the database: every collection's documents as raw BSON,
    in _id order, as the server returns them."""
    from bson import decode_iter
    from bson.codec_options import CodecOptions
    from bson.raw_bson import RawBSONDocument

    options = CodecOptions(document_class=RawBSONDocument)
    client = server.client()
    state = {}
    for name in sorted(client[db].list_collection_names()):
        state[name] = [
            doc.raw
            for batch in client[db][name].find_raw_batches({}, sort=[("_id", 1)])
            for doc in decode_iter(batch, codec_options=options)
        ]
    client.close()
    return state


def test_restore_until_gives_the_collections_of_that_moment_too(
    rs: MongoServer, dbname: str, tmp_path: Path
) -> None:
    """The issue's reproduction: collections created after the backup are rebuilt from the
    oplog alone (nothing written after the moment survives), those that did not exist at
    that moment are dropped, and the confirmation names them."""
    seed(rs, dbname, users=50)
    s = settings_for(rs.uri_for(dbname), tmp_path)
    name = create(s)
    client = rs.client()
    d = client[dbname]
    next_second()
    d.create_collection("c")
    d.c.insert_many([{"_id": i, "n": i} for i in range(100)])
    d.c.create_index("n")
    d.short_lived.insert_one({"_id": 1})  # created implicitly, dropped before the moment
    d.short_lived.drop()
    d.searches.drop()  # in the backup, gone at the moment
    d.users.insert_one({"_id": "before the moment"})
    cut = next_second()
    at_cut = snapshot(rs, dbname)
    c_indexes = sorted(i["name"] for i in d.c.list_indexes())
    next_second()
    d.c.insert_one({"_id": 100, "n": 100})
    d.create_collection("d")
    d.d.insert_one({"_id": 1})
    d.searches.insert_one({"_id": "recreated after the moment"})
    d.trips.drop()  # existed at the moment: must come back
    client.close()
    time.sleep(1.1)
    assert invoke("backup", "oplog-archive", settings=s).exit_code == 0
    until = ["--until", cut.isoformat()]

    plan = invoke("backup", "restore", name, *until, "--drop", "--dry-run", "--json", settings=s)
    assert plan.exit_code == 0, plan.stderr
    doc = plan.json()
    assert doc["dropped"] == ["d", "searches"] and doc["from_oplog"] == ["c"]
    assert doc["collections"] == ["c", "trips", "users"]
    asked = invoke("backup", "restore", name, *until, "--drop", settings=s)
    assert asked.exit_code == 4
    assert f"{dbname}.d: DROP 1 documents" in asked.stderr
    assert f"{dbname}.searches: DROP 1 documents" in asked.stderr
    assert f"{dbname}.c: DROP 101 documents, rebuild from the oplog" in asked.stderr
    no_drop = invoke("backup", "restore", name, *until, "--yes", settings=s)
    assert no_drop.exit_code == 4 and "--drop" in no_drop.stderr

    result = invoke("backup", "restore", name, *until, "--drop", "--yes", settings=s)
    assert result.exit_code == 0, result.stderr
    assert snapshot(rs, dbname) == at_cut
    client = rs.client()
    assert sorted(i["name"] for i in client[dbname].c.list_indexes()) == c_indexes
    client.close()

    # into another database: the same moment
    other = invoke("backup", "restore", name, *until, "--db", dbname + "x", "--yes", settings=s)
    assert other.exit_code == 0, other.stderr
    assert snapshot(rs, dbname + "x") == at_cut


@pytest.mark.parametrize("batch", [1, 3, 1000])
def test_a_batched_replay_rebuilds_what_the_server_logged(
    rs: MongoServer, dbname: str, batch: int
) -> None:
    """Writes go out in bulk per collection, yet each document's writes keep their order and
    a command (here a rename, then a new collection under the old name) sees every write
    logged before it: the replayed database equals the source, whatever the batch size."""
    from travellr_ops.adapters.mongo import MongoAdapter
    from travellr_ops.adapters.mongo_dump import MongoDump
    from travellr_ops.ops.backup.restore import Until, replay

    client = rs.client()
    src = client[dbname]
    mongo = MongoAdapter(rs.uri_for(dbname), dbname)
    dump = MongoDump(mongo)
    bounds = dump.oplog_bounds()
    assert bounds is not None
    for i in range(7):
        src.t.insert_one({"_id": i, "v": 0})
    for step in range(1, 4):
        src.t.update_one({"_id": 2}, {"$set": {"v": step}})
    src.t.delete_one({"_id": 5})
    src.other.insert_one({"_id": "x", "n": 1})
    src.t.rename("renamed")
    src.t.insert_one({"_id": 100, "v": "new t"})
    src.renamed.update_one({"_id": 0}, {"$set": {"after": "rename"}})
    src.other.delete_one({"_id": "x"})
    src.other.insert_one({"_id": "x", "n": 2})

    target = f"{dbname}_replayed"
    raw = dump.oplog_raw(bounds[1], db=dbname)
    applied, skipped = replay(
        dump, raw, dbname, target, None, Until.parse("2999-01-01T00:00:00Z"), batch=batch
    )
    assert not skipped
    assert applied == 17  # one entry for each of the 16 writes and the rename
    for name in ("t", "renamed", "other"):
        want = sorted(src[name].find(), key=lambda d: str(d["_id"]))
        got = sorted(client[target][name].find(), key=lambda d: str(d["_id"]))
        assert got == want, name
    assert sorted(client[target].list_collection_names()) == ["other", "renamed", "t"]
    client.drop_database(target)
    mongo.close()
    client.close()
