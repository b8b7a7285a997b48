"""The one time grammar of every option that takes a duration or a time.

A duration is a compound of ``<number><unit>`` as kubectl and Go write them: ``90s``, ``15m``,
``1h30m``, ``2d``, ``1w``, ``500ms``, ``1.5h``. A bare number is seconds (``90`` = ``90s``).
A time is an ISO-8601 date-time (``2026-12-02T14:00:00Z``, ``...+01:00``; without a zone it is
UTC) or a UTC time of day ``HH:MM``. ``--since`` takes a duration (that long ago) or a time;
``--until`` a duration (that long from now) or a time. Every refusal is the same one-line
``UsageError`` (exit 2) with the same hint.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from travellr_ops.errors import UsageError

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)"
_COMPOUND = re.compile(rf"(?:{_PART})+")
_PARTS = re.compile(_PART)
_BARE = re.compile(r"\d+(?:\.\d+)?")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")

HINT = "write a duration such as 90s, 15m, 1h30m, 2d or 1w, or a time such as 2026-12-02T14:00Z"


def _refused(option: str, text: str, why: str = "is not a duration or a time") -> UsageError:
    return UsageError(f"{option} {text!r} {why}", hint=HINT)


def _seconds(value: str) -> float | None:
    """Seconds of a duration, or None when ``value`` is not one."""
    if _BARE.fullmatch(value):
        return float(value)
    if not _COMPOUND.fullmatch(value):
        return None
    return sum(float(n) * UNITS[unit] for n, unit in _PARTS.findall(value))


def parse_duration(text: str, option: str) -> float:
    """Seconds (more than 0) of a duration option such as ``--window 15m``."""
    seconds = _seconds(text.strip().lower())
    if seconds is None:
        raise _refused(option, text, "is not a duration")
    if seconds <= 0:
        raise _refused(option, text, "is not a duration of more than 0 seconds")
    return seconds


def _time(value: str, option: str, text: str) -> datetime:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise _refused(option, text) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _clock(match: re.Match[str], option: str, text: str, now: datetime) -> datetime:
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23 or minute > 59:
        raise _refused(option, text)
    return now.astimezone(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)


def parse_since(text: str, option: str = "--since", now: datetime | None = None) -> datetime:
    """The start of a window: a duration ago, a time, or the last ``HH:MM`` (UTC) past."""
    now = now or datetime.now(UTC)
    value = text.strip()
    seconds = _seconds(value.lower())
    if seconds is not None:
        return now - timedelta(seconds=seconds)
    if clock := _CLOCK.fullmatch(value):
        when = _clock(clock, option, text, now)
        return when - timedelta(days=1) if when > now else when
    return _time(value, option, text)


def parse_until(text: str, option: str = "--until", now: datetime | None = None) -> datetime:
    """A moment to come: a duration from now, a time, or the next ``HH:MM`` (UTC). A time in
    the past is refused."""
    now = now or datetime.now(UTC)
    value = text.strip().removeprefix("+")
    seconds = _seconds(value.lower())
    if seconds is not None:
        when = now + timedelta(seconds=seconds)
    elif clock := _CLOCK.fullmatch(value):
        when = _clock(clock, option, text, now)
        if when <= now:
            when += timedelta(days=1)
    else:
        when = _time(value, option, text)
    if when <= now:
        raise UsageError(
            f"{option} {text!r} is in the past ({when.isoformat(timespec='seconds')})",
            hint="give a later time, or a duration such as 30m",
        )
    return when


def format_duration(seconds: float) -> str:
    """A duration as people read it and as the options accept it: ``850ms``, ``45s``, ``12m``,
    ``1h30m``, ``2d3h`` (two units at most, the smaller rounded)."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 or seconds == int(seconds) else f"{seconds:.1f}s"
    total = round(seconds)
    for big, small in (("w", "d"), ("d", "h"), ("h", "m"), ("m", "s")):
        if total >= UNITS[big]:
            whole, rest = divmod(total, int(UNITS[big]))
            part = round(rest / UNITS[small])
            if part * UNITS[small] >= UNITS[big]:
                whole, part = whole + 1, 0
            return f"{whole}{big}{part}{small}" if part else f"{whole}{big}"
    return f"{total}s"
