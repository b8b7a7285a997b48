"""`backup --metrics-file`: the node_exporter textfile, read back with Prometheus's own parser.

(`monitor once --metrics-file` is checked the same way in test_monitor.py: both go through
travellr_ops.prometheus.write_textfile.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cli import invoke
from fixtures_servers import MongoServer
from travellr_ops.settings import Settings

pytestmark = [pytest.mark.mongo]


def families(path: Path) -> dict[str, object]:
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f for f in text_string_to_metric_families(path.read_text())}


def test_backup_metrics_file_parses_as_documented_gauges(
    mongo_factory: Callable[..., MongoServer], tmp_path: Path
) -> None:
    server = mongo_factory(memory=True)
    client = server.client()
    try:
        client.travellr.users.insert_many([{"n": i} for i in range(25)])
    finally:
        client.close()
    settings = Settings(
        mongo={"uri": server.uri, "timeout_s": 3.0},
        backup={"dir": tmp_path / "backups"},
        state_dir=tmp_path / "state",
        api={"url": "http://127.0.0.1:9"},
    )
    prom = tmp_path / "textfile" / "travellr_backup.prom"
    assert invoke("backup", "create", "--metrics-file", str(prom), settings=settings).exit_code == 0
    verified = invoke("backup", "verify", "--metrics-file", str(prom), settings=settings)
    assert verified.exit_code == 0, verified.stderr

    found = families(prom)
    # every family is a gauge with its HELP text: Prometheus shows none of them as "untyped"
    for family in found.values():
        assert family.type == "gauge", family  # type: ignore[attr-defined]
        assert family.documentation, family  # type: ignore[attr-defined]
    value = {
        (s.name, s.labels.get("command", "")): s.value
        for f in found.values()
        for s in f.samples  # type: ignore[attr-defined]
    }
    assert value["travellr_backup_last_run_success", "verify"] == 1
    assert value["travellr_backup_count", ""] == 1
    assert value["travellr_backup_last_documents", ""] == 25
    assert value["travellr_backup_last_verify_ok", ""] == 1
    assert value["travellr_backup_last_size_bytes", ""] > 0
    assert not [p for p in prom.parent.iterdir() if p != prom]  # atomic: no temporary left

    # a failed run is recorded too, in the same parseable format
    settings.mongo.uri = "mongodb://127.0.0.1:9/travellr"
    settings.mongo.timeout_s = 0.3
    failed = invoke("backup", "create", "--metrics-file", str(prom), settings=settings)
    assert failed.exit_code == 3
    samples = families(prom)["travellr_backup_last_run_success"].samples  # type: ignore[attr-defined]
    assert [(s.labels["command"], s.value) for s in samples] == [("create", 0)]
