"""`travellr-ops maintenance`: the runbook's "Enable maintenance mode / stop accepting new
requests", as a flag in Redis the backend honours (503 while it is on)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from travellr_ops.cli.common import DryRunOpt, JsonOpt, QuietOpt, YesOpt, new_group, use

if TYPE_CHECKING:
    from travellr_ops.ops.maintenance import MaintenanceStatus

# The options that turn maintenance on, shared with `checklist maintenance before`.
MessageOpt = Annotated[
    str | None,
    typer.Option("--message", "-m", help="What the backend tells users (in its 503 body)."),
]
UntilOpt = Annotated[
    str | None,
    typer.Option(
        help="When it ends by itself: 30m, 2h, 1h30m, a UTC time 16:30, or 2026-11-28T16:30Z."
    ),
]
ReasonOpt = Annotated[
    str | None,
    typer.Option("--reason", "-r", help="Why, for the record (none when not given)."),
]

app = new_group(
    "maintenance",
    "Maintenance mode the backend honours (it answers 503 meanwhile): on, off, status.",
)


@app.command()
def on(
    ctx: typer.Context,
    message: MessageOpt = None,
    until: UntilOpt = None,
    reason: ReasonOpt = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Turn maintenance mode on: the backend answers 503 to every request until `off` or
    --until; records who (user@host) and why."""
    from travellr_ops.ops.maintenance import parse_until, switch_on
    from travellr_ops.safety import utcnow

    now = utcnow()
    end = parse_until(until, now) if until is not None else None
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    rt = app_ctx.guarded(yes, dry_run)
    done = switch_on(rt, message=message, until=end, reason=reason, now=now)
    if not done.applied:
        out.result({"dry_run": True, "key": done.before.key, "flag": done.flag})
        return
    out.result(done.after, lambda console: _render(console, done.after))
    out.success(f"maintenance mode is on{done.ends}")


@app.command()
def off(
    ctx: typer.Context,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Turn maintenance mode off: the backend serves requests again."""
    from travellr_ops.ops.maintenance import switch_off

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    done = switch_off(app_ctx.guarded(yes, dry_run))
    if not done.applied:
        out.result({"dry_run": True, "key": done.before.key, "was": done.before})
        return
    out.result(done.after, lambda console: _render(console, done.after))
    out.success("maintenance mode is off" + ("" if done.was_on else " (it was off already)"))


@app.command()
def status(ctx: typer.Context, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Whether maintenance mode is on, since when, by whom, why, and until when."""
    from travellr_ops.ops.maintenance import status as read_status

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    with app_ctx.redis() as redis:
        current = read_status(redis, app_ctx.settings.maintenance.key)
    out.result(current, lambda console: _render(console, current))


def _render(console: Console, s: MaintenanceStatus) -> None:
    from rich.markup import escape

    if not s.on:
        console.print(f"maintenance mode: [green]off[/]  ({s.target}, {s.key})")
        return
    console.print(f"maintenance mode: [bold cyan]on[/]  ({s.target}, {s.key})")
    expires = (
        "never by itself (run `maintenance off`)"
        if s.expires_in_s is None
        else f"in {s.expires_in_s:g} s"
    )
    for label, value in (
        ("message", s.message),
        ("by", s.by),
        ("reason", s.reason),
        ("since", s.since),
        ("until", s.until),
        ("expires", expires),
    ):
        if value:
            console.print(f"  {label}: {escape(value)}")
