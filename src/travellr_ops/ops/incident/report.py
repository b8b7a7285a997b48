"""The incident record as a document: JSON (the whole record) and Markdown (the runbook's five
steps as sections, the escalation, the evidence, the timeline and the commands that ran),
written atomically next to each other as ``<dir>/<ID>.json`` and ``<dir>/<ID>.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from travellr_ops.ops.backup.store import write_atomic
from travellr_ops.ops.incident.record import STEPS, Incident, iso
from travellr_ops.ops.incident.timeline import Command
from travellr_ops.output import to_jsonable
from travellr_ops.redact import mask
from travellr_ops.vocab.timespec import format_duration

STEP_TITLES = {
    "identify": "Identify: what is happening, since when, how widespread",
    "contain": "Contain: stop it spreading",
    "eradicate": "Eradicate: remove the cause",
    "recover": "Recover: restore service and verify it",
    "document": "Document: what happened, why, and what changes",
}


def duration(seconds: float | None) -> str:
    """An incident's duration or time to recovery as every option writes one (``1h30m``);
    ``-`` when there is none yet."""
    return "-" if seconds is None else format_duration(seconds)


def document(
    incident: Incident, commands: list[Command], escalation: dict[str, Any]
) -> dict[str, Any]:
    """The whole record as plain JSON types (the `--json` of `show` and `close`)."""
    timeline: list[dict[str, Any]] = [
        {
            "time": iso(e.time),
            "kind": e.kind,
            "step": e.step,
            "text": e.text,
            "by": e.author,
        }
        for e in incident.entries
    ]
    timeline += [
        {
            "time": iso(c.time),
            "kind": "command",
            "step": "",
            "text": f"{c.action} ({c.outcome}): {c.summary}",
            "by": c.user,
        }
        for c in commands
    ]
    timeline.sort(key=lambda item: item["time"])
    steps = {
        step: {
            "title": STEP_TITLES[step],
            "started": iso(incident.step_time(step)) or None,
            "entries": [
                {"time": iso(e.time), "kind": e.kind, "text": e.text, "by": e.author}
                for e in incident.entries
                if e.step == step
            ],
        }
        for step in STEPS
    }
    return {
        "id": incident.id,
        "title": incident.title,
        "severity": incident.severity,
        "status": incident.status,
        "escalation": escalation,
        "opened_at": iso(incident.opened_at),
        "opened_by": incident.opened_by,
        "closed_at": iso(incident.closed_at) or None,
        "closed_by": incident.closed_by,
        "duration_s": _round(incident.duration_s),
        "time_to_recovery_s": _round(incident.time_to_recovery_s),
        "steps": steps,
        "evidence": to_jsonable(incident.evidence),
        "timeline": timeline,
        "commands": [{**to_jsonable(c), "time": iso(c.time)} for c in commands],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _cell(text: Any) -> str:
    return str(text or "").replace("|", "\\|").replace("\n", " ")


def markdown(doc: dict[str, Any]) -> str:
    esc = doc["escalation"]
    out = [f"# {doc['id']}: {doc['title']}", ""]
    calls = ", ".join(_contact(c) for c in esc["call"]) or "(no contact configured)"
    out += [
        f"- **Status:** {doc['status']}",
        f"- **Severity:** {doc['severity']}, escalation **{esc['name']}**: {calls}",
        f"- **Opened:** {doc['opened_at']} by {doc['opened_by']}",
    ]
    if doc["closed_at"]:
        out += [
            f"- **Closed:** {doc['closed_at']} by {doc['closed_by']}",
            f"- **Duration:** {duration(doc['duration_s'])}",
        ]
    out += [f"- **Time to recovery:** {duration(doc['time_to_recovery_s'])}"]
    if doc["time_to_recovery_s"] is None:
        out[-1] += " (no `recover` step recorded)"
    out += ["", "## Escalation", "", "| level | who | contact | |", "| --- | --- | --- | --- |"]
    for c in esc["call"]:
        out.append(f"| {c['level']} | {_cell(c['name'])} | {_cell(c['contact'])} | call |")
    for c in esc["engaged"]:
        out.append(f"| {c['level']} | {_cell(c['name'])} | {_cell(c['contact'])} | engaged |")
    for number, (step, section) in enumerate(doc["steps"].items(), 1):
        started = f" (started {section['started']})" if section["started"] else " (not started)"
        out += ["", f"## {number}. {section['title']}{started}", ""]
        if step == "identify":
            out += _evidence(doc["evidence"])
        for e in section["entries"]:
            out.append(f"- {e['time']} {e['kind']} ({e['by'] or 'travellr-ops'}): {e['text']}")
        if step == "document":
            out += ["", "### Commands run during the incident", ""]
            out += _commands(doc["commands"])
    out += ["", "## Timeline", "", "| time | kind | by | what |", "| --- | --- | --- | --- |"]
    for item in doc["timeline"]:
        what = f"{item['step']}: {item['text']}" if item["kind"] == "step" else item["text"]
        out.append(f"| {item['time']} | {item['kind']} | {_cell(item['by'])} | {_cell(what)} |")
    return "\n".join(out) + "\n"


def _contact(c: dict[str, Any]) -> str:
    return f"{c['name']} ({c['contact']})" if c["contact"] else str(c["name"])


def _evidence(evidence: list[dict[str, Any]]) -> list[str]:
    if not evidence:
        return ["(evidence not captured yet)", ""]
    out = [
        "Evidence captured at opening:",
        "",
        "| source | state | took | detail |",
        "| --- | --- | --- | --- |",
    ]
    for e in evidence:
        took = "-" if e["duration_ms"] is None else f"{e['duration_ms']:.0f} ms"
        out.append(f"| {e['source']} | {e['state']} | {took} | {_cell(e['detail'])} |")
    out.append("")
    for e in evidence:
        if e["data"] is None:
            continue
        out += [
            f"<details><summary>{e['source']}</summary>",
            "",
            "```json",
            json.dumps(e["data"], indent=1),
            "```",
            "",
            "</details>",
            "",
        ]
    return out


def _commands(commands: list[dict[str, Any]]) -> list[str]:
    if not commands:
        return ["(no travellr-ops command changed anything during the incident)"]
    out = ["| time | user | action | outcome | command |", "| --- | --- | --- | --- | --- |"]
    for c in commands:
        out.append(
            f"| {c['time']} | {_cell(c['user'])} | {_cell(c['action'])} | {c['outcome']} | "
            f"`{_cell(c['command'])}` |"
        )
    return out


def write(directory: Path, doc: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``<ID>.json`` and ``<ID>.md`` (mode 0600: evidence can be sensitive), each under a
    temporary name renamed into place (the backups' own atomic write), so a reader never sees
    half a record."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = (directory / f"{doc['id']}.json", directory / f"{doc['id']}.md")
    texts = (json.dumps(doc, indent=2) + "\n", markdown(doc))
    for path, text in zip(paths, texts, strict=True):
        write_atomic(path, mask(text).encode())
    return paths
