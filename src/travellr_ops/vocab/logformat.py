"""The backend's two log formats, defined once for every group that reads them.

The access log is in combined format::

    203.0.113.7 - - [02/Dec/2026:20:00:00 +0000] "GET /api/trips?q=x HTTP/1.1" 200 512 "-" "curl/8"

The application log (its file, and the service's standard output) has one event a line::

    2026-11-28T04:12:00.123Z WARN login failed user="ana" ip=203.0.113.7

The regex sources (bytes) are the pieces specialised scanners build on; the functions parse
one line of text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

# -- access log (combined format) -------------------------------------------------------------
#: the time between the brackets: ``02/Dec/2026:20:00:00 +0000``
ACCESS_TIME = rb"\d\d/\w\w\w/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}"
ACCESS_TIME_FORMAT = "%d/%b/%Y:%H:%M:%S %z"
#: ip ident user [time] "request" status — the request may hold escaped quotes
ACCESS_LINE = re.compile(rb'^\S+ \S+ \S+ \[([^\]]+)\] "(?:[^"\\]|\\.)*" (\d{3}) ')
_ACCESS_TEXT = re.compile(
    r'^(\S+) \S+ \S+ \[([^\]]+)\] "((?:[^"\\]|\\.)*)" (\d{3}) (\S+)(?: "((?:[^"\\]|\\.)*)"'
    r' "((?:[^"\\]|\\.)*)")?'
)
#: a request's status: in a combined line (``"GET /x HTTP/1.1" 500 ``) or in the short form a
#: service may print on its standard output (``GET /x 500 12ms``)
_REQUEST_STATUS = re.compile(
    r'"(?:[A-Z]+) [^"]*" (\d{3}) |\b(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) /\S* (\d{3})\b'
)


@dataclass(frozen=True)
class AccessRecord:
    ip: str
    time: datetime
    method: str
    path: str
    status: int
    size: int | None
    referer: str = ""
    agent: str = ""


def access_time(line: str) -> datetime | None:
    """The time of a combined-format line (None when it has no readable one)."""
    start = line.find("[")
    end = line.find("]", start)
    if start < 0 or end < 0:
        return None
    try:
        return datetime.strptime(line[start + 1 : end], ACCESS_TIME_FORMAT)
    except ValueError:
        return None


def parse_access(line: str) -> AccessRecord | None:
    """One combined-format line (None when it is not one)."""
    match = _ACCESS_TEXT.match(line)
    if match is None:
        return None
    ip, stamp, request, status, size, referer, agent = match.groups()
    try:
        when = datetime.strptime(stamp, ACCESS_TIME_FORMAT)
    except ValueError:
        return None
    method, _, rest = request.partition(" ")
    path = rest.rsplit(" ", 1)[0] if " " in rest else rest
    return AccessRecord(
        ip,
        when,
        method,
        path,
        int(status),
        int(size) if size.isdigit() else None,
        referer or "",
        agent or "",
    )


def request_status(line: str) -> int | None:
    """The HTTP status of a request line, combined or short form (None when it is none)."""
    match = _REQUEST_STATUS.search(line)
    if match is None:
        return None
    return int(match.group(1) or match.group(2))


# -- application log --------------------------------------------------------------------------
APP_LEVELS = ("DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL")
#: the stamp an app-log line starts with: ``2026-11-28T04:12:00.123Z``
APP_TIME = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"
_APP_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) (" + "|".join(APP_LEVELS) + r") (.*)$"
)
_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
#: an ISO stamp at the start of any log line (what the engines put before each line too)
_LEADING = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?(?= |$)")


@dataclass(frozen=True)
class AppRecord:
    time: datetime
    level: str
    message: str
    fields: dict[str, str] = field(default_factory=dict)


def parse_app(line: str) -> AppRecord | None:
    """One application-log line (None when it is not one). The message is the text before
    the first ``key=value``; quoted values are unquoted."""
    match = _APP_LINE.match(line.rstrip("\n"))
    if match is None:
        return None
    stamp, level, rest = match.groups()
    first = _FIELD.search(rest)
    message = (rest[: first.start()] if first else rest).strip()
    fields = {}
    for key, value in _FIELD.findall(rest[first.start() :] if first else ""):
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        fields[key] = value
    return AppRecord(datetime.fromisoformat(stamp.replace("Z", "+00:00")), level, message, fields)


def leading_time(line: str) -> datetime | None:
    """The ISO time a log line starts with (UTC when it names no zone), or None."""
    match = _LEADING.match(line)
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    try:
        when = datetime.fromisoformat(whole + (fraction or "")[:7])
    except ValueError:
        return None
    if zone and zone != "Z":
        return when.replace(tzinfo=datetime.fromisoformat(f"2000-01-01T00:00:00{zone}").tzinfo)
    return when.replace(tzinfo=UTC)
