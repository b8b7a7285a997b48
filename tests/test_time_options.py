"""Every option that takes a duration or a time reads the one grammar: the same inputs refused
with the same message and exit 2, before any server is asked (none runs here: every address
the settings name is a closed port)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli import invoke
from servers import closed_settings

# (the command line before the value, the option, "time" when it also takes a time)
OPTIONS = [
    (["service", "logs", "--since"], "--since", "time"),
    (["service", "restart", "backend", "--yes", "--timeout"], "--timeout", "duration"),
    (["service", "stats", "--interval"], "--interval", "duration"),
    (["service", "profile", "backend", "--cpu"], "--cpu", "duration"),
    (["service", "profile", "backend", "--leak"], "--leak", "duration"),
    (["db", "status", "--interval"], "--interval", "duration"),
    (["db", "slow", "--since"], "--since", "time"),
    (["db", "restart", "--yes", "--timeout"], "--timeout", "duration"),
    (["cache", "stats", "--window"], "--window", "duration"),
    (["monitor", "--interval"], "--interval", "duration"),
    (["monitor", "--duration"], "--duration", "duration"),
    (["monitor", "once", "--window"], "--window", "duration"),
    (["monitor", "report", "--since"], "--since", "time"),
    (["security", "logs", "--since"], "--since", "time"),
    (["security", "report", "--since"], "--since", "time"),
    (["security", "audit", "--max-age"], "--max-age", "duration"),
    (["maintenance", "on", "--yes", "--until"], "--until", "time"),
    (["checklist", "maintenance", "before", "--yes", "--until"], "--until", "time"),
    (["backup", "restore", "backup-x", "--yes", "--until"], "--until", "time"),
    (["deploy", "run", "--image", "v2", "--yes", "--watch"], "--watch", "duration"),
]
IDS = [" ".join(args) for args, _, _ in OPTIONS]


@pytest.mark.parametrize(("args", "option", "kind"), OPTIONS, ids=IDS)
@pytest.mark.parametrize("bad", ["1x", "soon", "1h 30m", "-5m"])
def test_every_time_option_refuses_alike(
    tmp_path: Path, args: list[str], option: str, kind: str, bad: str
) -> None:
    result = invoke(*args, bad, settings=closed_settings(tmp_path))
    assert result.exit_code == 2, result.stderr
    what = "is not a duration or a time" if kind == "time" else "is not a duration"
    assert f"error: {option} {bad!r} {what}" in result.stderr
    assert "1h30m" in result.stderr  # the one hint


# the live monitor would start sampling: its parsing is covered by the refusals above
RUNNABLE = [
    o for o in OPTIONS if o[0][:2] not in (["monitor", "--interval"], ["monitor", "--duration"])
]


@pytest.mark.parametrize(
    ("args", "option", "kind"), RUNNABLE, ids=[" ".join(a) for a, _, _ in RUNNABLE]
)
def test_every_time_option_takes_the_grammar(
    tmp_path: Path, args: list[str], option: str, kind: str
) -> None:
    """A compound duration, a bare number of seconds and an ISO time pass the parser: whatever
    the command then says of the closed ports, it is not that the value is bad."""
    goods = ["1s500ms", "1"] if kind == "duration" else ["1h30m", "2026-12-01T10:00:00Z"]
    if option == "--until" and args[0] != "backup":
        goods = ["1h30m", "2100-01-01T00:00:00Z"]  # maintenance ends in the future
    for good in goods:
        result = invoke(*args, good, settings=closed_settings(tmp_path))
        assert "is not a duration" not in result.stderr, (good, result.stderr)
        assert "is in the past" not in result.stderr, (good, result.stderr)
