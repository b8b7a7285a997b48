"""The one output rule: help and usage errors say nothing of what an option does not have, and
a table off a terminal takes the width its content needs. No server."""

from __future__ import annotations

import io

import click
import pytest

from cli import invoke
from travellr_ops.cli.app import app


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands(sub, (*path, name))
    return found


def test_no_help_shows_a_default_of_none() -> None:
    import typer.main

    root = typer.main.get_command(app)
    paths = [p for p in _commands(root) if p]
    assert len(paths) > 60
    offenders = [p for p in paths if "[default: None]" in invoke(*p, "--help").stdout]
    assert offenders == []


@pytest.mark.parametrize(
    "args", [["db", "slow", "--limit", "abc"], ["cache", "stats", "--sample", "abc"]]
)
def test_a_usage_error_names_no_env_var_it_does_not_have(args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert "is not a valid integer" in result.stderr
    assert "env var" not in result.stderr


def test_a_table_off_a_terminal_is_as_wide_as_its_content() -> None:
    from travellr_ops.output import WholeConsole, table

    detail = "connection refused: nothing listens on that host and port, start the server"
    buffer = io.StringIO()
    console = WholeConsole(file=buffer, highlight=False, soft_wrap=False)  # a pipe: no width
    console.print(
        table(
            None,
            ["check", "target", "verdict", "detail"],
            [["mongodb", "mongodb://127.0.0.1:27017/travellr", "down", detail]],
        )
    )
    rows = [line for line in buffer.getvalue().splitlines() if "mongodb" in line]
    assert len(rows) == 1 and detail in rows[0]
