"""`travellr-ops cache`: the runbook's `npm run cache:stats|clear|warm`, `redis-cli INFO memory`,
`KEYS *` and `FLUSHDB`, safe on a loaded server and on a Redis Cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from travellr_ops.cli.common import (
    DryRunOpt,
    JsonOpt,
    QuietOpt,
    YesOpt,
    exit_with,
    new_group,
    use,
)

if TYPE_CHECKING:
    from travellr_ops.ops.cache import (
        BigKeysReport,
        CacheStatsReport,
        ClearReport,
        KeyEntry,
        KeysReport,
        NodeStats,
        WarmReport,
    )

app = new_group(
    "cache",
    "Redis cache: stats, clear, warm, keys, bigkeys (a Redis Cluster node's URL works too).",
)


def _size(n: float | None) -> str:
    from travellr_ops.vocab.units import format_bytes

    return "" if n is None else format_bytes(n)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


# ---------------------------------------------------------------------------------- stats


@app.command()
def stats(
    ctx: typer.Context,
    window: Annotated[
        str,
        typer.Option(
            help="Time between the two samples the recent hit rate comes from (2s, 500ms, 1m;"
            " a bare number is seconds)."
        ),
    ] = "2s",
    sample: Annotated[
        int | None,
        typer.Option(
            help="Keys sampled for the per-prefix breakdown (default: cache.sample_size)."
        ),
    ] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Memory, keys per database, evictions, clients, ops/s and the hit rate, cumulative and
    over --window; a per-prefix breakdown from a sample. Exit 1 when the hit rate is under
    thresholds.cache_hit_rate_pct (judged over the window, else since start, over at least
    monitor.cache_min_lookups lookups; fewer: insufficient, exit 0)."""
    from travellr_ops.ops.cache import stats as do_stats
    from travellr_ops.ops.cache import validate_window
    from travellr_ops.vocab.timespec import parse_duration

    window_s = parse_duration(window, "--window")
    validate_window(window_s)
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    s = app_ctx.settings
    with app_ctx.runtime.redis() as redis:
        report = do_stats(
            redis,
            window_s,
            sample or s.cache.sample_size,
            s.thresholds.cache_hit_rate_pct,
            min_lookups=s.monitor.cache_min_lookups,
        )
    out.result(report, lambda console: _render_stats(console, report))
    if report.verdict.exit_code:
        out.warn(
            f"hit rate {_pct(report.window_hit_rate_pct or report.hit_rate_pct)}"
            f" is under the {report.threshold_pct:g}% threshold"
        )
        raise typer.Exit(report.verdict.exit_code)


def _render_stats(console: Console, r: CacheStatsReport) -> None:
    from travellr_ops.output import table, verdict

    kind = f"Redis Cluster, {len(r.nodes)} primaries" if r.cluster else "Redis"
    console.print(f"{r.target} ({kind})")
    columns = [*r.nodes, r.total] if r.cluster else r.nodes
    values = [_stats_column(n) for n in columns]
    rows = [[label, *(v[i] for v in values)] for i, label in enumerate(_STATS_ROWS)]
    console.print(table(None, ["", *(n.node for n in columns)], rows))
    recent = (
        f"{_pct(r.window_hit_rate_pct)} over the last {r.window_s:g} s"
        f" ({r.window_hits + r.window_misses:,} lookups)"
    )
    console.print(
        f"hit rate: {_pct(r.hit_rate_pct)} cumulative, {recent};"
        f" threshold {r.threshold_pct:g}%: {verdict(r.verdict)}"
    )
    if r.prefixes:
        console.print(
            table(
                f"key prefixes in a sample of {r.sample_size:,} keys",
                ["prefix", "sampled", "share", "est. keys", "avg size", "sampled memory"],
                [
                    [
                        p.prefix,
                        f"{p.sampled:,}",
                        f"{p.share_pct:.1f}%",
                        f"~{p.estimated_keys:,}",
                        _size(p.avg_bytes),
                        _size(p.sampled_bytes),
                    ]
                    for p in r.prefixes
                ],
            )
        )


_STATS_ROWS = (
    "memory used",
    "memory peak",
    "maxmemory",
    "eviction policy",
    "keys",
    "evicted keys",
    "expired keys",
    "clients",
    "ops/s",
    "hit rate",
)


def _stats_column(n: NodeStats) -> list[str]:
    keys = ", ".join(f"{db}: {c['keys']:,}" for db, c in n.databases.items()) or "0"
    return [
        _size(n.used_memory),
        _size(n.used_memory_peak),
        _size(n.maxmemory) if n.maxmemory else "none",
        n.maxmemory_policy,
        keys,
        f"{n.evicted_keys:,}",
        f"{n.expired_keys:,}",
        str(n.connected_clients),
        f"{n.ops_per_s:,}",
        _pct(n.hit_rate_pct),
    ]


# ---------------------------------------------------------------------------------- clear


@app.command()
def clear(
    ctx: typer.Context,
    pattern: Annotated[
        str,
        typer.Argument(help="Glob of the keys to delete, e.g. 'search:*' (default: every key)."),
    ] = "*",
    rate: Annotated[
        float | None,
        typer.Option(help="Delete at most this many keys per second (spares a loaded server)."),
    ] = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Delete the keys matching PATTERN with SCAN + pipelined UNLINK (never KEYS, never a
    blocking DEL); a count and a sample first, then confirmation. The maintenance flag is
    never deleted."""
    from travellr_ops.ops.cache import clear_keys

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    outcome = clear_keys(app_ctx.guarded(yes, dry_run), pattern, rate=rate)
    plan, report = outcome.plan, outcome.report
    document = {"plan": plan, "report": report}
    if outcome.nothing_matched:
        out.result(document)
        if plan.kept:
            out.info(
                f"only {', '.join(plan.kept)} matches {pattern!r} in {plan.target}, and a"
                " clear never deletes the maintenance flag (maintenance off does):"
                " nothing to delete"
            )
        else:
            out.info(f"no key matches {pattern!r} in {plan.target}: nothing to delete")
        return
    if report.dry_run:
        out.result(document)
        return
    out.result(document, lambda c: _render_clear(c, report))
    out.success(f"deleted {report.deleted:,} keys matching {pattern!r} in {report.seconds:.2f} s")


def _render_clear(console: Console, r: ClearReport) -> None:
    if len(r.per_node) > 1:
        for node, n in r.per_node.items():
            console.print(f"  {node}: {n:,} deleted")
    console.print(f"{r.deleted:,} keys deleted ({r.method}, {r.seconds:.2f} s)")


# ----------------------------------------------------------------------------- keys, bigkeys


@app.command()
def keys(
    ctx: typer.Context,
    pattern: Annotated[str, typer.Argument(help="Glob of the keys to list, e.g. 'trip:*'.")],
    limit: Annotated[int, typer.Option(help="List at most this many keys.")] = 100,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List keys matching PATTERN with their type, TTL and size (SCAN, bounded; never KEYS)."""
    from travellr_ops.ops.cache import list_keys

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    with app_ctx.runtime.redis() as redis:
        report = list_keys(redis, pattern, limit, app_ctx.settings.cache.scan_count)
    out.result(report, lambda console: _render_keys(console, report))
    if report.truncated:
        out.info(f"more keys match {pattern!r}: showing the first {limit} (raise --limit)")


def _key_rows(entries: list[KeyEntry], with_node: bool) -> list[list[Any]]:
    return [
        [
            e.key,
            e.type,
            "none" if e.ttl_s is None else f"{e.ttl_s:g} s",
            _size(e.bytes),
            *([e.node] if with_node else []),
        ]
        for e in entries
    ]


def _render_keys(console: Console, r: KeysReport) -> None:
    from rich.markup import escape

    from travellr_ops.output import table

    with_node = len({e.node for e in r.keys}) > 1
    rows = [[escape(str(c)) for c in row] for row in _key_rows(r.keys, with_node)]
    title = f"{len(r.keys)} keys matching {escape(r.pattern)}" + (" (more match)" * r.truncated)
    console.print(table(title, ["key", "type", "ttl", "size", *(["node"] * with_node)], rows))


@app.command()
def bigkeys(
    ctx: typer.Context,
    sample: Annotated[
        int | None,
        typer.Option(help="Measure only this many keys (default: every key, with SCAN)."),
    ] = None,
    top: Annotated[int, typer.Option(help="How many of the largest to show.")] = 10,
    rate: Annotated[
        float | None,
        typer.Option(help="Measure at most this many keys per second (spares a loaded server)."),
    ] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The largest keys by MEMORY USAGE, walking every key with SCAN (like redis-cli
    --memkeys) unless --sample; says how many keys it measured of how many."""
    from travellr_ops.ops.cache import bigkeys as do_bigkeys

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    with app_ctx.runtime.redis() as redis:
        report = do_bigkeys(redis, sample, top, app_ctx.settings.cache.scan_count, rate=rate)
    out.result(report, lambda console: _render_bigkeys(console, report))


def _render_bigkeys(console: Console, r: BigKeysReport) -> None:
    from rich.markup import escape

    from travellr_ops.output import table

    with_node = len({e.node for e in r.keys}) > 1
    rows = [[escape(str(c)) for c in row] for row in _key_rows(r.keys, with_node)]
    how = "every key" if r.method == "scan" else "a sample"
    title = (
        f"largest {len(r.keys)} keys in {r.target}: {how}, {r.seen:,} of {r.total_keys:,} keys"
        f" measured ({_size(r.seen_bytes)}) in {r.seconds:.2f} s"
    )
    console.print(table(title, ["key", "type", "ttl", "size", *(["node"] * with_node)], rows))


# ----------------------------------------------------------------------------------- warm


@app.command()
def warm(
    ctx: typer.Context,
    path: Annotated[
        list[str] | None,
        typer.Option(
            "--path", help="A backend path to request (repeatable; default: cache.warm_paths)."
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(help="Requests in flight at once (default: cache.warm_concurrency)."),
    ] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fill the cache by requesting the backend endpoints of cache.warm_paths concurrently;
    per-endpoint status and latency, hit rate before/after. Exit 1 when an endpoint fails."""
    from travellr_ops.ops.cache import warm_cache

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    report = warm_cache(app_ctx.runtime, path, concurrency)
    out.result(report, lambda console: _render_warm(console, report))
    failed = [r for r in report.results if not r.ok]
    if failed:
        out.warn(f"{len(failed)} of {len(report.results)} endpoints failed")
    exit_with(report.ok)


def _render_warm(console: Console, r: WarmReport) -> None:
    from rich.markup import escape

    from travellr_ops.output import table, verdict

    rows = [
        [
            escape(x.path),
            verdict("ok" if x.ok else "fail"),
            "" if x.status is None else x.status,
            "" if x.latency_ms is None else f"{x.latency_ms:.1f} ms",
            x.cache,
            escape(x.error),
        ]
        for x in r.results
    ]
    console.print(
        table(
            f"warmed {len(r.results)} endpoints of {r.api_url} in {r.seconds:g} s"
            f" ({r.concurrency} at a time)",
            ["path", "verdict", "status", "latency", "cache", "error"],
            rows,
        )
    )
    console.print(
        f"Redis hit rate (cumulative): {_pct(r.hit_rate_before_pct)} before,"
        f" {_pct(r.hit_rate_after_pct)} after"
    )
