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
    from travellr_ops.adapters import connect
    from travellr_ops.ops.health import check_all

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    s = app_ctx.settings
    with (
        connect.http(s, len(s.api.extra_health_urls) + 1) as http,
        connect.mongo(s) as mongo,
        connect.redis(s) as redis,
    ):
        report = check_all(s, http, mongo, redis, connect.platform_factory(s))
    out.result(report, lambda console: _render(console, report))
    if report.maintenance and not out.json:
        out.info(f"maintenance mode is on: {report.maintenance.get('message', '')}")
    down = [c.name for c in report.checks if c.verdict == "down"]
    if down:
        out.error(
            f"{len(down)} of {len(report.checks)} checks got no answer: {', '.join(down)}",
            hint="start the server(s) or fix their address in the settings (config show)",
        )
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _render(console: Console, report: HealthReport) -> None:
    from travellr_ops.output import table, verdict

    rows = [
        [
            c.name,
            c.target,
            verdict(c.verdict),
            "" if c.latency_ms is None else f"{c.latency_ms:.1f} ms",
            c.detail,
        ]
        for c in report.checks
    ]
    console.print(table(None, ["check", "target", "verdict", "latency", "detail"], rows))
    console.print(f"overall: {verdict(report.verdict)} ({report.duration_ms:.0f} ms)")
