"""doctor's rules and verdicts on hand-made observations: the ranking, what is a fault and what
an explanation, the exit codes, and what --fix refuses before it would touch anything (logic
that needs no server; the faults themselves are in test_doctor*.py, on real servers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from travellr_ops.ops.doctor import Diagnosis, Observation, fix
from travellr_ops.ops.doctor.rules import rank
from travellr_ops.runtime import Runtime
from travellr_ops.settings import Settings


def _settings(tmp_path: Path) -> Settings:
    return Settings(platform="none", state_dir=tmp_path / "state")


def _seen(check: str, **facts: Any) -> Observation:
    return Observation(check, check, "ok", 0.1, "", facts)


def _health(**verdicts: tuple[str, str]) -> Observation:
    checks = [
        {"name": name, "target": name, "verdict": v, "latency_ms": 1.0, "detail": d}
        for name, (v, d) in verdicts.items()
    ]
    return _seen("health", verdict="x", checks=checks, maintenance=None)


_INDEX = Observation(
    "indexes", "db indexes analyze", "ok", 0.1, "",
    {
        "findings": [
            {
                "kind": "collscan", "collection": "trips", "subject": "find(...)",
                "detail": "COLLSCAN over 5,000 documents", "command": "db.trips.createIndex(...)",
                "declared": True,
            }
        ]
    },
)  # fmt: skip


def _metric(name: str, value: float, threshold: float, verdict: str = "breach") -> dict[str, Any]:
    return {
        "key": name, "name": name, "subject": "", "value": value, "unit": "ms",
        "verdict": verdict, "threshold": threshold, "detail": "slowest /api/x",
    }  # fmt: skip


def test_a_failing_dependency_ranks_above_the_api_trouble_it_causes(tmp_path: Path) -> None:
    observations = [
        _health(api=("down", "connection refused")),
        _seen(
            "mongodb",
            uri="mongodb://127.0.0.1:1/travellr",
            problem={"kind": "refused", "message": "connection refused", "hint": ""},
        ),
    ]
    causes, _ = rank(observations, _settings(tmp_path), None)
    assert [c.id for c in causes] == ["mongodb_down", "backend_down"]
    assert causes[0].level == 1 and "Database Connection Issues" in causes[0].runbook
    assert causes[0].remedy is None  # platform "none": travellr-ops does not run MongoDB


def test_the_symptom_given_puts_its_own_cause_first(tmp_path: Path) -> None:
    cache = {
        "reachable": True, "used_memory": 1, "maxmemory": 0, "policy": "noeviction",
        "oom_errors_window": 0, "oom_errors": 0, "window_hit_rate_pct": 2.0,
        "window_lookups": 200, "hit_rate_pct": 70.0, "usual_hit_rate_pct": 75.0,
        "threshold_pct": 80.0, "keys": 3, "window_s": 1.0, "prefixes": [], "bigkeys": [],
    }  # fmt: skip
    observations = [_seen("cache", **cache), _INDEX]
    plain, _ = rank(observations, _settings(tmp_path), None)
    assert [c.id for c in plain] == ["missing_index", "cache_cold"]
    asked, _ = rank(observations, _settings(tmp_path), "cache")
    assert [c.id for c in asked] == ["cache_cold", "missing_index"]


def test_a_slow_api_beside_a_cold_cache_is_put_down_to_the_cache(tmp_path: Path) -> None:
    api = _seen("api", metrics=[_metric("api_response_p95_ms", 900.0, 200.0)], maintenance=None)
    alone, _ = rank([api], _settings(tmp_path), "slow")
    assert [c.id for c in alone] == ["slow_api"]
    assert "slowest /api/x" in alone[0].evidence[0]


def test_maintenance_inside_its_window_is_an_explanation_not_a_fault(tmp_path: Path) -> None:
    flag = {"on": True, "since": "2026-12-03T01:00:00+00:00", "by": "ops@host", "message": "m"}
    deliberate = _seen(
        "maintenance", window={"started": 1.0, "until": None}, forgotten=False, **flag
    )
    causes, notes = rank([deliberate], _settings(tmp_path), "down")
    assert causes == [] and [n.id for n in notes] == ["maintenance_on"]
    forgotten = _seen("maintenance", window=None, last_window=None, forgotten=True, **flag)
    causes, _ = rank([forgotten], _settings(tmp_path), "down")
    assert causes[0].id == "maintenance_forgotten"
    assert causes[0].remedy is not None and causes[0].remedy.action == "maintenance_off"


def _diagnosis(observations: list[Observation], settings: Settings) -> Diagnosis:
    causes, notes = rank(observations, settings, None)
    unreachable = [f"{o.check}: {o.summary}" for o in observations if o.state == "unknown"]
    return Diagnosis(None, causes, notes, observations, 0.1, 0.1, unreachable)


def test_exit_codes_and_what_fix_refuses(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    cut = Observation("cache", "cache stats", "unknown", 5.0, "no answer within 5 s")
    inconclusive = _diagnosis([cut], s)
    assert inconclusive.exit_code == 3 and inconclusive.top is None
    assert "inconclusive" in fix(Runtime(s), inconclusive).action
    assert _diagnosis([], s).exit_code == 0
    level2 = _diagnosis([_INDEX, cut], s)
    assert level2.exit_code == 1 and level2.top is not None and level2.top.level == 2
    refused = fix(Runtime(s), level2)
    assert not refused.applied and "Level 2" in refused.action
    assert "db indexes ensure" in refused.action
