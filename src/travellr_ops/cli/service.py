"""`travellr-ops service`: the runbook's 'Service Down' procedure on compose or Kubernetes.

Each command parses, calls one ``ops.service`` function with the platform the settings name,
and renders; the platform (and its SDK) is loaded only when a command runs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from travellr_ops.cli.common import DryRunOpt, JsonOpt, QuietOpt, YesOpt, exit_with, new_group, use

if TYPE_CHECKING:
    from travellr_ops.adapters.platform_types import LogLine, ProcessList, ServiceStatus
    from travellr_ops.ops.service import LifecycleReport, ServiceStatsReport

app = new_group(
    "service",
    "Service status, restart, logs and resource usage (the runbook's 'Service Down'),"
    " on Docker Compose or Kubernetes (settings: platform).",
)

ServiceArg = Annotated[str, typer.Argument(help="backend, mongodb, redis (or a service name).")]
OptionalServiceArg = Annotated[
    str | None, typer.Argument(help="backend, mongodb, redis (default: every service).")
]


# -- status -----------------------------------------------------------------------------------
@app.command("status")
def status_command(
    ctx: typer.Context,
    service: OptionalServiceArg = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Each service's state, health, uptime, restarts, image; exit 1 when one is down
    (the runbook's `docker-compose ps` / `kubectl get pods`)."""
    from travellr_ops.ops.service import status

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    with app_ctx.runtime.platform() as platform:
        report = status(platform, service)
    out.result(report, lambda console: _render_status(console, report.services))
    for svc in report.services:
        if svc.stopped:
            out.error(f"{svc.name} is stopped: {svc.message.removeprefix('stopped: ')}")
        elif not svc.available:
            out.error(f"{svc.name} is down or unhealthy: {svc.message}")
    exit_with(report.ok)


def _render_status(console: Console, services: list[ServiceStatus]) -> None:
    from travellr_ops.output import escape, table, verdict

    rows = []
    for svc in services:
        name, ready = svc.name, f"{svc.ready}/{svc.desired}"
        if not svc.instances:
            state = verdict("stopped" if svc.stopped else "down")
            rows.append([name, ready, "-", state, "", "", svc.image or "", ""])
        for inst in svc.instances:
            state = inst.state + (f", {verdict(inst.health)}" if inst.health else "")
            if inst.state.lower() not in ("running", "restarting"):
                state = verdict("down") + f" ({inst.state})"
            if inst.last_termination and not inst.ready:
                state += f"\n{escape(inst.last_termination)}"
            image = escape(inst.image)
            if inst.image_digest:
                image += f" {inst.image_digest.removeprefix('sha256:')[:12]}"
            ports = [p for p in inst.ports if p != "host network"]
            rows.append(
                [
                    name,
                    ready,
                    escape(inst.name),
                    state,
                    str(inst.restarts),
                    _age(inst.started_at),
                    image,
                    ", ".join(ports) or ("host" if inst.ports else ""),
                ]
            )
    columns = ["service", "ready", "instance", "state", "restarts", "uptime", "image", "ports"]
    console.print(table(None, columns, rows))


def _age(when: Any) -> str:
    if when is None:
        return "-"
    from datetime import UTC, datetime

    seconds = int((datetime.now(UTC) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}{(seconds % size) // (size // 60 or 1):02d}"[:6]
    return f"{max(seconds, 0)}s"


# -- restart ----------------------------------------------------------------------------------
@app.command("restart")
def restart_command(
    ctx: typer.Context,
    service: ServiceArg,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            "-t",
            help="How long to wait until it is running and healthy again: 90s, 5m (a bare"
            " number is seconds; default: compose.restart_timeout_s, or"
            " kubernetes.rollout_timeout_s).",
        ),
    ] = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Restart a service and wait until it is running and healthy again; exit 1 if it is not
    (the runbook's `docker-compose restart backend` / `kubectl rollout restart`)."""
    from travellr_ops.ops.service import RestartFailed, restart_service
    from travellr_ops.vocab.timespec import parse_duration

    timeout_s = parse_duration(timeout, "--timeout") if timeout is not None else None
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    try:
        report = restart_service(app_ctx.guarded(yes, dry_run), service, timeout_s)
    except RestartFailed as exc:
        failed = exc.result
        out.result(
            {"service": failed.service, "dry_run": False, "result": failed},
            lambda console: _render_failed_restart(console, failed),
        )
        raise
    out.result(report)
    if report.result is not None:
        out.success(report.result.reason)


def _render_failed_restart(console: Console, result: Any) -> None:
    from travellr_ops.output import escape

    if result.status is not None:
        _render_status(console, [result.status])
    if result.last_logs:
        console.print(f"[bold]last {len(result.last_logs)} log lines:[/]")
        for line in result.last_logs:
            console.print(escape(line), soft_wrap=True)


# -- logs -------------------------------------------------------------------------------------
@app.command("logs")
def logs_command(
    ctx: typer.Context,
    services: Annotated[
        list[str] | None,
        typer.Argument(help="Services whose logs to show, interleaved by time (default: backend)."),
    ] = None,
    tail: Annotated[
        int | None, typer.Option("--tail", "-n", help="Lines from the end of each log.")
    ] = 100,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only lines newer than this: a duration ago (10m, 1h30m, 2d) or a time"
            " (2026-12-02T14:00Z, or HH:MM UTC).",
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")
    ] = False,
    grep: Annotated[
        str | None,
        typer.Option("--grep", "-g", help="Only lines matching this regex (case-insensitive)."),
    ] = None,
    level: Annotated[
        str | None,
        typer.Option("--level", "-l", help="Only lines at this level or worse (e.g. ERROR)."),
    ] = None,
    previous: Annotated[
        bool,
        typer.Option("--previous", "-p", help="The previous, crashed container (Kubernetes)."),
    ] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Log lines with timestamps, several services interleaved by time, filtered as they stream
    (the runbook's `docker-compose logs --tail=100 backend`, `logs -f`, `kubectl logs`)."""
    from travellr_ops.ops.service import logs
    from travellr_ops.vocab.timespec import parse_since

    start = parse_since(since) if since is not None else None
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    names = services or ["backend"]
    with app_ctx.runtime.platform() as platform:
        lines = logs(
            platform,
            names,
            tail=tail,
            since=start,
            follow=follow,
            grep=grep,
            level=level,
            previous=previous,
        )
        try:
            if out.json and not follow:
                out.result({"services": names, "lines": list(lines)})
            else:
                _print_lines(lines, as_json=out.json)
        finally:
            close = getattr(lines, "close", None)
            if close is not None:
                close()


def _print_lines(lines: Iterator[LogLine], *, as_json: bool) -> None:
    """One line out per line in, flushed, so that `--follow` and pipes see lines at once."""
    from travellr_ops.output import to_jsonable

    write = sys.stdout.write
    for line in lines:
        if as_json:
            write(json.dumps(to_jsonable(line)) + "\n")
        else:
            stamp = line.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if line.time else "-"
            write(f"{stamp} {line.source} | {line.text}\n")
        sys.stdout.flush()


# -- stats ------------------------------------------------------------------------------------
@app.command("stats")
def stats_command(
    ctx: typer.Context,
    service: OptionalServiceArg = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh until Ctrl-C (like `docker stats`).")
    ] = False,
    interval: Annotated[
        str,
        typer.Option(
            "--interval", help="Time between refreshes with --watch (at least 500ms): 2s, 1m."
        ),
    ] = "2s",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """CPU %, memory used/limit %, network and block I/O per instance, against the CPU and
    memory thresholds; exit 1 when one is breached (the runbook's `docker stats`)."""
    from travellr_ops.errors import UsageError
    from travellr_ops.ops.service import stats
    from travellr_ops.vocab.timespec import format_duration, parse_duration

    interval_s = parse_duration(interval, "--interval")
    if interval_s < 0.5:
        raise UsageError(
            f"--interval must be at least 500ms, not {format_duration(interval_s)}",
            hint="e.g. --interval 2s",
        )
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    thresholds = app_ctx.settings.thresholds
    with app_ctx.runtime.platform() as platform:
        if not watch:
            report = stats(platform, thresholds, service)
            out.result(report, lambda console: console.print(_stats_table(report)))
            for breach in report.breaches:
                out.warn(f"over threshold: {breach}")
            if not report.usage:
                out.warn("no running instance to measure")
            exit_with(report.ok)
            return
        if out.json:
            while True:  # one JSON document per line per refresh, until Ctrl-C
                report = stats(platform, thresholds, service)
                sys.stdout.write(json.dumps(_jsonable(report)) + "\n")
                sys.stdout.flush()
                time.sleep(interval_s)
        from rich.live import Live

        with Live(console=out.stdout, auto_refresh=False) as live:
            while True:
                report = stats(platform, thresholds, service)
                live.update(_stats_table(report), refresh=True)
                time.sleep(interval_s)


def _jsonable(data: Any) -> Any:
    from travellr_ops.output import to_jsonable

    return to_jsonable(data)


def _stats_table(report: ServiceStatsReport) -> Any:
    from travellr_ops.output import table

    def over(value: float | None, limit: float) -> str:
        if value is None:
            return "-"
        text = f"{value:.1f} %"
        return f"[bold red]{text}[/]" if value > limit else text

    rows = [
        [
            u.service,
            u.instance,
            over(u.cpu_pct, report.cpu_threshold_pct),
            f"{_size(u.memory_bytes)} / {_size(u.memory_limit_bytes)}",
            over(u.memory_pct, report.memory_threshold_pct),
            f"{_size(u.net_rx_bytes)} / {_size(u.net_tx_bytes)}",
            f"{_size(u.block_read_bytes)} / {_size(u.block_write_bytes)}",
        ]
        for u in report.usage
    ]
    title = (
        f"thresholds: CPU {report.cpu_threshold_pct:g} %, memory {report.memory_threshold_pct:g} %"
    )
    columns = ["service", "instance", "CPU", "memory used / limit", "memory"]
    return table(title, [*columns, "net I/O rx / tx", "block I/O read / write"], rows)


def _size(value: int | None) -> str:
    from travellr_ops.vocab.units import format_bytes

    return "-" if value is None else format_bytes(value)


# -- top --------------------------------------------------------------------------------------
@app.command("top")
def top_command(
    ctx: typer.Context,
    service: ServiceArg,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The processes inside each instance (the runbook's `docker exec travellr-backend top`)."""
    from travellr_ops.ops.service import top

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    with app_ctx.runtime.platform() as platform:
        listings = top(platform, service)
    out.result({"instances": listings}, lambda console: _render_top(console, listings))


def _render_top(console: Console, listings: list[ProcessList]) -> None:
    from travellr_ops.output import escape, table

    for listing in listings:
        rows = [[escape(str(cell)) for cell in row] for row in listing.processes]
        console.print(table(listing.instance, listing.titles, rows))


# -- up / down --------------------------------------------------------------------------------
@app.command("up")
def up_command(
    ctx: typer.Context,
    service: OptionalServiceArg = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Create and start a service, or the whole stack (`docker-compose up -d [SERVICE]`)."""
    from travellr_ops.ops.service import up

    _lifecycle(ctx, up, service, yes, dry_run, json_, quiet)


@app.command("down")
def down_command(
    ctx: typer.Context,
    service: OptionalServiceArg = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Stop and remove a service, or the whole stack (`docker-compose down`), for maintenance
    and restores."""
    from travellr_ops.ops.service import down

    _lifecycle(ctx, down, service, yes, dry_run, json_, quiet)


def _lifecycle(
    ctx: typer.Context,
    operation: Any,
    service: str | None,
    yes: bool,
    dry_run: bool,
    json_: bool,
    quiet: bool,
) -> None:
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    with app_ctx.runtime.platform() as platform:
        report: LifecycleReport = operation(platform, app_ctx.guard(yes, dry_run), service)
    if report.dry_run:
        out.result(report)
        return
    out.result(report, lambda console: _render_status(console, report.services))
    what = report.service or "the stack"
    out.success(f"service {report.action} {what}: done on {report.platform}")


# -- scale and describe (issue 7) -----------------------------------------------------------------


@app.command("scale")
def scale_command(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="backend, mongodb, redis (or a name).")],
    replicas: Annotated[
        int | None,
        typer.Argument(metavar="N", min=0, show_default=False, help="How many instances to run."),
    ] = None,
    replicas_option: Annotated[
        int | None,
        typer.Option(
            "--replicas",
            "-r",
            min=0,
            show_default=False,
            help="The same as N (kubectl's spelling).",
        ),
    ] = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run N instances of a service (the runbook's `kubectl scale --replicas=N`)."""
    from travellr_ops.errors import UsageError
    from travellr_ops.ops.service import scale

    given = {n for n in (replicas, replicas_option) if n is not None}
    if len(given) != 1:
        raise UsageError(
            "service scale needs the number of instances, once",
            hint=f"e.g. travellr-ops service scale {service} 3",
        )
    (count,) = given
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    with app_ctx.runtime.platform() as platform:
        result = scale(platform, app_ctx.guard(yes, dry_run), service, count)
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
    from travellr_ops.ops.service import describe

    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)
    with app_ctx.runtime.platform() as platform:
        details = describe(platform, instance)
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


# -- profile ----------------------------------------------------------------------------------
@app.command("profile")
def profile_command(
    ctx: typer.Context,
    service: ServiceArg,
    cpu: Annotated[
        str | None,
        typer.Option("--cpu", metavar="DURATION", help="CPU profile for this long (30s, 2m)."),
    ] = None,
    heap: Annotated[
        bool, typer.Option("--heap", help="Heap snapshot (pauses the process while taken).")
    ] = False,
    leak: Annotated[
        str | None,
        typer.Option(
            "--leak", metavar="DURATION", help="Watch memory this long: growing MB/h or flat."
        ),
    ] = None,
    interval: Annotated[
        str, typer.Option("--interval", metavar="DURATION", help="Between samples with --leak.")
    ] = "5s",
    out_path: Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            help="File to write (default ./SERVICE-TIME.cpuprofile or .heapsnapshot).",
        ),
    ] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Rows in the summary.")] = 10,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Profile a running Node.js service without restarting it (the runbook's `node --prof` /
    `node --inspect`): SIGUSR1 opens its V8 inspector, which is closed afterwards. --cpu writes
    a .cpuprofile (Chrome DevTools loads it) and prints the functions by self time; --heap a
    .heapsnapshot and the constructors holding the most memory; --leak exits 1 when memory
    grows faster than thresholds.leak_mb_per_h."""
    from pathlib import Path

    from travellr_ops.errors import UsageError
    from travellr_ops.vocab.timespec import parse_duration

    chosen = [name for name, on in (("--cpu", cpu), ("--heap", heap), ("--leak", leak)) if on]
    if len(chosen) != 1:
        raise UsageError(
            "choose one of --cpu DURATION, --heap, --leak DURATION",
            hint="e.g. `service profile backend --cpu 30s`",
        )
    cpu_s = parse_duration(cpu, "--cpu") if cpu else 0.0
    leak_s = parse_duration(leak, "--leak") if leak else 0.0
    interval_s = parse_duration(interval, "--interval")
    app_ctx = use(ctx)
    out = app_ctx.output(json_, quiet)

    def target(suffix: str) -> Path:
        if out_path:
            return Path(out_path)
        return Path(f"{service}-{time.strftime('%Y%m%dT%H%M%S')}.{suffix}")

    if cpu:
        from travellr_ops.ops.profile import cpu_profile

        report: Any = cpu_profile(app_ctx.runtime, service, cpu_s, target("cpuprofile"), top)
        out.result(report, lambda console: _render_cpu(console, report))
    elif heap:
        from travellr_ops.ops.profile import heap_snapshot

        report = heap_snapshot(app_ctx.guarded(yes, dry_run), service, target("heapsnapshot"), top)
        if report.size_bytes:
            out.result(report, lambda console: _render_heap(console, report))
    else:
        from travellr_ops.ops.profile import leak_watch

        report = leak_watch(app_ctx.runtime, service, leak_s, interval_s)
        out.result(report, lambda console: _render_leak(console, report))
        exit_with(report.ok)


def _render_cpu(console: Console, report: Any) -> None:
    from travellr_ops.output import escape, table
    from travellr_ops.vocab.units import format_bytes

    console.print(
        f"CPU profile of {report.service} (pid {report.pid}): {report.duration_s:.1f} s, "
        f"{report.samples} samples, {escape(report.path)} ({format_bytes(report.size_bytes)})"
    )
    rows = [
        [escape(f.function), escape(f.location), f"{f.self_ms:.1f}", f"{f.self_pct:.1f}"]
        for f in report.top
    ]
    console.print(table("functions by self time", ["function", "where", "self ms", "%"], rows))


def _render_heap(console: Console, report: Any) -> None:
    from travellr_ops.output import escape, table
    from travellr_ops.vocab.units import format_bytes

    console.print(
        f"heap snapshot of {report.service} (pid {report.pid}): {escape(report.path)} "
        f"({format_bytes(report.size_bytes)}, {report.nodes:,} objects, heap "
        f"{format_bytes(report.heap_bytes)} used, {report.seconds:.1f} s)"
    )
    rows = [[escape(c.constructor), f"{c.count:,}", format_bytes(c.held_bytes)] for c in report.top]
    console.print(table("constructors holding the most", ["constructor", "objects", "held"], rows))


def _render_leak(console: Console, report: Any) -> None:
    from travellr_ops.output import verdict

    if report.verdict == "insufficient":
        console.print(f"{report.service} (pid {report.pid}): too few samples to tell")
        return
    word = "warn" if report.verdict == "growing" and not report.ok else "ok"
    first, last = report.samples[0][1] / 2**20, report.samples[-1][1] / 2**20
    console.print(
        f"{verdict(word)} {report.service} (pid {report.pid}): {report.verdict} "
        f"{report.mb_per_h:+.1f} MB/h over {report.minutes:.1f} min, R² {report.r_squared:.2f} "
        f"({first:.1f} → {last:.1f} MiB resident; threshold {report.threshold_mb_per_h:g} MB/h)"
    )


# -- exec (issue 20) ----------------------------------------------------------------------------
@app.command("exec")
def exec_command(
    ctx: typer.Context,
    service: ServiceArg,
    command: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="-- COMMAND...",
            show_default=False,
            help="The command and its arguments, after -- (default with --debug-copy: /bin/sh).",
        ),
    ] = None,
    instance: Annotated[
        int | None,
        typer.Option(
            "--instance",
            min=1,
            show_default=False,
            help="Which instance: compose's container number, or the Nth pod (default: the"
            " first running).",
        ),
    ] = None,
    reason: Annotated[
        str,
        typer.Option(
            "--reason", help="Why, for the audit log (required in a protected environment)."
        ),
    ] = "",
    debug_copy: Annotated[
        bool,
        typer.Option(
            "--debug-copy",
            help="Run it in a copy of the container (same image, environment, volumes,"
            " network; an entrypoint that sleeps), removed afterwards: for one that keeps"
            " crashing.",
        ),
    ] = False,
    no_tty: Annotated[
        bool,
        typer.Option(
            "--no-tty", "-T", help="No terminal even when stdin is one (docker-compose's -T)."
        ),
    ] = False,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
) -> None:
    """Run a command inside a service's container and exit with its exit code (the runbook's
    `docker-compose exec backend CMD` / `kubectl exec -it POD -- CMD`): a
    terminal when stdin is one, stdin passed through otherwise (`echo x | ... -- cat`)."""
    from travellr_ops.adapters.platform_types import ExecIO
    from travellr_ops.ops.exec import exec_command as run_exec

    app_ctx = use(ctx)
    app_ctx.output()
    tty = not no_tty and bool(sys.stdin) and sys.stdin.isatty() and sys.stdout.isatty()

    def size() -> tuple[int, int]:
        columns, rows = os.get_terminal_size(sys.stdout.fileno())
        return rows, columns

    sys.stdout.flush()
    stdin = sys.stdin.buffer if sys.stdin is not None else None  # None: fd 0 closed
    io = ExecIO(stdin, sys.stdout.buffer, sys.stderr.buffer, tty=tty, size=size if tty else None)
    report = run_exec(
        app_ctx.guarded(yes, dry_run),
        service,
        command or [],
        io,
        instance=instance,
        reason=reason,
        debug_copy=debug_copy,
    )
    if report.exit_code:
        raise typer.Exit(report.exit_code)
