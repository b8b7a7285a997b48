"""`travellr-ops security`: the runbook's weekly security operations (dependency audit, log
review, posture checks)."""

from __future__ import annotations

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


@app.command()
def audit(
    ctx: typer.Context,
    path: PathOpt = None,
    level: Annotated[
        str | None,
        typer.Option(
            help="Exit 1 for findings at or above: low, moderate, high, critical "
            "(default: security.audit_level)."
        ),
    ] = None,
    only_fixable: Annotated[
        bool, typer.Option("--only-fixable", help="Show only findings with a fixed version.")
    ] = False,
    offline: OfflineOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Audit the backend's dependencies (package-lock.json, requirements*.txt) against npm
    audit, pip-audit and the offline OSV database. Exit 1 with findings at --level; exit 3
    when no advisory source answered (the result is unknown, not clean)."""
    from travellr_ops.errors import UsageError
    from travellr_ops.ops.security.audit import audit as run_audit

    if level is not None and level not in LEVELS:
        raise UsageError(f"--level must be one of {', '.join(LEVELS)}, not {level!r}")
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    settings = app_ctx.settings.security
    result = run_audit(
        path or settings.backend_dir,
        settings,
        level=level,
        only_fixable=only_fixable,
        live=False if offline else None,
    )
    for source in result.sources:
        if source.state == "unknown":
            out.warn(f"{source.name}: unknown: {source.detail}")
    for line in result.unpinned:
        out.warn(f"not audited (no exact version): {line}")
    out.result(_audit_json(result), lambda console: _render_audit(console, result))
    if result.status == "vulnerable":
        raise typer.Exit(ExitCode.CHECK_FAILED)
    if result.status == "unknown":
        out.error(
            "audit result unknown: no advisory source answered",
            hint="set security.advisories_dir to an OSV database (osv-scanner --offline's "
            "format), or let npm audit / pip-audit reach their services",
        )
        raise typer.Exit(ExitCode.UNAVAILABLE)


def _audit_json(result: AuditResult) -> dict[str, Any]:
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
    }


def _render_audit(console: Console, result: AuditResult) -> None:
    from rich.table import Table

    from travellr_ops.output import verdict

    if result.findings:
        tbl = Table(header_style="bold")
        for column in ("package", "ecosystem", "installed", "fixed in", "severity", "ID"):
            tbl.add_column(column, no_wrap=True)
        tbl.add_column("summary")
        for f in result.findings:
            tbl.add_row(
                f.package,
                f.ecosystem,
                f.installed,
                f.fixed_in or "-",
                f.severity,
                f.advisory,
                f.summary,
            )
        console.print(tbl)
    sources = ", ".join(f"{s.name} {s.state}" for s in result.sources)
    word = {"vulnerable": "fail", "ok": "ok", "unknown": "unknown"}[result.status]
    console.print(
        f"{verdict(word)}: {len(result.findings)} finding(s), {len(result.at_level)} at or above "
        f"{result.level}, in {result.packages} packages ({sources})"
    )


@app.command()
def logs(
    ctx: typer.Context,
    since: Annotated[
        str,
        typer.Option(help="Only what happened since: 30m, 24h, 7d, an ISO time, or 'all'."),
    ] = "24h",
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            help="A log file (its rotated .1/.N.gz copies are read too; access or app log "
            "told by content), or 'service' for the backend's container/pod logs. "
            "Repeatable. Default: logs.access_log and logs.app_log.",
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
    from travellr_ops.ops.security.review import review

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    report = review(app_ctx.settings, source or [], since)
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
            hint="check logs.access_log / logs.app_log, or pass --source FILE",
        )
        raise typer.Exit(ExitCode.UNAVAILABLE)
    if report.suspects:
        raise typer.Exit(ExitCode.CHECK_FAILED)


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
    image tag, a maintenance flag left on. Exit 1 when a check fails."""
    from travellr_ops.ops.security.posture import check as run_checks

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    checks = run_checks(app_ctx.settings, app_ctx.loaded.config_file)
    failed = [c for c in checks if c.verdict == "fail"]
    doc = {"ok": not failed, "checks": checks}

    def render(console: Console) -> None:
        from travellr_ops.output import escape, table, verdict

        rows = [[c.name, verdict(c.verdict), escape(c.detail), escape(c.fix)] for c in checks]
        console.print(table(None, ["check", "verdict", "detail", "fix"], rows))

    out.result(doc, render)
    if failed:
        raise typer.Exit(ExitCode.CHECK_FAILED)


@app.command()
def report(
    ctx: typer.Context,
    since: Annotated[
        str,
        typer.Option(help="The log review's window: 7d, 24h, an ISO time, or 'all'."),
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
    from travellr_ops.ops.security.report import (
        blocks,
        build,
        compare_and_keep,
        html_page,
        markdown,
        open_store,
        to_json,
    )
    from travellr_ops.store import Store, store_path

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    s = app_ctx.settings
    result = build(s, app_ctx.loaded.config_file, since, path=path, live=False if offline else None)
    store = open_store(Store(store_path(s.state_dir), s.store.timeout_s))
    try:
        compare_and_keep(store, result)
    finally:
        store.close()
    rows = top or s.security.top
    for part, error in (
        ("audit", result.audit_error),
        ("logs", result.logs_error),
        ("posture", result.posture_error),
    ):
        if error:
            out.warn(f"{part}: {error}")
    page = blocks(result, rows)
    if html is not None:
        from travellr_ops.ops.backup.store import write_atomic

        try:
            write_atomic(html, html_page(page).encode())
        except OSError as exc:
            from travellr_ops.errors import UsageError

            raise UsageError(f"cannot write {html}: {exc.strerror or exc}") from None
        out.result(to_json(result, rows))
        out.success(f"security report written to {html}")
    else:
        text = markdown(page)
        out.result(to_json(result, rows), lambda console: print(text, end="", flush=True))
    if result.problems:
        raise typer.Exit(ExitCode.CHECK_FAILED)
    if result.unknown:
        raise typer.Exit(ExitCode.UNAVAILABLE)
