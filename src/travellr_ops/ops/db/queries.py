"""Queries: explain plans for people, query shapes, the profiler and its slow operations."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from travellr_ops.adapters.mongo import MongoAdapter
from travellr_ops.errors import UsageError
from travellr_ops.safety import Change, Guard

# --------------------------------------------------------------------------------- shapes

PLACEHOLDER = "?"
_RANGE_OPS = frozenset(
    {"$gt", "$gte", "$lt", "$lte", "$ne", "$nin", "$regex", "$exists", "$not", "$type"}
)


def shape(value: Any) -> Any:
    """A filter with its values replaced by "?", operators kept: what a query looks like."""
    if isinstance(value, Mapping):
        if (
            value
            and all(str(k).startswith("$") for k in value)
            and any(str(k) in ("$date", "$oid", "$numberLong", "$numberDecimal") for k in value)
        ):
            return PLACEHOLDER  # an Extended JSON value, not an operator
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return PLACEHOLDER


def describe(collection: str, filter: Mapping[str, Any], sort: Mapping[str, Any] | None) -> str:
    """``bookings.find({tripId: ?, status: ?}).sort({createdAt: -1})``, for people."""
    text = f"{collection}.find({_js(shape(filter))})"
    if sort:
        text += f".sort({_js(dict(sort))})"
    return text


def _js(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_js(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_js(v) for v in value) + "]"
    return str(value)


def index_for(filter: Mapping[str, Any], sort: Mapping[str, Any] | None) -> list[tuple[str, int]]:
    """The index that serves a query best, by the equality-sort-range rule.

    Equality fields first (in the filter's order), then the sort's fields with their
    directions, then fields compared by range. Fields under $or are left out (each branch
    needs its own index).
    """
    equality: list[str] = []
    ranges: list[str] = []

    def visit(doc: Mapping[str, Any]) -> None:
        for key, value in doc.items():
            if key == "$and" and isinstance(value, list):
                for part in value:
                    if isinstance(part, Mapping):
                        visit(part)
                continue
            if key.startswith("$"):
                continue
            ops = set(value) if isinstance(value, Mapping) else set()
            if ops and all(op.startswith("$") for op in ops) and ops & _RANGE_OPS:
                ranges.append(key)
            else:
                equality.append(key)

    visit(filter)
    keys: list[tuple[str, int]] = []
    for name in equality:
        if name not in (k for k, _ in keys):
            keys.append((name, 1))
    for name, direction in (sort or {}).items():
        if name not in (k for k, _ in keys):
            keys.append((name, -1 if _num(direction) < 0 else 1))
    for name in ranges:
        if name not in (k for k, _ in keys):
            keys.append((name, 1))
    return keys


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 1.0


def mongosh_keys(keys: list[tuple[str, Any]]) -> str:
    return "{" + ", ".join(f"{_quote(k)}: {_js_value(v)}" for k, v in keys) + "}"


def _quote(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_$][\w$]*", name) else f'"{name}"'


def _js_value(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


# -------------------------------------------------------------------------------- explain


@dataclass
class PlanSummary:
    stages: list[str]  # the winning plan from its top stage down: LIMIT > FETCH > IXSCAN
    index: str | None  # the index the winning plan scans (None for a collection scan)
    index_keys: dict[str, Any] | None
    collscan: bool
    in_memory_sort: bool
    keys_examined: int
    docs_examined: int
    returned: int
    time_ms: float
    rejected_plans: int

    @property
    def examined_per_returned(self) -> float:
        return max(self.keys_examined, self.docs_examined) / max(self.returned, 1)


def summarise(plan: Mapping[str, Any]) -> PlanSummary:
    """A person's view of an explain("executionStats") result."""
    planner = plan.get("queryPlanner", {})
    winning = planner.get("winningPlan", {})
    # MongoDB 7+ with the slot-based engine wraps the classic-looking tree in "queryPlan";
    # a mongos explain has one winning plan per shard (the first stands for all here).
    if "queryPlan" in winning:
        winning = winning["queryPlan"]
    if winning.get("shards"):
        winning = winning["shards"][0].get("winningPlan", {})
        winning = winning.get("queryPlan", winning)
    stages: list[str] = []
    index: str | None = None
    index_keys: dict[str, Any] | None = None
    node: Mapping[str, Any] | None = winning
    while node:
        stage = str(node.get("stage", "?"))
        stages.append(stage)
        if stage in ("IXSCAN", "EXPRESS_IXSCAN", "IDHACK", "EXPRESS_IDHACK") and index is None:
            index = node.get("indexName") or ("_id_" if "IDHACK" in stage else None)
            index_keys = node.get("keyPattern")
        inputs = node.get("inputStages")
        node = node.get("inputStage") or (inputs[0] if inputs else None)
    stats = plan.get("executionStats", {})
    return PlanSummary(
        stages=stages,
        index=index,
        index_keys=index_keys,
        collscan="COLLSCAN" in stages,
        in_memory_sort="SORT" in stages,
        keys_examined=int(stats.get("totalKeysExamined", 0)),
        docs_examined=int(stats.get("totalDocsExamined", 0)),
        returned=int(stats.get("nReturned", 0)),
        time_ms=float(stats.get("executionTimeMillis", 0)),
        rejected_plans=len(planner.get("rejectedPlans", [])),
    )


@dataclass
class ExplainReport:
    collection: str
    query: str  # the shape, values hidden
    summary: PlanSummary
    verdict: str  # ok, collscan, poor_ratio, in_memory_sort
    suggested_index: str | None
    plan: dict[str, Any]


def explain(
    mongo: MongoAdapter,
    collection: str,
    filter_json: str,
    sort_json: str | None,
    limit: int | None,
    max_ratio: float,
) -> ExplainReport:
    from travellr_ops.adapters.mongo import parse_document

    filter = parse_document(filter_json, "--filter")
    sort = parse_document(sort_json, "--sort") if sort_json else None
    if sort and any(_num(v) not in (1.0, -1.0) for v in sort.values()):
        raise UsageError("--sort directions must be 1 or -1", hint="e.g. --sort '{\"date\": -1}'")
    if limit is not None and limit < 0:
        raise UsageError("--limit must not be negative")
    plan = mongo.explain_find(collection, filter, sort, limit)
    summary = summarise(plan)
    verdict = "ok"
    if summary.collscan:
        verdict = "collscan"
    elif summary.examined_per_returned > max_ratio:
        verdict = "poor_ratio"
    elif summary.in_memory_sort:
        verdict = "in_memory_sort"
    keys = index_for(filter, sort)
    suggestion = (
        f"db.{collection}.createIndex({mongosh_keys(list(keys))})"
        if verdict != "ok" and keys
        else None
    )
    return ExplainReport(
        collection, describe(collection, filter, sort), summary, verdict, suggestion, plan
    )


# ------------------------------------------------------------------------------- profiler

LEVELS = {0: "off", 1: "slow operations", 2: "all operations"}


@dataclass
class ProfileStatus:
    database: str
    level: int
    level_name: str
    slowms: int | None
    sample_rate: float | None
    previous_level: int | None = None
    changed: bool = False


def profile_status(mongo: MongoAdapter) -> ProfileStatus:
    raw = mongo.command("profile", collection=-1)
    level = int(raw.get("was", 0))
    return ProfileStatus(
        mongo.database_name,
        level,
        LEVELS.get(level, str(level)),
        raw.get("slowms"),
        raw.get("sampleRate"),
    )


def set_profile(mongo: MongoAdapter, guard: Guard, on: bool, slowms: int | None) -> ProfileStatus:
    """Turn the profiler on (slow operations: level 1) or off, through the guard.

    On MongoDB, slowms is server-wide (it also decides what the log calls slow); the level is
    per database.
    """
    level = 1 if on else 0
    before = profile_status(mongo)
    what = f"slow operations over {slowms} ms" if on and slowms is not None else "slow operations"
    change = Change(
        action=f"db profile {'on' if on else 'off'}",
        summary=(
            f"turn the profiler {'on for ' + what if on else 'off'} in database"
            f" {mongo.database_name} at {mongo.display_uri}"
        ),
        details=[f"now: level {before.level} ({before.level_name}), slowms {before.slowms}"],
        target=mongo.display_uri,
    )
    with guard.mutation(change) as proceed:
        if not proceed:
            return before
        mongo.set_profile(level, slowms if on else None)
    after = profile_status(mongo)
    after.previous_level = before.level
    after.changed = True
    return after


@dataclass
class SlowOperation:
    time: str | None
    op: str
    collection: str
    millis: float
    query: str  # the shape, values hidden
    plan: str | None = None  # planSummary, when the server records it (mongod does)
    keys_examined: int | None = None
    docs_examined: int | None = None
    returned: int | None = None
    #: the client's appName, when the server records it (mongod does): "travellr-ops" is ours
    app: str | None = None


@dataclass
class SlowReport:
    database: str
    profiler: ProfileStatus
    min_millis: float
    since: str | None
    operations: list[SlowOperation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def slow(mongo: MongoAdapter, since: datetime | None, min_millis: float, limit: int) -> SlowReport:
    """The profiler's slowest recent operations (system.profile of the configured database)."""
    status = profile_status(mongo)
    report = SlowReport(
        mongo.database_name,
        status,
        min_millis,
        since.isoformat() if since else None,
    )
    # system.profile stores naive UTC datetimes; pymongo compares aware ones correctly.
    entries = mongo.profile_entries(since, min_millis, limit)
    for entry in entries:
        report.operations.append(slow_operation(entry))
    report.operations.sort(key=lambda o: o.millis, reverse=True)
    if status.level == 0:
        report.notes.append(
            "the profiler is off: nothing new is recorded (turn it on: db profile on)"
        )
    elif status.slowms is not None and status.level == 1 and status.slowms > min_millis:
        report.notes.append(
            f"the profiler records only operations over {status.slowms} ms, more than"
            f" {min_millis:g} ms: db profile on --slowms {int(min_millis)}"
        )
    return report


def slow_operation(entry: Mapping[str, Any]) -> SlowOperation:
    command = entry.get("command") or {}
    collection = str(entry.get("ns", "")).partition(".")[2]
    filter_ = command.get("filter") or command.get("q") or command.get("query") or {}
    query = describe(collection, filter_, command.get("sort")) if filter_ else _op_name(command)
    ts = entry.get("ts")
    if isinstance(ts, Mapping):
        ts = ts.get("$date")
    return SlowOperation(
        time=str(ts) if ts is not None else None,
        op=str(entry.get("op", "")),
        collection=collection,
        millis=float(entry.get("millis", 0)),
        query=query,
        plan=entry.get("planSummary"),
        keys_examined=entry.get("keysExamined"),
        docs_examined=entry.get("docsExamined"),
        returned=entry.get("nreturned"),
        app=entry.get("appName"),
    )


def _op_name(command: Mapping[str, Any]) -> str:
    return next(iter(command), "?") if command else "?"
