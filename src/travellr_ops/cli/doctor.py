"""`travellr-ops doctor [SYMPTOM]`: from a symptom to its ranked causes, and `--fix`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from travellr_ops.cli.common import DryRunOpt, JsonOpt, QuietOpt, YesOpt, use

if TYPE_CHECKING:
    from travellr_ops.ops.doctor import Diagnosis, FixReport


def doctor(
    ctx: typer.Context,
    symptom: Annotated[
        str | None,
        typer.Argument(
            help="down, db, memory, cache, cpu, slow or leak (the runbook's symptoms);"
            " none: every check.",
            show_default=False,
        ),
    ] = None,
    fix: Annotated[
        bool,
        typer.Option(
            "--fix",
            help="Apply the top cause's Level-1 remedy (restart, cache clear, maintenance off)"
            " through the usual confirmation, then check again.",
        ),
    ] = False,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Walk the stack as the runbook does for a symptom: ranked causes with the values seen,
    the runbook section, the next commands and the escalation level. Exit 0 nothing wrong, 1 a
    cause found, 3 could not tell (what did not answer is named). With --fix: 0 when the
    remedy made the top cause go away, 1 when it did not (or none could be applied)."""
    from travellr_ops.ops.doctor import check_symptom, diagnose, document
    from travellr_ops.ops.doctor import fix as apply_fix

    check_symptom(symptom)  # before any server is asked
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    rt = app_ctx.guarded(yes, dry_run) if fix else app_ctx.runtime
    diagnosis = diagnose(rt, symptom)
    if not fix:
        out.result(document(diagnosis), lambda console: render(console, diagnosis))
        _explain_exit(out, diagnosis)
        if diagnosis.exit_code:
            raise typer.Exit(diagnosis.exit_code)
        return
    report = apply_fix(rt, diagnosis)
    out.result(
        {
            "diagnosis": document(diagnosis),
            "fix": {
                "cause": report.cause.id if report.cause else None,
                "action": report.action,
                "applied": report.applied,
                "dry_run": report.dry_run,
                "error": report.error,
                "gone": report.gone,
                "after": document(report.after) if report.after else None,
            },
        },
        lambda console: _render_fix(console, diagnosis, report),
    )
    if report.error:
        out.error(f"the remedy failed: {report.error}")
    if report.applied:  # did it work: the cause acted on is gone (others are listed above)
        if not report.gone:
            raise typer.Exit(1)
        return
    if diagnosis.exit_code:
        raise typer.Exit(diagnosis.exit_code)


def _explain_exit(out: object, d: Diagnosis) -> None:
    from travellr_ops.output import Output

    assert isinstance(out, Output)
    if d.top is None and d.unreachable:
        out.error(
            "could not tell: " + "; ".join(d.unreachable),
            hint="the checks above that answered found nothing; start what did not answer,"
            " or raise doctor.check_timeout_s",
        )


def render(console: Console, d: Diagnosis) -> None:
    from travellr_ops.output import escape, table
    from travellr_ops.vocab.verdict import styled

    if d.causes:
        rows = [
            [
                str(n),
                escape(c.title),
                f"Level {c.level}",
                escape(c.runbook),
                escape("\n".join(c.evidence)),
                escape("\n".join(c.commands)),
            ]
            for n, c in enumerate(d.causes, 1)
        ]
        title = "causes, most likely first" + (f" (symptom: {d.symptom})" if d.symptom else "")
        console.print(
            table(title, ["#", "cause", "escalation", "runbook", "evidence", "next"], rows)
        )
    for note in d.notes:
        console.print(f"[cyan]note:[/] {escape(note.title)}: {escape('; '.join(note.evidence))}")
    rows = [
        [
            o.check,
            o.source,
            styled("ok" if o.state == "ok" else "unknown"),
            f"{o.seconds:.2f} s",
            escape(o.summary),
        ]
        for o in d.observations
    ]
    console.print(table("checks", ["check", "source", "state", "took", "saw"], rows))
    console.print(
        f"verdict: {styled(str(d.verdict))} in {d.seconds:.2f} s"
        f" (slowest check {d.slowest_check_s:.2f} s)"
    )
    if (
        d.top is not None
        and d.top.remedy is not None
        and d.top.remedy.level == 1
        and (d.top.remedy.action)
    ):
        console.print(
            f"fix: `travellr-ops doctor{' ' + d.symptom if d.symptom else ''} --fix`"
            f" would run: {escape(d.top.remedy.command)}"
        )


def _render_fix(console: Console, before: Diagnosis, report: FixReport) -> None:
    from travellr_ops.output import escape

    render(console, before)
    if report.dry_run:
        console.print(f"dry run: would run {escape(report.action)}")
        return
    if not report.applied:
        console.print(escape(report.action))
        return
    console.print(f"applied: {escape(report.action)}")
    if report.after is not None:
        from travellr_ops.ops.doctor import headline

        gone = "gone" if report.gone else "still there"
        console.print(f"checked again: the cause is {gone}; now: {escape(headline(report.after))}")
