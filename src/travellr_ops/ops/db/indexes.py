"""`db indexes list|analyze|ensure`: the app's indexes, what is missing, what is wasted.

The app's required indexes and its important query shapes are declared in a TOML file:
``mongo.indexes_file``, else the one shipped inside the package (``travellr_ops/data/
indexes.toml``; see the comments there for the format; `config show` names its path).
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from travellr_ops.adapters.mongo import MongoAdapter
from travellr_ops.errors import ConfigError, ServiceError
from travellr_ops.ops.db.queries import (
    PLACEHOLDER,
    PlanSummary,
    describe,
    index_for,
    mongosh_keys,
    shape,
    summarise,
)
from travellr_ops.runtime import Runtime
from travellr_ops.safety import Change, Guard
from travellr_ops.settings import Settings

#: the file shipped with travellr-ops, used when mongo.indexes_file is not set: package data,
#: so that an installed wheel (the travellr-ops image) has it as a source checkout does
SHIPPED_INDEXES_FILE = Path(str(files("travellr_ops") / "data" / "indexes.toml"))

Keys = list[tuple[str, Any]]

# ------------------------------------------------------------------------------- the spec


@dataclass
class IndexSpec:
    collection: str
    keys: Keys
    name: str | None = None
    unique: bool = False
    sparse: bool = False
    expire_after_seconds: int | None = None
    partial: dict[str, Any] | None = None
    why: str = ""

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.name:
            options["name"] = self.name
        if self.unique:
            options["unique"] = True
        if self.sparse:
            options["sparse"] = True
        if self.expire_after_seconds is not None:
            options["expireAfterSeconds"] = self.expire_after_seconds
        if self.partial:
            options["partialFilterExpression"] = self.partial
        return options

    def mongosh(self) -> str:
        options = self.options()
        text = f"db.{self.collection}.createIndex({mongosh_keys(self.keys)}"
        if options:
            text += ", " + _js_options(options)
        return text + ")"


@dataclass
class QueryShape:
    collection: str
    filter: dict[str, Any]
    sort: dict[str, Any] | None = None
    limit: int | None = None
    why: str = ""


@dataclass
class IndexFile:
    path: Path
    indexes: list[IndexSpec]
    queries: list[QueryShape]


def indexes_file_path(configured: Path | None) -> Path:
    path = configured or SHIPPED_INDEXES_FILE
    if not path.is_file():
        raise ConfigError(
            f"index declarations not found: {path}",
            hint="set mongo.indexes_file (TRAVELLR_MONGO__INDEXES_FILE) to the app's"
            f" indexes.toml (format: the comments of {SHIPPED_INDEXES_FILE})",
        )
    return path


def load_index_file(configured: Path | None) -> IndexFile:
    path = indexes_file_path(configured)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        indexes = [_index_spec(raw) for raw in data.get("index", [])]
        queries = [_query_shape(raw) for raw in data.get("query", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"{path}: {exc}", hint=f"see the format in the comments of {SHIPPED_INDEXES_FILE}"
        ) from None
    return IndexFile(path, indexes, queries)


def _index_spec(raw: Mapping[str, Any]) -> IndexSpec:
    keys = raw["keys"]
    if not isinstance(keys, Mapping) or not keys:
        raise ValueError(f"index on {raw.get('collection')!r}: keys must be a non-empty table")
    for name, direction in keys.items():
        if direction not in (1, -1, "text", "2dsphere", "hashed", "2d"):
            raise ValueError(f"index key {name!r}: direction must be 1, -1 or an index type")
    ttl = raw.get("expire_after_seconds")
    return IndexSpec(
        collection=str(raw["collection"]),
        keys=list(keys.items()),
        name=raw.get("name"),
        unique=bool(raw.get("unique", False)),
        sparse=bool(raw.get("sparse", False)),
        expire_after_seconds=int(ttl) if ttl is not None else None,
        partial=dict(raw["partial"]) if raw.get("partial") else None,
        why=str(raw.get("why", "")),
    )


def _query_shape(raw: Mapping[str, Any]) -> QueryShape:
    filter_ = raw["filter"]
    if not isinstance(filter_, Mapping):
        raise ValueError(f"query on {raw.get('collection')!r}: filter must be a table")
    sort = raw.get("sort")
    return QueryShape(
        collection=str(raw["collection"]),
        filter=dict(filter_),
        sort=dict(sort) if sort else None,
        limit=int(raw["limit"]) if raw.get("limit") else None,
        why=str(raw.get("why", "")),
    )


def _js_options(options: Mapping[str, Any]) -> str:
    import json

    return "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in options.items()) + "}"


# --------------------------------------------------------------------------------- list


@dataclass
class IndexInfo:
    collection: str
    name: str
    keys: Keys
    unique: bool = False
    sparse: bool = False
    ttl_s: int | None = None
    partial: dict[str, Any] | None = None
    hidden: bool = False
    size_bytes: int | None = None

    @property
    def options_text(self) -> str:
        words = []
        if self.unique:
            words.append("unique")
        if self.ttl_s is not None:
            words.append(f"TTL {self.ttl_s}s")
        if self.sparse:
            words.append("sparse")
        if self.partial:
            words.append(f"partial {shape(self.partial)}")
        if self.hidden:
            words.append("hidden")
        return ", ".join(words)


def list_indexes(mongo: MongoAdapter, collection: str | None = None) -> list[IndexInfo]:
    names = mongo.collection_names()
    if collection is not None:
        if collection not in names:
            from travellr_ops.errors import UsageError

            raise UsageError(
                f"no collection {collection!r} in database {mongo.database_name}",
                hint=f"collections: {', '.join(names) or '(none)'}",
            )
        names = [collection]
    result = []
    for name in names:
        sizes = mongo.coll_stats(name).get("indexSizes", {})
        for raw in mongo.list_indexes(name):
            info = _index_info(name, raw)
            size = sizes.get(info.name)
            info.size_bytes = int(size) if isinstance(size, int | float) else None
            result.append(info)
    return result


def _index_info(collection: str, raw: Mapping[str, Any]) -> IndexInfo:
    ttl = raw.get("expireAfterSeconds")
    return IndexInfo(
        collection=collection,
        name=str(raw.get("name")),
        keys=list((raw.get("key") or {}).items()),
        unique=bool(raw.get("unique", False)),
        sparse=bool(raw.get("sparse", False)),
        ttl_s=int(ttl) if isinstance(ttl, int | float) else None,
        partial=raw.get("partialFilterExpression"),
        hidden=bool(raw.get("hidden", False)),
    )


def same_keys(a: Keys, b: Keys) -> bool:
    return len(a) == len(b) and all(
        ka == kb and _direction(da) == _direction(db)
        for (ka, da), (kb, db) in zip(a, b, strict=True)
    )


def _direction(value: Any) -> Any:
    return float(value) if isinstance(value, int | float) else value


def _is_prefix(short: Keys, long: Keys) -> bool:
    return len(short) < len(long) and same_keys(short, long[: len(short)])


# ------------------------------------------------------------------------------ analyze


@dataclass
class Fix:
    action: str  # create, drop
    collection: str
    index: str  # keys in mongosh notation, or the index name for drop
    command: str  # what to run in mongosh
    declared: bool = False  # declared in the index file: `db indexes ensure` creates it


@dataclass
class IndexFinding:
    kind: str  # collscan, poor_ratio, in_memory_sort, missing_required, redundant, unused
    collection: str
    subject: str  # the query shape, or the index name
    detail: str
    fix: Fix | None


@dataclass
class QueryResult:
    collection: str
    query: str
    why: str
    plan: PlanSummary | None
    skipped: str | None = None


@dataclass
class AnalyzeReport:
    database: str
    source: str  # profiler or config: where the query shapes came from
    index_file: str
    thresholds: dict[str, float]
    queries: list[QueryResult] = field(default_factory=list)
    findings: list[IndexFinding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: whether the server reports index usage ($indexStats with real counters)
    usage_data: bool = False

    @property
    def clean(self) -> bool:
        return not self.findings


@dataclass
class AnalyzeLimits:
    query_ms: float  # thresholds.db_query_ms
    min_docs: int  # smaller scans are not worth an index
    max_ratio: float  # examined per returned
    profile_sample: int  # profiler records read

    @classmethod
    def of(cls, settings: Settings) -> AnalyzeLimits:
        m = settings.mongo
        return cls(
            settings.thresholds.db_query_ms,
            m.analyze_min_docs,
            m.analyze_max_ratio,
            m.profile_sample,
        )


def analyze_app(rt: Runtime) -> AnalyzeReport:
    """`db indexes analyze` with the settings' index file and limits (the file is read before
    MongoDB is opened: a bad file is a configuration error that needs no server)."""
    spec = load_index_file(rt.settings.mongo.indexes_file)
    with rt.mongo() as mongo:
        return analyze(mongo, spec, AnalyzeLimits.of(rt.settings))


def analyze(mongo: MongoAdapter, spec: IndexFile, limits: AnalyzeLimits) -> AnalyzeReport:
    report = AnalyzeReport(
        database=mongo.database_name,
        source="config",
        index_file=str(spec.path),
        thresholds={
            "db_query_ms": limits.query_ms,
            "min_docs": limits.min_docs,
            "max_examined_per_returned": limits.max_ratio,
        },
    )
    collections = mongo.collection_names()
    indexes = {
        name: [_index_info(name, raw) for raw in mongo.list_indexes(name)] for name in collections
    }
    shapes = _profiler_shapes(mongo, limits.profile_sample, report)
    if shapes:
        report.source = "profiler"
    else:
        shapes = spec.queries
    for query in shapes:
        report.queries.append(
            _analyze_query(mongo, query, collections, indexes, spec, limits, report)
        )
    _missing_required(spec, indexes, report)
    _redundant(indexes, report)
    _unused(mongo, indexes, spec, report)
    return report


def _profiler_shapes(mongo: MongoAdapter, sample: int, report: AnalyzeReport) -> list[QueryShape]:
    from travellr_ops.ops.db.queries import profile_status

    try:
        status = profile_status(mongo)
    except ServiceError as exc:
        report.notes.append(
            f"profiler status unavailable ({exc.message}); using the declared queries"
        )
        return []
    if status.level == 0:
        report.notes.append(
            "the profiler is off: analysing the query shapes declared in the index file"
        )
        return []
    entries = mongo.profile_entries(None, None, sample)
    seen: dict[str, QueryShape] = {}
    for entry in entries:
        if entry.get("appName") == "travellr-ops":
            continue  # our own reads (value samples, counts), not the app's queries
        command = entry.get("command") or {}
        collection = command.get("find")
        if not isinstance(collection, str) or collection.startswith("system."):
            continue
        filter_ = command.get("filter") or {}
        sort = command.get("sort") or None
        key = describe(collection, filter_, sort)
        if key not in seen:
            seen[key] = QueryShape(
                collection, _restore(filter_), sort, command.get("limit"), "seen by the profiler"
            )
    if not seen:
        report.notes.append(
            "the profiler is on but has recorded no queries yet: analysing the declared query shapes"
        )
    return list(seen.values())


def _restore(doc: Any) -> Any:
    """Plain (relaxed Extended JSON) values from the profiler back to what the server stored."""
    import json

    from travellr_ops.adapters.mongo import parse_document

    return parse_document(json.dumps({"f": doc}), "a profiled filter")["f"]


def _analyze_query(
    mongo: MongoAdapter,
    query: QueryShape,
    collections: list[str],
    indexes: dict[str, list[IndexInfo]],
    spec: IndexFile,
    limits: AnalyzeLimits,
    report: AnalyzeReport,
) -> QueryResult:
    text = describe(query.collection, query.filter, query.sort)
    if query.collection not in collections:
        return QueryResult(query.collection, text, query.why, None, "no such collection")
    filter_, why_not = _fill_placeholders(mongo, query)
    if filter_ is None:
        return QueryResult(query.collection, text, query.why, None, why_not)
    plan = summarise(mongo.explain_find(query.collection, filter_, query.sort, query.limit))
    result = QueryResult(query.collection, text, query.why, plan)
    examined = max(plan.keys_examined, plan.docs_examined)
    reasons: list[str] = []
    kind = ""
    if plan.collscan and plan.docs_examined >= limits.min_docs:
        kind = "collscan"
        reasons.append(
            f"COLLSCAN over {plan.docs_examined:,} documents for {plan.returned:,} returned"
        )
    elif (
        not plan.collscan
        and examined >= limits.min_docs
        and plan.examined_per_returned > limits.max_ratio
    ):
        kind = "poor_ratio"
        reasons.append(
            f"examined {examined:,} keys/documents for {plan.returned:,} returned"
            f" ({plan.examined_per_returned:.0f} per result, over {limits.max_ratio:g}) using {plan.index}"
        )
    if plan.in_memory_sort and plan.docs_examined >= limits.min_docs:
        kind = kind or "in_memory_sort"
        reasons.append(f"sorts {plan.docs_examined:,} documents in memory")
    over = plan.time_ms > limits.query_ms
    if not kind:
        if over:
            report.notes.append(
                f"{text} took {plan.time_ms:g} ms (over {limits.query_ms:g} ms) although it uses"
                f" {plan.index or 'no index'}: not an index problem (server load? large results?)"
            )
        return result
    if over:
        reasons.append(f"took {plan.time_ms:g} ms, over the {limits.query_ms:g} ms threshold")
    keys = index_for(query.filter, query.sort)
    declared = next(
        (s for s in spec.indexes if s.collection == query.collection and same_keys(s.keys, keys)),
        None,
    )
    existing = next(
        (ix for ix in indexes.get(query.collection, []) if same_keys(ix.keys, keys)), None
    )
    if existing is not None:
        reasons.append(
            f"index {existing.name} exists with these keys but the planner did not choose it"
        )
    fix = (
        Fix(
            "create",
            query.collection,
            mongosh_keys(keys),
            declared.mongosh()
            if declared
            else f"db.{query.collection}.createIndex({mongosh_keys(keys)})",
            declared=declared is not None,
        )
        if keys and existing is None
        else None
    )
    report.findings.append(IndexFinding(kind, query.collection, text, "; ".join(reasons), fix))
    return result


def _fill_placeholders(mongo: MongoAdapter, query: QueryShape) -> tuple[dict[str, Any] | None, str]:
    """The declared filter with each "?" replaced by a value from a real document.

    (None, why) when no document has the field: explaining a query that matches nothing,
    or everything, would say nothing about the app's real query.
    """
    filled: dict[str, Any] = {}
    for key, value in query.filter.items():
        if value == PLACEHOLDER:
            found, sample = mongo.sample_value(query.collection, key)
            if not found:
                return None, f"no document has {key} to take a value from"
            filled[key] = sample
        else:
            filled[key] = value
    return filled, ""


def _missing_required(
    spec: IndexFile, indexes: dict[str, list[IndexInfo]], report: AnalyzeReport
) -> None:
    for declared in spec.indexes:
        if declared.collection not in indexes:
            continue  # the app has not created the collection yet; `ensure` still can
        if any(same_keys(ix.keys, declared.keys) for ix in indexes[declared.collection]):
            continue
        if any(
            f.fix and f.fix.declared and f.fix.index == mongosh_keys(declared.keys)
            for f in report.findings
        ):
            continue  # already reported with the query it would serve
        report.findings.append(
            IndexFinding(
                "missing_required",
                declared.collection,
                mongosh_keys(declared.keys),
                f"declared in {spec.path.name} but absent"
                + (f" ({declared.why})" if declared.why else ""),
                Fix(
                    "create",
                    declared.collection,
                    mongosh_keys(declared.keys),
                    declared.mongosh(),
                    True,
                ),
            )
        )


def _redundant(indexes: dict[str, list[IndexInfo]], report: AnalyzeReport) -> None:
    for collection, infos in indexes.items():
        for short in infos:
            if short.name == "_id_" or short.unique or short.ttl_s is not None or short.partial:
                continue  # these carry a constraint or a job of their own
            longer = next(
                (
                    ix
                    for ix in infos
                    if ix is not short
                    and not ix.partial
                    and not ix.sparse
                    and _is_prefix(short.keys, ix.keys)
                ),
                None,
            )
            if longer is None:
                continue
            report.findings.append(
                IndexFinding(
                    "redundant",
                    collection,
                    short.name,
                    f"its keys {mongosh_keys(short.keys)} are a prefix of {longer.name}"
                    f" {mongosh_keys(longer.keys)}, which serves the same queries",
                    Fix(
                        "drop", collection, short.name, f'db.{collection}.dropIndex("{short.name}")'
                    ),
                )
            )


def _unused(
    mongo: MongoAdapter, indexes: dict[str, list[IndexInfo]], spec: IndexFile, report: AnalyzeReport
) -> None:
    usage: dict[str, list[dict[str, Any]]] = {}
    for collection in indexes:
        stats = mongo.index_usage(collection)
        if stats is None:
            report.notes.append(
                "the server does not report index usage ($indexStats): unused indexes cannot be told"
            )
            return
        usage[collection] = stats
    # Counters start at zero when the server (re)starts. A server that reports no start time,
    # or counts zero for every index of a database in use, is taken to keep no usage data:
    # reporting its indexes as unused would be a guess, not a finding.
    records = [s for stats in usage.values() for s in stats]
    known = records and all(_since(s) for s in records) and any(_ops(s) > 0 for s in records)
    report.usage_data = bool(known)
    if not known:
        if records:
            report.notes.append(
                "the server reports no index usage data (no start time, or zero accesses for every"
                " index): unused indexes cannot be told"
            )
        return
    for collection, stats in usage.items():
        infos = {ix.name: ix for ix in indexes[collection]}
        for record in stats:
            info = infos.get(str(record.get("name")))
            if info is None or _ops(record) > 0:
                continue
            if info.name == "_id_" or info.unique or info.ttl_s is not None:
                continue
            if any(
                s.collection == collection and same_keys(s.keys, info.keys) for s in spec.indexes
            ):
                report.notes.append(
                    f"{collection}.{info.name} is declared required but unused since {_since(record)}"
                )
                continue
            report.findings.append(
                IndexFinding(
                    "unused",
                    collection,
                    info.name,
                    f"no query has used it since {_since(record)} (usage counters reset when the server restarts)",
                    Fix("drop", collection, info.name, f'db.{collection}.dropIndex("{info.name}")'),
                )
            )


def _ops(record: Mapping[str, Any]) -> int:
    ops = (record.get("accesses") or {}).get("ops", 0)
    if isinstance(ops, Mapping):  # relaxed JSON of a large Int64
        ops = ops.get("$numberLong", 0)
    return int(ops or 0)


def _since(record: Mapping[str, Any]) -> str | None:
    since = (record.get("accesses") or {}).get("since")
    if isinstance(since, Mapping):
        since = since.get("$date")
    return str(since) if since else None


# ------------------------------------------------------------------------------- ensure


@dataclass
class EnsureItem:
    collection: str
    keys: str
    name: str | None
    state: str  # exists, created, would_create, differs, name_conflict
    detail: str = ""
    documents: int | None = None
    seconds: float | None = None


@dataclass
class EnsureReport:
    database: str
    index_file: str
    items: list[EnsureItem]
    dry_run: bool = False

    @property
    def problems(self) -> list[EnsureItem]:
        return [i for i in self.items if i.state in ("differs", "name_conflict")]


def ensure_app(rt: Runtime) -> EnsureReport:
    """`db indexes ensure` with the settings' index file, through ``rt``'s Guard."""
    spec = load_index_file(rt.settings.mongo.indexes_file)
    with rt.mongo() as mongo:
        return ensure(mongo, spec, rt.guard, rt.settings.mongo.ensure_confirm_docs)


def ensure(mongo: MongoAdapter, spec: IndexFile, guard: Guard, confirm_docs: int) -> EnsureReport:
    """Create the declared indexes that are missing, confirmed first like every change; builds
    over ``confirm_docs`` documents are named as long (MongoDB 4.2+ builds online, but a large
    build loads the server)."""
    collections = set(mongo.collection_names())
    report = EnsureReport(mongo.database_name, str(spec.path), [])
    missing: list[tuple[IndexSpec, EnsureItem]] = []
    for declared in spec.indexes:
        existing = (
            [
                _index_info(declared.collection, raw)
                for raw in mongo.list_indexes(declared.collection)
            ]
            if declared.collection in collections
            else []
        )
        keys = mongosh_keys(declared.keys)
        item = EnsureItem(declared.collection, keys, declared.name, "exists")
        match = next((ix for ix in existing if same_keys(ix.keys, declared.keys)), None)
        if match is not None:
            item.name = match.name
            differences = _differences(declared, match)
            if differences:
                item.state, item.detail = (
                    "differs",
                    f"{match.name}: {differences}; drop it and run ensure again to rebuild",
                )
        elif declared.name and any(ix.name == declared.name for ix in existing):
            item.state, item.detail = (
                "name_conflict",
                f"an index named {declared.name} exists with other keys",
            )
        else:
            item.state = "missing"
            item.documents = (
                mongo.estimated_count(declared.collection)
                if declared.collection in collections
                else 0
            )
            missing.append((declared, item))
        report.items.append(item)
    if not missing:
        return report
    change = Change(
        action="db indexes ensure",
        summary=f"create {len(missing)} index(es) in database {mongo.database_name} at {mongo.display_uri}",
        details=[
            f"{d.mongosh()}  ({item.documents:,} documents"
            + (
                "; a long build that loads the server)"
                if (item.documents or 0) >= confirm_docs
                else ")"
            )
            for d, item in missing
        ],
        target=mongo.display_uri,
    )
    with guard.mutation(change) as proceed:
        if not proceed:
            report.dry_run = True
            for _, item in missing:
                item.state = "would_create"
            return report
        for declared, item in missing:
            started = time.monotonic()
            item.name = mongo.create_index(declared.collection, declared.keys, declared.options())
            item.seconds = round(time.monotonic() - started, 2)
            item.state = "created"
    return report


def _differences(declared: IndexSpec, actual: IndexInfo) -> str:
    diffs = []
    if declared.unique != actual.unique:
        diffs.append(f"unique is {actual.unique}, declared {declared.unique}")
    if declared.sparse != actual.sparse:
        diffs.append(f"sparse is {actual.sparse}, declared {declared.sparse}")
    if declared.expire_after_seconds != actual.ttl_s:
        diffs.append(f"TTL is {actual.ttl_s}, declared {declared.expire_after_seconds}")
    if (declared.partial or None) != (actual.partial or None):
        diffs.append("partial filter differs")
    return "; ".join(diffs)
