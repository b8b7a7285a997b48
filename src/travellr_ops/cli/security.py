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


@app.command()
def audit(
    ctx: typer.Context,
    path: Annotated[
        Path | None,
        typer.Option(
            "--path", help="The backend's source directory (default: security.backend_dir)."
        ),
    ] = None,
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
    offline: Annotated[
        bool,
        typer.Option("--offline", help="Ask no live service; the offline OSV database only."),
    ] = False,
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
    a = use(ctx)
    out = a.output(json_, quiet)
    settings = a.settings.security
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
