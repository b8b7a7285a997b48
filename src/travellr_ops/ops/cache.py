"""`cache`: the runbook's `npm run cache:stats|clear|warm`, `redis-cli INFO memory`, `KEYS *`
and `FLUSHDB`, made safe for a loaded server and a million keys.

Nothing here runs KEYS or a blocking DEL: listings and deletes walk the keyspace with SCAN,
and deletes are pipelined UNLINKs (the server frees big values in the background). On a Redis
Cluster every primary is walked, and each key is deleted on the primary that holds it.
"""

from __future__ import annotations

import heapq
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from travellr_ops.adapters.http import HttpAdapter
from travellr_ops.adapters.redis import RedisAdapter, RedisNode
from travellr_ops.errors import ServiceError, Unreachable, UsageError
from travellr_ops.runtime import Runtime
from travellr_ops.safety import Change
from travellr_ops.vocab.verdict import Verdict

#: keys shown as a sample of what a clear deletes
SAMPLE_SHOWN = 10
#: SCAN calls spent looking for that sample before a clear
SAMPLE_SCAN_CALLS = 50


# ------------------------------------------------------------------------------- patterns


def glob_regex(pattern: str) -> re.Pattern[bytes]:
    """A regex matching exactly the keys Redis's glob ``pattern`` matches (SCAN MATCH, KEYS).

    Redis's rules: ``*`` any bytes, ``?`` one byte, ``[abc]``/``[a-z]``/``[^a]`` a set,
    ``\\x`` the byte x. Raises UsageError for what Redis would read in surprising ways.
    """
    if not pattern:
        raise UsageError("the key pattern is empty", hint="use '*' for every key")
    if any(c in pattern for c in "\r\n\0"):
        raise UsageError(f"the key pattern {pattern!r} contains a line break or NUL byte")
    data = pattern.encode()
    out = []
    i = 0
    while i < len(data):
        c = data[i : i + 1]
        if c == b"*":
            out.append(b".*")
        elif c == b"?":
            out.append(b".")
        elif c == b"\\":
            if i + 1 >= len(data):
                raise UsageError(
                    f"the key pattern {pattern!r} ends in a lone backslash",
                    hint="double a literal backslash",
                )
            i += 1
            out.append(re.escape(data[i : i + 1]))
        elif c == b"[":
            end, body = _char_class(data, i, pattern)
            out.append(body)
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile(b"".join(out), re.DOTALL)


def _char_class(data: bytes, start: int, pattern: str) -> tuple[int, bytes]:
    """The regex of the ``[...]`` set opening at ``start``, and the index of its ``]``."""
    i = start + 1
    negate = i < len(data) and data[i : i + 1] == b"^"
    if negate:
        i += 1
    parts: list[bytes] = []
    while i < len(data) and data[i : i + 1] != b"]":
        c = data[i : i + 1]
        if c == b"\\" and i + 1 < len(data):
            i += 1
            parts.append(re.escape(data[i : i + 1]))
        elif i + 2 < len(data) and data[i + 1 : i + 2] == b"-" and data[i + 2 : i + 3] != b"]":
            low, high = sorted((data[i], data[i + 2]))  # Redis accepts [z-a] as [a-z]
            parts.append(re.escape(bytes([low])) + b"-" + re.escape(bytes([high])))
            i += 2
        else:
            parts.append(re.escape(c))
        i += 1
    if i >= len(data):
        raise UsageError(
            f"the key pattern {pattern!r} opens a [ set that never closes",
            hint="close the set with ], or put a backslash before a literal bracket",
        )
    if not parts:
        return i, b"(?!)" if not negate else b"."  # Redis: [] matches nothing, [^] anything
    return i, b"[" + (b"^" if negate else b"") + b"".join(parts) + b"]"


def matches(pattern: str, key: bytes) -> bool:
    return glob_regex(pattern).fullmatch(key) is not None


def prefix_of(key: bytes) -> str:
    """The key's family for the breakdown: up to and including its first ':'."""
    head, sep, _ = key.partition(b":")
    return head.decode("utf-8", "replace") + ":" if sep else "(no prefix)"


def hit_rate(hits: int, misses: int) -> float | None:
    """Hits as a percentage of lookups; None when there were no lookups."""
    lookups = hits + misses
    return round(hits * 100 / lookups, 2) if lookups else None


def _text(key: bytes) -> str:
    return key.decode("utf-8", "backslashreplace")


# ---------------------------------------------------------------------------------- stats


@dataclass
class NodeStats:
    node: str
    used_memory: int
    used_memory_peak: int
    maxmemory: int
    maxmemory_policy: str
    #: per database: {"keys": n, "expires": n}
    databases: dict[str, dict[str, int]]
    evicted_keys: int
    expired_keys: int
    connected_clients: int
    ops_per_s: int
    keyspace_hits: int
    keyspace_misses: int
    hit_rate_pct: float | None


@dataclass
class PrefixShare:
    prefix: str
    sampled: int
    share_pct: float
    estimated_keys: int
    sampled_bytes: int
    avg_bytes: float | None


@dataclass
class CacheStatsReport:
    target: str
    cluster: bool
    nodes: list[NodeStats]
    #: every node added up (a single server: the same as its one node)
    total: NodeStats
    hit_rate_pct: float | None
    window_s: float
    window_hits: int
    window_misses: int
    window_hit_rate_pct: float | None
    threshold_pct: float
    #: ok, warn (hit rate under the threshold), insufficient (fewer lookups than
    #: monitor.cache_min_lookups, in the window and since start), or idle (no lookups at all)
    verdict: Verdict
    sample_size: int
    prefixes: list[PrefixShare]


def _node_stats(name: str, info: dict[str, Any]) -> NodeStats:
    databases = {
        key: {"keys": int(value.get("keys", 0)), "expires": int(value.get("expires", 0))}
        for key, value in info.items()
        if re.fullmatch(r"db\d+", key) and isinstance(value, dict)
    }
    hits = int(info.get("keyspace_hits", 0))
    misses = int(info.get("keyspace_misses", 0))
    return NodeStats(
        node=name,
        used_memory=int(info.get("used_memory", 0)),
        used_memory_peak=int(info.get("used_memory_peak", 0)),
        maxmemory=int(info.get("maxmemory", 0)),
        maxmemory_policy=str(info.get("maxmemory_policy", "")),
        databases=databases,
        evicted_keys=int(info.get("evicted_keys", 0)),
        expired_keys=int(info.get("expired_keys", 0)),
        connected_clients=int(info.get("connected_clients", 0)),
        ops_per_s=int(info.get("instantaneous_ops_per_sec", 0)),
        keyspace_hits=hits,
        keyspace_misses=misses,
        hit_rate_pct=hit_rate(hits, misses),
    )


def _sum_stats(nodes: list[NodeStats]) -> NodeStats:
    if len(nodes) == 1:
        return nodes[0]
    databases: dict[str, dict[str, int]] = {}
    for n in nodes:
        for db, counts in n.databases.items():
            into = databases.setdefault(db, {"keys": 0, "expires": 0})
            for k, v in counts.items():
                into[k] += v
    hits = sum(n.keyspace_hits for n in nodes)
    misses = sum(n.keyspace_misses for n in nodes)
    policies = sorted({n.maxmemory_policy for n in nodes})
    return NodeStats(
        node="total",
        used_memory=sum(n.used_memory for n in nodes),
        used_memory_peak=sum(n.used_memory_peak for n in nodes),
        maxmemory=sum(n.maxmemory for n in nodes),
        maxmemory_policy=",".join(policies),
        databases=dict(sorted(databases.items())),
        evicted_keys=sum(n.evicted_keys for n in nodes),
        expired_keys=sum(n.expired_keys for n in nodes),
        connected_clients=sum(n.connected_clients for n in nodes),
        ops_per_s=sum(n.ops_per_s for n in nodes),
        keyspace_hits=hits,
        keyspace_misses=misses,
        hit_rate_pct=hit_rate(hits, misses),
    )


def validate_window(window_s: float) -> None:
    if not 0 < window_s <= 3600:
        raise UsageError(
            f"--window must be more than 0 and at most 3600 seconds, not {window_s:g}",
            hint="e.g. --window 5 compares two samples taken 5 s apart",
        )


def stats(
    redis: RedisAdapter,
    window_s: float,
    sample_size: int,
    threshold_pct: float,
    sleep: Callable[[float], None] = time.sleep,
    min_lookups: int = 0,
) -> CacheStatsReport:
    """``min_lookups``: a hit rate over fewer lookups is not judged (the window's when it has
    enough, else the cumulative one when that has enough, else "insufficient")."""
    validate_window(window_s)
    nodes = redis.primaries()
    # The window comes first: the breakdown's MEMORY USAGE calls count as lookups themselves.
    before = [node.info() for node in nodes]
    sleep(window_s)
    after = [node.info("stats") for node in nodes]
    prefixes = _prefix_breakdown(nodes, sample_size)
    per_node = [_node_stats(node.name, info) for node, info in zip(nodes, before, strict=True)]
    total = _sum_stats(per_node)
    window_hits = sum(
        int(a.get("keyspace_hits", 0)) - int(b.get("keyspace_hits", 0))
        for a, b in zip(after, before, strict=True)
    )
    window_misses = sum(
        int(a.get("keyspace_misses", 0)) - int(b.get("keyspace_misses", 0))
        for a, b in zip(after, before, strict=True)
    )
    recent = hit_rate(window_hits, window_misses)
    cumulative_lookups = total.keyspace_hits + total.keyspace_misses
    if recent is not None and window_hits + window_misses >= min_lookups:
        judged = recent
    elif total.hit_rate_pct is not None and cumulative_lookups >= min_lookups:
        judged = total.hit_rate_pct
    else:
        judged = None
    if judged is not None:
        verdict = Verdict.OK if judged >= threshold_pct else Verdict.WARN
    else:
        verdict = Verdict.INSUFFICIENT if cumulative_lookups else Verdict.IDLE
    return CacheStatsReport(
        target=redis.display_url,
        cluster=redis.is_cluster,
        nodes=per_node,
        total=total,
        hit_rate_pct=total.hit_rate_pct,
        window_s=window_s,
        window_hits=window_hits,
        window_misses=window_misses,
        window_hit_rate_pct=recent,
        threshold_pct=threshold_pct,
        verdict=verdict,
        sample_size=sum(p.sampled for p in prefixes),
        prefixes=prefixes,
    )


def _scan_some(node: RedisNode, match: str, want: int, count: int, max_calls: int) -> list[bytes]:
    """Up to ``want`` distinct keys matching ``match`` from at most ``max_calls`` SCANs."""
    seen: dict[bytes, None] = {}
    cursor = 0
    for _ in range(max_calls):
        cursor, keys = node.scan(cursor, match, count)
        for key in keys:
            seen.setdefault(key, None)
        if cursor == 0 or len(seen) >= want:
            break
    return list(seen)[:want]


def _prefix_breakdown(nodes: list[RedisNode], sample_size: int) -> list[PrefixShare]:
    counts: dict[str, int] = {}
    sizes: dict[str, int] = {}
    sized: dict[str, int] = {}
    estimated: dict[str, float] = {}
    per_node = max(1, sample_size // len(nodes))
    for node in nodes:
        keys = _scan_some(node, "*", per_node, 1000, max_calls=max(10, per_node // 10))
        if not keys:
            continue
        dbsize = node.dbsize()
        for key, size in zip(keys, node.memory_usage(keys), strict=True):
            prefix = prefix_of(key)
            counts[prefix] = counts.get(prefix, 0) + 1
            estimated[prefix] = estimated.get(prefix, 0.0) + dbsize / len(keys)
            if size is not None:
                sizes[prefix] = sizes.get(prefix, 0) + size
                sized[prefix] = sized.get(prefix, 0) + 1
    sampled = sum(counts.values())
    shares = [
        PrefixShare(
            prefix=prefix,
            sampled=n,
            share_pct=round(n * 100 / sampled, 1),
            estimated_keys=round(estimated[prefix]),
            sampled_bytes=sizes.get(prefix, 0),
            avg_bytes=round(sizes[prefix] / sized[prefix], 1) if sized.get(prefix) else None,
        )
        for prefix, n in counts.items()
    ]
    return sorted(shares, key=lambda p: (-p.sampled, p.prefix))


# ---------------------------------------------------------------------------------- clear


@dataclass
class ClearPlan:
    pattern: str
    target: str
    nodes: list[str]
    #: keys in the database(s) before the clear
    total_keys: int
    #: keys the pattern matches: counted exactly, or estimated from a random sample
    matching: int
    exact: bool
    sample: list[str]
    #: FLUSHDB ASYNC does exactly the same (the pattern matches every key, none is kept)
    flush: bool
    #: keys never deleted by a clear although they match (the maintenance flag)
    kept: list[str] = field(default_factory=list)

    @property
    def about(self) -> str:
        return f"{self.matching:,}" if self.exact else f"about {self.matching:,}"


@dataclass
class ClearReport:
    pattern: str
    target: str
    method: str  # "flushdb async" or "scan+unlink"
    deleted: int
    per_node: dict[str, int]
    seconds: float
    dry_run: bool = False
    kept: list[str] = field(default_factory=list)


def plan_clear(
    redis: RedisAdapter,
    pattern: str,
    *,
    keep: list[str],
    count_exactly: bool,
    exact_limit: int,
    scan_count: int,
    estimate_sample: int = 2000,
) -> ClearPlan:
    """What `cache clear PATTERN` would delete: a count and a sample, before anything goes.

    The count is exact when asked (--dry-run) or when the keyspace has at most ``exact_limit``
    keys (one extra SCAN pass); otherwise it is estimated from ``estimate_sample`` random keys,
    so that the preview of a million-key clear costs milliseconds rather than a second pass.
    """
    regex = glob_regex(pattern)
    nodes = redis.primaries()
    sizes = [node.dbsize() for node in nodes]
    total = sum(sizes)
    kept = [k for k in keep if regex.fullmatch(k.encode()) and redis.pttl(k) != -2]
    everything = pattern == "*"
    sample: list[str] = []
    for node in nodes:
        if len(sample) >= SAMPLE_SHOWN:
            break
        found = _scan_some(node, pattern, SAMPLE_SHOWN + len(kept), scan_count, SAMPLE_SCAN_CALLS)
        sample += [_text(k) for k in found if _text(k) not in kept]
    sample = sample[:SAMPLE_SHOWN]
    if everything:
        matching, exact = total - len(kept), True
    elif count_exactly or total <= exact_limit:
        matching, exact = sum(_count(node, pattern, scan_count) for node in nodes), True
        matching -= len(kept)
    else:
        estimate = 0.0
        for node, size in zip(nodes, sizes, strict=True):
            drawn = node.random_keys(min(estimate_sample, size)) if size else []
            if drawn:
                estimate += size * sum(1 for k in drawn if regex.fullmatch(k)) / len(drawn)
        matching, exact = round(estimate), False
        if matching == 0 and sample:
            matching = len(sample)  # rare keys the random draw missed: at least these
    return ClearPlan(
        pattern=pattern,
        target=redis.display_url,
        nodes=[n.name for n in nodes],
        total_keys=total,
        matching=max(0, matching),
        exact=exact,
        sample=sample,
        flush=everything and not kept,
        kept=kept,
    )


@dataclass
class ClearOutcome:
    """`cache clear`: the plan shown first, and what was done (nothing, on --dry-run)."""

    plan: ClearPlan
    report: ClearReport

    @property
    def nothing_matched(self) -> bool:
        """No key to delete (or only the kept ones): nothing was asked, nothing audited."""
        return self.plan.exact and self.plan.matching == 0


def clear_keys(rt: Runtime, pattern: str, *, rate: float | None = None) -> ClearOutcome:
    """`cache clear PATTERN`: the plan (a count and a sample), confirmation through the run
    context's Guard, then SCAN + pipelined UNLINK (or FLUSHDB ASYNC when that is the same).
    The maintenance flag is never deleted. Input is checked before Redis is opened."""
    glob_regex(pattern)
    if rate is not None and rate <= 0:
        raise UsageError("--rate must be more than 0 keys per second")
    s, guard = rt.settings, rt.guard
    with rt.redis() as redis:
        plan = plan_clear(
            redis,
            pattern,
            keep=[s.maintenance.key],
            count_exactly=guard.dry_run,
            exact_limit=s.cache.clear_exact_limit,
            scan_count=s.cache.scan_count,
        )
        if plan.exact and plan.matching == 0:
            report = ClearReport(pattern, plan.target, "none", 0, {}, 0.0, dry_run=guard.dry_run)
            return ClearOutcome(plan, report)
        change = Change(
            action="cache clear",
            summary=_clear_summary(plan),
            details=[*plan.sample, *(["..."] if plan.matching > len(plan.sample) else [])],
            target=plan.target,
        )
        with guard.mutation(change) as proceed:
            if not proceed:
                method = "flushdb async" if plan.flush and not rate else "scan+unlink"
                report = ClearReport(
                    pattern, plan.target, method, 0, {}, 0.0, dry_run=True, kept=plan.kept
                )
                return ClearOutcome(plan, report)
            with rt.progress(f"deleting {pattern}", plan.matching or None) as task:
                deleted = 0

                def advance(n: int) -> None:
                    nonlocal deleted
                    deleted += n
                    if deleted > plan.matching:  # the estimate was low, or keys were added
                        task.update(total=deleted)
                    task.advance(n)

                report = clear(
                    redis, plan, scan_count=s.cache.scan_count, rate=rate, progress=advance
                )
    return ClearOutcome(plan, report)


def _clear_summary(plan: ClearPlan) -> str:
    nodes = f" ({len(plan.nodes)} primaries)" if len(plan.nodes) > 1 else ""
    how = " with FLUSHDB ASYNC" if plan.flush else ""
    kept = f"; keeping {', '.join(plan.kept)}" if plan.kept else ""
    return (
        f"delete {plan.about} of {plan.total_keys:,} keys matching {plan.pattern!r}"
        f" in {plan.target}{nodes}{how}{kept}"
    )


def _count(node: RedisNode, pattern: str, scan_count: int) -> int:
    n, cursor = 0, 0
    while True:
        cursor, keys = node.scan(cursor, pattern, scan_count)
        n += len(set(keys))
        if cursor == 0:
            return n


def clear(
    redis: RedisAdapter,
    plan: ClearPlan,
    *,
    scan_count: int,
    rate: float | None = None,
    progress: Callable[[int], None] = lambda n: None,
    sleep: Callable[[float], None] = time.sleep,
) -> ClearReport:
    """Delete what ``plan`` describes; on a dropped connection, say how many keys went already.

    Each round trip UNLINKs the previous SCAN's keys and fetches the next ones, on one
    connection per primary. ``rate`` caps deletes per second to spare a loaded server.
    """
    started = time.monotonic()
    per_node: dict[str, int] = {}
    if plan.flush and not rate:
        for node in redis.primaries():
            per_node[node.name] = node.dbsize()
            try:
                node.flushdb_async()
            except ServiceError as exc:
                raise _interrupted(exc, sum(per_node.values()) - per_node[node.name]) from None
            progress(per_node[node.name])
        return ClearReport(
            plan.pattern,
            plan.target,
            "flushdb async",
            sum(per_node.values()),
            per_node,
            round(time.monotonic() - started, 3),
        )
    kept = frozenset(k.encode() for k in plan.kept)
    count = scan_count if not rate else max(1, min(scan_count, int(rate / 10) or 1))
    done = 0
    for node in redis.primaries():
        per_node[node.name] = 0
        deleter = node.delete_matching(plan.pattern, count, keep=kept)
        try:
            for deleted in deleter:
                per_node[node.name] += deleted
                done += deleted
                progress(deleted)
                if rate:
                    ahead = done / rate - (time.monotonic() - started)
                    if ahead > 0:
                        sleep(ahead)
        except ServiceError as exc:
            raise _interrupted(exc, done, deleter.in_flight) from None
    return ClearReport(
        plan.pattern,
        plan.target,
        "scan+unlink",
        done,
        per_node,
        round(time.monotonic() - started, 3),
        kept=plan.kept,
    )


def _interrupted(exc: ServiceError, done: int, in_flight: int = 0) -> ServiceError:
    """The error that stopped a clear, with how far it got and how to finish it."""
    extra = f" (and perhaps the {in_flight:,} in flight)" if in_flight else ""
    if isinstance(exc, Unreachable):
        hint = "when Redis is back, run the same clear again to delete the rest"
    else:  # Redis is up and said no: waiting will not help, the cause must go first
        cause = exc.hint or "see the error above"
        hint = f"{cause}; then run the same clear again to delete the rest"
    return type(exc)(f"{exc.message}; {done:,} keys already deleted{extra}", hint=hint)


# ----------------------------------------------------------------------------- keys, bigkeys


@dataclass
class KeyEntry:
    key: str
    type: str
    ttl_s: float | None  # None: no expiry
    bytes: int | None
    node: str


@dataclass
class KeysReport:
    target: str
    pattern: str
    keys: list[KeyEntry]
    #: more keys match than were listed
    truncated: bool


def _entries(node: RedisNode, keys: list[bytes]) -> list[KeyEntry]:
    return [
        KeyEntry(_text(key), kind, None if ttl < 0 else round(ttl / 1000, 1), size, node.name)
        for key, (kind, ttl, size) in zip(keys, node.describe(keys), strict=True)
        if kind != "none"
    ]


def list_keys(redis: RedisAdapter, pattern: str, limit: int, scan_count: int) -> KeysReport:
    glob_regex(pattern)
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    entries: list[KeyEntry] = []
    truncated = False
    for node in redis.primaries():
        seen: dict[bytes, None] = {}
        cursor = 0
        while True:
            cursor, keys = node.scan(cursor, pattern, scan_count)
            seen.update(dict.fromkeys(keys))
            if len(entries) + len(seen) > limit:
                truncated = True
                break
            if cursor == 0:
                break
        entries += _entries(node, list(seen)[: limit - len(entries)])
        if truncated:
            break
    return KeysReport(redis.display_url, pattern, sorted(entries, key=lambda e: e.key), truncated)


@dataclass
class BigKeysReport:
    target: str
    #: "scan": every key was measured; "sample": only --sample keys
    method: str
    #: keys measured, of the keys the database(s) held when it began (DBSIZE)
    seen: int
    total_keys: int
    seen_bytes: int
    keys: list[KeyEntry]
    seconds: float = 0.0


def bigkeys(
    redis: RedisAdapter,
    sample: int | None,
    top: int,
    scan_count: int,
    *,
    rate: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> BigKeysReport:
    """The largest keys by MEMORY USAGE: of every key (like `redis-cli --memkeys`), or of
    ``sample`` keys spread over the primaries.

    The whole walk is SCAN batches of ``scan_count`` keys, each measured in one pipeline with
    the next SCAN already sent; ``rate`` caps keys/s to spare a loaded server.
    """
    if (sample is not None and sample < 1) or top < 1:
        raise UsageError("--sample and --top must be at least 1")
    if rate is not None and rate <= 0:
        raise UsageError("--rate must be more than 0 keys per second")
    started = time.monotonic()
    nodes = redis.primaries()
    total = sum(node.dbsize() for node in nodes)
    if sample is not None:
        per_node = max(1, sample // len(nodes))
        entries: list[KeyEntry] = []
        for node in nodes:
            keys = _scan_some(node, "*", per_node, scan_count, max_calls=max(10, per_node))
            entries += _entries(node, keys)
        ranked = sorted(entries, key=lambda e: (-(e.bytes or 0), e.key))
        return BigKeysReport(
            redis.display_url,
            "sample",
            len(entries),
            total,
            sum(e.bytes or 0 for e in entries),
            ranked[:top],
            round(time.monotonic() - started, 3),
        )
    count = scan_count if not rate else max(1, min(scan_count, int(rate / 10) or 1))
    largest: list[tuple[int, bytes, int]] = []  # a min-heap of (bytes, key, node index)
    seen = seen_bytes = 0
    for index, node in enumerate(nodes):
        for batch in node.memory_scan(count):
            seen += len(batch)
            for key, size in batch:
                seen_bytes += size
                if len(largest) < top:
                    heapq.heappush(largest, (size, key, index))
                elif size > largest[0][0]:
                    heapq.heapreplace(largest, (size, key, index))
            if rate:
                ahead = seen / rate - (time.monotonic() - started)
                if ahead > 0:
                    sleep(ahead)
    found: list[KeyEntry] = []
    for index, node in enumerate(nodes):
        found += _entries(node, [key for _, key, i in largest if i == index])
    ranked = sorted(found, key=lambda e: (-(e.bytes or 0), e.key))
    return BigKeysReport(
        redis.display_url,
        "scan",
        seen,
        total,
        seen_bytes,
        ranked,
        round(time.monotonic() - started, 3),
    )


# ----------------------------------------------------------------------------------- warm


@dataclass
class WarmResult:
    path: str
    status: int | None
    latency_ms: float | None
    #: the backend's X-Cache header: MISS (now cached), HIT (was cached already)
    cache: str
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class WarmReport:
    api_url: str
    concurrency: int
    results: list[WarmResult]
    seconds: float
    hit_rate_before_pct: float | None
    hit_rate_after_pct: float | None

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


def _cumulative_hit_rate(redis: RedisAdapter) -> float | None:
    infos = [node.info("stats") for node in redis.primaries()]
    return hit_rate(
        sum(int(i.get("keyspace_hits", 0)) for i in infos),
        sum(int(i.get("keyspace_misses", 0)) for i in infos),
    )


def warm_cache(rt: Runtime, paths: list[str] | None, concurrency: int | None) -> WarmReport:
    """`cache warm`: the given paths (default cache.warm_paths), ``concurrency`` at a time
    (default cache.warm_concurrency), on one HTTP pool of that size."""
    s = rt.settings
    chosen = list(paths or s.cache.warm_paths)
    limit = concurrency or s.cache.warm_concurrency
    _check_warm(chosen, limit)
    with (
        rt.http(connections=limit) as http,
        rt.redis() as redis,
        rt.progress("warming", len(chosen)) as task,
    ):
        return warm(http, redis, s.api.url, chosen, limit, progress=task.advance)


def _check_warm(paths: list[str], concurrency: int) -> None:
    if not paths:
        raise UsageError(
            "no endpoints to warm",
            hint="list them in cache.warm_paths (config file) or pass --path /api/...",
        )
    bad = [p for p in paths if not p.startswith("/")]
    if bad:
        raise UsageError(f"warm paths must start with '/': {', '.join(bad)}")
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")


def warm(
    http: HttpAdapter,
    redis: RedisAdapter,
    api_url: str,
    paths: list[str],
    concurrency: int,
    progress: Callable[[int], None] = lambda n: None,
) -> WarmReport:
    """Request each backend path (at most ``concurrency`` at a time) so that it gets cached."""
    _check_warm(paths, concurrency)
    before = _cumulative_hit_rate(redis)
    base = api_url.rstrip("/")

    def fetch(path: str) -> WarmResult:
        try:
            response = http.get(base + path)
        except ServiceError as exc:
            result = WarmResult(path, None, None, "", exc.message)
        else:
            cache = response.headers.get("x-cache", "")
            error = "" if 200 <= response.status < 300 else f"HTTP {response.status}"
            result = WarmResult(path, response.status, round(response.latency_ms, 1), cache, error)
        progress(1)
        return result

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=min(concurrency, len(paths))) as pool:
        results = list(pool.map(fetch, paths))
    seconds = round(time.monotonic() - started, 3)
    return WarmReport(api_url, concurrency, results, seconds, before, _cumulative_hit_rate(redis))
