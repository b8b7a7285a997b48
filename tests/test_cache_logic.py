"""Pure logic of `cache` and `maintenance`: Redis glob patterns, --until, hit rates, prefixes.

(That our glob agrees with SCAN MATCH on a real server is checked in test_cache.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from travellr_ops.errors import UsageError
from travellr_ops.ops.cache import glob_regex, hit_rate, matches, prefix_of, validate_window
from travellr_ops.ops.maintenance import flag_value, parse_until

NOW = datetime(2026, 11, 28, 14, 0, 30, 250_000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("search:*", ["search:", "search:1", "search:a:b"], ["searchX", "search", "xsearch:1"]),
        ("search*", ["search", "searchX", "search:1"], ["xsearch", "Search"]),
        ("trip:?", ["trip:1", "trip:x"], ["trip:", "trip:12"]),
        ("h[ae]llo", ["hallo", "hello"], ["hillo", "hllo"]),
        ("h[^e]llo", ["hallo", "hxllo"], ["hello"]),
        ("h[a-c]llo", ["hbllo"], ["hdllo"]),
        ("h[c-a]llo", ["hbllo"], ["hdllo"]),
        ("a\\*b", ["a*b"], ["axb", "ab"]),
        ("a\\[b", ["a[b"], ["ab"]),
        ("*", ["", "anything", "a\nb"], []),
        ("x.y", ["x.y"], ["xzy"]),  # regex metacharacters are literal
        ("(a)+", ["(a)+"], ["aa"]),
    ],
)
def test_glob_matches_like_redis(pattern: str, yes: list[str], no: list[str]) -> None:
    for key in yes:
        assert matches(pattern, key.encode()), (pattern, key)
    for key in no:
        assert not matches(pattern, key.encode()), (pattern, key)


@pytest.mark.parametrize("pattern", ["", "a[bc", "abc\\", "a\nb", "a\0b", "[^"])
def test_patterns_redis_would_misread_are_usage_errors(pattern: str) -> None:
    with pytest.raises(UsageError):
        glob_regex(pattern)


def test_hit_rate_and_prefixes() -> None:
    assert hit_rate(80, 20) == 80.0
    assert hit_rate(0, 0) is None
    assert hit_rate(0, 5) == 0.0
    assert prefix_of(b"search:Lisbon:1") == "search:"
    assert prefix_of(b"trips:popular") == "trips:"
    assert prefix_of(b"plainkey") == "(no prefix)"
    assert prefix_of(b":x") == ":"


@pytest.mark.parametrize("window", [0, -1, 3601])
def test_bad_windows(window: float) -> None:
    with pytest.raises(UsageError):
        validate_window(window)


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("90m", timedelta(minutes=90)),
        ("2h", timedelta(hours=2)),
        ("1h30m", timedelta(minutes=90)),
        ("+45s", timedelta(seconds=45)),
        ("1d", timedelta(days=1)),
    ],
)
def test_until_as_a_duration(text: str, delta: timedelta) -> None:
    assert parse_until(text, NOW) == (NOW + delta).replace(microsecond=0)


def test_until_as_a_time_of_day_is_the_next_one() -> None:
    assert parse_until("16:30", NOW) == datetime(2026, 11, 28, 16, 30, tzinfo=UTC)
    assert parse_until("09:00", NOW) == datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def test_until_as_a_date_time() -> None:
    assert parse_until("2026-11-28T18:00Z", NOW) == datetime(2026, 11, 28, 18, tzinfo=UTC)
    assert parse_until("2026-11-28T19:00+01:00", NOW) == datetime(2026, 11, 28, 18, tzinfo=UTC)
    assert parse_until("2026-11-28 18:00", NOW) == datetime(2026, 11, 28, 18, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "soon", "25:00", "12:61", "-5m", "0m", "2026-11-28T13:00Z"])
def test_bad_or_past_until_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        parse_until(text, NOW)


def test_the_flag_has_the_backends_format() -> None:
    until = NOW + timedelta(hours=1)
    flag = flag_value("back soon", "upgrade", "ops@host", NOW, until)
    assert flag == {
        "message": "back soon",
        "by": "ops@host",
        "reason": "upgrade",
        "since": "2026-11-28T14:00:30+00:00",
        "until": "2026-11-28T15:00:30+00:00",
    }
    assert flag_value("m", "r", "b", NOW, None)["until"] is None


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["stats", "--window", "soon"], "--window 'soon' is not a duration"),
        (["stats", "--window", "2h"], "at most 3600 seconds"),
        (["clear", "x*", "--rate", "0", "--yes"], "--rate must be more than 0"),
        (["clear", "x[", "--yes"], "never closes"),
    ],
)
def test_bad_input_is_refused_before_redis_is_reached(
    args: list[str], said: str, tmp_path: Path
) -> None:
    from cli import invoke
    from servers import free_port
    from travellr_ops.settings import Settings

    s = Settings(redis={"url": f"redis://127.0.0.1:{free_port()}/0"}, state_dir=tmp_path)
    result = invoke("cache", *args, settings=s)
    assert result.exit_code == 2, result.stderr
    assert said in result.stderr
