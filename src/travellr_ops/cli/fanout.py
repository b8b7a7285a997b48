"""One reading command over several environments at once (`--env a,b`, `--env all`).

The command line is run once per environment, each in a thread of its own with the
environment's settings, exactly as `--env NAME` would run it, its output captured instead of
printed; then the results are shown together: one table with an environment column where each
environment printed one table of the same columns (else one section each), `--json` as one
document keyed by environment, and the worst exit code. Each environment's servers are asked
with its own timeouts, so one that does not answer is reported within them and never delays
the others' work. Threads, not processes: the reading commands share nothing but the
read-only command tree, and a second Python start would cost more than most of them take.

Only the commands that change nothing fan out (``READING``); any other refuses several
environments (exit 2) before it asks or changes anything.
"""

from __future__ import annotations

import io
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from travellr_ops.output import SHORT_CELL, Mode, Output

if TYPE_CHECKING:
    import click
    from rich.console import Console, RenderableType

    from travellr_ops.cli.common import AppContext

#: the commands that read only, and so may run over several environments at once
READING = (
    "health",
    "service status",
    "monitor once",
    "backup list",
    "deploy status",
    "db ping",
    "cache stats",
    "checklist last",
)
#: global options that may also be given after the command (lifted before it)
LIFTED = ("--env", "--confirm-env")
#: environments whose run was cut at their fanout_timeout_s, still working in their thread
abandoned: list[str] = []


def is_several(spec: str) -> bool:
    """Whether ``--env`` names several environments (a list, or all of them)."""
    return spec.strip() == "all" or "," in spec


def lift_global_options(args: list[str], root: click.Command | None = None) -> list[str]:
    """``args`` with ``--env``/``--confirm-env`` moved before the command, wherever they
    were given (up to a ``--``), so that ``health --env all`` means ``--env all health``;
    not an option the command itself has (``root``: the command tree to look it up in)."""
    lifted, rest = _split(args, root)
    return lifted + rest


def _split(args: list[str], root: click.Command | None) -> tuple[list[str], list[str]]:
    names = set(LIFTED)
    if root is not None:
        _, leaf = _resolve(root, args)
        names -= {opt for param in leaf.params for opt in getattr(param, "opts", ())}
    lifted: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(args):
        token = args[index]
        if token == "--":
            rest += args[index:]
            break
        if token.split("=", 1)[0] in names:
            if "=" in token:
                lifted.append(token)
            else:
                lifted += args[index : index + 2]
                index += 1
        else:
            rest.append(token)
        index += 1
    return lifted, rest


def _without_env(args: list[str], root: click.Command) -> list[str]:
    """``args`` without the global ``--env`` (lifted first, so a command's own stays)."""
    lifted, rest = _split(args, root)
    kept: list[str] = []
    skip = False
    for token in lifted:
        if skip:
            skip = False
        elif token == "--env":
            skip = True
        elif not token.startswith("--env="):
            kept.append(token)
    return kept + rest


def command_path(group: click.Command, args: list[str]) -> list[str]:
    """The command names in ``args`` (``["cache", "stats"]``), read as click would: options
    of each group, and the values of those that take one, are skipped."""
    return _resolve(group, args)[0]


def _resolve(group: click.Command, args: list[str]) -> tuple[list[str], click.Command]:
    """The command names in ``args`` and the command they lead to."""
    import click

    path: list[str] = []
    command = group
    tokens = iter(args)
    while isinstance(command, click.Group):
        takes_value = {
            opt
            for param in command.params
            if isinstance(param, click.Option) and not param.is_flag and not param.count
            for opt in param.opts
        }
        for token in tokens:
            if token == "--":
                return path, command
            if token.startswith("-"):
                if token in takes_value:
                    next(tokens, None)
                continue
            break
        else:
            return path, command
        path.append(token)
        sub = command.commands.get(token)
        if sub is None:
            return path, command
        command = sub
    return path, command


@dataclass
class EnvRun:
    """One environment's run of the command: what it printed, and how it ended."""

    name: str
    mode: Mode = Mode.HUMAN
    exit_code: int | None = None
    duration_s: float = 0.0
    #: the --json document (the result, or the error document)
    document: Any = None
    #: the result's renderers (human mode), called again to draw the combined view
    renders: list[Callable[[Console], None]] = field(default_factory=list)
    #: the error it ended with, if any
    failure: str | None = None
    messages: io.StringIO = field(default_factory=io.StringIO)


class CapturedOutput(Output):
    """An Output that keeps an environment's result and messages for the fan-out to show."""

    def __init__(self, mode: Mode, run: EnvRun, terminal: bool) -> None:
        from rich.console import Console

        stderr = Console(
            file=run.messages, force_terminal=terminal, highlight=False, soft_wrap=True
        )
        super().__init__(mode, stdout=Console(file=io.StringIO()), stderr=stderr)
        self.run = run
        run.mode = mode

    def result(self, data: Any, render: Callable[[Console], None] | None = None) -> None:
        if self.mode is Mode.HUMAN and render is not None:
            self.run.renders.append(render)
        else:
            super().result(data, render)

    def failure(self, message: str, hint: str | None, *, exit_code: int, kind: str) -> None:
        self.run.failure = message
        super().failure(message, hint, exit_code=exit_code, kind=kind)

    def _write_json(self, document: Any) -> None:
        self.run.document = document
        self.wrote_result = True

    @contextmanager
    def progress(self, description: str, total: float | None = None) -> Iterator[Any]:
        from travellr_ops.output import _NoProgress

        yield _NoProgress()


def fan_out(ctx: click.Context, app_ctx: AppContext) -> None:
    """Run the command of this command line once per environment of ``--env``, at once; show
    the results together and exit with the worst exit code (returns only to show help)."""
    import typer

    from travellr_ops.errors import UsageError
    from travellr_ops.settings import environments

    spec = app_ctx.environment or ""
    args = _without_env(app_ctx.argv, ctx.command)
    before_dashes = args[: args.index("--")] if "--" in args else args
    if "--help" in before_dashes or "-h" in before_dashes:
        return  # the command's help, once, as without --env
    path = " ".join(command_path(ctx.command, args))
    if path not in READING:
        raise UsageError(
            f"{path or 'this command'} works on one environment at a time, and --env {spec}"
            " names several",
            hint=f"name one environment (--env NAME); several are for {', '.join(READING)}",
        )
    if app_ctx.preset is not None:
        raise UsageError("--env with several environments needs a config file naming them")
    names = environments(app_ctx.config_file).select(spec)
    runs = _run_each(ctx.command, args, names, app_ctx)
    modes = {run.mode for run in runs}
    out = app_ctx.output(json=Mode.JSON in modes, quiet=Mode.QUIET in modes)
    for run in runs:
        for line in run.messages.getvalue().splitlines():
            sys.stderr.write(f"{run.name}: {line}\n")
    sys.stderr.flush()
    if out.json:
        out.result({run.name: run.document for run in runs})
    else:
        out.result(runs, lambda console: _render(console, runs))
    raise typer.Exit(max(run.exit_code or 0 for run in runs))


def _run_each(
    command: click.Command, args: list[str], names: list[str], app_ctx: AppContext
) -> list[EnvRun]:
    """Each environment's run, at once; one that overruns its fanout_timeout_s is reported
    as not answering (its thread is left to its own timeouts: its output is dropped)."""
    from travellr_ops.cli.app import execute
    from travellr_ops.cli.common import AppContext
    from travellr_ops.errors import TravellrError
    from travellr_ops.settings import load_settings

    terminal = sys.stderr.isatty()
    runs = [EnvRun(name) for name in names]
    started: list[tuple[EnvRun, threading.Thread, float]] = []

    def one(run: EnvRun, child: AppContext) -> None:
        began = time.monotonic()
        try:
            run.exit_code = execute(child.argv, child, command)
        finally:
            run.duration_s = time.monotonic() - began

    for run in runs:
        try:
            loaded = load_settings(app_ctx.config_file, app_ctx.overrides, run.name)
        except TravellrError as exc:
            _fail(run, exc.message, exc.hint, int(exc.exit_code), exc.kind)
            continue
        for deprecation in loaded.deprecations:
            CapturedOutput(run.mode, run, terminal).warn(deprecation)
        child = AppContext(
            argv=["--env", run.name, *args],
            interactive=False,
            output_class=_captured(run, terminal),
            _loaded=loaded,
        )
        thread = threading.Thread(target=one, args=(run, child), daemon=True)
        thread.start()
        started.append((run, thread, loaded.settings.fanout_timeout_s))
    begin = time.monotonic()
    for run, thread, timeout_s in started:
        thread.join(max(0.0, begin + timeout_s - time.monotonic()))
        if thread.is_alive():
            late = EnvRun(run.name, run.mode)
            _fail(
                late,
                f"no answer within {timeout_s:g} s",
                "its servers may be unreachable; fanout_timeout_s sets how long to wait",
                3,
                "unreachable",
            )
            runs[runs.index(run)] = late
            abandoned.append(run.name)
    return runs


def _captured(run: EnvRun, terminal: bool) -> Callable[[Mode], Output]:
    return lambda mode: CapturedOutput(mode, run, terminal)


def _fail(run: EnvRun, message: str, hint: str | None, exit_code: int, kind: str) -> None:
    """End ``run`` with an error, as the command would have reported it."""
    CapturedOutput(run.mode, run, terminal=False).error(message, hint)
    run.failure = message
    run.exit_code = exit_code
    from travellr_ops.redact import mask

    error = {"message": mask(message), "hint": mask(hint) if hint else None, "kind": kind}
    run.document = {"ok": False, "exit_code": exit_code, "error": error}


class _Recorder:
    """A console stand-in that keeps what a renderer prints, to lay it out again."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self.printed: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self.printed.append((objects, kwargs))

    def __getattr__(self, name: str) -> Any:  # width, is_terminal... as the real console
        return getattr(self._console, name)


def _render(console: Console, runs: list[EnvRun]) -> None:
    from rich.table import Table
    from rich.text import Text

    printed: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = {}
    for run in runs:
        recorder = _Recorder(console)
        for render in run.renders:
            render(recorder)  # type: ignore[arg-type]
        printed[run.name] = recorder.printed

    def tables_of(name: str) -> list[Table]:
        return [o for objects, _ in printed[name] for o in objects if isinstance(o, Table)]

    shapes = {
        tuple(str(c.header) for c in tables[0].columns)
        for run in runs
        if len(tables := tables_of(run.name)) == 1
    }
    mergeable = len(shapes) == 1 and all(len(tables_of(r.name)) <= 1 for r in runs)
    if not mergeable:
        from rich.rule import Rule

        for run in runs:
            console.print(Rule(Text(run.name, style="bold"), align="left"))
            if run.failure and not printed[run.name]:
                console.print(Text(f"error: {run.failure}", style="red"))
            for objects, kwargs in printed[run.name]:
                console.print(*objects, **kwargs)
        return
    columns = ["environment", *next(iter(shapes))]
    rows: list[list[RenderableType]] = []
    for run in runs:
        tables = tables_of(run.name)
        if not tables:
            why = run.failure or f"no result (exit {run.exit_code})"
            rows.append([run.name, Text(f"error: {why}", style="red")])
            continue
        table = tables[0]
        cells = [list(column.cells) for column in table.columns]
        for index in range(table.row_count):
            rows.append([run.name, *(cells_of[index] for cells_of in cells)])

    def lines(before_table: bool) -> None:
        """What each environment printed besides its table, headed by its name, on the
        side of the table it was printed on (a title counts as before)."""
        for run in runs:
            seen_table = False
            for objects, kwargs in printed[run.name]:
                tables = [o for o in objects if isinstance(o, Table)]
                rest = [o for o in objects if not isinstance(o, Table)]
                if tables and tables[0].title and before_table:
                    console.print(Text(f"{run.name}:", style="bold"), tables[0].title)
                seen_table = seen_table or bool(tables)
                if rest and seen_table != before_table:
                    console.print(Text(f"{run.name}:", style="bold"), *rest, **kwargs)

    lines(before_table=True)
    console.print(_table(columns, rows))
    lines(before_table=False)


def _table(columns: list[str], rows: list[list[RenderableType]]) -> Any:
    """The house table (output.table) with cells that may already be rendered text."""
    from rich.table import Table

    table = Table(title=None, header_style="bold")
    for index, column in enumerate(columns):
        short = all(len(str(row[index])) <= SHORT_CELL for row in rows if index < len(row))
        table.add_column(column, no_wrap=short)
    for row in rows:
        table.add_row(*row)
    return table
