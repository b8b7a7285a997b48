"""The shared vocabulary: durations and times, verdicts, the percentile, log formats, bytes,
file tails and report files. Pure logic: no server."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from travellr_ops.errors import ExitCode, UsageError
from travellr_ops.vocab.files import write_output
from travellr_ops.vocab.logformat import (
    access_time,
    leading_time,
    parse_access,
    parse_app,
    request_status,
)
from travellr_ops.vocab.stats import percentile
from travellr_ops.vocab.tail import tail_bytes, tail_lines
from travellr_ops.vocab.timespec import format_duration, parse_duration, parse_since, parse_until
from travellr_ops.vocab.units import format_bytes
from travellr_ops.vocab.verdict import Verdict, exit_code_of, styled, worst

NOW = datetime(2026, 12, 2, 20, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1w", 604800),
        ("500ms", 0.5),
        ("1.5h", 5400),
        (" 10M ", 600),
        ("1h0m30s", 3630),
    ],
)
def test_durations_as_kubectl_and_go_write_them(text: str, seconds: float) -> None:
    assert parse_duration(text, "--window") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "10x", "-5m", "1h 30m", "m", "0", "0s", "1h-"])
def test_what_is_no_duration_is_one_usage_error(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_duration(text, "--window")
    assert caught.value.exit_code == ExitCode.USAGE
    assert caught.value.message.startswith(f"--window {text!r} is not a duration")
    assert "1h30m" in (caught.value.hint or "")


def test_since_takes_a_duration_ago_an_iso_time_or_a_clock_time() -> None:
    assert parse_since("1h30m", now=NOW) == NOW - timedelta(minutes=90)
    assert parse_since("90", now=NOW) == NOW - timedelta(seconds=90)
    assert parse_since("2026-12-01T10:00:00Z", now=NOW) == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert parse_since("2026-12-01T11:00:00+01:00", now=NOW) == datetime(
        2026, 12, 1, 10, tzinfo=UTC
    )
    assert parse_since("2026-12-01T10:00", now=NOW) == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert parse_since("19:30", now=NOW) == datetime(2026, 12, 2, 19, 30, tzinfo=UTC)
    assert parse_since("21:00", now=NOW) == datetime(2026, 12, 1, 21, 0, tzinfo=UTC)
    with pytest.raises(UsageError, match=r"^--since 'yesterday' is not a duration or a time$"):
        parse_since("yesterday", now=NOW)
    with pytest.raises(UsageError):
        parse_since("25:00", now=NOW)


def test_until_is_in_the_future() -> None:
    assert parse_until("90m", now=NOW) == NOW + timedelta(minutes=90)
    assert parse_until("+1h", now=NOW) == NOW + timedelta(hours=1)
    assert parse_until("21:15", now=NOW) == datetime(2026, 12, 2, 21, 15, tzinfo=UTC)
    assert parse_until("08:00", now=NOW) == datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    assert parse_until("2026-12-03T00:00Z", now=NOW) == datetime(2026, 12, 3, tzinfo=UTC)
    with pytest.raises(UsageError, match="is in the past"):
        parse_until("2026-12-01T00:00Z", now=NOW)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.85, "850ms"), (45, "45s"), (2.5, "2.5s"), (720, "12m"), (5400, "1h30m"), (183600, "2d3h")],
)
def test_durations_print_as_the_options_accept_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text, "--x") == pytest.approx(seconds, rel=0.01)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 95) is None
    assert percentile([7.0], 95) == 7.0
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert percentile(values, 95) == 19.0  # rank ceil(0.95 * 20) = 19
    assert percentile(values, 50) == 10.0
    assert percentile(values, 100) == 20.0
    assert percentile(list(reversed(values)), 0) == 1.0
    # n = 12: rank ceil(11.4) = 12, the maximum
    assert percentile([float(v) for v in range(12)], 95) == 11.0


def test_one_exit_code_per_verdict_and_one_precedence() -> None:
    assert Verdict("breach").exit_code == ExitCode.CHECK_FAILED
    assert Verdict.UNKNOWN.exit_code == ExitCode.UNAVAILABLE
    assert Verdict.PENDING.exit_code == ExitCode.REFUSED
    assert Verdict.IDLE.fine and Verdict.MAINTENANCE.fine and not Verdict.WARN.fine
    # a problem found outweighs a source that did not answer ...
    assert exit_code_of(["ok", "breach", "unknown"]) == ExitCode.CHECK_FAILED
    assert exit_code_of(["pass", "not-available", "pending"]) == ExitCode.UNAVAILABLE
    # ... but a server that is down outweighs the failures it causes
    assert worst(["fail", "down", "ok"]) is Verdict.DOWN
    assert exit_code_of(["fail", "down"]) == ExitCode.UNAVAILABLE
    assert exit_code_of([]) == ExitCode.OK
    assert Verdict.NOT_AVAILABLE == "not-available"
    assert styled("fail") == "[red]fail[/]"
    assert styled("whatever") == "whatever"


ACCESS = (
    '203.0.113.7 - - [02/Dec/2026:20:00:00 +0000] "GET /api/trips?q=a%22b HTTP/1.1" 503 12'
    ' "-" "curl/8.0"'
)


def test_access_log_lines() -> None:
    record = parse_access(ACCESS)
    assert record is not None
    assert (record.ip, record.method, record.path, record.status, record.size) == (
        "203.0.113.7",
        "GET",
        "/api/trips?q=a%22b",
        503,
        12,
    )
    assert record.time == datetime(2026, 12, 2, 20, tzinfo=UTC)
    assert record.agent == "curl/8.0"
    assert access_time(ACCESS) == record.time
    assert request_status(ACCESS) == 503
    assert request_status("GET /api/health 200 3ms") == 200
    assert parse_access("garbage") is None
    assert access_time("no time here") is None
    assert request_status("no request") is None


def test_app_log_lines() -> None:
    line = '2026-11-28T04:12:00.123Z WARN login failed user="ana b" ip=203.0.113.7'
    record = parse_app(line)
    assert record is not None
    assert record.level == "WARN"
    assert record.message == "login failed"
    assert record.fields == {"user": "ana b", "ip": "203.0.113.7"}
    assert record.time == datetime(2026, 11, 28, 4, 12, 0, 123000, tzinfo=UTC)
    assert parse_app("not a log line") is None
    assert leading_time(line) == record.time
    assert leading_time("2026-11-28T04:12:00+01:00 x") == datetime(2026, 11, 28, 3, 12, tzinfo=UTC)
    assert leading_time("hello") is None


def test_bytes() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(12.5 * 1024 * 1024) == "12.5 MiB"
    assert format_bytes(3 * 1024**5) == "3.0 PiB"


def test_tail_reads_the_end(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(f"line {i}\n" for i in range(100_000)))
    assert tail_lines(log, 3) == ["line 99997", "line 99998", "line 99999"]
    assert tail_lines(log, 0) == []
    assert tail_bytes(log, 11) == b"line 99999\n"
    short = tmp_path / "short.log"
    short.write_text("a\nb")
    assert tail_lines(short, 10) == ["a", "b"]


def test_report_files_are_written_whole_or_refused(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    write_output(target, "<html></html>")
    assert target.read_text() == "<html></html>"
    assert os.listdir(tmp_path) == ["report.html"]
    with pytest.raises(UsageError, match="cannot write the report to"):
        write_output(tmp_path / "missing" / "r.html", "x")
