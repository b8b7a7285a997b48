"""The root `travellr-ops` command and the one place that turns errors into exit codes."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import click
import typer

from travellr_ops import __version__
from travellr_ops.cli.common import AppContext
from travellr_ops.errors import ExitCode, TravellrError
from travellr_ops.output import Output

if TYPE_CHECKING:
    from travellr_ops.settings import Settings

# The command groups (each a module of this package) in the order help lists them, and the
# commands of the root, health and doctor. A command line imports only the groups it names, so
# that `cache stats` does not pay for importing the deploy or security CLI; help, completion
# and a mistyped name import them all.
COMMANDS = (
    "service",
    "db",
    "cache",
    "backup",
    "monitor",
    "deploy",
    "security",
    "incident",
    "maintenance",
    "checklist",
    "config",
    "health",
    "doctor",
)


def build_app(names: Collection[str] = COMMANDS) -> typer.Typer:
    """The root command with the groups of `names` (all by default)."""
    root_app = typer.Typer(
        name="travellr-ops",
        help="The Travellr operations runbook as one command.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    root_app.callback()(root)
    for name in COMMANDS:
        if name in names:
            module = importlib.import_module(f"travellr_ops.cli.{name}")
            if name in ("health", "doctor"):
                root_app.command(name)(getattr(module, name))
            else:
                root_app.add_typer(module.app)
    return root_app


def __getattr__(name: str) -> Any:
    if name == "app":  # the whole command tree, for whoever walks it (the help tests)
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _version(value: bool) -> None:
    if value:
        print(f"travellr-ops {__version__}")
        raise typer.Exit()


def root(
    ctx: typer.Context,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="TOML config file (default: $TRAVELLR_CONFIG, ./travellr-ops.toml, "
            "~/.config/travellr-ops/config.toml, /etc/travellr-ops/config.toml).",
            show_default=False,
        ),
    ] = None,
    platform: Annotated[
        str | None,
        typer.Option(
            help="Where services run: compose, kubernetes or none (settings: platform).",
            show_default=False,
        ),
    ] = None,
    mongo_uri: Annotated[
        str | None, typer.Option(help="MongoDB URI (settings: mongo.uri).", show_default=False)
    ] = None,
    redis_url: Annotated[
        str | None, typer.Option(help="Redis URL (settings: redis.url).", show_default=False)
    ] = None,
    api_url: Annotated[
        str | None,
        typer.Option(help="Backend API base URL (settings: api.url).", show_default=False),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="JSON output for every command.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and warnings.")] = False,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Refuse every command that changes anything.")
    ] = False,
    environment: Annotated[
        str | None,
        typer.Option(
            "--env",
            metavar="NAME",
            show_default=False,
            help="The named environment ([env.NAME] of the config file; default: "
            "$TRAVELLR_ENV, else the file's default_env). The reading commands (health, "
            "service status, monitor once, backup list, deploy status, db ping, cache stats, "
            "checklist last) also take several, NAME,NAME or all, queried at once. May be "
            "given after the command too.",
        ),
    ] = None,
    confirm_env: Annotated[
        str | None,
        typer.Option(
            "--confirm-env",
            metavar="NAME",
            show_default=False,
            help="With --yes: confirm a change to protected environment NAME without typing "
            "its name (needed without a terminal). May be given after the command too.",
        ),
    ] = None,
    incident: Annotated[
        str | None,
        typer.Option(
            "--incident",
            metavar="ID",
            show_default=False,
            help="Link this command's changes to incident ID in the audit log (changes made "
            "while an incident is open are linked to it anyway).",
        ),
    ] = None,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            metavar="",
            show_default=False,
            help="Log what travellr-ops does (-v), and the SDKs' requests too (-vv), on stderr.",
        ),
    ] = 0,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    obj = ctx.obj if isinstance(ctx.obj, AppContext) else AppContext()
    obj.config_file = config_file
    for key, value in (
        ("platform", platform),
        ("mongo.uri", mongo_uri),
        ("redis.url", redis_url),
        ("api.url", api_url),
    ):
        if value is not None:
            _set_dotted(obj.overrides, key, value)
    obj.json = obj.json or json_
    obj.quiet = obj.quiet or quiet
    obj.read_only = read_only
    obj.incident = incident
    obj.environment = environment
    obj.confirm_env = confirm_env
    obj.verbose = verbose
    obj.debug = debug
    _configure_logging(verbose)
    ctx.obj = obj
    if environment is not None and not ctx.resilient_parsing:
        from travellr_ops.cli import fanout

        if fanout.is_several(environment):
            fanout.fan_out(ctx, obj)


def _set_dotted(target: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value


def _configure_logging(verbose: int) -> None:
    """Our logger at INFO with -v, DEBUG with -vv; the SDKs' loggers only with -vv."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ours = logging.getLogger("travellr_ops")
    ours.handlers[:] = [handler]
    ours.propagate = False
    ours.setLevel(
        logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING
    )
    if verbose >= 2:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
        for name in ("pymongo", "docker", "kubernetes", "urllib3", "httpx"):
            logging.getLogger(name).setLevel(logging.DEBUG)


def run(
    argv: list[str] | None = None,
    *,
    settings: Settings | None = None,
    interactive: bool | None = None,
) -> int:
    """Run one command line; return its exit code. Errors become one line plus a hint."""
    args = list(sys.argv[1:] if argv is None else argv)
    obj = AppContext(argv=args, preset=settings, interactive=interactive)
    return execute(args, obj)


def execute(args: list[str], obj: AppContext, command: click.Command | None = None) -> int:
    """Run one command line in the context ``obj`` (``command``: the root already built);
    return its exit code. Errors go to ``obj``'s output as one line plus a hint."""
    from travellr_ops.cli.fanout import lift_global_options

    def output() -> Output:
        # A --json given to the command itself counts even when the command failed before
        # it read its options: CI parses stdout whatever happened.
        before_dashes = args[: args.index("--")] if "--" in args else args
        return obj.output(json="--json" in before_dashes)

    def fail(message: str, hint: str | None, code: ExitCode, kind: str) -> int:
        output().failure(message, hint, exit_code=int(code), kind=kind)
        return int(code)

    try:
        if command is None:
            named = [name for name in COMMANDS if name in args]
            command = typer.main.get_command(build_app(named or COMMANDS))
            _unwrap_help(command)
        args = lift_global_options(args, command)
        rv = command.main(args=args, prog_name="travellr-ops", standalone_mode=False, obj=obj)
        return int(rv) if isinstance(rv, int) else ExitCode.OK
    except TravellrError as exc:
        _traceback_if(obj.debug)
        return fail(exc.message, exc.hint, exc.exit_code, exc.kind)
    except KeyboardInterrupt:
        return fail("interrupted", None, ExitCode.INTERRUPTED, "interrupted")
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        return fail("aborted", None, ExitCode.INTERRUPTED, "interrupted")
    except click.ClickException as exc:  # usage errors: unknown option, bad value...
        exc.show()
        output().error_document(exc.format_message(), None, exit_code=exc.exit_code, kind="usage")
        return int(exc.exit_code)
    except BrokenPipeError:
        return int(ExitCode.OK)
    except Exception as exc:
        _traceback_if(obj.debug)
        return fail(
            f"internal error: {type(exc).__name__}: {exc}",
            "this is a bug in travellr-ops; the traceback is above"
            if obj.debug
            else "this is a bug in travellr-ops; run again with --debug for the traceback",
            ExitCode.INTERNAL,
            "internal",
        )


def _unwrap_help(command: click.Command) -> None:
    """Join the lines that docstrings wrap at 100 columns, paragraph by paragraph: Typer's
    rich help keeps them, which broke sentences mid-line in every listing. And say nothing of
    what an option does not have: no ``[default: None]`` in help, no ``(env var: 'None')`` in
    usage errors (Typer shows both for every option unless told otherwise)."""
    if command.help:
        paragraphs = inspect.cleandoc(command.help).split("\n\n")
        command.help = "\n\n".join(" ".join(p.split("\n")) for p in paragraphs)
    for param in command.params:
        if param.envvar is None and hasattr(param, "show_envvar"):
            param.show_envvar = False
        if param.default is None and getattr(param, "show_default", False) is not False:
            param.show_default = False  # type: ignore[attr-defined]
    for sub in getattr(command, "commands", {}).values():
        _unwrap_help(sub)


def _traceback_if(debug: bool) -> None:
    """--debug adds the traceback (on stderr) and changes nothing else: not the exit code."""
    if debug:
        import traceback

        traceback.print_exc(file=sys.stderr)


def main() -> NoReturn:
    code = run()
    from travellr_ops.cli import fanout

    if fanout.abandoned:
        # An environment cut at its fanout_timeout_s is still waiting on its servers (in
        # threads the interpreter would join at exit): its result is reported, so end now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
