"""`backup create`: every collection, raw, compressed off the read path, in parallel."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from travellr_ops import __version__
from travellr_ops.adapters.mongo_dump import CollectionInfo, MongoDump, OplogTime, ServerInfo
from travellr_ops.errors import OperationFailed, TravellrError, UsageError
from travellr_ops.ops.backup import store
from travellr_ops.output import ProgressFactory, ProgressTask
from travellr_ops.safety import Change, Guard
from travellr_ops.settings import Settings

Notify = Callable[[str], None]

_DONE = object()


@dataclass
class CreateResult:
    name: str
    path: Path
    dry_run: bool
    database: str
    collections: list[str]
    documents: int = 0
    size: int = 0
    duration_s: float = 0.0
    oplog_entries: int | None = None
    consistent_at: str | None = None
    parallelism: int = 0
    parallelism_source: str = ""
    manifest: store.Manifest | None = field(default=None, repr=False)


class _Tally:
    """Documents and bytes dumped so far, shown on the progress bar."""

    def __init__(self, task: ProgressTask) -> None:
        self.task = task
        self.docs = 0
        self.bytes = 0
        self.lock = threading.Lock()

    def add(self, docs: int, size: int) -> None:
        with self.lock:
            self.docs += docs
            self.bytes += size
            described = f"backup: {self.docs:,} docs, {self.bytes / 1e6:,.1f} MB"
        self.task.update(description=described)
        self.task.advance(docs)


@dataclass
class Parallelism:
    workers: int
    #: how it was chosen, for the output
    source: str


#: the most collections an automatic choice handles at once
MAX_AUTO_PARALLELISM = 8


def choose_parallelism(settings: Settings, dump: MongoDump) -> Parallelism:
    """backup.parallelism, or when unset: half the cores of the smaller of the server's host
    and this machine (both sides spend CPU on every document: the server on inserts and
    index builds, this side on compression), at least 1."""
    if settings.backup.parallelism is not None:
        return Parallelism(settings.backup.parallelism, "backup.parallelism")
    local = os.cpu_count() or 1
    server = dump.host_cores()
    cores = min(local, server) if server else local
    workers = max(1, min(MAX_AUTO_PARALLELISM, cores // 2))
    seen = f"server {server} cores" if server else "server cores not reported"
    return Parallelism(workers, f"auto: {seen}, local {local} cores")


def count_documents(batch: bytes) -> int:
    """How many BSON documents a raw batch holds, from their length prefixes alone."""
    view = memoryview(batch)
    count = pos = 0
    end = len(view)
    while pos < end:
        pos += int.from_bytes(view[pos : pos + 4], "little")
        count += 1
    return count


def create(
    settings: Settings,
    dump: MongoDump,
    guard: Guard,
    progress: ProgressFactory,
    notify: Notify,
    collections: Sequence[str] | None = None,
    *,
    count_first: bool = False,
) -> CreateResult:
    """Write a backup. ``count_first``: count the documents before the dump, for a progress
    bar with a total (counting costs the server a pass of its own, so only for people)."""
    backup_dir = settings.backup.dir
    db = dump.database
    change = Change(
        action="backup create",
        summary=f"write a backup of {db} ({dump.mongo.display_uri}) to {backup_dir}",
        target=str(backup_dir),
    )
    with guard.mutation(change, lock="backup", confirm=False, mutates_servers=False) as proceed:
        # the oplog is captured from before the collections are listed: one created
        # meanwhile is rebuilt from it
        server = dump.server_info()
        oplog_start = _oplog_start(dump) if server.topology == "replica_set" else None
        infos = dump.collections(db, collections)
        if collections:
            missing = sorted(set(collections) - {c.name for c in infos})
            if missing:
                raise UsageError(
                    f"no such collection in {db}: {', '.join(missing)}",
                    hint="`db stats` lists the collections",
                )
        if not proceed:
            name = store.name_for(datetime.now(UTC))
            return CreateResult(name, backup_dir / name, True, db, [c.name for c in infos])
        return _create(settings, dump, server, oplog_start, infos, progress, notify, count_first)


def _create(
    settings: Settings,
    dump: MongoDump,
    server: ServerInfo,
    oplog_start: OplogTime | None,
    infos: list[CollectionInfo],
    progress: ProgressFactory,
    notify: Notify,
    count_first: bool,
) -> CreateResult:
    backup_dir = settings.backup.dir
    db = dump.database
    started = datetime.now(UTC)
    clock = time.monotonic()
    parallelism = choose_parallelism(settings, dump)
    try:
        store.make_dir(backup_dir)
    except OSError as exc:
        raise OperationFailed(f"cannot create the backup directory {backup_dir}: {exc}") from None
    name = store.name_for(started)
    while (backup_dir / name).exists():  # one backup per second at most: names are seconds
        time.sleep(0.2)
        started = datetime.now(UTC)
        name = store.name_for(started)
    tmp = backup_dir / f"{store.TMP_PREFIX}{name}-{os.getpid()}"
    try:
        store.make_dir(tmp)
        store.make_dir(tmp / db)
        total = sum(dump.estimated_count(db, c.name) for c in infos) if count_first else None
        entries: list[store.CollectionEntry] = []
        files: dict[str, store.FileEntry] = {}
        with progress("backup", float(total or 1) if count_first else None) as task:
            tally = _Tally(task)
            results = _dump_all(settings, dump, infos, tmp, tally, parallelism.workers)
        for info in infos:
            entry, data_entry, meta_entry = results[info.name]
            entries.append(entry)
            files[entry.data_file] = data_entry
            files[entry.metadata_file] = meta_entry
        oplog_range = None
        if oplog_start is not None:
            oplog_range, oplog_entry = _capture_oplog(dump, settings, tmp, oplog_start)
            if oplog_entry is not None:
                files[store.OPLOG_FILE] = oplog_entry
        manifest = store.Manifest(
            name=name,
            database=db,
            tool_version=__version__,
            server_version=server.version,
            topology=server.topology,
            started_at=started.isoformat(timespec="seconds"),
            finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
            status="complete",
            collections=entries,
            files=files,
            oplog=oplog_range,
        )
        store.write_manifest(tmp, manifest)
        store.fsync_dir(tmp / db)
        store.fsync_dir(tmp)
        os.rename(tmp, backup_dir / name)
        store.fsync_dir(backup_dir)
    except BaseException as exc:
        _discard(tmp, notify)
        if isinstance(exc, OSError):
            raise OperationFailed(
                f"cannot write the backup to {backup_dir}: {exc.strerror or exc}",
                hint="check free space and permissions of backup.dir; nothing was kept",
            ) from None
        raise
    return CreateResult(
        name=name,
        path=backup_dir / name,
        dry_run=False,
        database=db,
        collections=[c.name for c in infos],
        documents=manifest.documents,
        size=manifest.size,
        duration_s=round(time.monotonic() - clock, 3),
        oplog_entries=oplog_range.entries if oplog_range else None,
        consistent_at=manifest.consistent_at.isoformat(),
        manifest=manifest,
        parallelism=parallelism.workers,
        parallelism_source=parallelism.source,
    )


def _oplog_start(dump: MongoDump) -> OplogTime | None:
    """The server's newest operation time: from hello (no oplog read), else from the oplog."""
    newest = dump.server_time()
    if newest is None:
        bounds = dump.oplog_bounds()
        newest = bounds[1] if bounds else None
    return newest


def _discard(tmp: Path, notify: Notify) -> None:
    try:
        if tmp.exists():
            store.remove_tree(tmp)
    except OSError as exc:
        notify(f"could not remove the unfinished backup {tmp}: {exc}; `backup clean` will")


def _dump_all(
    settings: Settings,
    dump: MongoDump,
    infos: list[CollectionInfo],
    tmp: Path,
    tally: _Tally,
    parallelism: int,
) -> dict[str, tuple[store.CollectionEntry, store.FileEntry, store.FileEntry]]:
    stop = threading.Event()
    results: dict[str, tuple[store.CollectionEntry, store.FileEntry, store.FileEntry]] = {}
    workers = max(1, min(parallelism, len(infos) or 1))
    with ThreadPoolExecutor(workers, thread_name_prefix="backup") as pool:
        futures = {
            pool.submit(_dump_collection, settings, dump, info, tmp, tally, stop): info.name
            for info in infos
        }
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in done if f.exception() is not None]
        if failed:
            stop.set()
            for future in futures:
                future.cancel()
            wait(futures)
            exc = failed[0].exception()
            assert exc is not None
            raise exc
        for future, name in futures.items():
            results[name] = future.result()
    return results


def _dump_collection(
    settings: Settings,
    dump: MongoDump,
    info: CollectionInfo,
    tmp: Path,
    tally: _Tally,
    stop: threading.Event,
) -> tuple[store.CollectionEntry, store.FileEntry, store.FileEntry]:
    """Read raw batches here; a compressor thread gzips them, so reading never waits on it."""
    db = dump.database
    data_rel = f"{db}/{info.name}.bson.gz"
    meta_rel = f"{db}/{info.name}.metadata.json.gz"
    level = settings.backup.compression_level
    out = store.GzipOut(tmp / data_rel, level)
    batches: queue.Queue[object] = queue.Queue(maxsize=4)
    failure: list[BaseException] = []

    def compress() -> None:
        try:
            while (item := batches.get()) is not _DONE:
                assert isinstance(item, bytes)
                out.write(item)
        except BaseException as exc:
            failure.append(exc)
            stop.set()
            while batches.get() is not _DONE:  # let the reader finish putting
                pass

    compressor = threading.Thread(target=compress, name=f"gzip-{info.name}", daemon=True)
    compressor.start()
    docs = size = 0
    try:
        try:
            for batch in dump.raw_batches(db, info.name):
                if stop.is_set():
                    break
                n = count_documents(batch)
                docs += n
                size += len(batch)
                batches.put(batch)
                tally.add(n, len(batch))
        finally:
            batches.put(_DONE)
            compressor.join()
        if failure:
            raise failure[0]
        if stop.is_set():
            raise _Cancelled(f"{info.name}: stopped because another collection failed")
        data_entry = out.finish()
    except BaseException:
        out.abort()
        raise
    meta = store.GzipOut(tmp / meta_rel, level)
    try:
        meta.write(info.metadata_json.encode())
        meta_entry = meta.finish()
    except BaseException:
        meta.abort()
        raise
    entry = store.CollectionEntry(
        name=info.name,
        documents=docs,
        bytes=size,
        data_file=data_rel,
        metadata_file=meta_rel,
        indexes=sorted(str(i["name"]) for i in info.indexes),
    )
    return entry, data_entry, meta_entry


class _Cancelled(TravellrError):
    """Another collection's dump failed; this one stopped early (never the reported error)."""


def _capture_oplog(
    dump: MongoDump, settings: Settings, tmp: Path, start: OplogTime
) -> tuple[store.OplogRange, store.FileEntry | None]:
    """The oplog entries written during the dump (like ``mongodump --oplog``): one read from
    ``start`` on, then a look at where the oplog begins (a server that seeks by ts answers
    both without touching the history before ``start``)."""
    from travellr_ops.adapters.mongo_dump import oplog_ts_of_raw

    # Everything up to the server's newest operation now is captured: the range ends there
    # even when the last entries belong to other databases.
    newest = dump.server_time()
    out = store.GzipOut(tmp / store.OPLOG_FILE, settings.backup.compression_level)
    count = 0
    end = max(start, newest) if newest is not None else start
    try:
        for raw in dump.oplog_raw(start, db=dump.database, inclusive=True, until=newest):
            out.write(raw)
            end = max(end, oplog_ts_of_raw(raw))
            count += 1
        entry = out.finish()
    except BaseException:
        out.abort()
        raise
    first = dump.oplog_first()
    if first is not None and first > start:
        raise OperationFailed(
            "the oplog rolled over during the backup: entries written during the dump are lost",
            hint="enlarge the oplog, or run the backup when the write load is lower",
        )
    return store.OplogRange(start, end, count, store.OPLOG_FILE), entry
