"""`travellr-ops monitor`: the runbook's key metrics against their thresholds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from travellr_ops.cli.common import AppContext, JsonOpt, QuietOpt, use
from travellr_ops.vocab.verdict import Verdict, styled

if TYPE_CHECKING:
    from rich.table import Table

    from travellr_ops.ops.alerts.alerter import Alerted, Alerter
    from travellr_ops.ops.monitor.live import Summary, Tracker
    from travellr_ops.ops.monitor.metrics import Metric, Sample
    from travellr_ops.ops.monitor.report_model import Report as MonitorReport
    from travellr_ops.output import Output
    from travellr_ops.store import StoreError

app = typer.Typer(
    name="monitor",
    help="The runbook's key metrics against their thresholds: live (bare `monitor`), once, "
    "or as a report from the history.",
    # bare `monitor` is the live dashboard (the runbook's `npm run monitor`)
    no_args_is_help=False,
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

WindowOpt = Annotated[
    str | None,
    typer.Option(
        "--window", help="How long the sample spans: 2s, 30s, 1m (default: monitor.window_s)."
    ),
]
AlertOpt = Annotated[
    bool,
    typer.Option(
        "--alert",
        help="Message alerts.webhooks when an episode opens, is still open after "
        "alerts.repeat_s, or resolves (never per sample); never changes the exit code.",
    ),
]
MetricsFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--metrics-file",
        help="Also write node_exporter textfile metrics here (atomically).",
        dir_okay=False,
    ),
]


@app.callback()
def monitor(
    ctx: typer.Context,
    interval: Annotated[
        str, typer.Option("--interval", "-i", help="Time between samples: 5, 5s, 1m.")
    ] = "5s",
    duration: Annotated[
        str | None,
        typer.Option(
            "--duration",
            "-d",
            help="Stop after this long (10m, 2h, 1h30m) with a summary; exit 1 if "
            "a threshold was breached.",
        ),
    ] = None,
    alert: AlertOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Without a command: the live dashboard, one sample every --interval (Ctrl-C ends it,
    exit 130). Without a terminal: one line per sample (--json: one JSON object per line)."""
    if ctx.invoked_subcommand is not None:
        return
    from travellr_ops.vocab.timespec import parse_duration

    interval_s = _seconds("--interval", interval)
    duration_s = parse_duration(duration, "--duration") if duration is not None else None
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    raise typer.Exit(live(app_ctx, out, interval_s, duration_s, alert))


def live(
    app_ctx: AppContext,
    out: Output,
    interval_s: float,
    duration_s: float | None,
    alert: bool = False,
) -> int:
    """The run on the screen: a Rich Live table on a terminal, else a line per sample; Ctrl-C
    ends it with the summary so far (exit 130)."""
    from contextlib import nullcontext

    from rich.live import Live

    from travellr_ops.errors import ExitCode
    from travellr_ops.ops.monitor.live import LiveRun
    from travellr_ops.output import to_jsonable

    def store_failed(exc: StoreError) -> None:
        out.error(f"samples not recorded: {exc.message}", exc.hint)

    run = LiveRun(app_ctx.runtime, interval_s, duration_s, on_store_error=store_failed)
    dashboard = out.stdout.is_terminal and not out.json and not out.quiet
    screen = (
        Live(console=out.stdout, auto_refresh=False, transient=False)
        if dashboard
        else nullcontext()
    )
    interrupted = False
    alerter = _alerter(app_ctx, background=True) if alert else None
    try:
        with screen as view:

            def show(sample: Sample) -> None:
                if alerter is not None:
                    _alerted(app_ctx, out, alerter.observe(sample))
                if view is not None:
                    view.update(render_dashboard(run.tracker, interval_s), refresh=True)
                elif out.json:
                    print(json.dumps(to_jsonable(sample)), flush=True)
                elif not out.quiet:
                    print(sample_line(sample), flush=True)

            run.run(show)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if alerter is not None:
            alerter.close()
    summary = run.tracker.summary()
    if duration_s is not None or interrupted:
        if out.json:
            print(json.dumps({"summary": to_jsonable(summary)}), flush=True)
        else:
            render_summary(out.stdout, summary)
    return int(ExitCode.INTERRUPTED if interrupted else summary.exit_code)


@app.command()
def once(
    ctx: typer.Context,
    window: WindowOpt = None,
    metrics_file: MetricsFileOpt = None,
    alert: AlertOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Sample every metric once; exit 0 ok, 1 a threshold breached, 3 a source unreachable.
    With --alert (cron every minute): one message per episode change, not one per run."""
    from travellr_ops.ops.monitor.once import sample_once

    window_s = _seconds("--window", window) if window is not None else None
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    taken = sample_once(app_ctx.runtime, window_s, metrics_file)
    sample = taken.sample
    out.result(sample, lambda console: render_sample(console, sample))
    if taken.not_recorded is not None:
        out.error(f"sample not recorded: {taken.not_recorded.message}", taken.not_recorded.hint)
    if alert:
        _alerted(app_ctx, out, _alerter(app_ctx, background=False).observe(sample))
    if taken.metrics_file_error is not None:
        raise taken.metrics_file_error
    if sample.maintenance and sample.breaches:
        out.info(f"maintenance mode is on: {len(sample.breaches)} breach(es) reported, not alarms")
    if sample.unknown:
        out.error(
            f"{len(sample.unknown)} metric(s) unknown: their source did not answer",
            hint="start the server(s) or fix their address in the settings (config show)",
        )
    raise typer.Exit(sample.exit_code)


@app.command()
def report(
    ctx: typer.Context,
    since: Annotated[
        str,
        typer.Option(
            "--since", "-s", help="The period: the last 24h, 7d, 1h30m..., or since a time."
        ),
    ] = "24h",
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Also write the report with a chart per metric to this one self-contained "
            "HTML file (opens offline).",
            dir_okay=False,
        ),
    ] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Per metric min/p50/p95/max, the breaches with their times and the trend against the
    previous period, from the history. Exit 0 (also for an empty history: it says so)."""
    from travellr_ops.ops.monitor.report import monitor_report, report_period

    app_ctx = use(ctx)
    start, until = report_period(since, app_ctx.settings.monitor.retention_days)
    out = app_ctx.output(json_, quiet)
    result = monitor_report(app_ctx.runtime, start, until, html)
    out.result(result, lambda console: render_report(console, result))
    if not result.rows:
        out.info(
            f"no samples in the history between {_local(result.since)} and "
            f"{_local(result.until)} ({result.store}); `monitor once` from cron or a live "
            "`monitor` records them"
        )
    if result.html is not None:
        out.success(f"report written to {result.html}")


def _alerter(app_ctx: AppContext, background: bool) -> Alerter:
    from travellr_ops.ops.alerts.alerter import Alerter

    return Alerter(app_ctx.runtime, background)


def _alerted(app_ctx: AppContext, out: Output, done: Alerted) -> None:
    from travellr_ops.ops.alerts.alerter import describe

    for message in done.messages:
        out.info(describe(message, len(app_ctx.settings.alerts.webhooks)))


def _seconds(option: str, text: str) -> float:
    """A sampling time: a duration of at most an hour."""
    from travellr_ops.errors import UsageError
    from travellr_ops.vocab.timespec import parse_duration

    value = parse_duration(text, option)
    if value > 3600:
        raise UsageError(f"{option} must be at most 3600 seconds (1h), not {text!r}")
    return value


# -------------------------------------------------------------------------------- render


def value_text(m: Metric) -> str:
    if m.value is None:
        return "—"
    number = f"{m.value:.0f}" if m.unit == "users" else f"{m.value:.1f}"
    return f"{number} {m.unit}"


def threshold_text(m: Metric) -> str:
    if m.threshold is None:
        return ""
    sign = "≤" if m.direction == "max" else "≥"
    return f"{sign} {m.threshold:g} {m.unit}"


def render_sample(console: Console, sample: Sample) -> None:
    from rich.markup import escape

    from travellr_ops.output import table

    rows = [
        [
            escape(m.key),
            value_text(m),
            threshold_text(m),
            styled(m.verdict)
            + (" (maintenance)" if sample.maintenance and m.verdict == Verdict.BREACH else ""),
            escape(m.detail),
        ]
        for m in sample.metrics
    ]
    console.print(table(None, ["metric", "value", "threshold", "verdict", "detail"], rows))
    console.print(
        f"overall: {styled(sample.verdict)} (window {sample.window_s:g} s, "
        f"{sample.duration_ms:.0f} ms)"
    )
    if sample.maintenance:
        message = escape(str(sample.maintenance.get("message", "")))
        console.print(f"[cyan]maintenance mode ON[/]: {message}", soft_wrap=True)


def sample_line(sample: Sample) -> str:
    """One line per sample (no terminal): time, verdict, every judged value; ! marks a breach."""
    import time

    parts = [time.strftime("%H:%M:%S", time.localtime(sample.time)), sample.verdict]
    for m in sample.metrics:
        if m.verdict == Verdict.UNKNOWN:
            parts.append(f"{m.key}=?")
        elif m.value is not None:
            mark = "!" if m.verdict == Verdict.BREACH else ""
            parts.append(f"{m.key}={m.value:g}{mark}")
    return " ".join(parts)


def render_dashboard(tracker: Tracker, interval_s: float) -> Table:
    from rich.markup import escape
    from rich.table import Table

    latest = tracker.latest
    title = f"travellr-ops monitor: every {interval_s:g} s, {tracker.samples} samples"
    if latest is not None and latest.maintenance:
        title += " — maintenance mode ON"
    grid = Table(title=title, title_justify="left", header_style="bold")
    for column in ("metric", "value", "threshold", "verdict", "recent", "breaches"):
        grid.add_column(column)
    for series in tracker.series.values():
        m = series.last
        if m is None:
            continue
        row_style = "on dark_red" if m.verdict == Verdict.BREACH else None
        grid.add_row(
            escape(m.key),
            value_text(m),
            threshold_text(m),
            styled(m.verdict),
            series.sparkline(),
            str(tracker.breach_count.get(m.key, "")),
            style=row_style,
        )
    return grid


def render_summary(console: Console, summary: Summary) -> None:
    import time

    from rich.markup import escape

    from travellr_ops.output import table

    def num(v: float | None) -> str:
        return "—" if v is None else f"{v:g}"

    rows = [
        [
            escape(r.key),
            num(r.min),
            num(r.p95),
            num(r.max),
            "" if r.threshold is None else f"{r.threshold:g} {r.unit}",
            r.breaches or "",
        ]
        for r in summary.rows
    ]
    span = summary.ended - summary.started
    console.print(
        table(
            f"summary: {summary.samples} samples over {span:.0f} s",
            ["metric", "min", "p95", "max", "threshold", "breaches"],
            rows,
        )
    )
    for b in summary.breaches:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(b.time))
        note = " (maintenance)" if b.maintenance else ""
        console.print(
            f"breach {when} {escape(b.key)} = {num(b.value)} (limit {num(b.threshold)}){note}"
        )
    if summary.breach_count > len(summary.breaches):
        console.print(f"... {summary.breach_count - len(summary.breaches)} earlier breaches")
    verdict = "breached" if summary.alarm_count else "no threshold breached"
    console.print(f"overall: {verdict}")


def _local(t: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def render_report(console: Console, report: MonitorReport) -> None:
    from rich.markup import escape

    def num(v: float | None) -> str:
        if v is None:
            return "—"
        return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.4g}"  # 4 digits, never 1e+05

    if not report.rows:
        return  # the command says so on stderr
    from rich import box
    from rich.table import Table

    grid = Table(
        box=box.SIMPLE_HEAD,  # no vertical rules: the columns fit 80 characters
        title=f"monitor report {_local(report.since)} to {_local(report.until)}: "
        f"{report.samples} samples (previous period {report.previous_samples})",
        title_justify="left",
        header_style="bold",
    )
    # the metric names wrap rather than lose their ends; the figures never wrap
    grid.add_column("metric", overflow="fold", min_width=12)
    for column in ("min", "p50", "p95", "max", "limit", "breach"):
        grid.add_column(column, justify="right", no_wrap=True)
    grid.add_column("trend", no_wrap=True)
    for r in report.rows:
        trend = r.trend.word
        if r.trend.change_pct is not None:
            trend += f" {r.trend.change_pct:+.0f}%"
        style = {"worse": "red", "better": "green"}.get(r.trend.word)
        sign = "≥" if r.direction == "min" else "≤"
        grid.add_row(
            escape(r.key),
            num(r.min),
            num(r.p50),
            num(r.p95),
            num(r.max),
            "" if r.threshold is None else f"{sign}{r.threshold:g}",
            f"[bold red]{r.breaches}[/]" if r.breaches else "",
            f"[{style}]{escape(trend)}[/]" if style else escape(trend),
        )
    console.print(grid)
    for e in report.episodes:
        span = _local(e.start) if e.start == e.end else f"{_local(e.start)} to {_local(e.end)[11:]}"
        note = " (maintenance)" if e.maintenance else ""
        console.print(
            f"breach {span} {escape(e.key)}: {e.samples} sample(s), worst {num(e.worst)} "
            f"{escape(e.unit)} (limit {num(e.threshold)}){note}",
            soft_wrap=True,  # one line per episode, whatever the width: grep-able
        )
    if report.episode_count > len(report.episodes):
        console.print(f"... {report.episode_count - len(report.episodes)} earlier episodes")
    if report.rows:
        console.print(
            f"{report.breach_count} breaching samples, {report.alarm_count} outside maintenance"
        )
