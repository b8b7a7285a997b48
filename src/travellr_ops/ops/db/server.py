"""The server as a whole: `db ping`, `db status`, `db stats`, `db restart`.

Optional serverStatus sections (wiredTiger, globalLock, repl, opLatencies, network...) are
reported when the server has them and left out when it does not: MongoDB 6-8 report them all,
smaller MongoDB-wire servers only some.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from travellr_ops.adapters.mongo import (
    LOOPBACK_HOSTS,
    MongoAdapter,
    classify,
    local_mongo_servers,
)
from travellr_ops.adapters.platform_types import RestartResult
from travellr_ops.errors import CheckFailed, ServiceError, UsageError
from travellr_ops.runtime import Runtime
from travellr_ops.safety import Change
from travellr_ops.vocab.verdict import Verdict

# ---------------------------------------------------------------------------------- ping


@dataclass
class Member:
    name: str
    state: str  # PRIMARY, SECONDARY, ARBITER, RECOVERING...
    health: float | None
    lag_s: float | None  # behind the primary's last applied write
    self: bool = False


@dataclass
class Problem:
    kind: str  # stopped, refused, dns, timeout, tls, protocol, auth, closed, no_primary...
    message: str
    hint: str

    @property
    def verdict(self) -> Verdict:
        """The member answered but is not primary or secondary: unhealthy (exit 1); anything
        else means no usable answer reached the tool: unreachable (exit 3)."""
        return Verdict.UNHEALTHY if self.kind == "no_primary" else Verdict.UNREACHABLE


@dataclass
class PingReport:
    ok: bool
    uri: str
    latency_ms: float | None = None
    version: str | None = None
    topology: str | None = None  # standalone, replica set, sharded (mongos)
    set_name: str | None = None
    role: str | None = None  # primary, secondary, standalone, mongos
    members: list[Member] | None = None
    authenticated_as: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    problem: Problem | None = None


def ping(
    mongo: MongoAdapter,
    history: Path | None = None,
    look_around: bool = True,
    platform: str = "none",
) -> PingReport:
    """Connect, time a ping, and describe the server; on failure, say why and what to do.

    ``history`` remembers which addresses answered before, so that a refused connection to an
    address that used to work reads "stopped" rather than "wrong port". ``look_around``: when
    a local address refuses, look for MongoDB servers on this machine's other ports.
    ``platform`` (the setting) decides which commands a hint may suggest.
    """
    report = PingReport(ok=False, uri=mongo.display_uri)
    quick = mongo.preflight()
    if quick is not None:
        report.problem = _refine(
            mongo, Problem(quick.kind, quick.message, quick.hint), history, look_around, platform
        )
        return report
    try:
        # ping and hello need no login on MongoDB: they tell "down" from "refuses us"
        report.latency_ms = round(mongo.ping(), 2)
        hello = mongo.hello()
    except ServiceError as exc:
        report.problem = _diagnose(mongo, exc, history, look_around, platform)
        return report
    _topology(report, hello)
    try:
        build = mongo.command("buildInfo", admin=True)
        report.version = str(build.get("version", "")) or None
        status = mongo.optional_command("connectionStatus", admin=True) or {}
    except ServiceError as exc:
        # MongoDB serves buildInfo and connectionStatus without a login; a server that does
        # not has shut us out, which is what the user needs to hear
        report.problem = _diagnose(mongo, exc, history, look_around, platform)
        return report
    users = status.get("authInfo", {}).get("authenticatedUsers", [])
    report.authenticated_as = [f"{u.get('user')}@{u.get('db')}" for u in users]
    if report.topology == "replica set":
        report.members = _members(mongo, report)
    report.ok = report.role in ("primary", "secondary", "standalone", "mongos")
    if not report.ok:
        report.problem = Problem(
            "no_primary",
            f"the member answered but is {report.role}, not primary or secondary",
            "check rs.status(): an election may be running, or a majority is down",
        )
    _remember(history, mongo, report)
    return report


def _topology(report: PingReport, hello: dict[str, Any]) -> None:
    if hello.get("msg") == "isdbgrid":
        report.topology, report.role = "sharded (mongos)", "mongos"
    elif hello.get("setName"):
        report.topology, report.set_name = "replica set", str(hello["setName"])
        report.role = (
            "primary"
            if hello.get("isWritablePrimary")
            else "secondary"
            if hello.get("secondary")
            else "other"
        )
    else:
        report.topology, report.role = "standalone", "standalone"


def _members(mongo: MongoAdapter, report: PingReport) -> list[Member] | None:
    try:
        status = mongo.optional_command("replSetGetStatus", admin=True)
    except ServiceError as exc:
        # MongoDB with --auth needs clusterMonitor for this; ping itself still succeeded.
        report.notes.append(f"member states unavailable: {exc.message}")
        return None
    if status is None:
        return None
    raw = status.get("members", [])
    primary_optime = next((_optime_s(m) for m in raw if m.get("stateStr") == "PRIMARY"), None)
    members = []
    for m in raw:
        optime = _optime_s(m)
        lag = (
            round(max(primary_optime - optime, 0.0), 3)
            if primary_optime is not None and optime is not None
            else None
        )
        members.append(
            Member(
                name=str(m.get("name", "")),
                state=str(m.get("stateStr", m.get("state", ""))),
                health=m.get("health"),
                lag_s=lag,
                self=bool(m.get("self")),
            )
        )
    return members


def _optime_s(member: dict[str, Any]) -> float | None:
    """A member's last applied write, in seconds (optimeDate, else the optime timestamp)."""
    date = member.get("optimeDate")
    if isinstance(date, dict) and "$date" in date:
        date = date["$date"]
    if isinstance(date, str):
        try:
            return datetime.fromisoformat(date.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    if isinstance(date, int | float):
        return float(date) / 1000
    ts = (member.get("optime") or {}).get("ts", {})
    if isinstance(ts, dict) and "$timestamp" in ts:
        return float(ts["$timestamp"].get("t", 0))
    return None


def _diagnose(
    mongo: MongoAdapter, exc: ServiceError, history: Path | None, look_around: bool, platform: str
) -> Problem:
    cause = exc.__context__ if isinstance(exc.__context__, Exception) else None
    base = classify(cause, tls=mongo.uses_tls, timeout_s=mongo.timeout_s) if cause else None
    if base is None:
        return Problem("unknown", exc.message, exc.hint or "")
    problem = Problem(base.kind, base.message, base.hint)
    return _refine(mongo, problem, history, look_around, platform)


def start_hint(platform: str) -> str:
    """How to start a stopped MongoDB, in the commands that work with this platform setting."""
    if platform == "none":
        return (
            'start the MongoDB server (platform = "none": travellr-ops does not run it),'
            " then read its log"
        )
    return "start it (db restart; service status mongodb says why it stopped), then read its log"


def _refine(
    mongo: MongoAdapter, problem: Problem, history: Path | None, look_around: bool, platform: str
) -> Problem:
    """A refused connection, told apart: stopped (it answered here before), or nothing
    running there; MongoDB servers answering on other local ports are mentioned in the hint
    (the port may be wrong), never put first: the configured server is what refused."""
    if problem.kind != "refused":
        return problem
    addresses = mongo.addresses()
    seen = _seen(history)
    before = [seen[a] | {"address": a} for a in map(_address, addresses) if a in seen]
    if before:
        last = before[0]
        return Problem(
            "stopped",
            f"MongoDB answered at {last['address']} before (last at {last['time']}, version"
            f" {last.get('version') or '?'}); now nothing listens there: the server is"
            " stopped or crashed",
            start_hint(platform),
        )
    local = [(h, p) for h, p in addresses if h in LOOPBACK_HOSTS]
    if not local:
        where = ", ".join(map(_address, addresses)) or "the address in mongo.uri"
        return Problem(
            "refused",
            f"connection refused at {where}: nothing listens there",
            f"{start_hint(platform)}; or fix the host and port in mongo.uri",
        )
    host, port = local[0]
    others = local_mongo_servers(exclude=port) if look_around else []
    if others:
        return Problem(
            "refused",
            f"connection refused at {host}:{port}: nothing listens there (the server is"
            " stopped, or never started)",
            f"{start_hint(platform)}; a MongoDB server answers on {', '.join(others)}:"
            " if that is the one meant, fix the port in mongo.uri (TRAVELLR_MONGO__URI)",
        )
    return Problem(
        "refused",
        f"connection refused at {host}:{port}: nothing listens there, and no MongoDB server"
        " runs on this machine (stopped, or never started)",
        start_hint(platform),
    )


def _address(pair: tuple[str, int]) -> str:
    return f"{pair[0]}:{pair[1]}"


def _seen(history: Path | None) -> dict[str, dict[str, Any]]:
    if history is None or not history.is_file():
        return {}
    try:
        data = json.loads(history.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember(history: Path | None, mongo: MongoAdapter, report: PingReport) -> None:
    if history is None:
        return
    seen = _seen(history)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for pair in mongo.addresses():
        seen[_address(pair)] = {"time": now, "version": report.version}
    try:
        history.parent.mkdir(parents=True, exist_ok=True)
        history.write_text(json.dumps(seen, indent=1))
    except OSError:
        pass  # remembering is a nicety; ping itself succeeded


# -------------------------------------------------------------------------------- status


@dataclass
class ServerStatusReport:
    #: the server as `db ping` names it (mongo.uri, secrets masked)
    uri: str
    host: str | None  # as the server names itself
    version: str | None
    process: str | None
    uptime_s: float | None
    sample_interval_s: float
    #: None: a figure the server did not report (absent, or a placeholder 0 no server can have)
    connections: dict[str, int | None]
    #: operations per second between the two samples, per kind (insert, query, update...)
    opcounters_per_s: dict[str, float]
    opcounters_total: dict[str, int]
    memory_mb: dict[str, float | None]
    replication: dict[str, Any]
    #: present only when the server reports them (names as in serverStatus)
    optional: dict[str, Any] = field(default_factory=dict)


def status(
    mongo: MongoAdapter, interval_s: float = 1.0, sleep: Callable[[float], None] = time.sleep
) -> ServerStatusReport:
    """Two serverStatus samples ``interval_s`` apart: vitals, and operation rates."""
    first = mongo.command("serverStatus", admin=True)
    started = time.monotonic()
    sleep(interval_s)
    second = mongo.command("serverStatus", admin=True)
    elapsed = max(time.monotonic() - started, 1e-6)
    ops1, ops2 = first.get("opcounters", {}), second.get("opcounters", {})
    rates = {
        k: round((_num(ops2.get(k)) - _num(ops1.get(k))) / elapsed, 2)
        for k in ops2
        if isinstance(ops2.get(k), int | float)
    }
    conns = second.get("connections", {})
    mem = second.get("mem", {})
    report = ServerStatusReport(
        uri=mongo.display_uri,
        host=second.get("host"),
        version=second.get("version"),
        process=second.get("process"),
        uptime_s=second.get("uptime"),
        sample_interval_s=round(elapsed, 2),
        connections=_connections(conns),
        opcounters_per_s=rates,
        opcounters_total={k: int(v) for k, v in ops2.items() if isinstance(v, int | float)},
        memory_mb=_memory(mem),
        replication=_replication(mongo, second),
    )
    report.optional = _optional_sections(first, second, elapsed)
    return report


def _connections(conns: dict[str, Any]) -> dict[str, int | None]:
    """current and available always (None when not reported), then what else the server has.

    A 0 available is a placeholder: the server accepted this very connection, and one at its
    limit refuses new ones.
    """
    figures: dict[str, int | None] = {
        k: int(v) for k, v in conns.items() if isinstance(v, int | float)
    }
    for key in ("current", "available"):
        figures.setdefault(key, None)
    if figures["available"] == 0:
        figures["available"] = None
    return {"current": figures.pop("current"), "available": figures.pop("available"), **figures}


def _memory(mem: dict[str, Any]) -> dict[str, float | None]:
    """resident and virtual MiB; a 0 is not reported (a running server uses memory, and its
    virtual size is never below its resident one)."""
    return {
        k: float(v) if isinstance(v, int | float) and v > 0 else None
        for k in ("resident", "virtual")
        for v in [mem.get(k)]
    }


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _replication(mongo: MongoAdapter, server_status: dict[str, Any]) -> dict[str, Any]:
    repl = server_status.get("repl")
    if isinstance(repl, dict):  # mongod: the repl section of serverStatus
        source: dict[str, Any] = repl
    else:  # servers without it: hello says as much as an operator needs here
        source = mongo.hello()
    if not source.get("setName"):
        return {"mode": "standalone"}
    return {
        "mode": "replica set",
        "set_name": source.get("setName"),
        "role": "primary"
        if source.get("isWritablePrimary") or source.get("ismaster")
        else "secondary"
        if source.get("secondary")
        else "other",
        "primary": source.get("primary"),
        "hosts": source.get("hosts", []),
    }


def _optional_sections(
    first: dict[str, Any], second: dict[str, Any], elapsed: float
) -> dict[str, Any]:
    optional: dict[str, Any] = {}
    cache = second.get("wiredTiger", {}).get("cache", {})
    used = cache.get("bytes currently in the cache")
    limit = cache.get("maximum bytes configured")
    if isinstance(used, int | float) and isinstance(limit, int | float) and limit:
        optional["wiredTiger_cache"] = {
            "used_mb": round(used / 2**20, 1),
            "max_mb": round(limit / 2**20, 1),
            "used_pct": round(used * 100 / limit, 1),
            "dirty_mb": round(_num(cache.get("tracked dirty bytes in the cache")) / 2**20, 1),
        }
    queue = second.get("globalLock", {}).get("currentQueue")
    if isinstance(queue, dict):
        optional["globalLock_queue"] = {k: queue[k] for k in ("readers", "writers") if k in queue}
    latencies = {}
    for kind, values in second.get("opLatencies", {}).items():
        before = first.get("opLatencies", {}).get(kind, {})
        ops = _num(values.get("ops")) - _num(before.get("ops"))
        micros = _num(values.get("latency")) - _num(before.get("latency"))
        if ops > 0:
            latencies[kind] = round(micros / ops / 1000, 2)
    if latencies:
        optional["avg_latency_ms"] = latencies
    net1, net2 = first.get("network", {}), second.get("network", {})
    net: dict[str, float | None] = {
        f"{k}_per_s": round((_num(net2.get(k)) - _num(net1.get(k))) / elapsed, 1)
        for k in ("bytesIn", "bytesOut", "numRequests")
        if k in net2
    }
    if _num(net2.get("numRequests")):  # requests came in, so bytes did: a 0 is not reported
        for k in ("bytesIn", "bytesOut"):
            if k in net2 and not _num(net2.get(k)):
                net[f"{k}_per_s"] = None
    if net:
        optional["network"] = net
    asserts = second.get("asserts")
    if isinstance(asserts, dict) and any(asserts.values()):
        optional["asserts"] = asserts
    return optional


# --------------------------------------------------------------------------------- stats


@dataclass
class CollectionStats:
    name: str
    documents: int
    data_bytes: int
    storage_bytes: int
    avg_document_bytes: float | None
    index_bytes: int
    indexes: int


@dataclass
class DbStatsReport:
    database: str
    collections: int | None
    documents: int | None
    data_bytes: int | None
    storage_bytes: int | None
    index_bytes: int | None
    total_bytes: int | None
    #: the file system holding the data, when the server reports it (MongoDB 4.4+)
    fs_used_bytes: int | None = None
    fs_total_bytes: int | None = None
    per_collection: list[CollectionStats] = field(default_factory=list)


def stats(
    mongo: MongoAdapter, collection: str | None = None, *, per_collection: bool = True
) -> DbStatsReport:
    """The database's totals (one dbStats) and the figures of each collection (or of
    ``collection``); the totals alone without ``per_collection``."""
    db = mongo.command("dbStats", scale=1)
    data, storage, index = db.get("dataSize"), db.get("storageSize"), db.get("indexSize")
    total = db.get("totalSize")
    if total is None and isinstance(storage, int | float) and isinstance(index, int | float):
        total = storage + index
    report = DbStatsReport(
        database=mongo.database_name,
        collections=db.get("collections"),
        documents=db.get("objects"),
        data_bytes=_int(data),
        storage_bytes=_int(storage),
        index_bytes=_int(index),
        total_bytes=_int(total),
        fs_used_bytes=_int(db.get("fsUsedSize")),
        fs_total_bytes=_int(db.get("fsTotalSize")),
    )
    if not per_collection:
        return report
    names = [collection] if collection else mongo.collection_names()
    if collection and collection not in mongo.collection_names():
        raise UsageError(
            f"no collection {collection!r} in database {mongo.database_name}",
            hint="db stats lists the collections",
        )
    for name in names:
        report.per_collection.append(collection_stats(mongo, name))
    report.per_collection.sort(key=lambda c: c.storage_bytes, reverse=True)
    return report


def collection_stats(mongo: MongoAdapter, name: str) -> CollectionStats:
    raw = mongo.coll_stats(name)
    return CollectionStats(
        name=name,
        documents=int(_num(raw.get("count"))),
        data_bytes=int(_num(raw.get("size"))),
        storage_bytes=int(_num(raw.get("storageSize"))),
        avg_document_bytes=raw.get("avgObjSize"),
        index_bytes=int(_num(raw.get("totalIndexSize"))),
        indexes=int(_num(raw.get("nindexes"))),
    )


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


# ------------------------------------------------------------------------------- restart


@dataclass
class WaitResult:
    healthy: bool
    seconds: float
    attempts: int
    last_problem: Problem | None = None
    ping: PingReport | None = None


Connect = Callable[[], AbstractContextManager[MongoAdapter]]


def wait_until_healthy(
    connect: Connect,
    timeout_s: float,
    interval_s: float = 1.0,
    progress: Callable[[str], None] = lambda message: None,
    platform: str = "none",
) -> WaitResult:
    """Ping with a fresh connection until the server answers healthy, or ``timeout_s`` passes."""
    started = time.monotonic()
    attempts = 0
    last: PingReport | None = None
    while True:
        attempts += 1
        with connect() as mongo:
            last = ping(mongo, look_around=False, platform=platform)
        elapsed = time.monotonic() - started
        if last.ok:
            return WaitResult(True, round(elapsed, 2), attempts, ping=last)
        if elapsed + interval_s > timeout_s:
            return WaitResult(False, round(elapsed, 2), attempts, last.problem, last)
        progress(f"not healthy yet ({last.problem.kind if last.problem else '?'}); waiting")
        time.sleep(interval_s)


@dataclass
class MongoRestartReport:
    service: str
    platform: str
    restart: RestartResult | None  # None on --dry-run
    wait: WaitResult | None
    healthy: bool
    dry_run: bool = False

    @property
    def verdict(self) -> Verdict:
        """As `service restart` judges a restart: the platform's own check after it failed,
        or MongoDB answers but is not healthy: unhealthy (exit 1); nothing answers the
        tool's ping: unreachable (exit 3), as `db ping` says."""
        if self.healthy or self.dry_run:
            return Verdict.HEALTHY
        problem = self.wait.last_problem if self.wait else None
        return problem.verdict if problem is not None else Verdict.UNHEALTHY


class MongoRestartFailed(CheckFailed):
    """MongoDB did not come back healthy; ``report`` says how far it got. The exit code is
    the report's verdict's: 1 unhealthy, 3 when nothing answers."""

    def __init__(self, report: MongoRestartReport) -> None:
        wait = report.wait
        reason = (report.restart.reason if report.restart else "") or (
            wait.last_problem.message if wait and wait.last_problem else "no answer"
        )
        super().__init__(
            f"MongoDB is not healthy after the restart: {reason}",
            hint="db ping for the diagnosis; service logs mongodb for the server's side",
        )
        self.report = report
        self.exit_code = report.verdict.exit_code
        if report.verdict is Verdict.UNREACHABLE:
            self.kind = "unreachable"


def restart(rt: Runtime, timeout_s: float, service: str = "mongodb") -> MongoRestartReport:
    """Restart the MongoDB service on its platform (through ``rt``'s Guard), then wait until
    `db ping` is healthy on fresh connections. Raises MongoRestartFailed (audited as failed)
    when it is not."""
    if timeout_s <= 0:
        raise UsageError(f"--timeout must be more than 0 seconds, not {timeout_s:g}")
    with rt.platform() as platform:
        change = Change(
            action="db restart",
            summary=f"restart the {service} service on {platform.name};"
            " connections drop until it is back",
            target=platform.name,
        )
        with rt.guard.mutation(change) as proceed:
            if not proceed:
                return MongoRestartReport(service, platform.name, None, None, False, dry_run=True)
            started = time.monotonic()
            result = platform.restart(service, timeout_s, rt.notify)
            if not result.healthy:
                raise MongoRestartFailed(
                    MongoRestartReport(service, platform.name, result, None, False)
                )
            left = max(timeout_s - (time.monotonic() - started), 1.0)
            rt.notify("service restarted; waiting for MongoDB to answer")
            waited = wait_until_healthy(rt.mongo, left, progress=rt.notify, platform=platform.name)
            report = MongoRestartReport(service, platform.name, result, waited, waited.healthy)
            if not report.healthy:  # raised inside the guard: the audit log says "failed"
                raise MongoRestartFailed(report)
    return report
