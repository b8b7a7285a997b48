"""`travellr-ops monitor`: the runbook's key metrics against their thresholds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from travellr_ops.cli.common import AppContext, JsonOpt, QuietOpt, use

if TYPE_CHECKING:
    from travellr_ops.ops.monitor.metrics import Metric, Sample
    from travellr_ops.ops.monitor.sampler import Sampler
    from travellr_ops.output import Output

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
    float | None,
    typer.Option("--window", help="Seconds the sample spans (default: monitor.window_s)."),
]
MetricsFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--metrics-file",
        help="Also write node_exporter textfile metrics here (atomically).",
        dir_okay=False,
    ),
]

VERDICT_STYLE = {
    "ok": "green",
    "breach": "bold red",
    "unknown": "magenta",
    "idle": "dim",
    "info": "cyan",
    "maintenance": "cyan",
}


@contextmanager
def sampler_for(app_: AppContext) -> Iterator[Sampler]:
    """A sampler over the settings' servers; every client closed when the block ends."""
    from travellr_ops.adapters.http import HttpAdapter
    from travellr_ops.adapters.mongo import MongoAdapter
    from travellr_ops.adapters.platform import get_platform
    from travellr_ops.adapters.redis import RedisAdapter
    from travellr_ops.ops.monitor.sampler import Sampler

    s = app_.settings
    urls = 1 + len(s.monitor.api_paths)
    http = HttpAdapter(s.api.timeout_s, max_connections=urls)
    mongo = MongoAdapter(s.mongo.uri, s.mongo.database, s.mongo.timeout_s)
    redis = RedisAdapter(s.redis.url, s.redis.timeout_s)
    platform = None if s.platform == "none" else (lambda: get_platform(s))
    sampler = Sampler(s, http, mongo, redis, platform)
    try:
        yield sampler
    finally:
        sampler.close()
        http.close()
        mongo.close()
        redis.close()


def record(app_: AppContext, sample: Sample, out: Output) -> None:
    """Append the sample to the history; a store that fails is reported, never fatal."""
    from travellr_ops.ops.monitor.history import append, open_history
    from travellr_ops.store import Store, StoreError, store_path

    s = app_.settings
    store = Store(store_path(s.state_dir), s.monitor.store_timeout_s)
    try:
        append(open_history(store), sample, s.monitor.retention_days)
    except StoreError as exc:
        out.error(f"sample not recorded: {exc.message}", exc.hint)
    finally:
        store.close()


@app.callback()
def monitor(ctx: typer.Context) -> None:
    """Without a command: the live dashboard."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


@app.command()
def once(
    ctx: typer.Context,
    window: WindowOpt = None,
    metrics_file: MetricsFileOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Sample every metric once; exit 0 ok, 1 a threshold breached, 3 a source unreachable."""
    from travellr_ops.ops.monitor.metrics import gauges
    from travellr_ops.prometheus import write_textfile

    app_ = use(ctx)
    out = app_.output(json_, quiet)
    _check_seconds("--window", window)
    with sampler_for(app_) as sampler:
        sample = sampler.sample(window)
    out.result(sample, lambda console: render_sample(console, sample))
    record(app_, sample, out)
    if metrics_file is not None:
        write_textfile(metrics_file, gauges(sample))
    if sample.maintenance and sample.breaches:
        out.info(f"maintenance mode is on: {len(sample.breaches)} breach(es) reported, not alarms")
    if sample.unknown:
        out.error(
            f"{len(sample.unknown)} metric(s) unknown: their source did not answer",
            hint="start the server(s) or fix their address in the settings (config show)",
        )
    raise typer.Exit(sample.exit_code)


def _check_seconds(option: str, value: float | None) -> None:
    from travellr_ops.errors import UsageError

    if value is not None and not 0 < value <= 3600:
        raise UsageError(f"{option} must be more than 0 and at most 3600 seconds, not {value:g}")


# -------------------------------------------------------------------------------- render


def styled(verdict: str) -> str:
    style = VERDICT_STYLE.get(verdict, "")
    return f"[{style}]{verdict}[/]" if style else verdict


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
            + (" (maintenance)" if sample.maintenance and m.verdict == "breach" else ""),
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
