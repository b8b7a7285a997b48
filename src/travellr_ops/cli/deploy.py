"""`travellr-ops deploy`: the runbook's Deployment section, on compose or Kubernetes.

`deploy run` = preflight, backup, record what runs, roll out, the health gate, and an
automatic rollback on failure; `rollback`, `status`, `history`, `preflight` around it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from travellr_ops.cli.common import DryRunOpt, JsonOpt, QuietOpt, YesOpt, new_group, use

if TYPE_CHECKING:
    from travellr_ops.ops.deploy.history import Entry
    from travellr_ops.ops.deploy.preflight import PreflightStep
    from travellr_ops.ops.deploy.report import DeployReport
    from travellr_ops.ops.deploy.status import StatusReport

app = new_group(
    "deploy",
    "Deploy the backend with a health gate and automatic rollback (the runbook's Deployment),"
    " roll back, and see what runs and what was deployed.",
)

ServiceOpt = Annotated[
    str, typer.Option("--service", "-s", help="The service to deploy (backend, or a name).")
]


# -- run --------------------------------------------------------------------------------------
@app.command("run")
def run_command(
    ctx: typer.Context,
    image: Annotated[
        str, typer.Option("--image", "-i", help="The tag to deploy (v2), or IMAGE:TAG.")
    ],
    service: ServiceOpt = "backend",
    watch: Annotated[
        str | None,
        typer.Option(
            "--watch",
            "-w",
            help="How long the health gate watches: 600, 90s, 10m, 1h30m (default:"
            " deploy.watch_s).",
        ),
    ] = None,
    no_backup: Annotated[
        bool, typer.Option("--no-backup", help="Skip the backup (recorded as skipped).")
    ] = False,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Preflight, backup, roll out IMAGE, watch it (health, API p95, error rate, restarts)
    and roll back automatically on failure; exit 1 rolled back, 3 unreachable, 4 refused
    or another deploy running, 130/143 interrupted (rolled back)."""
    from travellr_ops.ops.deploy.report import DeployFailed
    from travellr_ops.ops.deploy.rollout import run
    from travellr_ops.vocab.timespec import parse_duration

    seconds = parse_duration(watch, "--watch") if watch is not None else None
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    try:
        report = run(
            app_ctx.guarded(yes, dry_run),
            service,
            image,
            watch_s=seconds,
            backup=not no_backup,
            on_sample=lambda sample: out.info(_sample_line(sample)),
        )
    except DeployFailed as exc:
        failed = exc.report
        out.result(failed, lambda console: _render_report(console, failed))
        raise
    out.result(report, lambda console: _render_report(console, report))
    if report.dry_run:
        for step in report.plan:
            out.info(f"  {step}")
        return
    out.success(
        f"deploy {report.id}: {report.image} on {report.service} passed the health gate"
        f" ({len(report.samples)} samples, {report.duration_s:g} s)"
    )


def _sample_line(sample: object) -> str:
    from travellr_ops.ops.deploy.gate import GateSample

    assert isinstance(sample, GateSample)
    rate = "-" if sample.error_rate_pct is None else f"{sample.error_rate_pct:g} %"
    p95 = "-" if sample.p95_ms is None else f"{sample.p95_ms:g} ms"
    verdict = "ok" if sample.ok else "FAIL: " + "; ".join(sample.failures)
    if sample.ok and sample.insufficient:
        verdict = "insufficient: " + "; ".join(sample.insufficient)
    return (
        f"sample +{sample.elapsed_s:g} s: ready {sample.ready}, health {sample.health},"
        f" p95 {p95}, errors {rate} ({sample.errors}/{sample.requests}),"
        f" restarts +{sample.new_restarts}: {verdict}"
    )


def _render_report(console: Console, r: DeployReport) -> None:
    from travellr_ops.output import escape, table, verdict
    from travellr_ops.vocab.verdict import Verdict

    if r.preflight:
        _render_steps(console, r.preflight)
    if r.samples:
        rows = [
            [
                s.at,
                s.ready,
                s.health,
                "-" if s.p95_ms is None else f"{s.p95_ms:g} ms",
                "-" if s.error_rate_pct is None else f"{s.error_rate_pct:g} %",
                f"{s.errors}/{s.requests}",
                str(s.new_restarts),
                verdict(Verdict.OK if s.ok else Verdict.FAIL),
            ]
            for s in r.samples
        ]
        columns = ["time", "ready", "health", "p95", "errors", "5xx/req", "restarts", "verdict"]
        console.print(table("health gate", columns, rows))
    lines = [f"{r.kind} {r.id or ''}: {r.image} on {r.service} ({r.platform}): {r.outcome}"]
    if r.backup:
        lines.append(f"backup: {r.backup}")
    if r.before is not None and r.before.image:
        lines.append(f"before: {r.before.image} ({_short(r.before.image_id)})")
    if r.failure:
        lines.append(f"failed: {r.failure}" + (f" at {r.failed_at}" if r.failed_at else ""))
    if r.rollback is not None:
        lines.append(
            f"rollback: {'healthy' if r.rollback['healthy'] else 'NOT healthy'}"
            f" after {r.rollback['seconds']:g} s"
        )
    if r.now is not None:
        lines.append(
            f"runs now: {r.now.image} ({_short(r.now.image_id)}), {r.now.ready}/{r.now.desired}"
            " ready" + (f", revision {r.now.revision}" if r.now.revision else "")
        )
    for line in lines:
        console.print(escape(line))


def _short(image_id: str | None) -> str:
    from travellr_ops.ops.deploy.report import short_id

    return short_id(image_id)


def _render_steps(console: Console, steps: list[PreflightStep]) -> None:
    from travellr_ops.output import escape, table, verdict

    rows = [
        [s.name, verdict(s.verdict), f"{s.duration_ms:.0f} ms", escape(s.detail)] for s in steps
    ]
    console.print(table("preflight", ["step", "verdict", "took", "detail"], rows))


# -- preflight --------------------------------------------------------------------------------
@app.command("preflight")
def preflight_command(
    ctx: typer.Context,
    image: Annotated[
        str | None, typer.Option("--image", "-i", help="Also check this tag can be run.")
    ] = None,
    service: ServiceOpt = "backend",
    no_backup: Annotated[
        bool, typer.Option("--no-backup", help="Skip the backup's disk check.")
    ] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Every pre-deployment check, one row each with its verdict and duration; exit 1 when a
    step fails, 3 when a server does not answer."""
    from travellr_ops.ops.deploy.preflight import preflight

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    report = preflight(app_ctx.guarded(), service, image, backup=not no_backup)
    out.result(report, lambda console: _render_steps(console, report.steps))
    if report.exit_code:
        out.error(f"preflight failed: {', '.join(s.name for s in report.failed)}")
        raise typer.Exit(report.exit_code)


# -- rollback ---------------------------------------------------------------------------------
@app.command("rollback")
def rollback_command(
    ctx: typer.Context,
    to: Annotated[
        str | None,
        typer.Option("--to", help="A revision (Kubernetes) or a tag (default: the previous)."),
    ] = None,
    service: ServiceOpt = "backend",
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Roll back to the previous release (or --to), as `kubectl rollout undo` does; on
    compose to the previous image recorded in the history. Waits until healthy."""
    from travellr_ops.ops.deploy.report import DeployFailed
    from travellr_ops.ops.deploy.rollback import rollback

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    try:
        report = rollback(app_ctx.guarded(yes, dry_run), service, to)
    except DeployFailed as exc:
        failed = exc.report
        out.result(failed, lambda console: _render_report(console, failed))
        raise
    out.result(report, lambda console: _render_report(console, report))
    if not report.dry_run:
        out.success(f"{report.service} rolled back to {report.image} in {report.duration_s:g} s")


# -- status -----------------------------------------------------------------------------------
@app.command("status")
def status_command(
    ctx: typer.Context,
    service: ServiceOpt = "backend",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """What runs now, since when, deployed by whom with which backup; exit 1 when the
    platform differs from the last recorded deploy (changed by hand, or a killed deploy)."""
    from travellr_ops.cli.common import exit_with
    from travellr_ops.ops.deploy.status import status

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    report = status(app_ctx.runtime, service)
    out.result(report, lambda console: _render_status(console, report))
    if report.in_sync:
        out.info(report.message)
    else:
        out.warn(report.message)
    exit_with(report.in_sync)


def _render_status(console: Console, r: StatusReport) -> None:
    from travellr_ops.output import escape

    now = r.now
    console.print(
        escape(
            f"{r.service} ({r.platform}): {now.image} ({_short(now.image_id)}),"
            f" {now.ready}/{now.desired} ready"
            + (f", revision {now.revision}" if now.revision else "")
        )
    )
    if r.last is not None:
        e = r.last
        console.print(
            escape(
                f"last {e.kind} {e.id}: {e.image_to} {e.outcome}, since {e.finished_at or e.started_at}"
                f" by {e.user}@{e.host}, backup {e.backup or '-'}"
            )
        )


# -- history ----------------------------------------------------------------------------------
@app.command("history")
def history_command(
    ctx: typer.Context,
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="The newest N only.")] = 20,
    service: Annotated[str | None, typer.Option("--service", "-s", help="One service.")] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Every deploy and rollback, newest first: outcome, duration, who, the backup, and why
    a rollback happened."""
    from travellr_ops.ops.deploy.status import history

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    entries = history(app_ctx.settings, service, limit)
    out.result(entries, lambda console: _render_history(console, entries))


def _render_history(console: Console, entries: list[Entry]) -> None:
    from travellr_ops.output import escape, table, verdict

    rows = [
        [
            str(e.id),
            e.started_at,
            e.kind,
            e.service,
            escape(f"{e.image_from or '?'} -> {e.image_to or '?'}"),
            verdict(e.outcome),
            "-" if e.duration_s is None else f"{e.duration_s:g} s",
            e.user,
            e.backup or "-",
            escape(e.reason or ""),
        ]
        for e in entries
    ]
    columns = [
        "id",
        "started",
        "kind",
        "service",
        "image",
        "outcome",
        "took",
        "by",
        "backup",
        "why",
    ]
    console.print(table(None, columns, rows))
