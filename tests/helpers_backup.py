"""What the backup tests share: settings for a server's database, a seed of many BSON types
and its byte-for-byte state, backups made through the CLI, and failures armed on the server
(its test-only `configureFailPoint`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from cli import invoke
from fixtures_servers import MongoServer
from travellr_ops.settings import Settings


def settings_for(uri: str, tmp_path: Path, **backup: Any) -> Settings:
    return Settings(
        mongo={"uri": uri, "timeout_s": 3.0},
        backup={"dir": tmp_path / "backups", **backup},
        state_dir=tmp_path / "state",
        api={"url": "http://127.0.0.1:9"},
    )


def seed(server: MongoServer, db: str, users: int = 500) -> None:
    """Documents of many BSON types, and indexes of several kinds."""
    from bson import Binary, Decimal128, Int64, ObjectId, Regex

    client = server.client()
    d = client[db]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    d.users.insert_many(
        [
            {
                "_id": ObjectId(),
                "email": f"user{i}@example.com",
                "age": Int64(20 + i % 50),
                "balance": Decimal128(Decimal(f"{i}.25")),
                "createdAt": now + timedelta(minutes=i),
                "tags": ["a", "b", {"nested": [1, 2.5, None]}],
                "avatar": Binary(bytes([i % 256]) * 16),
                "pattern": Regex("^x", "i"),
                "active": i % 2 == 0,
            }
            for i in range(users)
        ]
    )
    d.users.create_index("email", unique=True)
    d.trips.insert_many([{"_id": i, "dest": f"city{i % 7}", "price": 10.5 * i} for i in range(300)])
    d.trips.create_index([("dest", 1), ("price", -1)], name="dest_price")
    # far in the future: the TTL monitor must not delete them while a test compares states
    expires = datetime(2099, 1, 1, tzinfo=UTC)
    d.searches.insert_many([{"q": "beach", "at": expires, "n": i} for i in range(200)])
    d.searches.create_index("at", expireAfterSeconds=3600)
    d.searches.create_index("q", sparse=True)
    client.close()


def raw_state(server: MongoServer, db: str) -> dict[str, list[bytes]]:
    """Every collection's documents as raw BSON, sorted (a byte-for-byte comparison)."""
    from bson import decode_iter
    from bson.raw_bson import RawBSONDocument

    client = server.client()
    state = {}
    for name in sorted(client[db].list_collection_names()):
        docs: list[bytes] = []
        for batch in client[db][name].find_raw_batches({}):
            docs.extend(
                d.raw for d in decode_iter(batch, codec_options=_raw_options(RawBSONDocument))
            )
        state[name] = sorted(docs)
    client.close()
    return state


def _raw_options(cls: Any) -> Any:
    from bson.codec_options import CodecOptions

    return CodecOptions(document_class=cls)


def backup_names(s: Settings) -> list[str]:
    result = invoke("backup", "list", "--json", settings=s)
    return [b["name"] for b in result.json()["backups"]]


def create(s: Settings, *args: str) -> str:
    result = invoke("backup", "create", "--json", *args, settings=s)
    assert result.exit_code == 0, result.stderr
    return str(result.json()["name"])


def fail_command(server: MongoServer, commands: list[str], mode: Any = "alwaysOn", **data: Any):
    client = server.client()
    client.admin.command(
        "configureFailPoint",
        "failCommand",
        mode=mode,
        data={"failCommands": commands, "appName": "travellr-ops", **data},
    )
    client.close()


def fail_off(server: MongoServer) -> None:
    client = server.client()
    client.admin.command("configureFailPoint", "failCommand", mode="off")
    client.close()


def spawn_create(s: Settings, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TRAVELLR_MONGO__URI": s.mongo.uri,
        "TRAVELLR_BACKUP__DIR": str(s.backup.dir),
        "TRAVELLR_STATE_DIR": str(s.state_dir),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "travellr_ops", "backup", "create"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )


def wait_until(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
