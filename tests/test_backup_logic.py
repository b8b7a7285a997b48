"""The parts of `backup` that need no server: reading `restore --until`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from travellr_ops.errors import UsageError
from travellr_ops.ops.backup.restore import Until

NOW = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)


def test_until_is_an_oplog_timestamp_or_a_past_moment_of_the_one_grammar() -> None:
    assert Until.parse("1704067200:5").limit_ts == (1704067200, 5)
    assert Until.parse("2024-01-01T10:30:00Z", NOW).moment == datetime(
        2024, 1, 1, 10, 30, tzinfo=UTC
    )
    assert Until.parse("2024-01-01T11:30:00+01:00", NOW).moment == datetime(
        2024, 1, 1, 10, 30, tzinfo=UTC
    )
    # a time of day is the last one past, not an oplog timestamp of 10 s
    assert Until.parse("10:30", NOW).moment == datetime(2026, 12, 2, 10, 30, tzinfo=UTC)
    assert Until.parse("16:00", NOW).moment == datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
    # a duration is that long ago: the database as it was 1h30m before now
    assert Until.parse("1h30m", NOW).moment == NOW - timedelta(minutes=90)


@pytest.mark.parametrize("text", ["yesterday-ish", "1x", "25:00", ""])
def test_until_nonsense_is_the_grammars_one_refusal(text: str) -> None:
    with pytest.raises(UsageError, match=r"^--until .* is not a duration or a time"):
        Until.parse(text, NOW)


def test_a_bad_until_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    from cli import invoke
    from servers import free_port
    from travellr_ops.settings import Settings

    s = Settings(
        mongo={"uri": f"mongodb://127.0.0.1:{free_port()}/travellr", "timeout_s": 0.5},
        backup={"dir": tmp_path / "nothing-here"},
        state_dir=tmp_path,
    )
    result = invoke("backup", "restore", "latest", "--until", "soon", "--yes", settings=s)
    assert result.exit_code == 2, result.stderr
    assert "--until 'soon' is not a duration or a time" in result.stderr
