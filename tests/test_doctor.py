"""`doctor` on a sandbox of the module's own (bench/doctor/faults.py: redis-server, SecantusDB
--auth, the Node.js backend, light traffic): every sandbox fault of bench/doctor planted, the
cause doctor puts first, then repaired; a healthy platform; --fix through the Guard; a check
that hangs; bad input."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli import invoke
from travellr_ops.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "doctor"))
import faults

pytestmark = [pytest.mark.redis, pytest.mark.mongo]

FAULTS = {f.name: f for f in faults.SANDBOX_FAULTS}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[faults.Sandbox]:
    from fixtures_servers import ServerStartError
    from servers import need

    try:
        sb = faults.Sandbox(tmp_path_factory.mktemp("doctor-sandbox")).start()
    except ServerStartError as exc:
        need(str(exc))
    yield sb
    sb.stop()


def test_a_healthy_platform_has_no_cause(sandbox: faults.Sandbox) -> None:
    res = invoke("doctor", "--json", settings=sandbox.settings())
    assert res.exit_code == 0, res.stdout + res.stderr
    doc = res.json()
    assert doc["verdict"] == "healthy" and doc["causes"] == [] and doc["top"] is None
    assert {c["check"] for c in doc["checks"]} == {
        "health", "mongodb", "indexes", "slow_ops", "cache", "api", "memory_trend", "deploy",
        "maintenance", "incident",
    }  # fmt: skip
    assert all(c["state"] == "ok" for c in doc["checks"])
    # what doctor could not look at is said, and is no reason to doubt the verdict
    notes = {n["id"]: n for n in doc["notes"]}
    assert "profiler_off" in notes and "db profile on" in notes["profiler_off"]["commands"][0]
    assert "(a trend needs 5 at least" in notes["memory_trend_insufficient"]["evidence"][0]
    human = invoke("doctor", settings=sandbox.settings())
    assert human.exit_code == 0 and "verdict: healthy" in human.stdout
    assert "note: the MongoDB profiler is off" in human.stdout


def test_a_healthy_one_member_replica_set_is_in_the_facts_and_no_cause(
    sandbox: faults.Sandbox,
) -> None:
    res = invoke("doctor", "db", "--json", settings=sandbox.settings())
    doc = res.json()
    assert res.exit_code == 0 and doc["causes"] == [], doc["causes"]
    # SecantusDB is a one-member replica set: its member is in the facts, and healthy
    mongodb = next(c for c in doc["checks"] if c["check"] == "mongodb")["facts"]
    assert mongodb["set_name"] == "secantus" and mongodb["member_notes"] == []
    [member] = mongodb["members"]
    assert member["state"] == "PRIMARY" and member["health"] == 1 and member["self"] is True
    assert member["name"].endswith(f":{sandbox.mongo.port}") and member["lag_s"] == 0


@pytest.mark.parametrize("name", list(FAULTS))
def test_each_fault_is_the_top_cause(sandbox: faults.Sandbox, name: str) -> None:
    fault = FAULTS[name]
    if "tmpfs" in name and not faults.can_mount():
        from servers import need

        need("mounting a tmpfs for the full-disk fault needs root")
    with sandbox.planted(fault):
        args = ["doctor", *([fault.symptom] if fault.symptom else []), "--json"]
        res = invoke(*args, settings=sandbox.settings())
    doc = res.json()
    assert res.exit_code == 1, doc
    top = doc["top"]
    assert top["id"] == fault.expected, [c["id"] for c in doc["causes"]]
    # what a person acts on: the values seen, the runbook's section, commands, the level
    assert top["evidence"] and top["commands"] and top["runbook"]
    assert top["level"] in (1, 2, 3)
    assert faults.PASSWORD not in res.stdout + res.stderr  # the URIs it shows are masked
    assert "wrong-pw" not in res.stdout + res.stderr


def test_the_api_answers_503_names_the_forgotten_maintenance_flag(
    sandbox: faults.Sandbox,
) -> None:
    fault = FAULTS["maintenance flag forgotten"]
    with sandbox.planted(fault):
        res = invoke("doctor", "down", settings=sandbox.settings())
    assert res.exit_code == 1
    out = " ".join(res.stdout.split())
    assert "maintenance flag was left on" in out
    assert "Level 1" in out and "After Maintenance" in out
    assert "travellr-ops maintenance off" in out and "ops@old-host" in out


def test_fix_turns_a_forgotten_flag_off_and_checks_again(sandbox: faults.Sandbox) -> None:
    fault = FAULTS["maintenance flag forgotten"]
    with sandbox.planted(fault):
        s = sandbox.settings()
        dry = invoke("doctor", "down", "--fix", "--dry-run", "--json", settings=s)
        assert dry.json()["fix"]["dry_run"] is True
        assert sandbox.redis_cli("exists", "travellr:maintenance") == "1"  # nothing changed
        refused = invoke("doctor", "down", "--fix", settings=s)  # no terminal, no --yes
        assert refused.exit_code == 4
        assert sandbox.redis_cli("exists", "travellr:maintenance") == "1"
        done = invoke("doctor", "down", "--fix", "--yes", "--json", settings=s)
        fix = done.json()["fix"]
        assert fix["applied"] and fix["cause"] == "maintenance_forgotten", fix
        assert fix["gone"] is True and done.exit_code == 0, fix
        assert sandbox.redis_cli("exists", "travellr:maintenance") == "0"
        audit = (s.state_dir / "audit.log").read_text()
        assert "maintenance off" in audit


def test_fix_clears_the_key_family_that_filled_redis(sandbox: faults.Sandbox) -> None:
    fault = FAULTS["redis full, noeviction"]
    with sandbox.planted(fault):
        res = invoke("doctor", "cache", "--fix", "--yes", "--json", settings=sandbox.settings())
        fix = res.json()["fix"]
        assert fix["cause"] == "redis_full" and fix["action"] == "travellr-ops cache clear 'junk:*'"
        assert fix["gone"] is True, fix
        assert sandbox.redis_cli("--scan", "--pattern", "junk:*") == ""


def test_fix_only_suggests_a_level_2_remedy(sandbox: faults.Sandbox) -> None:
    fault = FAULTS["declared index missing"]
    with sandbox.planted(fault):
        res = invoke("doctor", "slow", "--fix", "--yes", "--json", settings=sandbox.settings())
    fix = res.json()["fix"]
    assert res.exit_code == 1 and fix["applied"] is False
    assert "Level 2" in fix["action"] and "db indexes ensure" in fix["action"]


def test_a_hung_check_is_cut_and_named_and_fix_does_nothing(
    sandbox: faults.Sandbox, tmp_path: Path
) -> None:
    import socket

    hole = socket.socket()  # accepts connections (the kernel's backlog), never answers
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    try:
        port = hole.getsockname()[1]
        s = sandbox.settings(
            redis={"url": f"redis://127.0.0.1:{port}/0", "timeout_s": 30.0},
            doctor={"check_timeout_s": 1.0, "client_timeout_s": 30.0},
        )
        started = time.monotonic()
        res = invoke("doctor", "cache", "--fix", "--yes", "--json", settings=s)
        took = time.monotonic() - started
    finally:
        hole.close()
    doc = res.json()["diagnosis"]
    assert res.exit_code == 3, doc
    assert any(u.startswith("cache: no answer within 1 s") for u in doc["unreachable"])
    assert res.json()["fix"]["applied"] is False
    assert "inconclusive" in res.json()["fix"]["action"]
    assert took < 10  # the hung Redis did not hold doctor for its 30 s


def test_an_unknown_symptom_lists_the_valid_ones(sandbox: faults.Sandbox) -> None:
    res = invoke("doctor", "slowness", settings=sandbox.settings())
    assert res.exit_code == 2
    for word in ("down", "db", "memory", "cache", "cpu", "slow", "leak"):
        assert word in res.stderr


def test_the_morning_checklist_names_the_cause_of_a_failed_step(sandbox: faults.Sandbox) -> None:
    fault = FAULTS["redis stopped"]
    with sandbox.planted(fault):
        res = invoke("checklist", "morning", "--json", settings=sandbox.settings())
    steps = {s["name"]: s for s in res.json()["steps"]}
    services = steps["services"]
    assert services["verdict"] in ("fail", "unknown"), services
    assert "cause (doctor): Redis does not answer" in services["detail"]
    assert services["data"]["cause"]["id"] == "redis_down"
    assert services["data"]["cause"]["level"] == 1


def _profiled(sandbox: faults.Sandbox, min_ms: float) -> int:
    """Slow operations in system.profile of the last 15 minutes, counted by pymongo itself
    (explains left out, as doctor leaves them out)."""
    from datetime import UTC, datetime, timedelta

    client = faults._client(sandbox)
    try:
        return int(
            client.travellr["system.profile"].count_documents(
                {
                    "ts": {"$gte": datetime.now(UTC) - timedelta(minutes=15)},
                    "millis": {"$gte": min_ms},
                    "command.explain": {"$exists": False},
                }
            )
        )
    finally:
        client.close()


def test_slow_operations_the_profiler_recorded_are_a_level_2_cause(
    sandbox: faults.Sandbox,
) -> None:
    fault = FAULTS["slow report aggregation profiled"]
    s = sandbox.settings()
    with sandbox.planted(fault):
        before = _profiled(sandbox, s.thresholds.db_query_ms)
        res = invoke("doctor", "cpu", "--json", settings=s)
        after = _profiled(sandbox, s.thresholds.db_query_ms)
        human = invoke("doctor", "cpu", settings=s)
    doc = res.json()
    assert res.exit_code == 1, doc
    top = doc["top"]
    assert top["id"] == "slow_operations" and top["level"] == 2, doc["causes"]
    assert top["remedy"]["level"] == 2 and top["remedy"]["action"] is None  # only suggested
    assert top["commands"] == [
        "travellr-ops db slow --since 15m",
        "travellr-ops db indexes analyze",
    ]
    # the count is the profiler's, as an independent client counts it
    first = top["evidence"][0]
    count = int(first.split("recorded ")[1].split(" ")[0])
    assert faults.REPORT_RUNS <= before <= count <= after, (first, before, after)
    assert f"over {s.thresholds.db_query_ms:g} ms in the last 15m" in first
    slowest = [e for e in top["evidence"] if e.startswith("slowest: ")]
    assert slowest and any("bookings aggregate (command)" in e for e in slowest), slowest
    # SecantusDB records no planSummary nor docsExamined: said, not invented
    assert all("plan not recorded by the server" in e for e in slowest)
    millis = [float(e.split("slowest: ")[1].split(" ms")[0]) for e in slowest]
    assert millis == sorted(millis, reverse=True) and millis[-1] >= s.thresholds.db_query_ms
    # the ranked table a person reads
    assert human.exit_code == 1
    assert "MongoDB ran" in human.stdout and "slow operation(s) in the last 15m" in human.stdout
    assert "travellr-ops db slow --since 15m" in human.stdout and "Level 2" in human.stdout
    # and once repaired (profiler off, its record dropped) nothing is left of it
    again = invoke("doctor", "cpu", "--json", settings=s).json()
    assert "slow_operations" not in [c["id"] for c in again["causes"]]


def test_slow_searches_on_a_collection_missing_its_index_are_one_cause(
    sandbox: faults.Sandbox,
) -> None:
    fault = FAULTS["index missing, slow searches profiled"]
    with sandbox.planted(fault):
        res = invoke("doctor", "slow", "--json", settings=sandbox.settings())
    doc = res.json()
    ids = [c["id"] for c in doc["causes"]]
    assert doc["top"]["id"] == "missing_index" and "slow_operations" not in ids, ids
    evidence = doc["top"]["evidence"]
    profiled = [e for e in evidence if e.startswith("db slow: the profiler recorded")]
    assert profiled and "on trips" in profiled[0], evidence
    assert "trips.find({destination: ?}).sort({startDate: 1})" in profiled[0]
    assert "travellr-ops db slow --since 15m" in doc["top"]["commands"]
    # the profiler's record is the one the slow-operations check read
    seen = next(c for c in doc["checks"] if c["check"] == "slow_ops")["facts"]
    assert any(op["collection"] == "trips" for op in seen["operations"])


def _record_memory(settings: Settings, series: dict[str, list[float]], every_s: float) -> None:
    """Monitor samples of each service's memory_pct, the newest now, written as the monitor
    writes them (ops.monitor.history.append into the state directory's store)."""
    from travellr_ops.ops.monitor.history import append, open_history
    from travellr_ops.ops.monitor.metrics import Sample, judged
    from travellr_ops.runtime import Runtime

    n = max(len(v) for v in series.values())
    now = time.time()
    with Runtime(settings).store() as store:  # as `monitor once` records its sample
        for i in range(n):
            metrics = [
                judged(
                    "memory_pct",
                    values[i],
                    "%",
                    settings.thresholds.memory_pct,
                    subject=service,
                    source="local process",
                    detail="pid 1 test",
                )
                for service, values in series.items()
                if i < len(values)
            ]
            sample = Sample(now - (n - 1 - i) * every_s, 2.0, 10.0, None, metrics)
            append(open_history(store), sample, settings.monitor.retention_days)


def test_memory_growing_over_the_monitors_samples_is_a_cause(
    sandbox: faults.Sandbox, tmp_path: Path
) -> None:
    import psutil

    total = psutil.virtual_memory().total
    # the backend grows 400 MB per 12 samples, Redis stays where it is: 13 samples 290 s
    # apart (58 min, inside the hour doctor reads), each rounded to 0.1 % as the monitor does
    rising = [round((300e6 + 400e6 * k / 12) / total * 100, 1) for k in range(13)]
    flat = [round(200e6 / total * 100 + (0.1 if k % 2 else 0.0), 1) for k in range(13)]

    def doctor_leak(state: str, *json: str) -> Any:
        # a store of its own per run: doctor's `monitor once` sample adds real memory readings
        s = sandbox.settings(state_dir=tmp_path / state)
        _record_memory(s, {"backend": rising, "redis": flat}, 290)
        return invoke("doctor", "leak", *json, settings=s)

    res = doctor_leak("json", "--json")
    doc = res.json()
    assert res.exit_code == 1, doc
    ids = [c["id"] for c in doc["causes"]]
    assert doc["top"]["id"] == "memory_leak_backend" and "memory_leak_redis" not in ids, ids
    top = doc["top"]
    assert top["level"] == 1 and "Restart service periodically" in top["runbook"]
    assert top["commands"][-1] == "travellr-ops service profile backend --leak 10m"
    rate = float(top["title"].split("grows ")[1].split(" MB/h")[0])
    assert 350 <= rate <= 480, top["title"]  # 400 MB / 58 min = 414 MB/h, and the rounding
    assert "13 samples in 58 min" in top["evidence"][0]
    human = doctor_leak("human")
    assert human.exit_code == 1
    assert "memory of backend grows" in human.stdout and "Memory Leaks" in human.stdout


def test_too_few_memory_samples_are_a_note_not_a_verdict(
    sandbox: faults.Sandbox, tmp_path: Path
) -> None:
    s = sandbox.settings(state_dir=tmp_path / "state")
    _record_memory(s, {"backend": [2.0, 2.5, 3.0]}, 60)
    res = invoke("doctor", "leak", "--json", settings=s)
    doc = res.json()
    assert res.exit_code == 0 and doc["verdict"] == "healthy", doc
    [note] = [n for n in doc["notes"] if n["id"] == "memory_trend_insufficient"]
    assert "backend 3 over 2m (a trend needs 5 at least, over 30m" in note["evidence"][0]
