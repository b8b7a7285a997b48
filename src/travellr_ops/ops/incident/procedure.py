"""The incident procedure: open (with its evidence), note, step, close, show, list.

Each change lands in the store first; then the record files are written again from the store
while its write lock is held, so two engineers changing one incident at once can never leave
an older record on disk than what the store holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from travellr_ops.ops.incident import record, report
from travellr_ops.ops.incident.evidence import capture, probes
from travellr_ops.ops.incident.timeline import commands
from travellr_ops.settings import Settings
from travellr_ops.store import Store, store_path

if TYPE_CHECKING:
    from travellr_ops.runtime import Runtime


@dataclass
class Written:
    """An incident record as it now stands, and where its files are."""

    doc: dict[str, Any]
    json_path: Path
    markdown_path: Path


def records_dir(settings: Settings) -> Path:
    return settings.incident.dir or settings.state_dir / "incidents"


def store_for(settings: Settings) -> Store:
    return record.open_store(Store(store_path(settings.state_dir), settings.store.timeout_s))


def audit_log(settings: Settings) -> Path:
    return settings.state_dir / "audit.log"


def build(settings: Settings, store: Store, incident_id: str) -> dict[str, Any]:
    incident = record.get(store, incident_id)
    ran = commands(audit_log(settings), incident.id, incident.opened_at, incident.closed_at)
    return report.document(
        incident, ran, record.escalation(incident.severity, settings.incident.contacts)
    )


def write_record(settings: Settings, store: Store, incident_id: str) -> Written:
    # an empty write transaction is the store's lock: read and write the files under it
    with store.write("writing the incident record"):
        doc = build(settings, store, incident_id)
        json_path, md_path = report.write(records_dir(settings), doc)
    return Written(doc, json_path, md_path)


def open_incident(
    rt: Runtime,
    store: Store,
    title: str,
    severity: int,
    author: str,
    *,
    now: Callable[[], float] = time.time,
    announce: Callable[[str], None] = lambda message: None,
) -> Written:
    """Open the incident (its ID is taken at once), capture the Identify evidence, write the
    record."""
    incident = record.create(store, title, severity, author, now())
    announce(f"opened {incident.id}; capturing the Identify evidence ...")
    timeout = rt.settings.incident.evidence_timeout_s
    evidence = capture(probes(rt, timeout), timeout)
    record.save_evidence(store, incident.id, evidence, now())
    return write_record(rt.settings, store, incident.id)


def note(
    settings: Settings,
    store: Store,
    incident_id: str,
    text: str,
    author: str,
    now: Callable[[], float] = time.time,
) -> Written:
    record.add_entry(store, incident_id, "note", text, author, now())
    return write_record(settings, store, incident_id)


def step(
    settings: Settings,
    store: Store,
    incident_id: str,
    name: str,
    text: str,
    author: str,
    now: Callable[[], float] = time.time,
) -> Written:
    record.add_entry(store, incident_id, "step", text, author, now(), step=name)
    return write_record(settings, store, incident_id)


def close(
    settings: Settings,
    store: Store,
    incident_id: str,
    text: str,
    author: str,
    now: Callable[[], float] = time.time,
) -> Written:
    record.close(store, incident_id, author, now(), text)
    return write_record(settings, store, incident_id)


def known(settings: Settings, incident_id: str) -> None:
    """UsageError unless ``incident_id`` names an incident (before a change is tagged)."""
    store = store_for(settings)
    try:
        if not record.exists(store, incident_id):
            raise record.unknown(incident_id)
    finally:
        store.close()
