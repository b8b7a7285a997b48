"""`travellr-ops service`."""

from travellr_ops.cli.common import new_group

app = new_group(
    "service",
    "Service status, restart, logs and resource usage (the runbook's 'Service Down').\n\n[dim]Arrives with issues 6 (compose) and 7 (Kubernetes).[/]",
)


# -- scale and describe (issue 7) -----------------------------------------------------------------
# Self-contained: their imports sit here so that the group's other commands stay untouched.
from typing import Annotated, Any  # noqa: E402

import typer  # noqa: E402

from travellr_ops.cli.common import DryRunOpt, JsonOpt, QuietOpt, YesOpt, use  # noqa: E402


@app.command("scale")
def scale_command(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="backend, mongodb, redis (or a name).")],
    replicas: Annotated[
        int, typer.Option("--replicas", "-r", min=0, help="How many instances to run.")
    ],
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run N instances of a service (the runbook's `kubectl scale --replicas`)."""
    from travellr_ops.adapters.platform import get_platform
    from travellr_ops.ops.service import scale

    app_ = use(ctx)
    out = app_.output(json_, quiet)
    platform = get_platform(app_.settings)
    try:
        result = scale(platform, app_.guard(yes, dry_run), service, replicas)
    finally:
        platform.close()
    out.result(result)
    if not result.dry_run:
        out.success(
            f"{result.service} scaled from {result.before} to {result.after} replicas"
            f" on {result.platform}"
        )


@app.command("describe")
def describe_command(
    ctx: typer.Context,
    instance: Annotated[str, typer.Argument(help="A pod (Kubernetes) or container (compose).")],
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """One pod or container in detail, its events included (the runbook's `kubectl describe pod`)."""
    from travellr_ops.adapters.platform import get_platform
    from travellr_ops.ops.service import describe

    app_ = use(ctx)
    out = app_.output(json_, quiet)
    platform = get_platform(app_.settings)
    try:
        details = describe(platform, instance)
    finally:
        platform.close()
    out.result(details, lambda console: _render_description(console, details))


def _render_description(console: Any, details: dict[str, Any]) -> None:
    from rich.markup import escape

    from travellr_ops.output import table

    sections = {k: v for k, v in details.items() if not isinstance(v, list | dict)}
    width = max((len(k) for k in sections), default=0)
    for key, value in sections.items():
        console.print(f"[bold]{key.replace('_', ' '):<{width}}[/]  {escape(str(value))}")
    for key, value in details.items():
        if isinstance(value, dict) and value:
            pairs = ", ".join(f"{k}={v}" for k, v in value.items())
            console.print(f"[bold]{key.replace('_', ' '):<{width}}[/]  {escape(pairs)}")
    for key, value in details.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            columns = list(value[0])
            rows = [[_cell(item.get(c)) for c in columns] for item in value]
            console.print(table(key.replace("_", " ").capitalize(), columns, rows))
        elif isinstance(value, list):
            console.print(f"[bold]{key.replace('_', ' ')}[/]  {value or '(none)'}")


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items() if v is not None)
    return "" if value is None else str(value)
