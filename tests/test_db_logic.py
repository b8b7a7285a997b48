"""`db` logic that needs no server: query shapes, the index a query needs, plan summaries of
MongoDB 6-8 explain documents, failure classification, usage data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo.errors import OperationFailure, ServerSelectionTimeoutError

from travellr_ops.adapters.mongo import classify
from travellr_ops.errors import UsageError
from travellr_ops.ops.db.indexes import AnalyzeReport, IndexFile, IndexInfo, IndexSpec, _unused
from travellr_ops.ops.db.queries import describe, index_for, shape, summarise
from travellr_ops.vocab.timespec import parse_since


def test_the_index_for_a_query_puts_equality_then_sort_then_range() -> None:
    keys = index_for({"status": "x", "price": {"$gte": 10}, "tripId": 4}, {"createdAt": -1})
    assert keys == [("status", 1), ("tripId", 1), ("createdAt", -1), ("price", 1)]
    assert index_for({"$and": [{"a": 1}, {"b": {"$in": [1, 2]}}]}, None) == [("a", 1), ("b", 1)]
    assert index_for({"$or": [{"a": 1}, {"b": 2}]}, None) == []


def test_shapes_hide_values_but_keep_operators() -> None:
    assert shape({"email": "a@b.c", "n": {"$gt": 3}, "d": {"$date": "2026-01-01"}}) == {
        "email": "?",
        "n": {"$gt": "?"},
        "d": "?",
    }
    text = describe("bookings", {"tripId": 4, "status": "paid"}, {"createdAt": -1})
    assert text == "bookings.find({tripId: ?, status: ?}).sort({createdAt: -1})"


def test_since_takes_durations_and_times() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert parse_since("30m", now=now) == now - timedelta(minutes=30)
    assert parse_since("1d", now=now) == now - timedelta(days=1)
    assert parse_since("2026-01-01T09:00", now=now) == datetime(2026, 1, 1, 9, tzinfo=UTC)
    with pytest.raises(UsageError):
        parse_since("soon", now=now)


def test_a_mongodb_7_slot_based_plan_is_summarised_like_a_classic_one() -> None:
    # MongoDB 7+ (SBE) nests the tree under queryPlan and adds slotBasedPlan.
    plan = {
        "queryPlanner": {
            "winningPlan": {
                "queryPlan": {
                    "stage": "FETCH",
                    "inputStage": {
                        "stage": "IXSCAN",
                        "indexName": "tripId_1_status_1",
                        "keyPattern": {"tripId": 1, "status": 1},
                    },
                },
                "slotBasedPlan": {"stages": "..."},
            },
            "rejectedPlans": [{}],
        },
        "executionStats": {
            "nReturned": 5,
            "executionTimeMillis": 2,
            "totalKeysExamined": 5,
            "totalDocsExamined": 5,
        },
    }
    s = summarise(plan)
    assert s.stages == ["FETCH", "IXSCAN"]
    assert s.index == "tripId_1_status_1" and not s.collscan
    assert s.rejected_plans == 1 and s.examined_per_returned == 1


def _selection_error(text: str) -> ServerSelectionTimeoutError:
    return ServerSelectionTimeoutError(text)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("db.example:27017: [Errno -2] Name or service not known", "dns"),
        ("db:27017: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", "tls"),
        ("127.0.0.1:1: [Errno 111] Connection refused", "refused"),
        ('No replica set members available for replica set name "rs0"', "replica_set"),
        ("No servers found yet, Timeout: 5.0s", "timeout"),
    ],
)
def test_connection_failures_are_told_apart(text: str, kind: str) -> None:
    assert classify(_selection_error(text)).kind == kind


def test_auth_failures_are_auth_problems_with_a_hint() -> None:
    failed = OperationFailure("authentication failed", code=18)
    problem = classify(failed)
    assert problem.kind == "auth" and "authSource" in problem.hint


class UsageOnly:
    """$indexStats answers as a real mongod gives them: counters with a start time."""

    database_name = "travellr"

    def __init__(self, stats: dict[str, list[dict[str, Any]]]) -> None:
        self.stats = stats

    def index_usage(self, collection: str) -> list[dict[str, Any]] | None:
        return self.stats.get(collection)


def _info(name: str, keys: list[tuple[str, Any]], **kw: Any) -> IndexInfo:
    return IndexInfo("trips", name, keys, **kw)


def test_unused_indexes_are_reported_only_where_the_server_counts_usage() -> None:
    since = {"$date": "2026-01-01T00:00:00Z"}
    indexes = {
        "trips": [
            _info("_id_", [("_id", 1)]),
            _info("price_1", [("price", 1)]),
            _info("destination_1_startDate_1", [("destination", 1), ("startDate", 1)]),
        ]
    }
    spec = IndexFile(
        Path("indexes.toml"), [IndexSpec("trips", [("destination", 1), ("startDate", 1)])], []
    )
    counted = UsageOnly(
        {
            "trips": [
                {"name": "_id_", "accesses": {"ops": 40, "since": since}},
                {"name": "price_1", "accesses": {"ops": 0, "since": since}},
                {"name": "destination_1_startDate_1", "accesses": {"ops": 0, "since": since}},
            ]
        }
    )
    report = AnalyzeReport("travellr", "config", "indexes.toml", {})
    _unused(counted, indexes, spec, report)  # type: ignore[arg-type]
    assert report.usage_data is True
    assert [(f.kind, f.subject) for f in report.findings] == [("unused", "price_1")]
    assert any("declared required but unused" in n for n in report.notes)

    # all zero and no start time (as SecantusDB answers): no usage data, no finding
    zeros = UsageOnly(
        {
            "trips": [
                {"name": i.name, "accesses": {"ops": 0, "since": None}} for i in indexes["trips"]
            ]
        }
    )
    report = AnalyzeReport("travellr", "config", "indexes.toml", {})
    _unused(zeros, indexes, spec, report)  # type: ignore[arg-type]
    assert report.usage_data is False and report.findings == []


def test_config_show_names_the_index_file_in_use(tmp_path: Path) -> None:
    from cli import invoke
    from travellr_ops.ops.db.indexes import SHIPPED_INDEXES_FILE
    from travellr_ops.settings import Settings

    rows = invoke("config", "show", "--json", settings=Settings(state_dir=tmp_path)).json()
    [row] = [r for r in rows["settings"] if r["key"] == "mongo.indexes_file"]
    assert row["value"] == str(SHIPPED_INDEXES_FILE) and row["source"] == "default"
    assert SHIPPED_INDEXES_FILE.is_file() and SHIPPED_INDEXES_FILE.parts[-3:] == (
        "travellr_ops",
        "data",
        "indexes.toml",
    )
    mine = tmp_path / "mine.toml"
    rows = invoke(
        "config",
        "show",
        "--json",
        settings=Settings(state_dir=tmp_path, mongo={"indexes_file": mine}),
    ).json()
    [row] = [r for r in rows["settings"] if r["key"] == "mongo.indexes_file"]
    assert row["value"] == str(mine)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["slow", "--since", "soon"], "--since 'soon' is not a duration or a time"),
        (["status", "--interval", "2h"], "--interval must be between 0 and 60 seconds"),
        (["status", "--interval", "0"], "--interval '0' is not a duration of more"),
        (["restart", "--timeout", "1x", "--yes"], "--timeout '1x' is not a duration"),
    ],
)
def test_bad_times_are_refused_before_mongodb_or_the_platform_is_reached(
    args: list[str], said: str, tmp_path: Path
) -> None:
    from cli import invoke
    from servers import closed_settings

    s = closed_settings(tmp_path)
    result = invoke("db", *args, settings=s)
    assert result.exit_code == 2, result.stderr
    assert said in result.stderr
