"""`travellr-ops health` against real servers: a backend over its own Redis and MongoDB, which
the tests stop and start behind the tool's back, as an outage would.

The module's tests share one such platform and leave it as they found it; a test that stops a
server has a platform of its own (`own_platform`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py

from cli import invoke
from fixtures_docker import ComposeStack
from fixtures_servers import ServerSet
from travellr_ops.settings import Settings

pytestmark = [pytest.mark.redis, pytest.mark.mongo]


class Platform:
    """A backend with a Redis and a MongoDB of its own (so stopping them harms no other test)."""

    def __init__(self, redis_server: Any, mongo_server: Any, backend: Any, tmp: Path) -> None:
        self.redis, self.mongo, self.backend, self.tmp = redis_server, mongo_server, backend, tmp

    def settings(self, **extra: Any) -> Settings:
        values: dict[str, Any] = {
            "platform": "none",
            "state_dir": self.tmp / "state",
            "disk_paths": [self.tmp],
            "backup": {"dir": self.tmp / "backups"},
            "mongo": {"uri": self.mongo.uri_for("travellr"), "timeout_s": 2},
            "redis": {"url": self.redis.url, "timeout_s": 2},
            "api": {"url": self.backend.url, "timeout_s": 5},
            # a loaded test machine can take 200 ms to answer; latency is not what these test
            "thresholds": {"api_response_ms": 5000},
        }
        values.update(extra)
        return Settings(**values)


@pytest.fixture(scope="module")
def shared_servers(module_servers: ServerSet) -> tuple[Any, Any, Any]:
    # health stores nothing in MongoDB: in memory, so it is thrown away without a wait
    r = module_servers.redis()
    m = module_servers.mongo(memory=True)
    b = module_servers.backend(redis_url=r.url, mongo_uri=m.uri_for("travellr"))
    return r, m, b


@pytest.fixture
def platform(shared_servers: tuple[Any, Any, Any], tmp_path: Path) -> Iterator[Platform]:
    """The module's platform, with this test's own state and backup folders."""
    yield Platform(*shared_servers, tmp_path)
    stopped = [type(s).__name__ for s in shared_servers if not s.running]
    assert not stopped, f"the test left the module's {stopped} stopped: use own_platform"


@pytest.fixture
def own_platform(
    redis_factory: Callable[[], Any],
    mongo_factory: Callable[..., Any],
    backend_factory: Callable[..., Any],
    tmp_path: Path,
) -> Platform:
    """A platform of this test's own, free to stop and start."""
    r = redis_factory()
    m = mongo_factory(memory=True)
    b = backend_factory(redis_url=r.url, mongo_uri=m.uri_for("travellr"))
    return Platform(r, m, b, tmp_path)


def _checks(result: Any) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in result.json()["checks"]}


def test_all_up_is_healthy_with_a_verdict_per_check(platform: Platform) -> None:
    result = invoke("--json", "health", settings=platform.settings())

    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["verdict"] == "healthy"
    checks = _checks(result)
    assert set(checks) == {"api", "mongodb", "redis", "disk"}
    assert all(c["verdict"] == "ok" for c in checks.values())
    assert checks["api"]["latency_ms"] > 0
    assert "replica set" in checks["mongodb"]["detail"]
    assert checks["redis"]["detail"].startswith("memory ")


def test_a_person_sees_a_table(platform: Platform) -> None:
    result = invoke("health", settings=platform.settings())

    assert result.exit_code == 0, result.stderr
    for word in ("api", "mongodb", "redis", "disk", "overall", "healthy"):
        assert word in result.stdout


def test_redis_stopped_is_down_with_a_one_line_error_then_green_when_restarted(
    own_platform: Platform,
) -> None:
    own_platform.redis.stop()
    down = invoke("--json", "health", settings=own_platform.settings())

    assert down.exit_code == 3
    checks = _checks(down)
    assert checks["redis"]["verdict"] == "down"
    assert "connection refused" in checks["redis"]["detail"]
    assert checks["mongodb"]["verdict"] == "ok"
    assert down.json()["verdict"] == "unreachable"
    assert "Traceback" not in down.stderr
    errors = [line for line in down.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: 1 of 4 checks got no answer: redis"]

    own_platform.redis.start()
    again = invoke("--json", "health", settings=own_platform.settings())
    assert again.exit_code == 0, again.stdout
    assert again.json()["verdict"] == "healthy"


def test_mongodb_stopped_is_down_and_the_backend_reports_degraded(own_platform: Platform) -> None:
    own_platform.mongo.stop()
    # the backend's driver may need a moment to give up on its pooled connection
    deadline = time.monotonic() + 15
    while True:
        down = invoke("--json", "health", settings=own_platform.settings())
        checks = _checks(down)
        if checks["api"]["verdict"] == "fail" or time.monotonic() > deadline:
            break
        time.sleep(0.5)

    assert down.exit_code == 3
    assert checks["mongodb"]["verdict"] == "down"
    # the backend answers, but says its database is failing
    assert checks["api"]["verdict"] == "fail", checks["api"]
    assert "503" in checks["api"]["detail"]

    own_platform.mongo.start()
    again = invoke("--json", "health", settings=own_platform.settings())
    assert again.exit_code == 0, again.stdout


def test_the_backend_stopped_is_down(own_platform: Platform) -> None:
    own_platform.backend.stop()
    result = invoke("--json", "health", settings=own_platform.settings())

    assert result.exit_code == 3
    assert _checks(result)["api"]["verdict"] == "down"


def test_maintenance_mode_is_reported_instead_of_alarming(platform: Platform) -> None:
    client = redis_py.Redis.from_url(platform.redis.url)
    flag = {"message": "database upgrade", "by": "ops@host", "reason": "test", "since": "now"}
    client.set("travellr:maintenance", json.dumps(flag))

    result = invoke("--json", "health", settings=platform.settings())

    assert result.exit_code == 0, result.stdout
    doc = result.json()
    assert doc["verdict"] == "maintenance"
    assert _checks(result)["api"]["verdict"] == "maintenance"
    assert "database upgrade" in _checks(result)["api"]["detail"]

    client.delete("travellr:maintenance")
    assert invoke("--json", "health", settings=platform.settings()).json()["verdict"] == "healthy"
    client.close()


def test_a_breached_threshold_is_unhealthy_exit_1(platform: Platform) -> None:
    # no real disk is 0% full: every disk check breaches a 0% threshold
    limits = {"disk_pct": 0, "api_response_ms": 5000}
    result = invoke("--json", "health", settings=platform.settings(thresholds=limits))

    assert result.exit_code == 1
    assert result.json()["verdict"] == "unhealthy"
    assert _checks(result)["disk"]["verdict"] == "warn"


def test_passwords_never_appear_in_output(platform: Platform) -> None:
    secret = "s3cret-Pa55"
    client = redis_py.Redis.from_url(platform.redis.url)
    client.config_set("requirepass", secret)
    try:
        good_url = f"redis://:{secret}@127.0.0.1:{platform.redis.port}/0"
        ok = invoke("--json", "health", settings=platform.settings(redis={"url": good_url}))
        assert _checks(ok)["redis"]["verdict"] == "ok", ok.stdout
        bad_url = f"redis://:wrong-{secret}@127.0.0.1:{platform.redis.port}/0"
        bad = invoke("health", settings=platform.settings(redis={"url": bad_url}))
        assert bad.exit_code == 3
        for result in (ok, bad):
            assert secret not in result.stdout + result.stderr
        audit = platform.tmp / "state" / "audit.log"
        assert not audit.exists() or secret not in audit.read_text()
    finally:
        authed = redis_py.Redis.from_url(f"redis://:{secret}@127.0.0.1:{platform.redis.port}/0")
        authed.config_set("requirepass", "")
        authed.close()
        client.close()


def test_twenty_endpoints_are_all_checked(platform: Platform) -> None:
    extra = [f"{platform.backend.url}/api/health?n={i}" for i in range(19)]
    result = invoke(
        "--json",
        "health",
        settings=platform.settings(api={"url": platform.backend.url, "extra_health_urls": extra}),
    )

    apis = [c for c in result.json()["checks"] if c["name"] == "api"]
    assert len(apis) == 20
    assert {c["target"] for c in apis[1:]} == set(extra)


# -- the platform's services -----------------------------------------------------------------
@pytest.mark.docker
def test_compose_services_are_checked_and_a_stopped_one_fails(
    stack: ComposeStack, tmp_path: Path
) -> None:
    s = stack.settings()
    s = s.model_copy(
        update={
            "mongo": s.mongo.model_copy(
                update={"uri": f"mongodb://127.0.0.1:{stack.ports['mongodb']}/travellr"}
            ),
            "redis": s.redis.model_copy(
                update={"url": f"redis://127.0.0.1:{stack.ports['redis']}/0"}
            ),
            "disk_paths": [tmp_path],
            "backup": s.backup.model_copy(update={"dir": tmp_path / "backups"}),
        }
    )
    result = invoke("--json", "health", settings=s)

    assert result.exit_code == 0, result.stdout + result.stderr
    services = {c["target"]: c for c in result.json()["checks"] if c["name"] == "service"}
    assert set(services) == {"compose:backend", "compose:mongodb", "compose:redis"}
    assert all(c["verdict"] == "ok" for c in services.values())

    stack.compose("stop", "backend")
    result = invoke("--json", "health", settings=s)
    assert result.exit_code == 3  # the API no longer answers
    services = {c["target"]: c for c in result.json()["checks"] if c["name"] == "service"}
    assert services["compose:backend"]["verdict"] == "fail"
    assert services["compose:backend"]["detail"].startswith("0/1 ready")


def test_an_unreachable_platform_is_down_not_a_crash(platform: Platform) -> None:
    s = platform.settings(
        platform="compose", compose={"docker_host": f"unix://{platform.tmp}/no-docker.sock"}
    )
    result = invoke("--json", "health", settings=s)

    assert result.exit_code == 3
    (service,) = [c for c in result.json()["checks"] if c["name"] == "service"]
    assert service["verdict"] == "down"
    assert "Traceback" not in result.stderr
