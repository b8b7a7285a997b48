"""`security check` against real servers set up both ways: Redis without and with a
password, SecantusDB without and with --auth, a config file with a secret and a bad mode, and
a maintenance flag left on past its until."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli import invoke
from fixtures_servers import MongoServer, RedisServer
from travellr_ops.ops.security.posture import tls_checks
from travellr_ops.settings import Settings


def verdicts(doc: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["verdict"] for c in doc["checks"]}


@pytest.mark.redis
@pytest.mark.mongo
def test_redis_and_mongo_auth_both_ways(
    tmp_path: Path,
    redis_factory: Callable[[], RedisServer],
    mongo_factory: Callable[..., MongoServer],
) -> None:
    redis = redis_factory()
    mongo = mongo_factory(memory=False)
    s = Settings(
        platform="none",
        state_dir=tmp_path / "state",
        redis={"url": redis.url},
        mongo={"uri": mongo.uri},
        backup={"dir": tmp_path / "backups"},
    )
    open_doors = invoke("security", "check", "--json", settings=s)
    assert open_doors.exit_code == 1
    v = verdicts(open_doors.json())
    assert v["redis.auth"] == "fail" and v["mongo.auth"] == "fail"
    assert v["redis.exposure"] == "pass"  # bound to 127.0.0.1 by the testbed
    fixes = {c["name"]: c["fix"] for c in open_doors.json()["checks"]}
    assert "requirepass" in fixes["redis.auth"] and "--auth" in fixes["mongo.auth"]

    # now lock both: a Redis password, and a MongoDB user with the server restarted --auth
    import redis as redis_py

    redis_py.Redis.from_url(redis.url).config_set("requirepass", "r3dis-pw")
    client = mongo.client()
    client.admin.command(
        "createUser", "ops", pwd="m0ngo-pw", roles=["root"], mechanisms=["SCRAM-SHA-256"]
    )
    client.close()
    mongo.stop()
    mongo.extra = ("--auth",)
    mongo.start()
    locked = Settings(
        platform="none",
        state_dir=tmp_path / "state",
        redis={"url": f"redis://:r3dis-pw@127.0.0.1:{redis.port}/0"},
        mongo={"uri": f"mongodb://ops:m0ngo-pw@127.0.0.1:{mongo.port}/travellr?authSource=admin"},
        backup={"dir": tmp_path / "backups"},
    )
    res = invoke("security", "check", "--json", settings=locked)
    assert res.exit_code == 0, res.stdout
    v = verdicts(res.json())
    assert v["redis.auth"] == v["mongo.auth"] == v["redis.exposure"] == "pass"
    assert "r3dis-pw" not in res.stdout + res.stderr and "m0ngo-pw" not in res.stdout


@pytest.mark.redis
def test_file_modes_config_secret_and_stale_maintenance_flag(
    tmp_path: Path, redis_factory: Callable[[], RedisServer]
) -> None:
    redis = redis_factory()
    backups, state = tmp_path / "backups", tmp_path / "state"
    backups.mkdir(mode=0o700)
    state.mkdir()
    state.chmod(0o755)  # world-readable state (audit log, incident records)
    config = tmp_path / "travellr-ops.toml"
    config.write_text(
        f'platform = "none"\nstate_dir = "{state}"\n[redis]\nurl = "redis://:pw-in-file@127.0.0.1:{redis.port}/0"\n'
        f'[backup]\ndir = "{backups}"\n[mongo]\nuri = "mongodb://127.0.0.1:1/travellr"\n'
    )
    config.chmod(0o644)
    import redis as redis_py

    r = redis_py.Redis.from_url(redis.url)
    r.config_set("requirepass", "pw-in-file")
    r = redis_py.Redis.from_url(f"redis://:pw-in-file@127.0.0.1:{redis.port}/0")
    r.set(
        "travellr:maintenance",
        json.dumps({"message": "upgrade", "by": "ana@ops", "until": "2020-01-01T00:00:00Z"}),
    )
    res = invoke("--config", str(config), "security", "check", "--json")
    assert res.exit_code == 1
    doc = res.json()
    v = verdicts(doc)
    assert v["files.backup_dir"] == "pass"
    assert v["files.state_dir"] == "fail" and v["files.config"] == "fail"
    assert v["maintenance.flag"] == "fail" and v["mongo.auth"] == "unknown"
    detail = {c["name"]: c["detail"] for c in doc["checks"]}
    assert "holds a password" in detail["files.config"] and "pw-in-file" not in res.stdout
    fixes = {c["name"]: c["fix"] for c in doc["checks"]}
    assert fixes["files.state_dir"] == f"chmod 700 {state}"
    assert fixes["files.config"].startswith(f"chmod 600 {config}")

    state.chmod(0o700)
    config.chmod(0o600)
    r.delete("travellr:maintenance")
    v = verdicts(invoke("--config", str(config), "security", "check", "--json").json())
    assert v["files.state_dir"] == v["files.config"] == v["maintenance.flag"] == "pass"


def test_tls_off_localhost() -> None:
    s = Settings(
        mongo={"uri": "mongodb://db.internal:27017/travellr"},
        redis={"url": "rediss://cache.internal:6380/0"},
        api={"url": "http://127.0.0.1:5000"},
    )
    v = {c.name: c.verdict for c in tls_checks(s)}
    assert v == {"tls.mongo.uri": "fail", "tls.redis.url": "pass", "tls.api.url": "pass"}
    s = Settings(
        mongo={"uri": "mongodb://db.internal/travellr?tls=true"},
        api={"url": "http://api.example.test"},
    )
    v = {c.name: c.verdict for c in tls_checks(s)}
    assert v["tls.mongo.uri"] == "pass" and v["tls.api.url"] == "fail"
