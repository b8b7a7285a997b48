"""The sandbox's own pieces: the stand-in backend, the seed and the server fixtures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from fixtures_servers import REDIS_SH, REPO, SEED_PY, Backend, MongoServer, RedisServer
from servers import free_port, need

SANDBOX_SH = REPO / "scripts" / "sandbox.sh"

pytestmark = [pytest.mark.redis, pytest.mark.mongo]


def get(url: str, *, data: dict[str, Any] | None = None, ip: str | None = None) -> Any:
    """(status, headers, json body) of a request; HTTP errors are answers too."""
    headers = {"Content-Type": "application/json"}
    if ip:
        headers["X-Forwarded-For"] = ip
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.headers, json.loads(err.read())


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, decode_responses=True)


def a_user_email(mongo_uri: str) -> str:
    from pymongo import MongoClient

    client: Any = MongoClient(mongo_uri)
    try:
        return str(client.get_default_database().users.find_one({"role": "customer"})["email"])
    finally:
        client.close()


# ---------------------------------------------------------------------------- backend
def test_health_reports_both_dependencies(backend_url: str) -> None:
    status, _, body = get(backend_url + "/api/health")
    assert status == 200
    assert body["status"] == "ok"
    assert body["checks"]["mongodb"]["ok"] and body["checks"]["redis"]["ok"]
    assert "latency_ms" in body["checks"]["redis"]


def test_search_is_cached_in_redis_under_its_key(backend_url: str, redis_url: str) -> None:
    r = redis_client(redis_url)
    r.delete("search:Kyoto:1")
    status, headers, body = get(backend_url + "/api/search?destination=Kyoto&page=1")
    assert status == 200 and headers["X-Cache"] == "MISS"
    assert all(t["destination"] == "Kyoto" for t in body["results"])
    assert 0 < r.ttl("search:Kyoto:1") <= 300
    status, headers, again = get(backend_url + "/api/search?destination=Kyoto&page=1")
    assert headers["X-Cache"] == "HIT" and again == body


def test_trip_and_popular_are_cached(backend_url: str, redis_url: str) -> None:
    r = redis_client(redis_url)
    _, _, popular = get(backend_url + "/api/trips/popular")
    assert r.exists("trips:popular")
    trip_id = popular["results"][0]["_id"]
    r.delete(f"trip:{trip_id}")
    status, headers, trip = get(f"{backend_url}/api/trips/{trip_id}")
    assert status == 200 and headers["X-Cache"] == "MISS" and trip["_id"] == trip_id
    assert 300 < r.ttl(f"trip:{trip_id}") <= 600
    assert get(f"{backend_url}/api/trips/{trip_id}")[1]["X-Cache"] == "HIT"
    assert get(backend_url + "/api/trips/000000000000000000000000")[0] == 404


def test_bookings_by_trip_and_status(backend_url: str) -> None:
    _, _, popular = get(backend_url + "/api/trips/popular")
    trip_id = popular["results"][0]["_id"]
    status, _, body = get(f"{backend_url}/api/bookings?tripId={trip_id}&status=confirmed")
    assert status == 200
    assert all(b["tripId"] == trip_id and b["status"] == "confirmed" for b in body["results"])
    assert get(backend_url + "/api/bookings?tripId=nope")[0] == 400


def test_maintenance_key_gives_503_everywhere_and_recovers(
    backend_url: str, redis_url: str
) -> None:
    r = redis_client(redis_url)
    flag = {
        "message": "Upgrading the database",
        "by": "ops",
        "reason": "test",
        "since": "2026-11-28T04:00:00Z",
        "until": None,
    }
    r.set("travellr:maintenance", json.dumps(flag))
    try:
        for path in ("/api/health", "/api/search?destination=Oslo", "/api/trips/popular"):
            status, _, body = get(backend_url + path)
            assert status == 503
            assert body["status"] == "maintenance"
            assert body["message"] == "Upgrading the database"
    finally:
        r.delete("travellr:maintenance")
    assert get(backend_url + "/api/health")[0] == 200


def test_failed_login_is_logged_and_good_login_works(
    backend: Backend, seeded_mongo_uri: str
) -> None:
    email = a_user_email(seeded_mongo_uri)
    url = backend.url + "/api/auth/login"
    status, _, body = get(url, data={"email": email, "password": "wrong"}, ip="203.0.113.7")
    assert status == 401
    assert f"WARN login failed email={email} ip=203.0.113.7" in backend.app_log.read_text()
    status, _, body = get(url, data={"email": email, "password": "travellr-demo"})
    assert status == 200 and body["user"]["email"] == email


def test_debug_error_plants_an_error_line(backend: Backend) -> None:
    assert get(backend.url + "/api/debug/error")[0] == 500
    lines = backend.app_log.read_text().splitlines()
    assert any(" ERROR debug error requested" in line for line in lines)
    assert '"GET /api/debug/error HTTP/1.1" 500' in backend.access_log.read_text()


def test_rate_limit_answers_429_and_logs(
    backend_factory: Any, redis_url: str, seeded_mongo_uri: str
) -> None:
    api = backend_factory(redis_url=redis_url, mongo_uri=seeded_mongo_uri, RATE_LIMIT_PER_MIN="3")
    codes = [get(api.url + "/api/trips/popular", ip="198.51.100.9")[0] for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    assert "WARN rate limit exceeded ip=198.51.100.9" in api.app_log.read_text()
    # another client is not affected
    assert get(api.url + "/api/trips/popular", ip="198.51.100.10")[0] == 200


def test_health_degrades_when_redis_stops_and_recovers(
    redis_factory: Any, backend_factory: Any, seeded_mongo_uri: str
) -> None:
    redis_server: RedisServer = redis_factory()
    api = backend_factory(redis_url=redis_server.url, mongo_uri=seeded_mongo_uri)
    redis_server.stop()
    status, _, body = get(api.url + "/api/health")
    assert status == 503 and body["status"] == "degraded"
    assert body["checks"]["redis"]["ok"] is False and body["checks"]["mongodb"]["ok"] is True
    # reads still work without the cache
    assert get(api.url + "/api/search?destination=Lima")[0] == 200
    redis_server.start()
    assert get(api.url + "/api/health")[0] == 200


def test_health_degrades_when_mongo_stops_and_recovers(
    redis_url: str, mongo_factory: Any, backend_factory: Any
) -> None:
    mongo: MongoServer = mongo_factory()
    api = backend_factory(redis_url=redis_url, mongo_uri=mongo.uri)
    mongo.stop()
    status, _, body = get(api.url + "/api/health")
    assert status == 503 and body["checks"]["mongodb"]["ok"] is False
    mongo.start()
    assert get(api.url + "/api/health")[0] == 200


def test_broken_release_health_answers_500(
    backend_factory: Any, redis_url: str, seeded_mongo_uri: str
) -> None:
    api = backend_factory(redis_url=redis_url, mongo_uri=seeded_mongo_uri, BACKEND_HEALTH_FAIL="1")
    assert get(api.url + "/api/health")[0] == 500


# --------------------------------------------------------------------------- fixtures
def test_cluster_fixture_spreads_keys_over_three_primaries(redis_cluster_url: str) -> None:
    from redis.cluster import RedisCluster

    cluster = RedisCluster.from_url(redis_cluster_url, decode_responses=True)
    try:
        assert cluster.cluster_info()["cluster_state"] == "ok"
        assert len(cluster.get_primaries()) == 3
        for i in range(30):
            cluster.set(f"search:fixture:{i}", i)
        sizes = [cluster.dbsize(target_nodes=node) for node in cluster.get_primaries()]
        assert all(size > 0 for size in sizes) and sum(sizes) >= 30
    finally:
        cluster.close()


def test_mongo_fixtures_are_replica_set_and_standalone(
    mongo_server: MongoServer, mongo_standalone_server: MongoServer
) -> None:
    for server, set_name in ((mongo_server, "secantus"), (mongo_standalone_server, None)):
        client = server.client()
        try:
            assert client.admin.command("hello").get("setName") == set_name
            assert server.uri.endswith("/travellr")
        finally:
            client.close()


# ------------------------------------------------------------------------------- seed
def test_seed_counts_and_index_set(seeded_mongo_server: MongoServer) -> None:
    client = seeded_mongo_server.client()
    try:
        db = client.travellr
        counts = {c: db[c].count_documents({}) for c in ("users", "trips", "bookings", "searches")}
        assert counts == {"users": 100, "trips": 200, "bookings": 800, "searches": 400}
        keys = {
            c: {tuple(ix["key"].items()): ix for ix in db[c].list_indexes()}
            for c in ("users", "trips", "bookings", "searches")
        }
        assert keys["users"][(("email", 1),)]["unique"]
        assert keys["users"][(("referralCode", 1),)]["sparse"]
        assert (("destination", 1), ("startDate", 1)) in keys["trips"]
        assert (("userId", 1), ("createdAt", -1)) in keys["bookings"]
        assert keys["searches"][(("createdAt", 1),)]["expireAfterSeconds"] == 2592000
        assert (("tripId", 1), ("status", 1)) not in keys["bookings"]
    finally:
        client.close()


def test_the_missing_index_really_is_a_collscan(fresh_seeded_mongo_uri: str) -> None:
    from pymongo import ASCENDING, MongoClient

    client: Any = MongoClient(fresh_seeded_mongo_uri)
    try:
        bookings = client.get_default_database().bookings
        trip = bookings.find_one()["tripId"]

        def plan() -> dict[str, Any]:
            explained = bookings.find({"tripId": trip, "status": "confirmed"}).explain()
            return dict(explained["queryPlanner"]["winningPlan"])

        assert "COLLSCAN" in json.dumps(plan(), default=str)
        bookings.create_index([("tripId", ASCENDING), ("status", ASCENDING)])
        assert "IXSCAN" in json.dumps(plan(), default=str)
    finally:
        client.close()


def test_seed_script_reports_and_replaces_data(fresh_seeded_mongo_uri: str) -> None:
    res = subprocess.run(
        [sys.executable, str(SEED_PY), "--uri", fresh_seeded_mongo_uri, "--scale", "0.01"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "seeded 750 documents" in res.stderr


# ---------------------------------------------------------------------- sandbox.sh
def test_sandbox_up_status_down(tmp_path: Path) -> None:
    """A second sandbox of its own (own dir, ports and settings file) beside the real one."""
    if shutil.which("redis-server") is None:
        need("redis-server is not installed (scripts/testbed/redis.sh install)")
    ports = {"REDIS": free_port(), "MONGO": free_port(), "API": free_port()}
    settings = tmp_path / "travellr-ops.toml"
    env = {
        **os.environ,
        "SANDBOX_DIR": str(tmp_path / "sb"),
        "SANDBOX_SETTINGS": str(settings),
        "SANDBOX_SEED_SCALE": "0.01",
        "VENV": str(Path(sys.executable).parent.parent),
        **{f"SANDBOX_{k}_PORT": str(v) for k, v in ports.items()},
    }

    def sandbox(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SANDBOX_SH), *args], env=env, capture_output=True, text=True, timeout=180
        )

    try:
        up = sandbox("up")
        if up.returncode != 0:
            need(f"sandbox up failed: {up.stderr.strip()}")
        written = tomllib.loads(settings.read_text())
        assert written["mongo"]["uri"] == f"mongodb://127.0.0.1:{ports['MONGO']}/travellr"
        assert written["redis"]["url"] == f"redis://127.0.0.1:{ports['REDIS']}/0"
        assert written["state_dir"] == str(tmp_path / "sb" / "state")
        assert get(written["api"]["url"] + "/api/health")[0] == 200

        status = sandbox("status")
        assert status.returncode == 0, status.stdout
        assert [line.split()[:2] for line in status.stdout.splitlines()] == [
            ["redis", "up"],
            ["mongodb", "up"],
            ["backend", "up"],
        ]
        again = sandbox("up")
        assert again.returncode == 0 and "already running" in again.stderr
        assert "seeding" not in again.stderr

        subprocess.run(
            ["bash", str(REDIS_SH), "stop", "--dir", str(tmp_path / "sb" / "redis")], check=True
        )
        status = sandbox("status")
        assert status.returncode == 1 and "redis    down" in status.stdout
    finally:
        down = sandbox("down")
    assert down.returncode == 0, down.stderr
    status = sandbox("status")
    assert status.returncode == 1
    assert [line.split()[1] for line in status.stdout.splitlines()] == ["down"] * 3
