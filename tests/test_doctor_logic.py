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


# -- replication: a lag cannot be produced on a one-member SecantusDB, so here on observations
def _replica_set(*members: tuple[str, str, float | None, float | None]) -> Observation:
    return _seen(
        "mongodb",
        uri="mongodb://db1:27017/travellr",
        ok=True,
        role="primary",
        set_name="rs0",
        members=[
            {"name": n, "state": st, "health": h, "lag_s": lag, "self": n == "db1:27017"}
            for n, st, h, lag in members
        ],
        member_notes=[],
    )


def test_a_member_down_and_a_lagging_secondary_are_level_2_causes(tmp_path: Path) -> None:
    observed = _replica_set(
        ("db1:27017", "PRIMARY", 1.0, 0.0),
        ("db2:27017", "SECONDARY", 1.0, 45.0),
        ("db3:27017", "(not reachable/healthy)", 0.0, None),
    )
    causes, _ = rank([observed], _settings(tmp_path), "db")
    by_id = {c.id: c for c in causes}
    assert list(by_id) == ["mongodb_member_unhealthy", "mongodb_replication_lag"]
    down = by_id["mongodb_member_unhealthy"]
    assert down.level == 2 and "Database Connection Issues" in down.runbook
    assert "2 of 3 members healthy" in down.evidence[0]
    assert "db3:27017: (not reachable/healthy), health 0" in down.evidence[1]
    lag = by_id["mongodb_replication_lag"]
    assert lag.level == 2 and "45 s behind the primary" in lag.evidence[0]
    assert "more than 10 s behind (doctor.replication_lag_s)" in lag.evidence[1]
    assert lag.remedy is not None and lag.remedy.action is None  # only suggested


def test_a_healthy_replica_set_and_a_lag_within_the_setting_are_no_cause(tmp_path: Path) -> None:
    observed = _replica_set(
        ("db1:27017", "PRIMARY", 1.0, 0.0),
        ("db2:27017", "SECONDARY", 1.0, 8.0),
        ("db3:27017", "ARBITER", 1.0, None),
    )
    assert rank([observed], _settings(tmp_path), "db") == ([], [])
    strict = Settings(platform="none", state_dir=tmp_path, doctor={"replication_lag_s": 5.0})
    causes, _ = rank([observed], strict, "db")
    assert [c.id for c in causes] == ["mongodb_replication_lag"]


def test_a_set_without_primary_lists_its_members_in_one_cause(tmp_path: Path) -> None:
    observed = _replica_set(("db1:27017", "SECONDARY", 1.0, None), ("db2:27017", "DOWN", 0, None))
    observed.facts["problem"] = {"kind": "no_primary", "message": "is secondary", "hint": ""}
    causes, _ = rank([observed], _settings(tmp_path), "db")
    assert [c.id for c in causes] == ["mongodb_no_primary"]
    assert any("db2:27017: DOWN, health 0" in e for e in causes[0].evidence)


# -- slow operations beside a missing index: one cause for one collection ----------------------
def _slow_ops(*ops: tuple[str, str, float], level: int = 1) -> Observation:
    return _seen(
        "slow_ops",
        readable=True,
        profiler={"level": level, "name": "slow operations", "slowms": 50},
        window_s=900.0,
        min_ms=50.0,
        limit=100,
        limited=False,
        ignored_own=0,
        notes=[],
        operations=[
            {
                "time": None, "op": op, "collection": coll, "millis": ms,
                "query": f"{coll}.find({{destination: ?}})" if op == "query" else op,
                "plan": "COLLSCAN" if op == "query" else None,
                "keys_examined": 0, "docs_examined": 5000, "returned": 20,
            }
            for coll, op, ms in ops
        ],
    )  # fmt: skip


def test_slow_operations_on_a_collection_missing_its_index_join_that_cause(
    tmp_path: Path,
) -> None:
    observed = _slow_ops(("trips", "query", 420.0), ("bookings", "aggregate", 180.0))
    causes, _ = rank([_INDEX, observed], _settings(tmp_path), "slow")
    assert [c.id for c in causes] == ["missing_index", "slow_operations"]
    index, slow = causes
    assert any(
        "1 operation(s) over 50 ms on trips" in e and "420 ms trips.find" in e
        and "plan COLLSCAN, 5,000 docs examined" in e
        for e in index.evidence
    ), index.evidence  # fmt: skip
    assert "travellr-ops db slow --since 15m" in index.commands
    # the other collection's operations are a cause of their own, counting only them
    assert "recorded 1 operation(s) over 50 ms in the last 15m (1 on bookings)" in slow.evidence[0]
    assert slow.level == 2 and slow.commands[0] == "travellr-ops db slow --since 15m"
    alone, _ = rank([_INDEX, _slow_ops(("trips", "query", 420.0))], _settings(tmp_path), "slow")
    assert [c.id for c in alone] == ["missing_index"]
    no_index, _ = rank([_slow_ops(("trips", "query", 420.0))], _settings(tmp_path), "slow")
    assert [c.id for c in no_index] == ["slow_operations"]


def test_the_profiler_off_is_a_note_and_the_diagnosis_stays_healthy(tmp_path: Path) -> None:
    d = _diagnosis([_slow_ops(level=0)], _settings(tmp_path))
    assert d.exit_code == 0 and d.causes == [] and [n.id for n in d.notes] == ["profiler_off"]
    assert d.notes[0].commands == ["travellr-ops db profile on --slowms 50"]
