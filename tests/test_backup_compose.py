"""`backup restore --with-downtime`: the runbook's restore procedure on the real compose stack
(stop the backend, restore, start it, health check)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cli import invoke
from fixtures_docker import ComposeStack

pytestmark = [pytest.mark.docker, pytest.mark.mongo]


def test_restore_with_downtime_stops_and_restarts_the_backend(
    stack: ComposeStack, tmp_path: Path
) -> None:
    from pymongo import MongoClient

    uri = f"mongodb://127.0.0.1:{stack.ports['mongodb']}/backupdowntime"
    s = stack.settings()
    s.mongo.uri = uri
    s.redis.url = f"redis://127.0.0.1:{stack.ports['redis']}/0"
    s.backup.dir = tmp_path / "backups"
    client: Any = MongoClient(uri, serverSelectionTimeoutMS=5000)
    client.backupdowntime.things.insert_many([{"n": i} for i in range(100)])
    created = invoke("backup", "create", "--json", settings=s)
    assert created.exit_code == 0, created.stderr
    name = created.json()["name"]
    client.backupdowntime.things.delete_many({})
    started_before = stack.container("backend").attrs["State"]["StartedAt"]
    mongo_before = stack.container("mongodb").attrs["State"]["StartedAt"]

    result = invoke("backup", "restore", name, "--drop", "--with-downtime", "--yes", "--json",
                    settings=s)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["downtime"] is True and doc["healthy"] is True
    assert "stopping the backend" in result.stderr
    # the downtime stops and starts the backend only: mongodb is neither recreated nor restarted
    assert stack.container("mongodb").attrs["State"]["StartedAt"] == mongo_before
    assert client.backupdowntime.things.count_documents({}) == 100
    assert stack.healthy("backend")
    assert stack.container("backend").attrs["State"]["StartedAt"] != started_before
    client.drop_database("backupdowntime")
    client.close()
