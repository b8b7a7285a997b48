"""The recovery objectives as they stand now: which moments a restore can reach (the
recoverable window, with its gaps) and how many seconds of writes a crash right now would
lose (the recovery point, RPO).

Every whole backup can be restored as it was at its consistent moment. A backup taken with
the oplog can be rolled forward by the oplog archive when the archive reaches back to the
backup's end without a gap, up to the archive's reach (the server time before which every
entry is archived). The window is the union of those stretches; what lies between them is a
gap (only the backups' own moments there). The RPO is now minus the window's newest moment:
the archive's reach, or the newest backup when no archive continues it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from travellr_ops.ops.backup import archive, store
from travellr_ops.settings import Settings

if TYPE_CHECKING:
    from travellr_ops.ops.monitor.metrics import Metric

#: what the monitor's backup source yields when it fails (sampler's (name, unit, threshold))
RPO_METRICS: list[tuple[str, str, str | None]] = [("backup_rpo_s", "s", None)]


@dataclass
class Stretch:
    """Moments one backup restores to: its own (start) up to ``end`` (rolled forward)."""

    backup: str
    start: float
    end: float
    #: why it ends there: "backup" (its own moment only), "archive" (the archive's reach),
    #: or the reason of the archive gap that stops it
    until: str


@dataclass
class WindowGap:
    start: str
    end: str
    seconds: float
    reason: str


@dataclass
class Window:
    #: the oldest and the newest moment a restore can reach (ISO, UTC); None: no backup
    oldest: str | None
    newest: str | None
    #: the newest moment in epoch seconds (the RPO's reference)
    newest_s: float | None
    #: what the newest moment is: "oplog archive" or "backup NAME"
    newest_from: str
    gaps: list[WindowGap]
    #: now minus the newest moment: the writes a crash now would lose, in seconds
    rpo_s: float | None
    rpo_target_s: float
    rpo_breach: bool
    #: the setting the target comes from (see rpo_target)
    rpo_target_from: str = "backup.rpo_target_s"
    stretches: list[Stretch] = field(default_factory=list, repr=False)

    def reach_of(self, backup: str) -> Stretch | None:
        return next((s for s in self.stretches if s.backup == backup), None)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def archive_reach(state: archive.ArchiveState) -> float:
    """The server time (epoch seconds) before which every entry is archived."""
    return max(float(state.covered_to[0]), state.covered_wall)


def stretch_of(manifest: store.Manifest, state: archive.ArchiveState | None) -> Stretch:
    """The moments ``manifest``'s backup restores to, as `restore --until` would allow."""
    own = manifest.consistent_at.timestamp()
    if manifest.oplog is None or state is None or state.since > manifest.oplog.end:
        return Stretch(manifest.name, own, own, "backup")
    end_ts = manifest.oplog.end
    reach, until = archive_reach(state), "archive"
    for gap in state.gaps:
        after = (int(gap["after"][0]), int(gap["after"][1]))
        if after >= end_ts and after[0] < reach:
            reach, until = float(after[0]), f"archive gap ({gap['reason']})"
    return Stretch(manifest.name, own, max(own, reach), until)


def rpo_target(settings: Settings, state: archive.ArchiveState | None) -> tuple[float, str]:
    """The RPO a deployment promises, and the setting it comes from: ``backup.rpo_target_s``
    once an oplog archive runs (so an archive that stopped is a breach within one sample);
    without one the newest backup is the recovery point, and the promise is the backups' own
    ``backup.max_age_hours`` (the runbook's nightly backup would otherwise breach 300 s every
    day, an alarm nobody could act on but by starting an archive)."""
    if state is not None:
        return settings.backup.rpo_target_s, "backup.rpo_target_s"
    return settings.backup.max_age_hours * 3600, "backup.max_age_hours (no oplog archive runs)"


def recoverable_window(settings: Settings, now: datetime | None = None) -> Window:
    now = now or datetime.now(UTC)
    state = archive.read_state(archive.archive_dir(settings))
    target, target_from = rpo_target(settings, state)
    stretches = [
        stretch_of(manifest, state)
        for _, manifest in store.backups(settings.backup.dir)
        if manifest is not None and manifest.status == "complete"
    ]
    if not stretches:
        return Window(None, None, None, "no backup", [], None, target, False, target_from)
    merged: list[list[Any]] = []  # [start, end, the stretch that reaches end]
    for s in sorted(stretches, key=lambda s: s.start):
        if merged and s.start <= merged[-1][1]:
            if s.end > merged[-1][1]:
                merged[-1][1:] = [s.end, s]
        else:
            merged.append([s.start, s.end, s])
    gaps = [
        WindowGap(
            _iso(before[1]),
            _iso(after[0]),
            round(after[0] - before[1], 1),
            f"no oplog archive continues {before[2].backup}"
            if before[2].until == "backup"
            else f"{before[2].until} after {before[2].backup}",
        )
        for before, after in pairwise(merged)
    ]
    newest_s, last = merged[-1][1], merged[-1][2]
    newest_from = "oplog archive" if last.until == "archive" else f"backup {last.backup}"
    rpo = round(max(0.0, now.timestamp() - newest_s), 1)
    return Window(
        _iso(merged[0][0]),
        _iso(newest_s),
        newest_s,
        newest_from,
        gaps,
        rpo,
        target,
        rpo > target,
        target_from,
        stretches,
    )


def describe(window: Window) -> str:
    """One line: the window, its gaps and the RPO against its target."""
    if window.newest is None:
        return "nothing is recoverable: there is no whole backup"
    text = (
        f"recoverable from {window.oldest} to {window.newest} ({window.newest_from}),"
        f" {len(window.gaps)} gap(s); RPO {window.rpo_s:g} s"
        f" (target {window.rpo_target_s:g} s)"
    )
    return text


def rpo_metrics(settings: Settings, now: float) -> list[Metric]:
    """The monitor's backup source: the RPO against backup.rpo_target_s. Reads only the
    backup directory, so an archive that stopped is a breach in the first sample after the
    target is passed, whatever the servers do."""
    from travellr_ops.ops.monitor.metrics import judged

    window = recoverable_window(settings, datetime.fromtimestamp(now, UTC))
    if window.newest is None:
        detail = f"no whole backup in {settings.backup.dir}: no recovery point to measure"
    else:
        detail = (
            f"newest recoverable moment {window.newest} ({window.newest_from});"
            f" target from {window.rpo_target_from}"
        )
        if window.gaps:
            detail += f"; {len(window.gaps)} gap(s) in the window"
    return [
        judged(
            "backup_rpo_s",
            window.rpo_s,
            "s",
            window.rpo_target_s,
            source="backup directory",
            detail=detail,
        )
    ]
