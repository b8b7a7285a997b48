"""`backup restore` and the restore test of `backup verify`: raw batches back, in parallel,
then indexes, then (``--until``) the oplog replayed up to a moment."""

from __future__ import annotations

import contextlib
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from travellr_ops.adapters.mongo_dump import MongoDump, ReplayWrite, decode, oplog_time
from travellr_ops.errors import CheckFailed, OperationFailed, Refused, TravellrError, UsageError
from travellr_ops.ops.backup import archive, store
from travellr_ops.ops.backup.create import Notify, all_or_nothing, choose_parallelism
from travellr_ops.ops.backup.oplog import UnsupportedEntry, Write, writes_for
from travellr_ops.output import ProgressFactory, ProgressTask
from travellr_ops.safety import Change
from travellr_ops.settings import Settings
from travellr_ops.vocab.timespec import parse_since

if TYPE_CHECKING:
    from travellr_ops.adapters.platform_types import ServicePlatform
    from travellr_ops.runtime import Runtime

#: a batch of raw documents sent in one insert_many (pymongo splits it into wire messages)
BATCH_BYTES = 8 * 1024 * 1024
BATCH_DOCS = 20_000

_DONE = object()


@dataclass
class Until:
    """A point-in-time limit: a wall-clock moment (inclusive), or an oplog timestamp
    ``SECONDS:INCREMENT`` (exclusive, like ``mongorestore --oplogLimit``)."""

    text: str
    moment: datetime | None = None
    limit_ts: tuple[int, int] | None = None
    #: "latest": the newest moment the backup reaches (resolved against the archive)
    latest: bool = False

    def admits(self, entry: Mapping[str, Any]) -> bool:
        ts = oplog_time(entry)
        if self.limit_ts is not None:
            return ts < self.limit_ts
        assert self.moment is not None
        wall = entry.get("wall")
        if isinstance(wall, datetime):
            return wall.replace(tzinfo=UTC) <= self.moment
        return ts[0] <= self.moment.timestamp()

    @property
    def seconds(self) -> float:
        if self.limit_ts is not None:
            return float(self.limit_ts[0])
        assert self.moment is not None
        return self.moment.timestamp()

    @classmethod
    def parse(cls, text: str, now: datetime | None = None) -> Until:
        """``--until``: an oplog timestamp ``SECONDS:INC``, or a past moment in the tool's
        one time grammar (an ISO time, ``HH:MM`` UTC, or a duration ago: ``2h``)."""
        if text.strip() == LATEST:
            return cls(LATEST, latest=True)
        if ts := _OPLOG_TS.fullmatch(text.strip()):
            return cls(text, limit_ts=(int(ts.group(1)), int(ts.group(2))))
        return cls(text, moment=parse_since(text, "--until", now).astimezone(UTC))


#: `--until latest`: as far as the backup and the oplog archive reach
LATEST = "latest"

#: an oplog timestamp: epoch seconds (told from a time of day HH:MM by their length) and the
#: increment
_OPLOG_TS = re.compile(r"(\d{3,}):(\d+)")


#: collections a restore writes before swapping them in under their own names; a killed
#: restore's leftovers carry this prefix too, and the next restore removes them
STAGING_PREFIX = "travellr_restore_tmp."


def staged(name: str) -> str:
    return STAGING_PREFIX + name


def _as_is(name: str) -> str:
    return name


@dataclass
class RestoreResult:
    name: str
    database: str
    dry_run: bool
    #: the collections the restore leaves in the target (with --until: those of that moment)
    collections: list[str]
    documents: int = 0
    indexes: int = 0
    oplog_applied: int = 0
    archived_applied: int = 0
    until: str | None = None
    duration_s: float = 0.0
    downtime: bool = False
    healthy: bool | None = None
    health: str = ""
    skipped_entries: list[str] = field(default_factory=list)
    #: collections of the target dropped and replaced by the restored ones
    replaced: list[str] = field(default_factory=list)
    #: collections of the target dropped: they did not exist at --until
    dropped: list[str] = field(default_factory=list)
    #: collections created after the backup, rebuilt from the oplog alone
    from_oplog: list[str] = field(default_factory=list)
    parallelism: int = 0
    parallelism_source: str = ""


class RestoreInterrupted(TravellrError):
    """A restore that stopped midway; the message says what the target holds now."""


class BackupDamaged(CheckFailed):
    """A backup file whose checksum matched could not be read back (bad gzip, bad BSON)."""


def check_files(path: Path, manifest: store.Manifest, *, decompress: bool) -> list[str]:
    """Problems found in the backup's files: missing, wrong size or checksum, undecodable."""
    problems: list[str] = []
    counts = {c.data_file: c.documents for c in manifest.collections}
    for rel, expected in sorted(manifest.files.items()):
        file = path / rel
        if not file.is_file():
            problems.append(f"{rel}: missing")
            continue
        if file.stat().st_size != expected.size:
            problems.append(f"{rel}: size {file.stat().st_size}, manifest says {expected.size}")
            continue
        if store.sha256_of(file) != expected.sha256:
            problems.append(f"{rel}: checksum mismatch (the file is damaged)")
            continue
        if decompress:
            try:
                found = 0
                if rel.endswith(".bson.gz"):
                    found = sum(1 for _ in store.documents_of(file))
                if rel.endswith(".json.gz"):
                    with store.open_gzip(file) as fh:
                        fh.read()
            except (OSError, EOFError, OperationFailed) as exc:
                problems.append(f"{rel}: does not decompress: {exc}")
                continue
            if rel in counts and found != counts[rel]:
                problems.append(f"{rel}: {found} documents, manifest says {counts[rel]}")
    return problems


def _batches(file: Path) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    size = 0
    for doc in store.documents_of(file):
        batch.append(doc)
        size += len(doc)
        if size >= BATCH_BYTES or len(batch) >= BATCH_DOCS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


#: the service `--with-downtime` stops during the restore
DOWNTIME_SERVICE = "backend"


def restore(
    rt: Runtime,
    name: str,
    *,
    target_db: str | None = None,
    collections: Sequence[str] | None = None,
    drop: bool = False,
    until: Until | None = None,
    with_downtime: bool = False,
) -> RestoreResult:
    """Restore backup ``name`` (through ``rt``'s Guard). ``with_downtime``: the runbook's
    procedure: the backend is stopped for the restore, started again after it, and the
    health check is polled until it passes or backup.restore_health_timeout_s is over.

    Everything is written into staging collections first (the backup's data, its indexes,
    the oplog replay); only when all of it succeeded are they renamed over the target's
    collections (``renameCollection`` with ``dropTarget``). A failure before that leaves the
    target as it was. With ``until`` the target ends as the database was at that moment:
    collections that did not exist then are dropped, those created after the backup are
    rebuilt from the oplog alone."""
    with contextlib.ExitStack() as opened:
        # the platform is opened first: platform = "none" is refused before anything is asked
        platform = opened.enter_context(rt.platform()) if with_downtime else None
        dump = opened.enter_context(rt.dump())
        return _restore(rt, dump, platform, name, target_db, collections, drop, until)


def _restore(
    rt: Runtime,
    dump: MongoDump,
    platform: ServicePlatform | None,
    name: str,
    target_db: str | None,
    collections: Sequence[str] | None,
    drop: bool,
    limit: Until | None,
) -> RestoreResult:
    settings, notify, progress = rt.settings, rt.notify, rt.progress
    until = limit.text if limit is not None else None
    path = store.resolve(settings.backup.dir, name)
    manifest = store.read_manifest(path)
    target = target_db or manifest.database
    selected = _select(manifest, collections)
    archived: list[Path] = []
    if limit is not None and limit.latest:
        limit = _latest(settings, manifest, notify)
        until = limit.text
    if limit is not None:
        archived = _pitr_files(settings, manifest, limit)
    problems = check_files(path, manifest, decompress=False)
    problems += archive.check_files(settings, archived)
    if problems:
        raise CheckFailed(
            f"refusing to restore {name}: the backup is damaged ({problems[0]}"
            + (f"; {len(problems) - 1} more problem(s)" if len(problems) > 1 else "")
            + ")",
            hint="nothing was changed; `backup verify` lists every problem; restore another backup",
        )
    names = {c.name for c in selected} if collections else None
    in_backup = {c.name for c in manifest.collections}
    existing = set(dump.collection_names(target))
    leftovers = sorted(n for n in existing if n.startswith(STAGING_PREFIX))
    existing = {n for n in existing - set(leftovers) if not n.startswith("system.")}
    if limit is not None:
        final = collections_at(
            _oplog_after_backup(path, manifest, archived),
            manifest.database,
            {c.name for c in selected},
            names,
            limit,
        )
        scope = set(names) if names is not None else existing | final
    else:
        final = {c.name for c in selected}
        scope = final
    replaced = sorted(final & existing)
    dropped = sorted((existing & scope) - final)
    from_oplog = sorted(final - in_backup)
    if (replaced or dropped) and not drop:
        raise Refused(
            f"{target} already has {', '.join(replaced + dropped)}: "
            "a restore would mix old and restored documents",
            hint="pass --drop to replace them, or --db NAME to restore into another database",
        )
    counts = {c.name: c.documents for c in selected}
    details = []
    for coll in sorted(final):
        what = (
            f"restore {counts[coll]:,} documents"
            if coll in counts
            else "rebuild from the oplog (created after the backup)"
        )
        if coll in existing:
            now = dump.estimated_count(target, coll)
            details.append(f"{target}.{coll}: DROP {now:,} documents, {what}")
        else:
            details.append(f"{target}.{coll}: {what}")
    for coll in dropped:
        now = dump.estimated_count(target, coll)
        details.append(f"{target}.{coll}: DROP {now:,} documents (it did not exist at {until})")
    summary = f"restore {name} into {target} at {dump.mongo.display_uri}"
    if replaced:
        summary += f", dropping and replacing {len(replaced)} existing collection(s)"
    if dropped:
        summary += f", dropping {len(dropped)} collection(s) that did not exist then"
    if limit is not None:
        summary += f", then replay the oplog up to {limit.text}"
    if platform is not None:
        summary += f", stopping the {DOWNTIME_SERVICE} meanwhile"
    change = Change(action="backup restore", summary=summary, details=details, target=target)
    result = RestoreResult(
        name,
        target,
        True,
        sorted(final),
        until=until,
        replaced=replaced,
        dropped=dropped,
        from_oplog=from_oplog,
    )
    with rt.guard.mutation(change, lock="restore") as proceed:
        if not proceed:
            return result
        result.dry_run = False
        started = time.monotonic()
        parallelism = choose_parallelism(settings, dump)
        result.parallelism, result.parallelism_source = parallelism.workers, parallelism.source
        for leftover in leftovers:  # of a restore that was killed
            dump.drop_collection(target, leftover)
        if platform is not None:
            notify(f"stopping the {DOWNTIME_SERVICE}")
            platform.down(DOWNTIME_SERVICE)
            result.downtime = True

        # a collection the target has is written beside it and swapped in at the end; one it
        # has not is written in place (nothing to protect; dropped if the restore fails),
        # which spares a rename: SecantusDB's copies every document
        def into(coll: str) -> str:
            return staged(coll) if coll in existing else coll

        try:
            try:
                result.documents, result.indexes = restore_data(
                    dump, path, selected, target, parallelism.workers, into=into,
                    progress=progress,
                )  # fmt: skip
                if limit is not None:
                    result.oplog_applied, skipped = replay(
                        dump, _captured(path, manifest), manifest.database, target, names, limit,
                        into=into,
                    )  # fmt: skip
                    archived_entries = archive.entries_after(
                        archived, manifest.oplog.end if manifest.oplog else (0, 0)
                    )
                    result.archived_applied, more = replay(
                        dump, archived_entries, manifest.database, target, names, limit,
                        into=into,
                    )  # fmt: skip
                    result.skipped_entries = skipped + more
            except BaseException as exc:
                _discard_written(dump, target, existing, notify)
                raise _untouched(exc, target) from None
            result.collections, result.dropped = _swap(dump, target, existing, scope, notify)
        except TravellrError:
            if platform is not None:
                notify(f"the {DOWNTIME_SERVICE} stays stopped: the restore did not complete")
            raise
        if platform is not None:
            notify(f"starting the {DOWNTIME_SERVICE}")
            platform.up(DOWNTIME_SERVICE)
            result.healthy, result.health = _health_after(rt)
        result.duration_s = round(time.monotonic() - started, 3)
    return result


def _health_after(rt: Runtime) -> tuple[bool, str]:
    """The runbook's last step (`./scripts/health-check.sh`), given the backend time to
    start: (healthy, what is not)."""
    report = rt.wait_healthy(rt.settings.backup.restore_health_timeout_s)
    bad = [f"{c.name}: {c.verdict}" for c in report.checks if c.verdict != "ok"]
    return not report.exit_code, ", ".join(bad) or "all checks ok"


def _untouched(exc: BaseException, target: str) -> BaseException:
    """The error of a restore that failed before the swap: the target is as it was."""
    if not isinstance(exc, TravellrError):
        return exc
    error = type(exc)(
        f"restore failed, nothing was changed in {target}: {exc.message}", hint=exc.hint
    )
    error.exit_code = exc.exit_code
    return error


def _written(names: list[str], existing: set[str]) -> list[str]:
    """What the restore wrote: staging collections, and collections the target had not."""
    return [
        c
        for c in names
        if c.startswith(STAGING_PREFIX) or (c not in existing and not c.startswith("system."))
    ]


def _discard_written(dump: MongoDump, target: str, existing: set[str], notify: Notify) -> None:
    try:
        for coll in _written(dump.collection_names(target), existing):
            dump.drop_collection(target, coll)
    except TravellrError as exc:
        notify(
            f"could not remove what the failed restore wrote ({exc.message}); drop the"
            f" {STAGING_PREFIX}* collections of {target} (the next restore does)"
        )


def _swap(
    dump: MongoDump, target: str, existing: set[str], scope: set[str], notify: Notify
) -> tuple[list[str], list[str]]:
    """Rename every staging collection over its target, then drop the target's collections
    in scope that the restore does not hold. (collections restored, collections dropped)"""
    written = _written(dump.collection_names(target), existing)
    ready = sorted(c.removeprefix(STAGING_PREFIX) for c in written if c.startswith(STAGING_PREFIX))
    created = sorted(c for c in written if not c.startswith(STAGING_PREFIX))
    done: list[str] = []
    try:
        for coll in ready:
            dump.rename_collection(target, staged(coll), coll, drop_target=True)
            done.append(coll)
        extra = sorted((existing & scope) - set(ready))
        for coll in extra:
            dump.drop_collection(target, coll)
            done.append(coll)
    except TravellrError as exc:
        _discard_written(dump, target, existing | set(created), notify)
        pending = [c for c in ready if c not in done]
        error = RestoreInterrupted(
            f"restore interrupted while swapping the restored collections in: {exc.message}. "
            f"Replaced: {', '.join(done) or 'none'}; NOT replaced (still as before): "
            f"{', '.join(pending) or 'none'}",
            hint="fix the cause and run the restore again with --drop",
        )
        error.exit_code = exc.exit_code
        raise error from None
    return sorted(ready + created), extra


def _oplog_after_backup(
    path: Path, manifest: store.Manifest, archived: list[Path]
) -> Iterator[bytes]:
    """The backup's captured oplog, then the archived entries after it."""
    yield from _captured(path, manifest)
    yield from archive.entries_after(archived, manifest.oplog.end if manifest.oplog else (0, 0))


def _admitted(
    raw_entries: Iterator[bytes], source_db: str, limit: Until
) -> Iterator[tuple[Mapping[str, Any], list[Write] | UnsupportedEntry]]:
    """Each oplog entry up to ``limit`` with its writes to ``source_db`` (or why it has none
    that can be replayed), in order."""
    for raw in raw_entries:
        entry = decode(raw)
        if not limit.admits(entry):
            return
        try:
            yield entry, writes_for(entry, source_db)
        except UnsupportedEntry as exc:
            yield entry, exc


def collections_at(
    raw_entries: Iterator[bytes],
    source_db: str,
    restored: set[str],
    collections: set[str] | None,
    limit: Until,
) -> set[str]:
    """The collections the database holds at ``limit``: those restored, as the oplog up to
    that moment creates, drops and renames them (a write implies its collection exists)."""
    present = set(restored)
    for _, writes in _admitted(raw_entries, source_db, limit):
        if isinstance(writes, UnsupportedEntry):
            continue
        for write in writes:
            if collections is not None and write.collection not in collections:
                continue
            command = write.command or {}
            if write.kind != "command" or "create" in command:
                present.add(write.collection)
            elif "drop" in command:
                present.discard(write.collection)
            elif "renameCollection" in command:
                present.discard(write.collection)
                present.add(str(command["to"]))
    return present


def _select(manifest: store.Manifest, names: Sequence[str] | None) -> list[store.CollectionEntry]:
    if not names:
        return list(manifest.collections)
    known = {c.name: c for c in manifest.collections}
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise UsageError(
            f"not in backup {manifest.name}: {', '.join(unknown)}",
            hint=f"it holds {', '.join(sorted(known))}",
        )
    return [known[n] for n in names]


def _pitr_files(settings: Settings, manifest: store.Manifest, limit: Until) -> list[Path]:
    """The archived oplog files the replay needs after the backup's own capture."""
    if manifest.oplog is None:
        raise UsageError(
            f"{manifest.name} was taken without an oplog (a standalone server): "
            "it cannot be rolled forward",
            hint="restore it without --until; point-in-time recovery needs a replica set",
        )
    if limit.seconds < manifest.oplog.end[0] and (
        limit.limit_ts is None or limit.limit_ts <= manifest.oplog.end
    ):
        raise UsageError(
            f"{manifest.name} already holds writes up to "
            f"{manifest.consistent_at.isoformat()}, after --until {limit.text}",
            hint="pick an older backup (`backup list`) as the base",
        )
    return archive.files_for(settings, manifest.oplog.end, limit.seconds)


def _latest(settings: Settings, manifest: store.Manifest, notify: Notify) -> Until:
    """`--until latest` for this backup: every archived entry (the archive's position,
    included), or the backup's own moment when no archive continues it."""
    from travellr_ops.ops.backup.objectives import stretch_of

    if manifest.oplog is None:
        raise UsageError(
            f"{manifest.name} was taken without an oplog (a standalone server): "
            "it cannot be rolled forward",
            hint="restore it without --until; point-in-time recovery needs a replica set",
        )
    state = archive.read_state(archive.archive_dir(settings))
    stretch = stretch_of(manifest, state)
    reach = datetime.fromtimestamp(stretch.end, UTC).isoformat(timespec="seconds")
    if stretch.until == "archive" and state is not None:
        last = max(state.position, manifest.oplog.end)
        notify(f"--until latest: {reach}, as far as the oplog archive reaches")
        return Until(reach, limit_ts=(last[0], last[1] + 1))
    if stretch.until != "backup":  # stopped by a gap of the archive
        notify(f"--until latest: {reach}, where the {stretch.until} begins")
        return Until(reach, moment=datetime.fromtimestamp(stretch.end, UTC))
    end = manifest.oplog.end
    notify(f"--until latest: {reach}, the backup's own moment (no oplog archive continues it)")
    return Until(reach, limit_ts=(end[0], end[1] + 1))


def _captured(path: Path, manifest: store.Manifest) -> Iterator[bytes]:
    if manifest.oplog is None or manifest.oplog.file is None:
        return iter(())
    return store.documents_of(path / manifest.oplog.file)


def restore_data(
    dump: MongoDump,
    path: Path,
    selected: Sequence[store.CollectionEntry],
    target: str,
    parallelism: int,
    *,
    into: Callable[[str], str] = _as_is,
    progress: ProgressFactory,
) -> tuple[int, int]:
    """Collections in parallel, each into ``into(name)`` (absent before): create, raw
    batches, indexes. (documents, indexes); the first failure is raised as it is."""
    stop = threading.Event()
    total = sum(c.documents for c in selected)
    with progress("restore", float(total or 1)) as task:
        workers = max(1, min(parallelism, len(selected) or 1))
        with ThreadPoolExecutor(workers, thread_name_prefix="restore") as pool:
            futures = {
                pool.submit(_restore_collection, dump, path, c, target, into(c.name), task, stop): c
                for c in selected
            }
            all_or_nothing(list(futures), stop)
            docs = indexes = 0
            for future in futures:
                d, i = future.result()
                docs += d
                indexes += i
    return docs, indexes


def _restore_collection(
    dump: MongoDump,
    path: Path,
    entry: store.CollectionEntry,
    target: str,
    into: str,
    task: ProgressTask,
    stop: threading.Event,
) -> tuple[int, int]:
    metadata = _read_metadata(path / entry.metadata_file)
    dump.create_collection(target, into, metadata)
    batches: queue.Queue[object] = queue.Queue(maxsize=3)
    failure: list[BaseException] = []

    def read() -> None:  # decompressing and splitting runs beside the inserts
        try:
            for batch in _batches(path / entry.data_file):
                if stop.is_set():
                    break
                batches.put(batch)
        except Exception as exc:  # a bad gzip stream or BSON: the checksum missed it
            failure.append(
                BackupDamaged(
                    f"the backup is damaged: {entry.data_file} does not decompress: {exc}",
                    hint="`backup verify` lists every problem; restore another backup",
                )
            )
        except BaseException as exc:
            failure.append(exc)
        finally:
            batches.put(_DONE)

    reader = threading.Thread(target=read, name=f"read-{entry.name}", daemon=True)
    reader.start()
    docs = 0
    try:
        while (item := batches.get()) is not _DONE:
            if stop.is_set():
                continue
            assert isinstance(item, list)
            dump.insert_raw(target, into, item)
            docs += len(item)
            task.advance(len(item))
    except BaseException:
        stop.set()
        while reader.is_alive():
            with contextlib.suppress(queue.Empty):
                batches.get(timeout=0.1)
        raise
    reader.join()
    if failure:
        raise failure[0]
    if stop.is_set():
        raise OperationFailed(f"{entry.name}: stopped because another collection failed")
    built = dump.create_indexes(target, into, metadata)
    return docs, len(built)


def _read_metadata(file: Path) -> str:
    with store.open_gzip(file) as fh:
        return fh.read().decode()


#: replayed writes sent to a collection in one bulk write: with SecantusDB's ~6 ms a round
#: trip, one write at a time replayed ~150 entries/s (bench/replay measures both)
REPLAY_BATCH = 1000


def replay(
    dump: MongoDump,
    raw_entries: Iterator[bytes],
    source_db: str,
    target: str,
    collections: set[str] | None,
    limit: Until,
    *,
    into: Callable[[str], str] = _as_is,
    batch: int = REPLAY_BATCH,
) -> tuple[int, list[str]]:
    """Apply the entries the limit admits, in order, to ``into(collection)`` of ``target``;
    (entries applied, skipped commands).

    Writes are queued per collection and sent as ordered bulk writes of up to ``batch``:
    a document's writes stay in oplog order (they are in one collection's queue), and every
    queue is sent before a command (create, drop, rename, indexes) runs, so a command sees
    the writes logged before it. A failure part-way leaves a partial replay, as before: the
    restore writes into staged collections and discards them on any error."""
    applied = 0
    skipped: list[str] = []
    pending = _Pending(dump, target, batch)
    for entry, writes in _admitted(raw_entries, source_db, limit):
        if isinstance(writes, UnsupportedEntry):
            skipped.append(f"{oplog_time(entry)}: {writes}")
            continue
        if collections is not None:
            writes = [w for w in writes if w.collection in collections]
        for write in writes:
            _apply(dump, target, write, into, pending)
        if writes:
            applied += 1
    pending.flush()
    return applied, skipped


class _Pending:
    """Replayed writes not yet sent, per target collection, in oplog order."""

    def __init__(self, dump: MongoDump, db: str, size: int) -> None:
        self.dump, self.db, self.size = dump, db, max(1, size)
        self.queues: dict[str, list[ReplayWrite]] = {}

    def add(self, collection: str, write: ReplayWrite) -> None:
        waiting = self.queues.setdefault(collection, [])
        waiting.append(write)
        if len(waiting) >= self.size:
            self.dump.apply_writes(self.db, collection, self.queues.pop(collection))

    def flush(self) -> None:
        while self.queues:
            collection, waiting = self.queues.popitem()
            self.dump.apply_writes(self.db, collection, waiting)


def _apply(
    dump: MongoDump, db: str, write: Write, into: Callable[[str], str], pending: _Pending
) -> None:
    collection = into(write.collection)
    if write.kind == "replace":
        pending.add(collection, ("replace", write.doc_id, write.document))
    elif write.kind == "update":
        for update in write.updates:
            pending.add(collection, ("update", write.doc_id, update))
    elif write.kind == "delete":
        pending.add(collection, ("delete", write.doc_id, None))
    elif write.command is not None:
        pending.flush()
        command = dict(write.command)
        name = next(iter(command))
        if name == "renameCollection":
            to = into(str(command["to"]))
            dump.rename_collection(db, collection, to, drop_target=bool(command["dropTarget"]))
        else:
            command[name] = into(str(command[name]))
            dump.replay_command(db, command)
