"""`db`: against real SecantusDB servers (replica set and standalone) on 127.0.0.1.

The servers are this module's own (a small seed of the Travellr collections, with every index
of the shipped indexes.toml except bookings {tripId, status}, like the sandbox's seed).
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from cli import invoke
from fixtures_servers import MongoServer
from servers import free_port, need
from travellr_ops.settings import Settings

pytestmark = pytest.mark.mongo

BOOKINGS = 3000  # over mongo.analyze_min_docs (1000): a scan of them is a finding


def seed(uri: str, bookings: int = BOOKINGS) -> None:
    """A small Travellr database; bookings lack their {tripId, status} index."""
    from pymongo import ASCENDING, DESCENDING, MongoClient

    rng = random.Random(4)
    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=5000)
    db = client.get_default_database()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    db.users.insert_many(
        [
            {"email": f"user{i}@example.com", "name": f"User {i}", "createdAt": now}
            for i in range(300)
        ]
    )
    cities = ["Lisbon", "Kyoto", "Lima", "Oslo", "Cairo", "Hanoi"]
    db.trips.insert_many(
        [
            {
                "tripId": i,
                "destination": cities[i % len(cities)],
                "startDate": now + timedelta(days=i),
                "price": 100 + i,
            }
            for i in range(200)
        ]
    )
    statuses = ["confirmed", "pending", "cancelled"]
    db.bookings.insert_many(
        [
            {
                "userId": rng.randrange(300),
                "tripId": rng.randrange(200),
                "status": statuses[i % 3],
                "createdAt": now + timedelta(minutes=i),
                "seats": 1 + i % 4,
            }
            for i in range(bookings)
        ]
    )
    db.searches.insert_many(
        [{"userId": i % 300, "query": "beach", "createdAt": now} for i in range(500)]
    )
    db.users.create_index([("email", ASCENDING)], unique=True)
    db.trips.create_index([("destination", ASCENDING), ("startDate", ASCENDING)])
    db.bookings.create_index([("userId", ASCENDING), ("createdAt", DESCENDING)])
    db.searches.create_index([("createdAt", ASCENDING)], expireAfterSeconds=2592000)
    db.searches.create_index([("userId", ASCENDING), ("createdAt", DESCENDING)])
    client.close()


@pytest.fixture(scope="module")
def rs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    server = MongoServer(tmp_path_factory.mktemp("mongo-rs")).start()
    try:
        seed(server.uri)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    server = MongoServer(tmp_path_factory.mktemp("mongo-sa"), standalone=True).start()
    try:
        seed(server.uri, bookings=1200)
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[MongoServer]:
    """A seeded replica set of this test's own, free to change and to stop."""
    server = MongoServer(tmp_path).start()
    try:
        seed(server.uri)
        yield server
    finally:
        server.stop()


def settings(uri: str, tmp_path: Path, **mongo: Any) -> Settings:
    return Settings(mongo={"uri": uri, "timeout_s": 2.0, **mongo}, state_dir=tmp_path / "state")


# ----------------------------------------------------------------------------------- ping


def test_ping_describes_a_replica_set_and_its_members(rs: MongoServer, tmp_path: Path) -> None:
    result = invoke("db", "ping", "--json", settings=settings(rs.uri, tmp_path))
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["ok"] is True
    assert doc["topology"] == "replica set" and doc["role"] == "primary"
    assert doc["version"]
    [member] = doc["members"]
    assert member["state"] == "PRIMARY" and member["self"] is True
    assert member["lag_s"] == 0

    human = invoke("db", "ping", settings=settings(rs.uri, tmp_path))
    assert "PRIMARY" in human.stdout and "replica set" in human.stdout


def test_ping_describes_a_standalone(standalone: MongoServer, tmp_path: Path) -> None:
    doc = invoke("db", "ping", "--json", settings=settings(standalone.uri, tmp_path)).json()
    assert doc["ok"] is True
    assert doc["topology"] == "standalone" and doc["members"] is None


def test_ping_tells_a_stopped_server_and_mentions_other_servers_only_as_a_hint(
    rs: MongoServer, tmp_path: Path
) -> None:
    mine = MongoServer(tmp_path / "mine")
    (tmp_path / "mine").mkdir()
    mine.start()
    s = settings(mine.uri, tmp_path)
    try:
        assert invoke("db", "ping", settings=s).exit_code == 0
    finally:
        mine.stop()
    stopped = invoke("db", "ping", "--json", settings=s)
    assert stopped.exit_code == 3
    assert stopped.json()["problem"]["kind"] == "stopped"
    assert "error: MongoDB answered at" in stopped.stderr  # no internal code before the words
    assert "stopped" in stopped.stderr

    # never answered, while a MongoDB server (the module's) runs on another local port: the
    # configured server refused, and that comes first; the other server is a hint
    port = free_port()
    wrong = invoke(
        "db",
        "ping",
        "--json",
        settings=settings(f"mongodb://127.0.0.1:{port}/travellr", tmp_path / "other"),
    )
    assert wrong.exit_code == 3
    problem = wrong.json()["problem"]
    assert problem["kind"] == "refused"
    assert problem["message"].startswith(f"connection refused at 127.0.0.1:{port}")
    assert f"127.0.0.1:{rs.port}" not in problem["message"]
    assert f"127.0.0.1:{rs.port}" in problem["hint"] and "port" in problem["hint"]
    human = invoke(
        "db", "ping", settings=settings(f"mongodb://127.0.0.1:{port}/travellr", tmp_path / "o")
    )
    assert f"error: connection refused at 127.0.0.1:{port}" in human.stderr
    assert "wrong_port" not in human.stderr and "refused:" not in human.stderr


def test_ping_errors_carry_no_internal_codes(tmp_path: Path) -> None:
    s = settings("mongodb://no-such-host.invalid:27017/travellr", tmp_path, timeout_s=1.0)
    result = invoke("db", "ping", settings=s)
    assert result.exit_code == 3
    assert "error: the host name does not resolve" in result.stderr
    assert "dns:" not in result.stderr


def test_ping_suggests_db_restart_only_where_it_works(tmp_path: Path) -> None:
    server = MongoServer(tmp_path).start()
    state = tmp_path / "state"

    def on(platform: str) -> Settings:
        return Settings(
            mongo={"uri": server.uri, "timeout_s": 1.0}, state_dir=state, platform=platform
        )

    try:
        assert invoke("db", "ping", settings=on("none")).exit_code == 0  # remembered
    finally:
        server.stop()
    compose = invoke("db", "ping", settings=on("compose"))
    assert compose.exit_code == 3 and "stopped" in compose.stderr
    assert "db restart" in compose.stderr
    bare = invoke("db", "ping", settings=on("none"))
    assert bare.exit_code == 3 and "stopped" in bare.stderr
    assert "db restart" not in bare.stderr and "service status" not in bare.stderr
    assert invoke("db", "restart", "--yes", settings=on("none")).exit_code == 2  # why not


def test_ping_tells_wrong_credentials_and_never_prints_them(tmp_path: Path) -> None:
    server = MongoServer(tmp_path, memory=False)
    server.start()
    try:
        server.client().admin.command(
            "createUser", "ops", pwd="s3cret-pw", roles=["root"], mechanisms=["SCRAM-SHA-256"]
        )
        server.stop()
        server.start("--auth")
        base = f"127.0.0.1:{server.port}/travellr?authSource=admin"
        bad = invoke(
            "db", "ping", "--json", settings=settings(f"mongodb://ops:wrong-pw@{base}", tmp_path)
        )
        assert bad.exit_code == 3
        assert bad.json()["problem"]["kind"] == "auth"
        assert "wrong-pw" not in bad.stdout + bad.stderr
        assert "authSource" in bad.stderr  # the hint

        good = invoke(
            "db", "ping", "--json", settings=settings(f"mongodb://ops:s3cret-pw@{base}", tmp_path)
        )
        assert good.exit_code == 0, good.stderr
        assert good.json()["authenticated_as"] == ["ops@admin"]
        assert "s3cret-pw" not in good.stdout + good.stderr

        # no login at all: this server refuses even connectionStatus (mongod serves that, and
        # then refuses replSetGetStatus: a note); either way the user hears about the login
        anon_ping = invoke("db", "ping", "--json", settings=settings(f"mongodb://{base}", tmp_path))
        assert anon_ping.exit_code == 3
        assert anon_ping.json()["problem"]["kind"] == "auth"
        # a command needing a login, without one: exit 3 with the auth hint
        anon = invoke("db", "stats", settings=settings(f"mongodb://{base}", tmp_path))
        assert anon.exit_code == 3
        assert "authentication" in anon.stderr
    finally:
        server.stop()


def test_ping_tells_a_silent_port_from_a_non_mongodb_one(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (backlog) but never answers
    http = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        s = settings(
            f"mongodb://127.0.0.1:{silent.getsockname()[1]}/travellr", tmp_path, timeout_s=1.0
        )
        timeout = invoke("db", "ping", "--json", settings=s)
        assert timeout.exit_code == 3
        assert timeout.json()["problem"]["kind"] == "timeout"

        s = settings(
            f"mongodb://127.0.0.1:{http.server_address[1]}/travellr", tmp_path, timeout_s=1.0
        )
        other = invoke("db", "ping", "--json", settings=s)
        assert other.exit_code == 3
        assert other.json()["problem"]["kind"] == "protocol"
    finally:
        silent.close()
        http.shutdown()
        http.server_close()


def test_ping_diagnoses_tls_mismatches(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        need("openssl missing (apt-get install openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    server = MongoServer(tmp_path).start("--tls-cert-file", str(cert), "--tls-key-file", str(key))
    try:
        base = f"mongodb://127.0.0.1:{server.port}/travellr"
        plain = invoke("db", "ping", "--json", settings=settings(base, tmp_path, timeout_s=1.0))
        assert plain.exit_code == 3
        assert "tls=true" in plain.json()["problem"]["hint"]

        untrusted = invoke(
            "db", "ping", "--json", settings=settings(base + "?tls=true", tmp_path, timeout_s=1.0)
        )
        assert untrusted.exit_code == 3
        assert untrusted.json()["problem"]["kind"] == "tls"
        assert "tlsCAFile" in untrusted.json()["problem"]["hint"]

        trusted = invoke(
            "db", "ping", settings=settings(f"{base}?tls=true&tlsCAFile={cert}", tmp_path)
        )
        assert trusted.exit_code == 0, trusted.stderr
    finally:
        server.stop()


def test_a_malformed_uri_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("db", "stats", settings=settings("mongodb://127.0.0.1:notaport/x", tmp_path))
    assert result.exit_code == 2
    assert "invalid MongoDB URI" in result.stderr


# ------------------------------------------------------------------------- status, stats


@pytest.mark.parametrize("which", ["rs", "standalone"])
def test_status_reports_rates_and_only_the_sections_the_server_has(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server: MongoServer = request.getfixturevalue(which)
    result = invoke(
        "db", "status", "--interval", "0.3", "--json", settings=settings(server.uri, tmp_path)
    )
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert set(doc["opcounters_per_s"]) >= {"insert", "query", "command"}
    assert doc["opcounters_per_s"]["command"] >= 0
    assert "current" in doc["connections"]
    expected = "replica set" if which == "rs" else "standalone"
    assert doc["replication"]["mode"] == expected
    # this server has no wiredTiger or globalLock section: left out, not an error
    assert "wiredTiger_cache" not in doc["optional"]
    human = invoke("db", "status", "--interval", "0.2", settings=settings(server.uri, tmp_path))
    assert "operations/s" in human.stdout


def test_status_says_not_reported_and_names_the_server_as_ping_does(
    rs: MongoServer, tmp_path: Path
) -> None:
    s = settings(rs.uri, tmp_path)
    doc = invoke("db", "status", "--interval", "0.1", "--json", settings=s).json()
    # this server answers 0 for figures it does not keep (available connections, virtual
    # memory): no server can have them at 0 while it serves us
    assert doc["connections"]["available"] is None and doc["connections"]["current"] > 0
    assert doc["memory_mb"]["virtual"] is None
    human = invoke("db", "status", "--interval", "0.1", settings=s).stdout
    assert "available not reported" in human and "virtual not reported" in human
    assert "available 0" not in human and "virtual 0 MiB" not in human
    ping = invoke("db", "ping", settings=s).stdout
    assert ping.startswith(f"{rs.uri}: ") and human.startswith(f"{rs.uri}: "), (ping, human)


def test_stats_lists_sizes_per_collection(rs: MongoServer, tmp_path: Path) -> None:
    doc = invoke("db", "stats", "--json", settings=settings(rs.uri, tmp_path)).json()
    names = {c["name"]: c for c in doc["per_collection"]}
    assert set(names) == {"users", "trips", "bookings", "searches"}
    assert names["bookings"]["documents"] == BOOKINGS
    assert names["bookings"]["data_bytes"] > 0 and names["bookings"]["index_bytes"] > 0

    one = invoke(
        "db", "stats", "--collection", "users", "--json", settings=settings(rs.uri, tmp_path)
    )
    assert [c["name"] for c in one.json()["per_collection"]] == ["users"]
    missing = invoke("db", "stats", "--collection", "nope", settings=settings(rs.uri, tmp_path))
    assert missing.exit_code == 2 and "nope" in missing.stderr


# -------------------------------------------------------------------------------- indexes


def test_indexes_list_shows_keys_options_and_sizes(rs: MongoServer, tmp_path: Path) -> None:
    doc = invoke("db", "indexes", "list", "--json", settings=settings(rs.uri, tmp_path)).json()
    by_name = {(i["collection"], i["name"]): i for i in doc["indexes"]}
    email = by_name[("users", "email_1")]
    assert email["unique"] is True and email["keys"] == {"email": 1}
    ttl = by_name[("searches", "createdAt_1")]
    assert ttl["ttl_s"] == 2592000
    assert all(i["size_bytes"] is not None for i in doc["indexes"])
    human = invoke("db", "indexes", "list", "searches", settings=settings(rs.uri, tmp_path))
    assert "TTL 2592000s" in human.stdout and "users" not in human.stdout


def test_analyze_finds_the_missing_index_ensure_creates_it_and_analyze_is_then_clean(
    fresh: MongoServer, tmp_path: Path
) -> None:
    s = settings(fresh.uri, tmp_path)
    first = invoke("db", "indexes", "analyze", "--json", settings=s)
    assert first.exit_code == 1, first.stderr
    report = first.json()
    assert report["source"] == "config"
    [finding] = [f for f in report["findings"] if f["collection"] == "bookings"]
    assert finding["kind"] == "collscan"
    assert finding["subject"] == "bookings.find({tripId: ?, status: ?})"
    assert finding["fix"]["index"] == "{tripId: 1, status: 1}"
    assert finding["fix"]["declared"] is True
    assert report["findings"] == [finding]  # nothing else: the rest of the seed is indexed
    # the server keeps no usage counters: said, and no index is called unused
    assert report["usage_data"] is False
    assert any("no index usage data" in n for n in report["notes"])

    dry = invoke("db", "indexes", "ensure", "--dry-run", "--json", settings=s)
    assert dry.exit_code == 0
    states = {i["keys"]: i["state"] for i in dry.json()["items"]}
    assert states["{tripId: 1, status: 1}"] == "would_create"
    assert "tripId_1_status_1" not in fresh.client().travellr.bookings.index_information()

    made = invoke("db", "indexes", "ensure", "--json", "--yes", settings=s)
    assert made.exit_code == 0, made.stderr
    states = {i["keys"]: i["state"] for i in made.json()["items"]}
    assert states.pop("{tripId: 1, status: 1}") == "created"
    assert set(states.values()) == {"exists"}
    assert "tripId_1_status_1" in fresh.client().travellr.bookings.index_information()
    audit = (tmp_path / "state" / "audit.log").read_text()
    assert '"action": "db indexes ensure"' in audit and '"outcome": "ok"' in audit

    second = invoke("db", "indexes", "analyze", "--json", settings=s)
    assert second.exit_code == 0, second.stdout
    assert second.json()["findings"] == []
    again = invoke("db", "indexes", "ensure", "--json", settings=s)
    assert again.exit_code == 0
    assert {i["state"] for i in again.json()["items"]} == {"exists"}


def test_analyze_reports_a_redundant_index_with_the_one_that_covers_it(
    fresh: MongoServer, tmp_path: Path
) -> None:
    fresh.client().travellr.trips.create_index("destination")
    result = invoke("db", "indexes", "analyze", "--json", settings=settings(fresh.uri, tmp_path))
    assert result.exit_code == 1
    [redundant] = [f for f in result.json()["findings"] if f["kind"] == "redundant"]
    assert redundant["subject"] == "destination_1"
    assert "destination_1_startDate_1" in redundant["detail"]
    assert redundant["fix"]["command"] == 'db.trips.dropIndex("destination_1")'


def test_ensure_confirms_long_builds_and_refuses_without_a_terminal(
    fresh: MongoServer, tmp_path: Path
) -> None:
    s = settings(fresh.uri, tmp_path, ensure_confirm_docs=100)
    refused = invoke("db", "indexes", "ensure", settings=s)
    assert refused.exit_code == 4
    assert "tripId_1_status_1" not in fresh.client().travellr.bookings.index_information()
    declined = invoke("db", "indexes", "ensure", settings=s, interactive=True, input="n\n")
    assert declined.exit_code == 4
    accepted = invoke("db", "indexes", "ensure", settings=s, interactive=True, input="y\n")
    assert accepted.exit_code == 0, accepted.stderr
    assert "tripId_1_status_1" in fresh.client().travellr.bookings.index_information()


def test_read_only_mode_refuses_ensure_and_profile(fresh: MongoServer, tmp_path: Path) -> None:
    s = settings(fresh.uri, tmp_path)
    assert invoke("--read-only", "db", "indexes", "ensure", "--yes", settings=s).exit_code == 4
    assert invoke("--read-only", "db", "profile", "on", settings=s).exit_code == 4
    assert "tripId_1_status_1" not in fresh.client().travellr.bookings.index_information()


def test_a_missing_index_file_is_a_configuration_error(rs: MongoServer, tmp_path: Path) -> None:
    s = settings(rs.uri, tmp_path, indexes_file=str(tmp_path / "nope.toml"))
    result = invoke("db", "indexes", "analyze", settings=s)
    assert result.exit_code == 2 and "indexes_file" in result.stderr


# -------------------------------------------------------------------------------- explain


def test_explain_summarises_the_plan_and_suggests_an_index(rs: MongoServer, tmp_path: Path) -> None:
    s = settings(rs.uri, tmp_path)
    scan = invoke(
        "db",
        "explain",
        "bookings",
        "--filter",
        '{"status": "pending"}',
        "--sort",
        '{"createdAt": -1}',
        settings=s,
    )
    assert scan.exit_code == 0, scan.stderr
    assert "COLLSCAN" in scan.stdout
    assert "createIndex({status: 1, createdAt: -1})" in scan.stdout

    doc = invoke(
        "db", "explain", "users", "--filter", '{"email": "user7@example.com"}', "--json", settings=s
    ).json()
    assert doc["summary"]["index"] == "email_1" and doc["verdict"] == "ok"
    human = invoke(
        "db", "explain", "users", "--filter", '{"email": "user7@example.com"}', settings=s
    ).stdout
    assert "IXSCAN" in human and "ok ok" not in human
    assert doc["plan"]["queryPlanner"]["winningPlan"]  # the whole plan
    assert doc["query"] == "users.find({email: ?})"  # the value stays out of the summary


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--filter", "{status: 1"], "--filter"),
        (["--filter", "[1, 2]"], "--filter"),
        (["--filter", "{}", "--sort", '{"a": 3}'], "--sort"),
    ],
)
def test_a_malformed_filter_or_sort_is_a_usage_error(
    args: list[str], named: str, rs: MongoServer, tmp_path: Path
) -> None:
    result = invoke("db", "explain", "bookings", *args, settings=settings(rs.uri, tmp_path))
    assert result.exit_code == 2
    assert named in result.stderr


# ------------------------------------------------------------------------ profile, slow


def test_profile_on_records_slow_operations_and_analyze_uses_them(
    fresh: MongoServer, tmp_path: Path
) -> None:
    s = settings(fresh.uri, tmp_path)
    assert invoke("db", "profile", "status", "--json", settings=s).json()["level"] == 0
    dry = invoke("db", "profile", "on", "--slowms", "0", "--dry-run", settings=s)
    assert dry.exit_code == 0
    assert invoke("db", "profile", "status", "--json", settings=s).json()["level"] == 0

    on = invoke("db", "profile", "on", "--slowms", "0", "--json", "--yes", settings=s)
    assert on.exit_code == 0, on.stderr
    assert on.json()["level"] == 1 and on.json()["slowms"] == 0

    db = fresh.client().travellr
    list(db.bookings.find({"tripId": 17, "status": "confirmed"}))
    list(db.bookings.find({"userId": 3}).sort("createdAt", -1).limit(20))

    slow = invoke("db", "slow", "--since", "10m", "--min-ms", "0", "--json", settings=s)
    assert slow.exit_code == 0, slow.stderr
    queries = [o["query"] for o in slow.json()["operations"]]
    assert "bookings.find({tripId: ?, status: ?})" in queries
    assert "confirmed" not in slow.stdout  # values stay hidden

    analyzed = invoke("db", "indexes", "analyze", "--json", settings=s)
    report = analyzed.json()
    assert report["source"] == "profiler"
    kinds = {(f["collection"], f["kind"]) for f in report["findings"]}
    assert ("bookings", "collscan") in kinds

    off = invoke("db", "profile", "off", "--json", "--yes", settings=s)
    assert off.json()["level"] == 0 and off.json()["previous_level"] == 1
    entries = (tmp_path / "state" / "audit.log").read_text()
    assert "db profile on" in entries and "db profile off" in entries


def test_slow_says_when_the_profiler_is_off(rs: MongoServer, tmp_path: Path) -> None:
    result = invoke("db", "slow", settings=settings(rs.uri, tmp_path))
    assert result.exit_code == 0
    assert "db profile on" in result.stdout
    # nothing recorded: the note alone, no empty table (no header, no title) before it
    assert "keys/docs/returned" not in result.stdout and "operations over" not in result.stdout
    bad = invoke("db", "slow", "--since", "yesterday-ish", settings=settings(rs.uri, tmp_path))
    assert bad.exit_code == 2 and "--since" in bad.stderr


# -------------------------------------------------------------------------------- restart


class StopStartPlatform:
    """The platform's part of a restart, played on a real server: stop it, start it again
    a moment later (the compose/Kubernetes adapters restart a real service the same way)."""

    name = "test"

    def __init__(self, server: MongoServer, down_s: float | None) -> None:
        self.server = server
        self.down_s = down_s
        self.thread: threading.Thread | None = None

    def restart(self, service: str, timeout_s: float, progress: Any) -> Any:
        from travellr_ops.adapters.platform_types import RestartResult

        self.server.stop()
        if self.down_s is None:  # it does not come back
            return RestartResult(service, healthy=True, seconds=0.1)

        def later() -> None:
            assert self.down_s is not None
            time.sleep(self.down_s)
            self.server.start()

        self.thread = threading.Thread(target=later)
        self.thread.start()
        return RestartResult(service, healthy=True, seconds=0.1)

    def close(self) -> None:
        if self.thread is not None:
            self.thread.join()


def test_restart_waits_until_the_server_answers_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "srv").mkdir()
    server = MongoServer(tmp_path / "srv").start()
    platform = StopStartPlatform(server, down_s=1.5)
    monkeypatch.setattr("travellr_ops.adapters.platform.get_platform", lambda settings: platform)
    try:
        s = settings(server.uri, tmp_path, timeout_s=0.5)
        refused = invoke("db", "restart", settings=s)
        assert refused.exit_code == 4  # disruptive: confirmed first
        result = invoke("db", "restart", "--yes", "--timeout", "60", "--json", settings=s)
        assert result.exit_code == 0, result.stderr
        doc = result.json()
        assert doc["healthy"] is True
        assert doc["wait"]["attempts"] > 1  # it was down for a while, and we waited
        assert doc["wait"]["ping"]["ok"] is True
    finally:
        platform.close()
        server.stop()


def test_restart_of_a_server_that_stays_down_fails_with_the_diagnosis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "srv").mkdir()
    server = MongoServer(tmp_path / "srv").start()
    platform = StopStartPlatform(server, down_s=None)
    monkeypatch.setattr("travellr_ops.adapters.platform.get_platform", lambda settings: platform)
    try:
        s = settings(server.uri, tmp_path, timeout_s=0.5)
        result = invoke("db", "restart", "--yes", "--timeout", "2", "--json", settings=s)
        assert result.exit_code == 3
        assert result.json()["healthy"] is False
        assert "not healthy after the restart" in result.stderr
        assert "refused" in result.stderr
        audit = (tmp_path / "state" / "audit.log").read_text()
        assert '"outcome": "failed"' in audit
    finally:
        server.stop()


class UnhealthyRestartPlatform:
    """A platform whose restart ran and whose own check after it found the service unhealthy
    (what the compose and Kubernetes adapters report for a container that dies)."""

    name = "test"

    def restart(self, service: str, timeout_s: float, progress: Any) -> Any:
        from travellr_ops.adapters.platform_types import RestartResult

        return RestartResult(service, healthy=False, seconds=0.1, reason="died (exit code 3)")

    def close(self) -> None:
        pass


def test_a_restart_the_platform_finds_unhealthy_exits_1_as_service_restart_does(
    rs: MongoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = UnhealthyRestartPlatform()
    monkeypatch.setattr("travellr_ops.adapters.platform.get_platform", lambda settings: platform)
    s = settings(rs.uri, tmp_path, timeout_s=0.5)
    result = invoke("db", "restart", "--yes", "--timeout", "30s", "--json", settings=s)
    assert result.exit_code == 1, result.stderr
    assert result.json()["healthy"] is False
    assert "not healthy after the restart: died (exit code 3)" in result.stderr
    audit = (tmp_path / "state" / "audit.log").read_text()
    assert '"outcome": "failed"' in audit


def test_waiting_gives_up_on_a_server_that_stays_down(tmp_path: Path) -> None:
    from travellr_ops.adapters.mongo import MongoAdapter
    from travellr_ops.ops.db.server import wait_until_healthy

    uri = f"mongodb://127.0.0.1:{free_port()}/travellr"
    result = wait_until_healthy(
        lambda: MongoAdapter(uri, "travellr", 0.3), timeout_s=1.0, interval_s=0.2
    )
    assert result.healthy is False
    assert result.attempts >= 2
    assert result.last_problem is not None and result.last_problem.kind == "refused"


def test_db_help_imports_no_sdk() -> None:
    code = (
        "import sys; from travellr_ops.cli.app import run; run(['db', '--help']);"
        "print([m for m in ('pymongo', 'bson', 'docker', 'kubernetes', 'redis') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
