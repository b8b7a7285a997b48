"""`maintenance` against a real redis-server and the real stand-in backend, which answers 503
while the flag is set; `health` reports maintenance instead of alarming."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from cli import invoke
from fixtures_servers import Backend, RedisServer
from travellr_ops.settings import Settings

pytestmark = pytest.mark.redis

KEY = "travellr:maintenance"


def settings(
    redis_url: str, tmp_path: Path, api_url: str = "http://127.0.0.1:1", **extra: Any
) -> Settings:
    return Settings(
        redis={"url": redis_url, "timeout_s": 2.0},
        api={"url": api_url, "timeout_s": 5.0},
        state_dir=tmp_path / "state",
        **extra,
    )


def http_status(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def server(redis_factory: Callable[[], RedisServer]) -> RedisServer:
    return redis_factory()


@pytest.mark.mongo
def test_on_makes_the_backend_answer_503_and_off_brings_it_back(
    server: RedisServer,
    seeded_mongo_uri: str,
    backend_factory: Callable[..., Backend],
    tmp_path: Path,
) -> None:
    backend = backend_factory(redis_url=server.url, mongo_uri=seeded_mongo_uri)
    s = settings(server.url, tmp_path, backend.url)
    assert http_status(backend.url + "/api/trips/popular")[0] == 200

    on = invoke(
        "maintenance", "on", "--message", "Upgrading the database", "--reason", "mongo 8 upgrade",
        "--yes", "--json", settings=s,
    )  # fmt: skip
    assert on.exit_code == 0, on.stderr
    status, body = http_status(backend.url + "/api/trips/popular")
    assert status == 503
    assert body == {"status": "maintenance", "message": "Upgrading the database"} or (
        body["status"] == "maintenance" and body["message"] == "Upgrading the database"
    )
    assert http_status(backend.url + "/api/health")[0] == 503

    flag = json.loads(redis.Redis.from_url(server.url).get(KEY) or b"{}")
    assert set(flag) == {"message", "by", "reason", "since", "until"}
    assert flag["message"] == "Upgrading the database" and flag["reason"] == "mongo 8 upgrade"
    assert "@" in flag["by"] and flag["until"] is None
    assert datetime.fromisoformat(flag["since"]).tzinfo is not None

    shown = invoke("maintenance", "status", "--json", settings=s).json()
    assert shown["on"] is True and shown["by"] == flag["by"] and shown["expires_in_s"] is None
    human = invoke("maintenance", "status", settings=s)
    assert "maintenance mode: on" in human.stdout and "mongo 8 upgrade" in human.stdout

    off = invoke("maintenance", "off", "--json", "--yes", settings=s)
    assert off.exit_code == 0, off.stderr
    assert off.json()["on"] is False
    assert http_status(backend.url + "/api/trips/popular")[0] == 200
    assert http_status(backend.url + "/api/health")[0] == 200

    audit = [json.loads(x) for x in (tmp_path / "state" / "audit.log").read_text().splitlines()]
    assert [(e["action"], e["outcome"]) for e in audit] == [
        ("maintenance on", "ok"),
        ("maintenance off", "ok"),
    ]


@pytest.mark.mongo
def test_health_reports_maintenance_instead_of_alarming(
    server: RedisServer,
    seeded_mongo_uri: str,
    backend_factory: Callable[..., Backend],
    tmp_path: Path,
) -> None:
    backend = backend_factory(redis_url=server.url, mongo_uri=seeded_mongo_uri)
    s = settings(
        server.url,
        tmp_path,
        backend.url,
        mongo={"uri": seeded_mongo_uri},
        platform="none",
        disk_paths=[tmp_path],
        thresholds={"disk_pct": 100, "api_response_ms": 5000, "db_query_ms": 5000},
    )
    assert invoke("maintenance", "on", "-m", "back at 16:00", "--yes", settings=s).exit_code == 0
    result = invoke("--json", "health", settings=s)
    doc = result.json()
    assert doc["verdict"] == "maintenance", result.stdout
    api = next(c for c in doc["checks"] if c["name"] == "api")
    assert api["verdict"] == "maintenance" and "back at 16:00" in api["detail"]
    assert doc["maintenance"]["message"] == "back at 16:00"
    assert result.exit_code == 0

    assert invoke("maintenance", "off", "--yes", settings=s).exit_code == 0
    assert invoke("--json", "health", settings=s).json()["verdict"] == "healthy"


def test_until_sets_an_expiry_and_status_shows_it(server: RedisServer, tmp_path: Path) -> None:
    s = settings(server.url, tmp_path)
    result = invoke("maintenance", "on", "--until", "90m", "--yes", "--json", settings=s)
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert 89 * 60 < doc["expires_in_s"] <= 90 * 60
    until = datetime.fromisoformat(doc["until"])
    assert 89 * 60 < (until - datetime.now(UTC)).total_seconds() <= 90 * 60
    r = redis.Redis.from_url(server.url)
    assert 0 < r.ttl(KEY) <= 90 * 60

    # a time of day in the past is tomorrow's; a date-time in the past is an error
    assert (
        invoke("maintenance", "on", "--until", "2001-01-01T00:00Z", "--yes", settings=s).exit_code
        == 2
    )
    for bad in ("soon", "25:00", "-5m", ""):
        bad_run = invoke("maintenance", "on", "--until", bad, "--yes", settings=s)
        assert bad_run.exit_code == 2, (bad, bad_run.stderr)
    assert json.loads(r.get(KEY) or b"{}")["until"] == doc["until"]  # unchanged by the errors
    r.close()


def test_dry_run_and_refusal_change_nothing(server: RedisServer, tmp_path: Path) -> None:
    s = settings(server.url, tmp_path)
    dry = invoke("maintenance", "on", "--dry-run", "-m", "x", settings=s)
    assert dry.exit_code == 0 and "would turn maintenance mode on" in dry.stderr
    refused = invoke("maintenance", "on", settings=s)
    assert refused.exit_code == 4
    r = redis.Redis.from_url(server.url)
    assert r.get(KEY) is None
    assert invoke("maintenance", "status", "--json", settings=s).json()["on"] is False
    readonly = invoke("--read-only", "maintenance", "on", "--yes", settings=s)
    assert readonly.exit_code == 4 and r.get(KEY) is None
    r.close()


def test_a_flag_set_by_hand_still_counts(server: RedisServer, tmp_path: Path) -> None:
    r = redis.Redis.from_url(server.url)
    r.set(KEY, "closed for the night", ex=600)
    doc = invoke("maintenance", "status", "--json", settings=settings(server.url, tmp_path)).json()
    assert doc["on"] is True and doc["message"] == "closed for the night"
    assert 0 < doc["expires_in_s"] <= 600
    r.close()


def test_unreachable_redis_exits_3_and_the_password_stays_secret(
    server: RedisServer, tmp_path: Path
) -> None:
    r = redis.Redis.from_url(server.url)
    r.config_set("requirepass", "pw-Secret-9")
    r.close()
    url = f"redis://:pw-Secret-9@127.0.0.1:{server.port}/0"
    s = settings(url, tmp_path)
    on = invoke("maintenance", "on", "--yes", "-m", "m", settings=s)
    assert on.exit_code == 0, on.stderr
    audit = (tmp_path / "state" / "audit.log").read_text()
    assert "maintenance on" in audit and "pw-Secret-9" not in audit
    assert "pw-Secret-9" not in on.stdout + on.stderr
    server.stop()
    down = invoke("maintenance", "status", settings=s)
    assert down.exit_code == 3 and "pw-Secret-9" not in down.stdout + down.stderr
    server.start()


def test_turning_it_on_again_says_whose_flag_it_replaces(
    server: RedisServer, tmp_path: Path
) -> None:
    s = settings(server.url, tmp_path)
    assert invoke("maintenance", "on", "-m", "first", "--yes", settings=s).exit_code == 0
    again = invoke("maintenance", "on", "-m", "second", "--dry-run", settings=s)
    assert again.exit_code == 0
    assert "replaces the flag set by" in again.stderr and "first" in again.stderr
    assert invoke("maintenance", "status", "--json", settings=s).json()["message"] == "first"


def test_a_message_alone_is_not_repeated_as_the_reason(server: RedisServer, tmp_path: Path) -> None:
    s = settings(server.url, tmp_path)
    dry = invoke("maintenance", "on", "--message", "Back at 5", "--dry-run", settings=s)
    assert dry.exit_code == 0
    assert "message: Back at 5" in dry.stderr and "reason" not in dry.stderr
    on = invoke("maintenance", "on", "--message", "Back at 5", "--yes", settings=s)
    assert on.exit_code == 0, on.stderr
    flag = json.loads(redis.Redis.from_url(server.url).get(KEY) or b"{}")
    assert flag["message"] == "Back at 5" and flag["reason"] is None
    human = invoke("maintenance", "status", settings=s).stdout
    assert human.count("Back at 5") == 1 and "reason" not in human


def test_the_store_keeps_each_window_so_it_is_known_while_redis_is_down(
    server: RedisServer, tmp_path: Path
) -> None:
    from travellr_ops.ops import maintenance_windows
    from travellr_ops.store import open_store

    s = settings(server.url, tmp_path)
    before = datetime.now(UTC).timestamp()
    first_on = invoke("maintenance", "on", "--until", "1h", "--yes", "-r", "disk", settings=s)
    assert first_on.exit_code == 0, first_on.stderr
    assert invoke("maintenance", "on", "--yes", settings=s).exit_code == 0  # replaces the first
    server.stop()  # the flag cannot be read now; the record can
    store = open_store(s)
    try:
        found = maintenance_windows.windows(store, before)
        assert len(found) == 2
        first, second = found
        assert first.reason == "disk" and first.ended == second.started
        assert second.end is None
        assert maintenance_windows.active(store) == second
        assert not first.covers(second.started + 1)
    finally:
        store.close()
    # dry runs and refusals record nothing
    assert invoke("maintenance", "off", "--dry-run", settings=s).exit_code in (0, 3)
    store = open_store(s)
    try:
        assert maintenance_windows.active(store) == second
    finally:
        store.close()
