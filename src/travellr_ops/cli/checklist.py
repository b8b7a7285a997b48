"""`travellr-ops checklist`: the runbook's morning, weekly, monthly and maintenance routines."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from travellr_ops.cli.common import JsonOpt, QuietOpt, new_group, use
from travellr_ops.cli.maintenance import MessageOpt, ReasonOpt, UntilOpt

if TYPE_CHECKING:
    from travellr_ops.ops.checklist.record import PastRun
    from travellr_ops.ops.checklist.runner import RunReport, Step, StepResult
    from travellr_ops.output import Output
    from travellr_ops.runtime import Runtime

app = new_group(
    "checklist",
    "The runbook's routines, executable: morning, weekly, monthly, maintenance before/during/"
    "after; `last` says when each ran. Exit 0 all passed, 1 a check failed, 3 a server did not"
    " answer (or a step is not available), 4 manual steps pending.",
)

ROUTINES = (
    "morning",
    "weekly",
    "monthly",
    "maintenance-before",
    "maintenance-during",
    "maintenance-after",
)

AckOpt = Annotated[
    bool,
    typer.Option(
        "--yes",
        "-y",
        help="Acknowledge the manual steps without asking (recorded as acknowledged, by you),"
        " and confirm the changes the routine makes.",
    ),
]


def _run(
    out: Output,
    rt: Runtime,
    routine: str,
    steps: Sequence[Step],
    yes: bool,
    warnings: Callable[[], list[str]] = list,
) -> None:
    from travellr_ops.ops.checklist.routine import execute
    from travellr_ops.ops.checklist.runner import Person
    from travellr_ops.ops.maintenance import who
    from travellr_ops.vocab.verdict import styled

    guard = rt.guard
    person = Person(who(), guard.interactive, yes, guard.confirm)
    live = not out.json and not out.quiet and out.stderr.is_terminal

    def heard(result: StepResult) -> None:
        if live:
            out.stderr.print(
                f"  {styled(result.verdict)} {result.name} ({result.duration_s:.1f} s)"
            )

    report = execute(routine, steps, rt, person, warnings=warnings(), on_step=heard)
    out.result(report, lambda console: _render(console, report))
    for warning in report.warnings:
        out.warn(warning)
    if out.quiet:  # cron: the mail must say what is wrong
        for step in report.problems:
            out.warn(f"{routine}: {step.name}: {step.verdict}: {step.detail}")
            for line in step.data.get("newest") or []:
                out.warn(f"  {line}")
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _render(console: Console, report: RunReport) -> None:
    from rich.markup import escape

    from travellr_ops.output import table
    from travellr_ops.vocab.verdict import styled

    rows = [
        [
            s.name,
            s.kind,
            styled(s.verdict),
            f"{s.duration_s:.1f} s",
            escape(s.detail),
        ]
        for s in report.steps
    ]
    console.print(
        table(
            f"checklist {report.routine} ({report.started_at}, by {report.by})",
            ["step", "kind", "verdict", "time", "detail"],
            rows,
        )
    )
    for s in report.problems:
        for line in s.data.get("newest") or []:
            console.print(f"  {s.name}: {escape(line)}")
    counts: dict[str, int] = {}
    for s in report.steps:
        counts[s.verdict] = counts.get(s.verdict, 0) + 1
    tally = ", ".join(f"{n} {word}" for word, n in counts.items())
    console.print(f"overall: {styled(report.verdict)} ({tally}; exit {report.exit_code})")


@app.command()
def morning(
    ctx: typer.Context,
    yes: AckOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The morning checklist: services healthy, ERRORs in the backend's last log lines, the key
    metrics, the cache hit rate, the newest backup (age, verified), disk space. Warns when the
    weekly or monthly checklist is overdue."""
    from travellr_ops.ops.checklist import morning as routine
    from travellr_ops.ops.checklist.routine import overdue

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    rt = app_ctx.guarded(yes)
    _run(out, rt, "morning", routine.steps(rt), yes, lambda: overdue(rt))


@app.command()
def weekly(
    ctx: typer.Context,
    yes: AckOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The weekly tasks: the week's ERROR lines, database size and growth since last week,
    index analysis, dependency audit, the week's security logs, cache performance; the
    manual steps (the week's incidents, dependency updates) to confirm."""
    from travellr_ops.ops.checklist import periodic

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    rt = app_ctx.guarded(yes)
    _run(out, rt, "weekly", periodic.weekly(rt), yes)


@app.command()
def monthly(
    ctx: typer.Context,
    yes: AckOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The monthly tasks: performance review and disk trend from the monitor history, backups
    over the retention and the point-in-time chain, a real restore test of the newest backup
    into a scratch database, the security posture; the manual reviews to confirm."""
    from travellr_ops.ops.checklist import periodic

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    rt = app_ctx.guarded(yes)
    _run(out, rt, "monthly", periodic.monthly(rt), yes)


@app.command()
def last(
    ctx: typer.Context,
    routine: Annotated[
        str | None,
        typer.Argument(
            help="morning, weekly, monthly, maintenance-before|during|after (default: all)."
        ),
    ] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """When each routine last ran, by whom, how it ended and which steps did not pass."""
    from travellr_ops.errors import UsageError
    from travellr_ops.ops.checklist.routine import last_runs

    if routine is not None and routine not in ROUTINES:
        raise UsageError(f"no routine {routine!r}", hint=f"one of {', '.join(ROUTINES)}")
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    runs = last_runs(app_ctx.runtime, [routine] if routine else ROUTINES)
    document = {"routines": [{"routine": name, "last": run} for name, run in runs.items()]}
    out.result(document, lambda console: _render_last(console, runs, detailed=bool(routine)))


def _render_last(console: Console, runs: dict[str, PastRun | None], detailed: bool) -> None:
    from rich.markup import escape

    from travellr_ops.output import table
    from travellr_ops.vocab.verdict import styled

    rows = []
    for name, run in runs.items():
        if run is None:
            rows.append([name, "never", "", "", ""])
            continue
        problems = ", ".join(f"{s.name} ({s.verdict})" for s in run.problems) or "-"
        rows.append(
            [
                name,
                f"{run.started_at} ({_age(run.age_days)} ago)",
                run.by,
                f"{styled(run.verdict)} (exit {run.exit_code})",
                escape(problems),
            ]
        )
    console.print(table(None, ["routine", "last run", "by", "result", "not passed"], rows))
    if detailed:
        for run in runs.values():
            for s in run.steps if run else []:
                console.print(f"  {s.name}: {styled(s.verdict)} {escape(s.detail)}")


def _age(days: float) -> str:
    if days >= 2:
        return f"{days:.0f} days"
    hours = days * 24
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"


maintenance_app = new_group(
    "maintenance",
    "The Maintenance Checklist: before (backup, plan, maintenance on), during (its state),"
    " after (maintenance off, health, error rate against before, logs).",
)
app.add_typer(maintenance_app)


@maintenance_app.command()
def before(
    ctx: typer.Context,
    message: MessageOpt = None,
    until: UntilOpt = None,
    reason: ReasonOpt = None,
    plan: Annotated[
        str | None,
        typer.Option(
            "--plan",
            help="The plan, recorded with the run (what changes, rollback, who); without it the"
            " plan is a manual step to confirm.",
        ),
    ] = None,
    yes: AckOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Before maintenance: a fresh verified backup, the plan, users told, the error rate
    now, then maintenance mode on (asks, or --yes) and the backend checked to answer 503."""
    from travellr_ops.ops.checklist import maintenance as routine
    from travellr_ops.ops.maintenance import parse_until
    from travellr_ops.safety import utcnow

    end = parse_until(until, utcnow()) if until is not None else None
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    rt = app_ctx.guarded(yes)
    steps = routine.before(rt, message, end, reason, plan)
    _run(out, rt, "maintenance-before", steps, yes)


@maintenance_app.command()
def during(
    ctx: typer.Context,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """During maintenance: maintenance mode on, who set it, the time left; the backend
    answering 503."""
    from travellr_ops.ops.checklist import maintenance as routine

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    rt = app_ctx.guarded(False)
    _run(out, rt, "maintenance-during", routine.during(rt), False)


@maintenance_app.command()
def after(
    ctx: typer.Context,
    yes: AckOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """After maintenance: maintenance mode off (asks, or --yes), every service healthy, the
    error rate since then against the one `before` measured, no ERROR in the backend's logs
    since `before`; the smoke test and telling users are manual steps."""
    from travellr_ops.ops.checklist import maintenance as routine

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    rt = app_ctx.guarded(yes)
    _run(out, rt, "maintenance-after", routine.after(rt), yes)
