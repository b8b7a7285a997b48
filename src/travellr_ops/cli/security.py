"""`travellr-ops security`: the runbook's weekly security operations (dependency audit, log
review, posture checks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from travellr_ops.cli.common import JsonOpt, QuietOpt, new_group, use
from travellr_ops.errors import ExitCode

if TYPE_CHECKING:
    from travellr_ops.ops.security.audit import AuditResult

app = new_group(
    "security",
    "Security operations: dependency audit, access/app log review, posture checks.",
)

LEVELS = ("low", "moderate", "high", "critical")

PathOpt = Annotated[
    Path | None,
    typer.Option("--path", help="The backend's source directory (default: security.backend_dir)."),
]
OfflineOpt = Annotated[
    bool,
    typer.Option("--offline", help="Ask no live audit service; the offline OSV database only."),
]
TopOpt = Annotated[int | None, typer.Option(min=1, help="Rows per table (default: security.top).")]


FORMATS = ("table", "json", "sarif")


@app.command()
def audit(
    ctx: typer.Context,
    path: PathOpt = None,
    level: Annotated[
        str | None,
        typer.Option(
            help="Exit 1 for findings at or above: low, moderate, high, critical "
            "(default: security.audit_level). An advisory without a label is rated by its "
            "CVSS vector."
        ),
    ] = None,
    only_fixable: Annotated[
        bool,
        typer.Option(
            "--fixable", "--only-fixable", help="Show only findings with a fixed version."
        ),
    ] = False,
    offline: OfflineOpt = False,
    include_dev: Annotated[
        bool | None,
        typer.Option(
            "--include-dev/--production",
            help="Audit devDependencies and requirements-dev files too (default: "
            "security.include_dev, off: production only).",
            show_default=False,
        ),
    ] = None,
    allow_stale: Annotated[
        bool,
        typer.Option(
            "--allow-stale",
            help="Accept an imported OSV database older than security.db_max_age_days as "
            "the only source (a warning, not exit 3).",
        ),
    ] = False,
    max_age: Annotated[
        str | None,
        typer.Option(
            "--max-age",
            metavar="DURATION",
            help="The imported database is stale past this age: 7d, 36h... "
            "(default: security.db_max_age_days).",
        ),
    ] = None,
    output_format: Annotated[
        str,
        typer.Option("--format", help="table, json (as --json) or sarif (SARIF 2.1.0 to stdout)."),
    ] = "table",
    sarif: Annotated[
        Path | None,
        typer.Option(
            "--sarif", metavar="FILE", help="Also write the result as SARIF 2.1.0 to FILE."
        ),
    ] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Audit the backend's dependencies (package-lock.json, requirements*.txt) against npm
    audit, pip-audit and the offline OSV database. Production dependencies only unless
    --include-dev. Exit 1 with findings at --level that no ignore in force accepts; exit 3
    when no advisory source answered, or only an imported database older than
    security.db_max_age_days (the result is unknown, not clean) unless --allow-stale."""
    from travellr_ops import __version__
    from travellr_ops.errors import UsageError
    from travellr_ops.ops.security import osvdb
    from travellr_ops.ops.security import sarif as sarif_mod
    from travellr_ops.ops.security.audit import audit as run_audit
    from travellr_ops.vocab.files import write_output
    from travellr_ops.vocab.timespec import parse_duration

    if level is not None and level not in LEVELS:
        raise UsageError(f"--level must be one of {', '.join(LEVELS)}, not {level!r}")
    if output_format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {output_format!r}")
    max_age_s = parse_duration(max_age, "--max-age") if max_age is not None else None
    app_ctx = use(ctx)
    out = app_ctx.output(json_ or output_format != "table", quiet)
    settings = app_ctx.settings.security
    if max_age_s is not None:
        settings = settings.model_copy(update={"db_max_age_days": max_age_s / 86400})
    result = run_audit(
        path or settings.backend_dir,
        settings,
        level=level,
        only_fixable=only_fixable,
        live=False if offline else None,
        database=osvdb.location(app_ctx.settings.state_dir),
        include_dev=include_dev,
        allow_stale=allow_stale,
    )
    for line in _audit_warnings(result):
        out.warn(line)
    doc = sarif_mod.document(result, __version__) if sarif or output_format == "sarif" else None
    if sarif is not None:
        write_output(sarif, json.dumps(doc, indent=2) + "\n", "the SARIF file")
    out.result(
        doc if output_format == "sarif" else _audit_json(result),
        lambda console: _render_audit(console, result),
    )
    if result.status == "vulnerable":
        raise typer.Exit(ExitCode.CHECK_FAILED)
    if result.status == "unknown":
        if result.answered:
            out.error(
                "audit result unknown: the only source that answered is a stale database",
                hint="run `travellr-ops security db update`, or pass --allow-stale",
            )
        else:
            out.error(
                "audit result unknown: no advisory source answered",
                hint="run `travellr-ops security db update` (or set security.advisories_dir "
                "to OSV records), or let npm audit / pip-audit reach their services",
            )
        raise typer.Exit(ExitCode.UNAVAILABLE)


def _audit_warnings(result: AuditResult) -> list[str]:
    from travellr_ops.vocab.timespec import format_duration

    lines = [f"{s.name}: unknown: {s.detail}" for s in result.sources if s.state == "unknown"]
    lines += [f"not audited (no exact version): {line}" for line in result.unpinned]
    db = result.database
    if db is not None and db.stale:
        lines.append(
            f"the OSV database is stale: {format_duration(db.age_s)} old, more than "
            f"{format_duration(db.max_age_s)}; run `travellr-ops security db update`"
        )
    for use_ in result.ignores:
        if use_.expired:
            still = f"; its {use_.matched} finding(s) count again" if use_.matched else ""
            lines.append(
                f"ignore of {use_.id}{f' in {use_.package}' if use_.package else ''} expired "
                f"on {use_.expires.date()} ({use_.reason}){still}"
            )
    return lines


def _audit_json(result: AuditResult) -> dict[str, Any]:
    from datetime import UTC, datetime

    from travellr_ops.output import to_jsonable

    db = result.database
    now = datetime.now(UTC)
    return {
        "status": result.status,
        "directory": result.directory,
        "files": result.files,
        "packages": result.packages,
        "level": result.level,
        "sources": [
            {"name": s.name, "state": s.state, "detail": s.detail, "findings": len(s.findings)}
            for s in result.sources
        ],
        "findings": result.findings,
        "at_level": len(result.at_level),
        "unpinned": result.unpinned,
        "ignored": [
            {**to_jsonable(i.finding), "reason": i.reason, "expires": i.expires}
            for i in result.ignored
        ],
        "ignores": result.ignores,
        "dev_left_out": result.dev_left_out,
        "include_dev": result.include_dev,
        "database": None
        if db is None
        else {
            "path": db.path,
            "age_s": round(db.age_s),
            "max_age_s": round(db.max_age_s),
            "stale": db.stale,
            "newest_record": db.newest,
            "ecosystems": [
                {
                    "ecosystem": e.ecosystem,
                    "source": e.source,
                    "archive_date": e.archive_date,
                    "imported_at": e.imported_at,
                    "records": e.records,
                    "newest_record": e.newest,
                    "age_s": round(e.age_s(now)),
                }
                for e in db.ecosystems
            ],
        },
        "fix_plan": result.fix_plan,
    }


def _render_audit(console: Console, result: AuditResult) -> None:
    from travellr_ops.output import escape, table
    from travellr_ops.vocab.timespec import format_duration
    from travellr_ops.vocab.verdict import Verdict, styled

    columns = ["package", "ecosystem", "installed", "fixed in", "severity", "ID", "summary"]
    if result.findings:
        rows = [
            [
                f.package + (" (dev)" if f.dev else ""),
                f.ecosystem,
                f.installed,
                f.fixed_in or "-",
                f.severity,
                f.advisory,
                escape(f.summary),
            ]
            for f in result.findings
        ]
        console.print(table(None, columns, rows))
    if result.ignored:
        rows = [
            [
                i.finding.package,
                i.finding.installed,
                i.finding.advisory,
                str(i.expires.date()),
                escape(i.reason),
            ]
            for i in result.ignored
        ]
        console.print(
            table(
                "ignored (accepted until)", ["package", "installed", "ID", "until", "reason"], rows
            )
        )
    plan = result.fix_plan
    if plan.npm or plan.npm_overrides or plan.pip:
        console.print("[bold]fix plan[/]")
        for line in plan.npm:
            console.print(f"  {line}", markup=False)
        if plan.npm_overrides:
            pairs = ", ".join(f'"{k}": "{v}"' for k, v in plan.npm_overrides.items())
            console.print(f'  package.json "overrides": {{{pairs}}}', markup=False)
        for line in plan.pip:
            console.print(f"  {line}", markup=False)
    db = result.database
    if db is not None:
        newest = db.newest.date() if db.newest else "unknown"
        state = " [yellow](stale)[/]" if db.stale else ""
        console.print(
            f"OSV database: {format_duration(db.age_s)} old{state}, newest record {newest}",
            soft_wrap=True,
        )
    sources = ", ".join(f"{s.name} {s.state}" for s in result.sources)
    word = {"vulnerable": Verdict.FAIL, "ok": Verdict.OK, "unknown": Verdict.UNKNOWN}
    scope = (
        "dev included" if result.include_dev else f"{result.dev_left_out} dev dependencies left out"
    )
    console.print(
        f"{styled(word[result.status])}: {len(result.findings)} finding(s), "
        f"{len(result.at_level)} at or above {result.level}, {len(result.ignored)} ignored, "
        f"in {result.packages} packages ({scope}; {sources})",
        soft_wrap=True,
    )


db_app = new_group("db", "The offline OSV advisory database that `security audit` reads.")
app.add_typer(db_app)


@db_app.command("update")
def db_update(
    ctx: typer.Context,
    from_: Annotated[
        list[str] | None,
        typer.Option(
            "--from",
            metavar="FILE|URL",
            help="An OSV export (an ecosystem's all.zip) as a file or URL. Repeatable. "
            "Default: security.db_urls (OSV's npm and PyPI exports).",
        ),
    ] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Import OSV's per-ecosystem exports into the state directory. The archive is checked
    whole first: a file that is not an OSV export, a truncated download or one bad record
    exits 2 (3 when the download fails) and leaves the previous database as it was.
    Ecosystems not given keep their records. Run it weekly (see the README's cron line)."""
    from travellr_ops.ops.security import osvdb

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    rt = app_ctx.runtime
    sec = app_ctx.settings.security
    report = osvdb.update(
        from_ or sec.db_urls,
        osvdb.location(app_ctx.settings.state_dir),
        rt.http,
    )
    out.result(report, lambda console: _render_update(console, report))


def _render_update(console: Console, report: Any) -> None:
    from travellr_ops.output import table

    rows = [
        [e.ecosystem, state, f"{e.records:,}", _day(e.newest), str(e.archive_date.date()), e.source]
        for state, entries in (("updated", report.updated), ("kept", report.kept))
        for e in entries
    ]
    console.print(
        table(
            f"OSV database {report.database}",
            ["ecosystem", "", "records", "newest record", "archive of", "source"],
            rows,
        )
    )
    console.print(
        f"imported in {report.seconds:.1f} s; {report.withdrawn} withdrawn, "
        f"{report.other_ecosystems} of other ecosystems, {report.duplicates} duplicate(s) "
        "left out"
    )


def _day(moment: Any) -> str:
    return str(moment.date()) if moment is not None else "-"


@db_app.command("status")
def db_status(ctx: typer.Context, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """How old the imported OSV database is, per ecosystem. Exit 1 when it is older than
    security.db_max_age_days, 3 when there is none."""
    from travellr_ops.ops.security import osvdb
    from travellr_ops.vocab.verdict import Verdict

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    status = osvdb.status(
        osvdb.location(app_ctx.settings.state_dir), app_ctx.settings.security.db_max_age_days
    )
    out.result(status, lambda console: _render_status(console, status))
    if status.verdict is not Verdict.OK:
        raise typer.Exit(status.verdict.exit_code)


def _render_status(console: Console, status: Any) -> None:
    from travellr_ops.output import table
    from travellr_ops.vocab.timespec import format_duration
    from travellr_ops.vocab.verdict import styled

    if status.ecosystems:
        rows = [
            [
                e.ecosystem,
                f"{e.records:,}",
                _day(e.newest),
                str(e.archive_date.date()),
                format_duration(e.age_s),
                styled(e.verdict),
            ]
            for e in status.ecosystems
        ]
        console.print(
            table(
                f"OSV database {status.database}",
                ["ecosystem", "records", "newest record", "archive of", "age", "verdict"],
                rows,
            )
        )
    console.print(f"{styled(status.verdict)}: {status.detail}")


@app.command()
def logs(
    ctx: typer.Context,
    since: Annotated[
        str,
        typer.Option(
            help="Only what happened since: 30m, 1h30m, 7d, 1w, an ISO time, 16:30, or 'all'."
        ),
    ] = "24h",
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            help="A log file on this machine (its rotated .1/.N.gz copies are read too; "
            "access or app log told by content), or 'service' for the backend's access and "
            "app logs through the platform (the file inside each container, or its output). "
            "Repeatable. Default: where [logs] puts them (logs.access_source, logs.app_source).",
        ),
    ] = None,
    top: TopOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Review the access and app logs: 401/403/429 by IP, path and hour; failed logins by
    account and IP; brute-force suspects; rate-limit hits; top offenders. Exit 1 when there
    is a brute-force suspect; exit 3 when no log could be read."""
    from travellr_ops.ops.security.logs import to_json
    from travellr_ops.ops.security.review import parse_window, review

    start = parse_window(since)
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    report = review(app_ctx.runtime, source or [], start)
    rows = top or app_ctx.settings.security.top
    for stat in report.files:
        if stat.error:
            out.warn(f"{stat.path}: {stat.error}")
        elif stat.truncated:
            out.warn(f"{stat.path}: gzip file ends early; read up to there")
        if stat.malformed:
            out.warn(f"{stat.path}: {stat.malformed} malformed line(s) skipped")
    doc = to_json(report, rows)
    out.result(doc, lambda console: _render_logs(console, doc))
    if not report.read_any:
        out.error(
            "no log could be read",
            hint="check logs.access_source/access_log and logs.app_source/app_log"
            " (`travellr-ops config show`), or pass --source FILE",
        )
        raise typer.Exit(ExitCode.UNAVAILABLE)
    if report.suspects:
        raise typer.Exit(ExitCode.CHECK_FAILED)
    if report.unread:
        out.error(
            f"the review is incomplete: nothing read from {', '.join(report.unread)}",
            hint="check logs.access_source/access_log and logs.app_source/app_log",
        )
        raise typer.Exit(ExitCode.UNAVAILABLE)


def _render_logs(console: Console, doc: dict[str, Any]) -> None:
    from travellr_ops.output import table

    denied = doc["denied"]
    console.print(
        f"{doc['requests']} requests; 401: {denied['401']}, 403: {denied['403']}, "
        f"429: {denied['429']}; {doc['failed_logins']} failed logins; "
        f"{doc['rate_limit_hits']} rate-limit hits; {doc['malformed_lines']} malformed lines"
    )
    for title, key in (
        ("401/403/429 by client IP", "denied_by_ip"),
        ("by path", "denied_by_path"),
        ("by hour (UTC)", "denied_by_hour"),
    ):
        if doc[key]:
            rows = [[r["key"], r["401"], r["403"], r["429"], r["total"]] for r in doc[key]]
            console.print(table(title, [key.rsplit("_", 1)[1], "401", "403", "429", "total"], rows))
    for title, key, column in (
        ("failed logins by account", "failed_logins_by_account", "account"),
        ("failed logins by IP", "failed_logins_by_ip", "ip"),
        ("rate-limit hits by IP", "rate_limited_by_ip", "ip"),
    ):
        if doc[key]:
            console.print(table(title, [column, "count"], [[k, v] for k, v in doc[key].items()]))
    brute = doc["bruteforce"]
    if brute["suspects"]:
        rows = [
            [s.ip, s.failures, s.detected_at, ", ".join(s.accounts[:5])] for s in brute["suspects"]
        ]
        console.print(
            table(
                f"[red]brute-force suspects[/] (>= {brute['failures']} failures "
                f"in {brute['window_s']:g} s)",
                ["ip", "failed logins", "detected at", "accounts"],
                rows,
            )
        )
    if doc["top_offenders"]:
        rows = [
            [o["ip"], o["denied"], o["failed_logins"], o["rate_limited"], o["total"]]
            for o in doc["top_offenders"]
        ]
        console.print(
            table(
                "top offenders", ["ip", "401/403/429", "failed logins", "429 (app)", "total"], rows
            )
        )


@app.command()
def check(ctx: typer.Context, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """The platform's security posture: Redis and MongoDB authentication and exposure, TLS off
    localhost, file modes of the backup/state directories and config file, the backend
    image tag, a maintenance flag left on. Exit 1 when a check fails, 3 when none fails but
    one could not tell (a server did not answer)."""
    from travellr_ops.ops.security.posture import check as run_checks
    from travellr_ops.vocab.verdict import exit_code_of

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    checks = run_checks(app_ctx.runtime)
    code = exit_code_of(c.verdict for c in checks)
    doc = {"ok": code == ExitCode.OK, "checks": checks}

    def render(console: Console) -> None:
        from travellr_ops.output import escape, table
        from travellr_ops.vocab.verdict import styled

        rows = [[c.name, styled(c.verdict), escape(c.detail), escape(c.fix)] for c in checks]
        console.print(table(None, ["check", "verdict", "detail", "fix"], rows))

    out.result(doc, render)
    if code:
        raise typer.Exit(code)


@app.command()
def report(
    ctx: typer.Context,
    since: Annotated[
        str,
        typer.Option(help="The log review's window: 7d, 1w, 24h, an ISO time, or 'all'."),
    ] = "7d",
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="FILE",
            help="Write one self-contained HTML page to FILE instead of Markdown to stdout.",
        ),
    ] = None,
    path: PathOpt = None,
    offline: OfflineOpt = False,
    top: TopOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The weekly security review on one page: dependency audit, log review and posture
    checks, with what changed since the previous report (whose summary is kept in the
    store). Markdown to stdout, or --html FILE. Exit 1 when something needs action, 3 when
    the audit or the logs could not be assessed."""
    from travellr_ops.ops.security.report import blocks, markdown, run, to_json
    from travellr_ops.ops.security.review import parse_window
    from travellr_ops.vocab.verdict import Verdict

    start = parse_window(since)
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    rows = top or app_ctx.settings.security.top
    result = run(
        app_ctx.runtime,
        since,
        start,
        top=rows,
        path=path,
        live=False if offline else None,
        html_file=html,
    )
    for part, error in (
        ("audit", result.audit_error),
        ("logs", result.logs_error),
        ("posture", result.posture_error),
    ):
        if error:
            out.warn(f"{part}: {error}")
    if html is not None:
        out.result(to_json(result, rows))
        out.success(f"security report written to {html}")
    else:
        text = markdown(blocks(result, rows))
        out.result(to_json(result, rows), lambda console: print(text, end="", flush=True))
    if result.verdict is not Verdict.OK:
        raise typer.Exit(result.verdict.exit_code)
