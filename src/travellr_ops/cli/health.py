"""`travellr-ops health`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.console import Console

from travellr_ops.cli.common import JsonOpt, QuietOpt, use

if TYPE_CHECKING:
    from travellr_ops.ops.health import HealthReport


def health(ctx: typer.Context, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Check the API, MongoDB, Redis, disks and the platform's services at once; exit 0 healthy,
    1 unhealthy, 3 down."""
    from travellr_ops.vocab.verdict import Verdict

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    report = app_ctx.runtime.health()
    out.result(report, lambda console: _render(console, report))
    if report.maintenance and not out.json:
        out.info(f"maintenance mode is on: {report.maintenance.get('message', '')}")
    down = [c.name for c in report.checks if c.verdict == Verdict.DOWN]
    if down:
        out.error(
            f"{len(down)} of {len(report.checks)} checks got no answer: {', '.join(down)}",
            hint="start the server(s) or fix their address in the settings (config show)",
        )
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _render(console: Console, report: HealthReport) -> None:
    from travellr_ops.output import table
    from travellr_ops.vocab.verdict import styled

    rows = [
        [
            c.name,
            c.target,
            styled(c.verdict),
            "" if c.latency_ms is None else f"{c.latency_ms:.1f} ms",
            c.detail,
        ]
        for c in report.checks
    ]
    console.print(table(None, ["check", "target", "verdict", "latency", "detail"], rows))
    console.print(f"overall: {styled(report.verdict)} ({report.duration_ms:.0f} ms)")
