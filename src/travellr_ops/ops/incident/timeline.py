"""The changes made during an incident, read from the audit log that `safety.Guard` writes.

An audit record belongs to an incident when it names it (``--incident ID`` tags it), or when
it names no incident and was written while the incident was open. The log is streamed line
by line, so its size costs time, never memory beyond the incident's own records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass
class Command:
    time: float
    user: str
    command: str
    action: str
    summary: str
    outcome: str
    error: str
    duration_s: float | None
    #: whether the record named the incident (--incident) rather than fell in its window
    tagged: bool


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def commands(
    audit_log: Path, incident_id: str, start: float, end: float | None, limit: int = 10_000
) -> list[Command]:
    """The audit records of ``incident_id``: tagged with it, or untagged within [start, end]
    (``end`` None: still open). A damaged line is skipped; at most ``limit`` records."""
    found: list[Command] = []
    if not audit_log.exists():
        return found
    with open(audit_log, "rb") as stream:
        for raw in stream:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(entry, dict):
                continue
            tag = entry.get("incident")
            t = _epoch(entry.get("time"))
            if t is None:
                continue
            if tag is not None:
                if tag != incident_id:
                    continue
            elif t < start or (end is not None and t > end):
                continue
            found.append(
                Command(
                    time=t,
                    user=str(entry.get("user", "")),
                    command=str(entry.get("command", "")),
                    action=str(entry.get("action", "")),
                    summary=str(entry.get("summary", "")),
                    outcome=str(entry.get("outcome", "")),
                    error=str(entry.get("error", "")),
                    duration_s=entry.get("duration_s"),
                    tagged=tag is not None,
                )
            )
            if len(found) >= limit:
                break
    found.sort(key=lambda c: c.time)
    return found
