"""What every command group shares: the group factory, option aliases and the app context.

A command looks like::

    @group.command()
    def stats(ctx: typer.Context, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
        app_ctx = use(ctx)
        out = app_ctx.output(json_, quiet)
        with app_ctx.redis() as redis:
            result = ops.cache.stats(redis, app_ctx.settings)
        out.result(result, lambda console: console.print(render(result)))

The context is called ``app_ctx`` everywhere (``app`` is the command group, ``ctx`` Typer's
context). Its servers come from context managers that close them: ``app_ctx.redis()``,
``app_ctx.mongo()``, ``app_ctx.platform()``. Mutating commands also take ``yes: YesOpt`` and
``dry_run: DryRunOpt`` and pass ``app_ctx.guard(yes, dry_run)`` to their ops function.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from travellr_ops.output import Mode, Output, ProgressTask

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    # pydantic costs more start-up time than all of --help: settings load on first use.
    from travellr_ops.adapters.mongo import MongoAdapter
    from travellr_ops.adapters.platform_types import ServicePlatform
    from travellr_ops.adapters.redis import RedisAdapter
    from travellr_ops.runtime import Runtime
    from travellr_ops.safety import Guard
    from travellr_ops.settings import LoadedSettings, Settings


def new_group(name: str, help: str) -> typer.Typer:
    """A command group as every group is made: help when called bare, no pretty tracebacks."""
    return typer.Typer(
        name=name,
        help=help,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
    )


JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document to stdout and nothing else there.")
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print nothing but errors and warnings (for cron).")
]
YesOpt = Annotated[
    bool,
    typer.Option("--yes", "-y", help="Do not ask for confirmation (needed without a terminal)."),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Say exactly what would change, and change nothing.")
]


@dataclass
class AppContext:
    """State of one invocation: global flags, and settings loaded on first use."""

    config_file: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    json: bool = False
    quiet: bool = False
    debug: bool = False
    read_only: bool = False
    verbose: int = 0
    #: the incident this command's changes belong to (`--incident ID`)
    incident: str | None = None
    #: `--env`: the named environment (one; several or "all" fan out, see cli/fanout.py)
    environment: str | None = None
    #: `--confirm-env NAME`: the protected environment the user means to change
    confirm_env: str | None = None
    #: whether a person can be asked (stdin is a terminal); tests set it
    interactive: bool | None = None
    argv: list[str] = field(default_factory=list)
    #: what makes this invocation's Output (the fan-out captures each environment's)
    output_class: Callable[[Mode], Output] = Output
    #: a pre-built Settings (tests) instead of loading flags/env/file
    preset: Settings | None = None
    _loaded: LoadedSettings | None = None
    _output: Output | None = None
    _runtime: Runtime | None = None

    @property
    def loaded(self) -> LoadedSettings:
        if self._loaded is None:
            from travellr_ops.settings import LoadedSettings, load_settings

            if self.preset is not None:
                self._loaded = LoadedSettings(settings=self.preset, config_file=None)
            else:
                self._loaded = load_settings(self.config_file, self.overrides, self.environment)
            log.info("settings: config file %s", self._loaded.config_file or "(none found)")
            for deprecation in self._loaded.deprecations:
                self.output().warn(deprecation)
        return self._loaded

    @property
    def settings(self) -> Settings:
        return self.loaded.settings

    def output(self, json: bool = False, quiet: bool = False) -> Output:
        """The output for this command; its own --json/--quiet add to the global ones."""
        if json:
            self.json = True
        if quiet:
            self.quiet = True
        mode = Mode.JSON if self.json else Mode.QUIET if self.quiet else Mode.HUMAN
        if self._output is None or self._output.mode is not mode:
            self._output = self.output_class(mode)
        return self._output

    @property
    def runtime(self) -> Runtime:
        """The run context of this invocation (built on first use): its servers, store and
        health check; progress and messages go to this command's output."""
        if self._runtime is None:
            from travellr_ops.runtime import Runtime

            self._runtime = Runtime(
                self.settings,
                progress=self._progress,
                notify=lambda message: self.output().info(message),
                warn=lambda message: self.output().warn(message),
                config_file=self.loaded.config_file,
            )
        return self._runtime

    def _progress(
        self, description: str, total: float | None = None
    ) -> AbstractContextManager[ProgressTask]:
        return self.output().progress(description, total)

    def guarded(self, yes: bool = False, dry_run: bool = False) -> Runtime:
        """The run context holding the Guard of a command that changes things."""
        return self.runtime.with_guard(self.guard(yes, dry_run))

    def redis(self) -> AbstractContextManager[RedisAdapter]:
        """The Redis of the settings (redis.url), closed when the block ends."""
        return self.runtime.redis()

    def mongo(self) -> AbstractContextManager[MongoAdapter]:
        """The MongoDB of the settings, closed when the block ends (a new connection each
        call: ``db restart`` pings with a fresh one each time)."""
        return self.runtime.mongo()

    def platform(self) -> AbstractContextManager[ServicePlatform]:
        """The service platform the settings name, closed at the end; platform = "none" is
        the configuration error (exit 2) before the command asks or changes anything."""
        return self.runtime.platform()

    def guard(self, yes: bool = False, dry_run: bool = False) -> Guard:
        from travellr_ops.redact import mask_argv
        from travellr_ops.safety import Guard

        out = self.output()
        if self.incident:
            from travellr_ops.ops.incident.procedure import known

            known(self.settings, self.incident)
        interactive = sys.stdin.isatty() if self.interactive is None else self.interactive

        def confirm(prompt: str) -> bool:
            from rich.prompt import Confirm

            return Confirm.ask(prompt, console=out.stderr, default=False)

        def ask(prompt: str) -> str:
            from rich.prompt import Prompt

            return Prompt.ask(prompt, console=out.stderr, default="", show_default=False)

        def announce_env(environment: str, protected: bool, headline: str) -> None:
            from rich.text import Text

            from travellr_ops.redact import mask

            if out.quiet and not protected:
                return
            style = "bold red" if protected else "bold"
            out.stderr.print(Text.assemble((environment, style), ": ", mask(headline)))

        return Guard(
            state_dir=self.settings.state_dir,
            command=mask_argv(["travellr-ops", *self.argv]),
            yes=yes,
            dry_run=dry_run,
            read_only=self.read_only or self.settings.read_only,
            interactive=interactive,
            confirm=confirm,
            announce=out.info,
            warn=out.warn,
            incident=self.incident or "",
            environment=self.settings.environment,
            protected=self.settings.protected,
            confirm_env=self.confirm_env,
            ask=ask,
            announce_env=announce_env,
        )


def use(ctx: typer.Context) -> AppContext:
    """The AppContext of this invocation (made by the root callback)."""
    obj = ctx.find_root().obj
    if not isinstance(obj, AppContext):
        raise RuntimeError("travellr-ops commands must run under the root app")
    return obj


def exit_with(ok: bool) -> None:
    """End a check command: exit 1 when it found problems (the exit-code contract)."""
    if not ok:
        from travellr_ops.errors import ExitCode

        raise typer.Exit(ExitCode.CHECK_FAILED)
