"""`doctor` on a sandbox of the module's own (bench/doctor/faults.py: redis-server, SecantusDB
--auth, the Node.js backend, light traffic): every sandbox fault of bench/doctor planted, the
cause doctor puts first, then repaired; a healthy platform; --fix through the Guard; a check
that hangs; bad input."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import invoke

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
        "health", "mongodb", "indexes", "cache", "api", "deploy", "maintenance", "incident",
    }  # fmt: skip
    assert all(c["state"] == "ok" for c in doc["checks"])
    human = invoke("doctor", settings=sandbox.settings())
    assert human.exit_code == 0 and "verdict: healthy" in human.stdout


@pytest.mark.parametrize("name", list(FAULTS))
def test_each_fault_is_the_top_cause(sandbox: faults.Sandbox, name: str) -> None:
    fault = FAULTS[name]
    if "tmpfs" in name and not faults.can_mount():
        from servers import need

        need("mounting a tmpfs for the full-disk fault needs root")
    fault.plant(sandbox)
    try:
        args = ["doctor", *([fault.symptom] if fault.symptom else []), "--json"]
        res = invoke(*args, settings=sandbox.settings())
    finally:
        sandbox.repair(fault)
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
    fault.plant(sandbox)
    try:
        res = invoke("doctor", "down", settings=sandbox.settings())
    finally:
        sandbox.repair(fault)
    assert res.exit_code == 1
    out = " ".join(res.stdout.split())
    assert "maintenance flag was left on" in out
    assert "Level 1" in out and "After Maintenance" in out
    assert "travellr-ops maintenance off" in out and "ops@old-host" in out


def test_fix_turns_a_forgotten_flag_off_and_checks_again(sandbox: faults.Sandbox) -> None:
    fault = FAULTS["maintenance flag forgotten"]
    fault.plant(sandbox)
    try:
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
    finally:
        sandbox.repair(fault)


def test_fix_clears_the_key_family_that_filled_redis(sandbox: faults.Sandbox) -> None:
    fault = FAULTS["redis full, noeviction"]
    fault.plant(sandbox)
    try:
        res = invoke("doctor", "cache", "--fix", "--yes", "--json", settings=sandbox.settings())
        fix = res.json()["fix"]
        assert fix["cause"] == "redis_full" and fix["action"] == "travellr-ops cache clear 'junk:*'"
        assert fix["gone"] is True, fix
        assert sandbox.redis_cli("--scan", "--pattern", "junk:*") == ""
    finally:
        sandbox.repair(fault)


def test_fix_only_suggests_a_level_2_remedy(sandbox: faults.Sandbox) -> None:
    fault = FAULTS["declared index missing"]
    fault.plant(sandbox)
    try:
        res = invoke("doctor", "slow", "--fix", "--yes", "--json", settings=sandbox.settings())
    finally:
        sandbox.repair(fault)
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
    fault.plant(sandbox)
    try:
        res = invoke("checklist", "morning", "--json", settings=sandbox.settings())
    finally:
        sandbox.repair(fault)
    steps = {s["name"]: s for s in res.json()["steps"]}
    services = steps["services"]
    assert services["verdict"] in ("fail", "unknown"), services
    assert "cause (doctor): Redis does not answer" in services["detail"]
    assert services["data"]["cause"]["id"] == "redis_down"
    assert services["data"]["cause"]["level"] == 1
