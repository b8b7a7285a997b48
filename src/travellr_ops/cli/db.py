"""`travellr-ops db`: MongoDB diagnosis (the runbook's mongosh, db.stats(), getIndexes(),
explain("executionStats"), `npm run db:indexes list|analyze`, "add missing indexes")."""

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
    from travellr_ops.ops.db.indexes import AnalyzeReport, EnsureReport, IndexInfo
    from travellr_ops.ops.db.queries import ExplainReport, ProfileStatus, SlowReport
    from travellr_ops.ops.db.server import (
        DbStatsReport,
        MongoRestartReport,
        PingReport,
        ServerStatusReport,
    )

app = new_group("db", "MongoDB diagnosis: ping, status, stats, indexes, explain, profiling.")
indexes_app = new_group("indexes", "The app's indexes: list, analyze, ensure.")
app.add_typer(indexes_app)

CollectionArg = Annotated[str | None, typer.Argument(help="One collection (default: all).")]


def _size(n: float | None) -> str:
    from travellr_ops.vocab.units import format_bytes

    return "" if n is None else format_bytes(n)


# ----------------------------------------------------------------------------------- ping


@app.command()
def ping(ctx: typer.Context, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Connection test: latency, version, topology, member states; why, when it fails."""
    from travellr_ops.ops.db.server import ping as do_ping

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    with app_ctx.runtime.mongo() as mongo:
        report = do_ping(
            mongo,
            history=app_ctx.settings.state_dir / "db-seen.json",
            platform=app_ctx.settings.platform,
        )
    out.result(report, lambda console: _render_ping(console, report))
    if report.problem is not None:
        out.error(report.problem.message, hint=report.problem.hint)
        raise typer.Exit(report.problem.verdict.exit_code)


def _render_ping(console: Console, r: PingReport) -> None:
    from travellr_ops.output import table, verdict

    if r.latency_ms is None:
        console.print(f"{r.uri}: {verdict('down')}")
        return
    who = ", ".join(r.authenticated_as or []) or "not authenticated"
    word = "ok" if r.ok else "fail"
    console.print(
        f"{r.uri}: {verdict(word)}  {r.latency_ms:.2f} ms  "
        + (f"MongoDB {r.version}  " if r.version else "")
        + f"{r.topology}"
        + (f" {r.set_name}" if r.set_name else "")
        + f" ({r.role})"
        + (f"  user: {who}" if r.authenticated_as is not None else "")
    )
    if r.problem is not None:
        console.print(f"  {r.problem.message}")
    if r.members:
        rows = [
            [m.name + (" (this)" if m.self else ""), m.state, m.health, _lag(m.lag_s)]
            for m in r.members
        ]
        console.print(table(None, ["member", "state", "health", "lag"], rows))
    for note in r.notes:
        console.print(f"[dim]note:[/] {note}")


def _lag(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds:.1f} s"


# --------------------------------------------------------------------------------- status


@app.command()
def status(
    ctx: typer.Context,
    interval: Annotated[
        str,
        typer.Option(help="Time between the two samples the rates come from (500ms, 1s, 1m)."),
    ] = "1s",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Vital signs from serverStatus: uptime, connections, operation rates, memory, replication."""
    from travellr_ops.errors import UsageError
    from travellr_ops.ops.db.server import status as do_status
    from travellr_ops.vocab.timespec import parse_duration

    interval_s = parse_duration(interval, "--interval")
    if interval_s > 60:
        raise UsageError("--interval must be between 0 and 60 seconds", hint="e.g. --interval 5s")
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    with app_ctx.runtime.mongo() as mongo:
        report = do_status(mongo, interval_s)
    out.result(report, lambda console: _render_status(console, report))


NOT_REPORTED = "not reported"


def _figure(value: Any, unit: str = "") -> str:
    if value is None:
        return NOT_REPORTED
    return f"{value:g}{unit}" if isinstance(value, float) else f"{value}{unit}"


def _render_status(console: Console, r: ServerStatusReport) -> None:
    from travellr_ops.output import table
    from travellr_ops.vocab.timespec import format_duration

    uptime = "" if r.uptime_s is None else f"  up {format_duration(r.uptime_s)}"
    # named as db ping names it: the address in mongo.uri, then what answers there
    console.print(f"{r.uri}: MongoDB {r.version or '?'}{uptime}")
    rows: list[list[Any]] = [
        ["server", f"{r.process or '?'} on {r.host or '?'}"],
        ["connections", ", ".join(f"{k} {_figure(v)}" for k, v in r.connections.items())],
        [
            f"operations/s (over {r.sample_interval_s:g} s)",
            ", ".join(f"{k} {v:g}" for k, v in r.opcounters_per_s.items()),
        ],
        ["memory", ", ".join(f"{k} {_figure(v, ' MiB')}" for k, v in r.memory_mb.items())],
        ["replication", ", ".join(f"{k} {v}" for k, v in r.replication.items() if v)],
    ]
    for name, values in r.optional.items():
        text = (
            ", ".join(f"{k} {_figure(v)}" for k, v in values.items())
            if isinstance(values, dict)
            else str(values)
        )
        rows.append([name, text])
    console.print(table(None, ["", "value"], rows))


# ---------------------------------------------------------------------------------- stats


@app.command()
def stats(
    ctx: typer.Context,
    collection: Annotated[
        str | None, typer.Option("--collection", "-C", help="Only this collection.")
    ] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Database and per-collection sizes, document counts, index sizes, disk usage."""
    from travellr_ops.ops.db.server import stats as do_stats

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    with app_ctx.runtime.mongo() as mongo:
        report = do_stats(mongo, collection)
    out.result(report, lambda console: _render_stats(console, report))


def _render_stats(console: Console, r: DbStatsReport) -> None:
    from travellr_ops.output import table

    line = (
        f"database {r.database}: {r.collections} collections, {r.documents or 0:,} documents, "
        f"data {_size(r.data_bytes)}, storage {_size(r.storage_bytes)}, "
        f"indexes {_size(r.index_bytes)}, total {_size(r.total_bytes)}"
    )
    if r.fs_used_bytes is not None and r.fs_total_bytes:
        line += (
            f"; disk {_size(r.fs_used_bytes)} of {_size(r.fs_total_bytes)}"
            f" ({r.fs_used_bytes * 100 / r.fs_total_bytes:.0f}%)"
        )
    console.print(line)
    rows = [
        [
            c.name,
            f"{c.documents:,}",
            _size(c.data_bytes),
            _size(c.storage_bytes),
            "" if c.avg_document_bytes is None else f"{c.avg_document_bytes:.0f} B",
            c.indexes,
            _size(c.index_bytes),
        ]
        for c in r.per_collection
    ]
    console.print(
        table(
            None,
            ["collection", "documents", "data", "storage", "avg doc", "indexes", "index size"],
            rows,
        )
    )


# -------------------------------------------------------------------------------- indexes


@indexes_app.command("list")
def indexes_list(
    ctx: typer.Context,
    collection: CollectionArg = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Every index with its keys, options (unique, TTL, sparse, partial) and size."""
    from travellr_ops.ops.db.indexes import list_indexes

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    with app_ctx.runtime.mongo() as mongo:
        result = list_indexes(mongo, collection)
    data = [{**_index_dict(i)} for i in result]
    out.result(
        {"database": app_ctx.settings.mongo.database, "indexes": data},
        lambda c: _render_indexes(c, result),
    )


def _index_dict(info: IndexInfo) -> dict[str, Any]:
    from travellr_ops.output import to_jsonable

    data: dict[str, Any] = to_jsonable(info)
    data["keys"] = dict(info.keys)
    return data


def _render_indexes(console: Console, infos: list[IndexInfo]) -> None:
    from travellr_ops.ops.db.queries import mongosh_keys
    from travellr_ops.output import table

    rows = [
        [i.collection, i.name, mongosh_keys(i.keys), i.options_text, _size(i.size_bytes)]
        for i in infos
    ]
    console.print(table(None, ["collection", "index", "keys", "options", "size"], rows))


@indexes_app.command("analyze")
def indexes_analyze(ctx: typer.Context, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Explain the app's queries; report collection scans, poor plans, redundant and unused
    indexes, each with the index that fixes it. Exit 1 when there are findings."""
    from travellr_ops.ops.db.indexes import analyze_app

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    report = analyze_app(app_ctx.runtime)
    out.result(report, lambda console: _render_analyze(console, report))
    exit_with(report.clean)


def _render_analyze(console: Console, r: AnalyzeReport) -> None:
    from rich.markup import escape

    from travellr_ops.output import table, verdict

    rows = []
    for q in r.queries:
        if q.plan is None:
            rows.append([q.query, "", "", "", "", f"skipped: {q.skipped}"])
            continue
        p = q.plan
        rows.append(
            [
                q.query,
                " > ".join(p.stages),
                p.index or "",
                f"{p.keys_examined:,}/{p.docs_examined:,}/{p.returned:,}",
                f"{p.time_ms:g} ms",
                q.why,
            ]
        )
    console.print(
        table(
            f"query shapes (from the {r.source}) in {r.database}",
            ["query", "plan", "index", "keys/docs/returned", "time", "why"],
            [[escape(str(c)) for c in row] for row in rows],
        )
    )
    for f in r.findings:
        console.print(
            f"{verdict('fail')} [bold]{f.kind}[/] {escape(f.subject)}: {escape(f.detail)}"
        )
        if f.fix:
            how = " (declared: db indexes ensure creates it)" if f.fix.declared else ""
            console.print(f"    fix: {escape(f.fix.command)}{how}")
    for note in r.notes:
        console.print(f"[dim]note:[/] {escape(note)}")
    if r.clean:
        console.print(f"{verdict('ok')}: no findings")
    else:
        console.print(f"{len(r.findings)} finding(s)")


@indexes_app.command("ensure")
def indexes_ensure(
    ctx: typer.Context,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Create the app's declared indexes that are missing (mongo.indexes_file, else the shipped set)."""
    from travellr_ops.ops.db.indexes import ensure_app

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    report = ensure_app(app_ctx.guarded(yes, dry_run))
    out.result(report, lambda console: _render_ensure(console, report))
    for item in report.problems:
        out.warn(f"{item.collection} {item.keys}: {item.detail}")
    exit_with(not report.problems)


def _render_ensure(console: Console, r: EnsureReport) -> None:
    from travellr_ops.output import table

    rows = [
        [
            i.collection,
            i.keys,
            i.name or "",
            i.state,
            "" if i.documents is None else f"{i.documents:,}",
            "" if i.seconds is None else f"{i.seconds:g} s",
            i.detail,
        ]
        for i in r.items
    ]
    console.print(
        table(
            f"declared indexes ({r.index_file})",
            ["collection", "keys", "name", "state", "documents", "build", "detail"],
            rows,
        )
    )


# -------------------------------------------------------------------------------- explain


@app.command()
def explain(
    ctx: typer.Context,
    collection: Annotated[str, typer.Argument(help="The collection queried.")],
    filter_: Annotated[
        str, typer.Option("--filter", "-f", help="The query filter as JSON: '{\"tripId\": 12}'.")
    ] = "{}",
    sort: Annotated[
        str | None, typer.Option("--sort", "-s", help="Sort as JSON: '{\"date\": -1}'.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Limit, as the app sends it.")] = None,
    json_: Annotated[
        bool, typer.Option("--json", help="Print the summary and the whole plan as JSON.")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """How MongoDB runs a query: stages, index used, keys/documents examined, time."""
    from travellr_ops.ops.db.queries import explain as do_explain

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    with app_ctx.runtime.mongo() as mongo:
        report = do_explain(
            mongo, collection, filter_, sort, limit, app_ctx.settings.mongo.analyze_max_ratio
        )
    out.result(report, lambda console: _render_explain(console, report))


def _render_explain(console: Console, r: ExplainReport) -> None:
    from rich.markup import escape

    from travellr_ops.output import verdict

    s = r.summary
    said = verdict("ok") if r.verdict == "ok" else f"{verdict('warn')} {r.verdict}"
    console.print(f"{escape(r.query)}")
    console.print(f"  plan: {' > '.join(s.stages)}   {said}")
    console.print(
        f"  index: {s.index or 'none (collection scan)'}"
        + (f" {s.index_keys}" if s.index_keys else "")
    )
    console.print(
        f"  examined: {s.keys_examined:,} keys, {s.docs_examined:,} documents;"
        f" returned {s.returned:,}; {s.time_ms:g} ms; {s.rejected_plans} rejected plan(s)"
    )
    if r.suggested_index:
        console.print(f"  fix: {escape(r.suggested_index)}")


# -------------------------------------------------------------------------------- profile


@app.command()
def profile(
    ctx: typer.Context,
    action: Annotated[str, typer.Argument(help="on, off or status.")],
    slowms: Annotated[
        int | None,
        typer.Option(help="Record operations slower than this (default: thresholds.db_query_ms)."),
    ] = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The database profiler: turn recording of slow operations on or off, or show it."""
    from travellr_ops.errors import UsageError
    from travellr_ops.ops.db.queries import profile_status, set_profile

    if action not in ("on", "off", "status"):
        raise UsageError(f"unknown profile action {action!r}", hint="use on, off or status")
    if slowms is not None and (slowms < 0 or action != "on"):
        raise UsageError("--slowms goes with `profile on` and must not be negative")
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    with app_ctx.runtime.mongo() as mongo:
        if action == "status":
            result = profile_status(mongo)
        else:
            threshold = (
                slowms if slowms is not None else int(app_ctx.settings.thresholds.db_query_ms)
            )
            result = set_profile(mongo, app_ctx.guard(yes, dry_run), action == "on", threshold)
    out.result(result, lambda console: _render_profile(console, result))


def _render_profile(console: Console, p: ProfileStatus) -> None:
    console.print(
        f"profiler in {p.database}: level {p.level} ({p.level_name}), slowms {p.slowms}"
        + (f", sample rate {p.sample_rate:g}" if p.sample_rate is not None else "")
    )


@app.command()
def slow(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only since: a duration ago (30m, 1h30m, 1d) or a time (ISO, HH:MM UTC)."
        ),
    ] = None,
    min_ms: Annotated[
        float | None, typer.Option(help="Slower than this (default: thresholds.db_query_ms).")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many operations.")] = 50,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The slowest recent operations the profiler recorded (values hidden)."""
    from travellr_ops.ops.db.queries import slow as do_slow
    from travellr_ops.vocab.timespec import parse_since

    when = parse_since(since) if since is not None else None
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    threshold = app_ctx.settings.thresholds.db_query_ms if min_ms is None else min_ms
    with app_ctx.runtime.mongo() as mongo:
        report = do_slow(mongo, when, threshold, max(limit, 1))
    out.result(report, lambda console: _render_slow(console, report))


def _render_slow(console: Console, r: SlowReport) -> None:
    from rich.markup import escape

    from travellr_ops.output import table

    rows = [
        [
            o.time or "",
            o.op,
            f"{o.millis:g}",
            escape(o.query),
            o.plan or "",
            "/".join(
                "" if v is None else f"{v:,}"
                for v in (o.keys_examined, o.docs_examined, o.returned)
            ),
        ]
        for o in r.operations
    ]
    if rows or not r.notes:  # an empty table says nothing a note does not say better
        console.print(
            table(
                f"operations over {r.min_millis:g} ms in {r.database}",
                ["time", "op", "ms", "query", "plan", "keys/docs/returned"],
                rows,
            )
        )
    for note in r.notes:
        console.print(f"[dim]note:[/] {escape(note)}")


# -------------------------------------------------------------------------------- restart


@app.command()
def restart(
    ctx: typer.Context,
    timeout: Annotated[
        str,
        typer.Option(help="How long to wait for MongoDB to answer again: 90s, 5m (bare: seconds)."),
    ] = "2m",
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Restart the MongoDB service (compose or Kubernetes), then wait until `db ping` is healthy."""
    from travellr_ops.ops.db.server import MongoRestartFailed
    from travellr_ops.ops.db.server import restart as do_restart
    from travellr_ops.vocab.timespec import parse_duration

    timeout_s = parse_duration(timeout, "--timeout")
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    try:
        report = do_restart(app_ctx.guarded(yes, dry_run), timeout_s)
    except MongoRestartFailed as exc:
        failed = exc.report
        out.result(failed, lambda console: _render_restart(console, failed))
        raise
    out.result(report, None if report.dry_run else lambda console: _render_restart(console, report))


def _render_restart(console: Console, r: MongoRestartReport) -> None:
    from travellr_ops.output import verdict

    waited = f", answering after {r.wait.seconds:g} s more" if r.wait else ""
    seconds = r.restart.seconds if r.restart else 0.0
    console.print(
        f"{r.service} on {r.platform}: restarted in {seconds:g} s{waited}:"
        f" {verdict('healthy' if r.healthy else 'unhealthy')}"
    )
