"""`travellr-ops config`: the effective settings and whether they work."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.console import Console

from travellr_ops.cli.common import JsonOpt, QuietOpt, new_group, use

if TYPE_CHECKING:
    from travellr_ops.ops import config as ops

app = new_group("config", "Show and validate the effective settings.")


@app.command()
def show(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """Every setting, its value (secrets masked) and where it came from."""
    from travellr_ops.ops import config as ops

    app_ctx = use(ctx)
    out = app_ctx.output(json_)
    view = ops.show(app_ctx.loaded)
    out.result(view, lambda console: _render_show(console, view))


def _render_show(console: Console, view: ops.ConfigView) -> None:
    from travellr_ops.output import table

    rows = [[s.key, s.value, s.source] for s in view.settings]
    title = f"config file: {view.config_file or '(none found)'}"
    if view.environment is not None:
        protected = any(s.key == "protected" and s.value for s in view.settings)
        title += f"\nenvironment: {view.environment}" + (" (protected)" if protected else "")
        title += f", chosen by {view.environment_source}"
    if view.environments:
        title += f"\nenvironments: {', '.join(view.environments)}"
    console.print(table(title, ["setting", "value", "source"], rows))


@app.command()
def validate(ctx: typer.Context, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Check the settings and that every server they name answers (npm run validate:env)."""
    from travellr_ops.ops import config as ops

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    result = ops.validate(app_ctx.runtime)
    out.result(result, lambda console: _render_validation(console, result))
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _render_validation(console: Console, result: ops.Validation) -> None:
    from travellr_ops.output import table, verdict

    rows = [
        [f.item, verdict("warn" if f.warning else "ok" if f.ok else "fail"), f.detail]
        for f in result.findings
    ]
    console.print(table(None, ["item", "verdict", "detail"], rows))
