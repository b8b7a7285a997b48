"""`backup oplog-archive`: the oplog, tailed into compressed, checksummed files.

The archive directory holds ``oplog-<first>-<last>.bson.gz`` files and ``state.json``: the
files (with size and SHA-256), the position (the last archived entry's ts and how many
entries with that very ts are archived: a transaction writes several entries sharing one ts,
so a ts alone cannot say where to resume), and ``covered_to``, the server time up to which
every entry of the database is archived. A file is fsynced and renamed into place before the
state names it; a file that a crash left unnamed is adopted from its own contents on the next
run, so a resume has neither gaps nor duplicates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from travellr_ops.adapters.mongo_dump import MongoDump, OplogTime, oplog_ts_of_raw
from travellr_ops.errors import CheckFailed, UsageError
from travellr_ops.ops.backup import store
from travellr_ops.safety import Change, Guard
from travellr_ops.settings import Settings

STATE = "state.json"
FILE_PREFIX = "oplog-"


def archive_dir(settings: Settings) -> Path:
    return settings.backup.oplog_archive_dir or settings.backup.dir / store.ARCHIVE_DIR


def _stamp(ts: OplogTime) -> str:
    return f"{ts[0]:010d}.{ts[1]:06d}"


@dataclass
class ArchiveFile:
    file: str
    first: OplogTime
    last: OplogTime
    entries: int
    size: int
    sha256: str


@dataclass
class ArchiveState:
    database: str
    #: the last archived entry's ts, and how many entries with exactly that ts are archived
    position: OplogTime
    at_position: int
    #: every entry of the database up to this server time is archived
    covered_to: OplogTime
    #: where the archive's continuous coverage begins (entries after it are all here)
    since: OplogTime
    #: server clock (epoch seconds) before which every entry is archived, even when the
    #: database saw no writes for a while (covered_to only moves with writes)
    covered_wall: float = 0.0
    files: list[ArchiveFile] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        from travellr_ops.output import to_jsonable

        data: dict[str, Any] = to_jsonable(self)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ArchiveState:
        def ts(value: Any) -> OplogTime:
            return int(value[0]), int(value[1])

        return cls(
            database=data["database"],
            position=ts(data["position"]),
            at_position=int(data["at_position"]),
            covered_to=ts(data["covered_to"]),
            since=ts(data["since"]),
            covered_wall=float(data.get("covered_wall", 0.0)),
            files=[
                ArchiveFile(
                    f["file"], ts(f["first"]), ts(f["last"]), f["entries"], f["size"], f["sha256"]
                )
                for f in data.get("files", [])
            ],
            gaps=list(data.get("gaps", [])),
        )


def read_state(directory: Path) -> ArchiveState | None:
    path = directory / STATE
    if not path.exists():
        return None
    try:
        return ArchiveState.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckFailed(f"the oplog archive state {path} is unreadable: {exc}") from None


def _write_state(directory: Path, state: ArchiveState) -> None:
    store.write_atomic(directory / STATE, json.dumps(state.to_json(), indent=2).encode())


@dataclass
class ArchiveResult:
    directory: Path
    entries: int
    files: list[str]
    position: OplogTime
    covered_to: str
    started_from: str
    adopted: list[str] = field(default_factory=list)


def oplog_archive(
    settings: Settings,
    dump: MongoDump,
    guard: Guard,
    notify: Callable[[str], None],
    *,
    follow: bool = False,
    reset: bool = False,
    rounds: int | None = None,
) -> ArchiveResult:
    """Archive what the oplog holds past the saved position; with ``follow``, keep doing so
    every ``backup.oplog_poll_s`` seconds (``rounds`` limits that, for tests)."""
    directory = archive_dir(settings)
    change = Change(
        action="backup oplog-archive",
        summary=f"archive the oplog of {dump.database} into {directory}",
        target=str(directory),
    )
    with guard.mutation(
        change, lock="oplog-archive", confirm=False, mutates_servers=False
    ) as proceed:
        if not proceed:
            state = read_state(directory)
            pos = state.position if state else (0, 0)
            return ArchiveResult(directory, 0, [], pos, "", "dry run")
        if dump.server_info().topology != "replica_set":
            raise UsageError(
                "the server keeps no oplog (standalone): there is nothing to archive",
                hint="point-in-time recovery needs MongoDB running as a replica set",
            )
        store.make_dir(directory)
        result = _round(settings, dump, directory, notify, reset)
        done = 1
        while follow and (rounds is None or done < rounds):
            time.sleep(settings.backup.oplog_poll_s)
            more = _round(settings, dump, directory, notify, False)
            result.entries += more.entries
            result.files += more.files
            result.position, result.covered_to = more.position, more.covered_to
            done += 1
        return result


def _start_state(
    settings: Settings, dump: MongoDump, notify: Callable[[str], None]
) -> ArchiveState:
    """Where a new archive begins: right after the newest backup's oplog, else now."""
    base = None
    for _, manifest in reversed(store.backups(settings.backup.dir)):
        if manifest is not None and manifest.oplog is not None:
            base = manifest
            break
    if base is not None and base.oplog is not None:
        start = base.oplog.end
        notify(f"starting the oplog archive after backup {base.name}")
    else:
        now = dump.server_time() or (int(time.time()), 0)
        start = now
        notify("no backup with an oplog yet: the oplog archive starts now")
    # at_position: every entry with the start ts is already in the base (or in the past)
    return ArchiveState(dump.database, start, 1 << 30, start, start)


def _round(
    settings: Settings,
    dump: MongoDump,
    directory: Path,
    notify: Callable[[str], None],
    reset: bool,
) -> ArchiveResult:
    state = read_state(directory)
    adopted = _adopt_unrecorded(directory, state) if state is not None else []
    if adopted and state is not None:
        _write_state(directory, state)
    if state is None or reset:
        fresh = _start_state(settings, dump, notify)
        if state is not None:
            state.gaps.append(
                {"after": state.covered_to, "until": fresh.position, "reason": "reset"}
            )
            state.position, state.at_position = fresh.position, fresh.at_position
            state.covered_to = state.since = fresh.position
        else:
            state = fresh
        _write_state(directory, state)
    started_from = _iso(state.position)
    bounds = dump.oplog_bounds()
    if bounds is not None and bounds[0] > state.covered_to and bounds[0] > state.position:
        raise CheckFailed(
            f"the oplog has rolled past the archive: it starts at {_iso(bounds[0])}, but the "
            f"archive reaches only {_iso(state.covered_to)}; the writes between are lost to "
            "point-in-time recovery",
            hint="run `backup create` for a new base, then `backup oplog-archive --reset`;"
            " and enlarge the oplog so that it outlasts the archive interval",
        )
    clock = dump.server_clock()
    newest = dump.server_time()
    written: list[str] = []
    total = 0
    pending: list[bytes] = []
    position, at_position = state.position, state.at_position
    skip = at_position
    for raw in dump.oplog_raw(state.position, db=state.database, inclusive=True, until=newest):
        ts = oplog_ts_of_raw(raw)
        if ts == state.position and skip > 0:
            skip -= 1
            continue
        if ts == position:
            at_position += 1
        else:
            position, at_position = ts, 1
        pending.append(raw)
        if len(pending) >= settings.backup.oplog_file_entries:
            written.append(_write_file(settings, directory, state, pending, position, at_position))
            total += len(pending)
            pending = []
    if pending:
        written.append(_write_file(settings, directory, state, pending, position, at_position))
        total += len(pending)
    if newest is not None and newest > state.covered_to:
        state.covered_to = newest
    # entries logged after the clock reading carry that second or later
    state.covered_wall = max(state.covered_wall, float(int(clock)) - 1.0)
    _write_state(directory, state)
    return ArchiveResult(
        directory,
        total,
        written,
        state.position,
        datetime.fromtimestamp(max(state.covered_to[0], state.covered_wall), UTC).isoformat(),
        started_from,
        adopted,
    )


def _write_file(
    settings: Settings,
    directory: Path,
    state: ArchiveState,
    entries: list[bytes],
    position: OplogTime,
    at_position: int,
) -> str:
    first = oplog_ts_of_raw(entries[0])
    # (position, at_position) only grows, so names are unique even when a transaction's
    # entries (one ts) are split across files
    name = f"{FILE_PREFIX}{_stamp(first)}-{_stamp(position)}-{at_position:06d}.bson.gz"
    tmp = directory / f".{name}.tmp"
    tmp.unlink(missing_ok=True)
    out = store.GzipOut(tmp, settings.backup.compression_level)
    try:
        for raw in entries:
            out.write(raw)
        entry = out.finish()
    except BaseException:
        out.abort()
        raise
    tmp.rename(directory / name)
    store.fsync_dir(directory)
    state.files.append(ArchiveFile(name, first, position, len(entries), entry.size, entry.sha256))
    state.position, state.at_position = position, at_position
    state.covered_to = max(state.covered_to, position)
    _write_state(directory, state)
    return name


def _adopt_unrecorded(directory: Path, state: ArchiveState) -> list[str]:
    """Files renamed into place whose state update a crash prevented: take them in."""
    for leftover in directory.glob(f".{FILE_PREFIX}*.tmp"):
        leftover.unlink(missing_ok=True)
    known = {f.file for f in state.files}
    adopted: list[str] = []
    for path in sorted(directory.glob(f"{FILE_PREFIX}*.bson.gz")):
        if path.name in known:
            continue
        stamps = [oplog_ts_of_raw(raw) for raw in store.documents_of(path)]
        if not stamps or stamps[-1] <= state.position:
            continue
        last = stamps[-1]
        at_last = sum(1 for ts in stamps if ts == last)
        if last == state.position:
            at_last += state.at_position
        state.files.append(
            ArchiveFile(
                path.name,
                stamps[0],
                last,
                len(stamps),
                path.stat().st_size,
                store.sha256_of(path),
            )
        )
        state.position, state.at_position = last, at_last
        state.covered_to = max(state.covered_to, last)
        adopted.append(path.name)
    return adopted


def _iso(ts: OplogTime) -> str:
    return datetime.fromtimestamp(ts[0], UTC).isoformat() + (f" (#{ts[1]})" if ts[1] else "")


# -- use by restore --until and clean -----------------------------------------------------


def files_for(settings: Settings, after: OplogTime, until_seconds: float) -> list[Path]:
    """The archive files holding entries after ``after`` up to ``until_seconds``; refuses
    when the archive does not cover that whole stretch without a gap."""
    directory = archive_dir(settings)
    state = read_state(directory)
    continued = state is not None and state.since <= after
    if until_seconds < after[0] + 1 and not continued:
        return []  # the backup's own capture reaches that second
    if state is None or state.since > after:
        raise CheckFailed(
            "the oplog archive does not reach back to this backup's end "
            f"({_iso(after)}): cannot roll it forward; it restores to that moment only"
            + (f", and the archive covers from {_iso(state.since)}" if state else ""),
            hint="`backup list` shows the recoverable window and what each backup reaches;"
            " run `backup oplog-archive` regularly (cron or --follow) after each backup",
        )
    for gap in state.gaps:
        gap_from: OplogTime = (int(gap["after"][0]), int(gap["after"][1]))
        if gap_from >= after and gap_from[0] < until_seconds:
            raise CheckFailed(
                f"the oplog archive has a gap after {_iso(gap_from)} (reason: {gap['reason']}):"
                f" this backup reaches up to {_iso(gap_from)} only",
                hint="pick a backup taken after the gap as the base (`backup list`)",
            )
    if until_seconds >= max(state.covered_to[0] + 1, state.covered_wall):
        reach = datetime.fromtimestamp(max(state.covered_to[0], state.covered_wall), UTC)
        raise CheckFailed(
            f"the oplog archive reaches only {reach.isoformat(timespec='seconds')}: it cannot"
            " recover later moments; that is the newest this backup can reach",
            hint="`--until latest` restores up to it; or run `backup oplog-archive` now, then"
            " restore again",
        )
    return [directory / f.file for f in state.files if f.last > after]


def check_files(settings: Settings, files: list[Path]) -> list[str]:
    """Checksum problems of the archive files a replay is about to use."""
    if not files:
        return []
    state = read_state(archive_dir(settings))
    known = {f.file: f for f in state.files} if state else {}
    problems: list[str] = []
    for path in files:
        meta = known.get(path.name)
        if meta is None or not path.is_file():
            problems.append(f"{path.name}: missing from the oplog archive")
        elif store.sha256_of(path) != meta.sha256:
            problems.append(f"{path.name}: checksum mismatch (the file is damaged)")
    return problems


def entries_after(files: list[Path], after: OplogTime) -> Iterator[bytes]:
    for path in files:
        for raw in store.documents_of(path):
            if oplog_ts_of_raw(raw) > after:
                yield raw


def prune(settings: Settings, before: OplogTime) -> list[Path]:
    """Archive files holding nothing after ``before`` (no kept backup can use them)."""
    state = read_state(archive_dir(settings))
    if state is None:
        return []
    return [archive_dir(settings) / f.file for f in state.files if f.last <= before]


def forget(settings: Settings, removed: list[Path]) -> None:
    directory = archive_dir(settings)
    state = read_state(directory)
    if state is None or not removed:
        return
    names = {p.name for p in removed}
    state.files = [f for f in state.files if f.file not in names]
    if state.files:
        state.since = max(state.since, state.files[0].first)
    _write_state(directory, state)
