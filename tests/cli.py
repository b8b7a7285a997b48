"""Run travellr-ops in-process, the way a user would, and capture what they would see."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from typer.testing import CliRunner

from travellr_ops.cli.app import run
from travellr_ops.settings import Settings


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def invoke(
    *args: str,
    settings: Settings | None = None,
    input: str | None = None,
    interactive: bool = False,
) -> Result:
    """``travellr-ops ARGS`` with ``settings`` (none: flags/env/file as for a user).

    ``interactive`` says whether a person is at the terminal to answer prompts (from ``input``).
    """
    runner = CliRunner()
    with runner.isolation(input=input) as (stdout, stderr, _):
        code = run(list(args), settings=settings, interactive=interactive)
        return Result(code, stdout.getvalue().decode(), stderr.getvalue().decode())
