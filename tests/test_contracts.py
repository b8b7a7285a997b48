"""The contracts every command keeps whatever it does: --debug adds only a traceback, --json
errors are a document, one confirmation rule, --quiet keeps warnings, output to a pipe is whole.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli import Result, invoke
from travellr_ops.settings import Settings

REFUSED_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1: a real refused connection


def _settings(tmp_path: Path, redis_url: str = REFUSED_REDIS) -> Settings:
    return Settings(
        redis={"url": redis_url, "timeout_s": 2.0},
        state_dir=tmp_path / "state",
        backup={"dir": tmp_path / "backups"},
    )


def _with_and_without_debug(settings: Settings, *args: str) -> tuple[Result, Result]:
    return invoke(*args, settings=settings), invoke("--debug", *args, settings=settings)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["backup", "verify", "nosuch"], 2),
        (["cache", "stats"], 3),
    ],
)
def test_debug_adds_a_traceback_and_keeps_the_exit_code(
    tmp_path: Path, args: list[str], code: int
) -> None:
    plain, debug = _with_and_without_debug(_settings(tmp_path), *args)
    assert (plain.exit_code, debug.exit_code) == (code, code)
    assert "Traceback" not in plain.stderr
    assert "Traceback" in debug.stderr
    # the one-line error and its hint are still there, after the traceback
    assert plain.stderr.strip().splitlines()[0] in debug.stderr


@pytest.mark.redis
def test_debug_keeps_exit_4_of_a_refused_change(tmp_path: Path, redis_url: str) -> None:
    plain, debug = _with_and_without_debug(
        _settings(tmp_path, redis_url), "maintenance", "on", "--message", "x"
    )
    assert (plain.exit_code, debug.exit_code) == (4, 4)
    assert "Traceback" in debug.stderr
