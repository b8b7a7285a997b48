"""`backup restore --with-downtime` without Docker: the platform's part (stop the backend, start
it again) is played on the stand-in backend process, while the restore and the health check
after it run against real Redis, SecantusDB and that backend. The compose stack's own test is
test_backup_compose.py."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cli import invoke
from fixtures_servers import Backend
from travellr_ops.settings import Settings

pytestmark = [pytest.mark.mongo, pytest.mark.redis]

_dbs = itertools.count()


class ProcessPlatform:
    """The platform's down/up of the backend, done to the stand-in backend process (the compose
    and Kubernetes adapters stop and start a real service the same way)."""

    name = "test"

    def __init__(self, backend: Backend, comes_back: bool = True) -> None:
        self.backend = backend
        self.comes_back = comes_back
        self.calls: list[str] = []
        self.closed = 0

    def down(self, service: str | None = None) -> None:
        self.calls.append(f"down {service}")
        self.backend.stop()

    def up(self, service: str | None = None) -> None:
        self.calls.append(f"up {service}")
        if self.comes_back:
            self.backend.start()

    def status(self, service: str | None = None) -> list[Any]:
        from travellr_ops.adapters.platform_types import ServiceStatus

        running = self.backend.running
        return [ServiceStatus("backend", self.name, running, 1, int(running))]

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def restore_case(
    redis_url: str,
    mongo_server: Any,
    backend_factory: Callable[..., Backend],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Settings, str, Any, Callable[[bool], ProcessPlatform]]]:
    """Settings for a database of this test's own with one backup of it, the client, and a
    maker of the stand-in platform (installed as the one the settings name)."""
    db = f"downtime{os.getpid()}_{next(_dbs)}"
    uri = mongo_server.uri_for(db)
    backend = backend_factory(redis_url=redis_url, mongo_uri=uri)
    settings = Settings(
        platform="compose",
        state_dir=tmp_path / "state",
        mongo={"uri": uri, "timeout_s": 2.0},
        redis={"url": redis_url},
        api={"url": backend.url, "timeout_s": 2.0},
        backup={"dir": tmp_path / "backups"},
    )
    client = mongo_server.client(db)
    client[db].things.insert_many([{"n": i} for i in range(50)])
    created = invoke("backup", "create", "--json", settings=settings)
    assert created.exit_code == 0, created.stderr
    client[db].things.delete_many({})

    def platform(comes_back: bool) -> ProcessPlatform:
        made = ProcessPlatform(backend, comes_back)
        monkeypatch.setattr("travellr_ops.adapters.platform.get_platform", lambda s: made)
        return made

    try:
        yield settings, created.json()["name"], client[db], platform
    finally:
        client.drop_database(db)
        client.close()


def test_restore_with_downtime_stops_restarts_and_closes_the_platform(
    restore_case: tuple[Settings, str, Any, Callable[[bool], ProcessPlatform]],
) -> None:
    settings, name, db, make_platform = restore_case
    platform = make_platform(True)
    result = invoke("backup", "restore", name, "--drop", "--with-downtime", "--yes", "--json",
                    settings=settings)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["downtime"] is True and doc["healthy"] is True
    assert platform.calls == ["down backend", "up backend"]
    assert platform.closed >= 1  # the platform the restore opened is closed again
    assert db.things.count_documents({}) == 50
    assert "stopping the backend" in result.stderr and "starting the backend" in result.stderr


def test_a_backend_that_stays_down_fails_after_the_configured_health_deadline(
    restore_case: tuple[Settings, str, Any, Callable[[bool], ProcessPlatform]],
) -> None:
    settings, name, db, make_platform = restore_case
    platform = make_platform(False)
    settings.backup.restore_health_timeout_s = 3.0
    started = time.monotonic()
    result = invoke("backup", "restore", name, "--drop", "--with-downtime", "--yes", "--json",
                    settings=settings)  # fmt: skip
    took = time.monotonic() - started
    assert result.exit_code == 1, result.stderr
    doc = result.json()
    assert doc["healthy"] is False and "api" in doc["health"]
    assert "not healthy after the restore" in result.stderr
    assert db.things.count_documents({}) == 50  # the restore itself went through
    assert platform.closed >= 1
    assert took < 30, took  # the setting (3 s), not a fixed minute


def test_with_downtime_and_no_platform_is_refused_before_anything_is_asked(
    restore_case: tuple[Settings, str, Any, Callable[[bool], ProcessPlatform]],
) -> None:
    settings, name, db, _ = restore_case
    settings.platform = "none"
    result = invoke("backup", "restore", name, "--drop", "--with-downtime", "--yes",
                    settings=settings)  # fmt: skip
    assert result.exit_code == 2
    assert "stopping the backend" not in result.stderr
    assert db.things.count_documents({}) == 0  # nothing restored
    assert "backup restore" not in (settings.state_dir / "audit.log").read_text()
