"""The backup directory: names, the manifest, and files that are whole or absent.

A backup is ``<dir>/backup-YYYY-MM-DDTHH-MM-SS/`` (UTC), laid out like ``mongodump --gzip``
(``<db>/<coll>.bson.gz``, ``<db>/<coll>.metadata.json.gz``, ``oplog.bson.gz``) plus
``manifest.json``. It is written under ``.tmp-backup-...`` and renamed into place when
complete and fsynced, so a directory with a backup name is always a whole backup.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from travellr_ops.errors import CheckFailed, OperationFailed, UsageError

NAME_RE = re.compile(r"^backup-(\d{4}-\d{2}-\d{2})T(\d{2})-(\d{2})-(\d{2})$")
NAME_FORMAT = "backup-%Y-%m-%dT%H-%M-%S"
TMP_PREFIX = ".tmp-backup-"
MANIFEST = "manifest.json"
OPLOG_FILE = "oplog.bson.gz"
ARCHIVE_DIR = "oplog-archive"
FORMAT_VERSION = 1
FILE_MODE = 0o600
DIR_MODE = 0o700
#: how much of a decompressed file is read at a time
READ_CHUNK = 4 * 1024 * 1024


def name_for(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(NAME_FORMAT)


def time_of(name: str) -> datetime:
    return datetime.strptime(name, NAME_FORMAT).replace(tzinfo=UTC)


def is_backup_name(name: str) -> bool:
    return NAME_RE.match(name) is not None


def resolve(backup_dir: Path, name: str) -> Path:
    """The directory of backup ``name`` ("latest": the newest whole one); anything but an
    existing backup of ours is refused."""
    if name == "latest":
        whole = [path for path, manifest in backups(backup_dir) if manifest is not None]
        if not whole:
            raise UsageError(f"no backups in {backup_dir}", hint="create one: `backup create`")
        return max(whole, key=lambda path: path.name)
    if not is_backup_name(name):
        raise UsageError(
            f"not a backup name: {name!r}",
            hint="backup names look like backup-2024-01-01T10-00-00; see `backup list`",
        )
    path = backup_dir / name
    if not (path / MANIFEST).is_file():
        raise UsageError(f"no backup named {name} in {backup_dir}", hint="see `backup list`")
    return path


@dataclass
class FileEntry:
    size: int
    sha256: str


@dataclass
class CollectionEntry:
    name: str
    documents: int
    #: uncompressed BSON bytes
    bytes: int
    data_file: str
    metadata_file: str
    indexes: list[str] = field(default_factory=list)


@dataclass
class OplogRange:
    """The oplog entries captured during the dump: (seconds, increment) times, inclusive."""

    start: tuple[int, int]
    end: tuple[int, int]
    entries: int
    file: str | None


@dataclass
class Manifest:
    name: str
    database: str
    tool_version: str
    server_version: str
    topology: str
    started_at: str
    finished_at: str
    status: str
    collections: list[CollectionEntry]
    files: dict[str, FileEntry]
    oplog: OplogRange | None = None
    verified_at: str | None = None
    verify_result: str | None = None
    format: int = FORMAT_VERSION

    @property
    def documents(self) -> int:
        return sum(c.documents for c in self.collections)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files.values())

    @property
    def consistent_at(self) -> datetime:
        """The moment the backup's data reflects (the oplog end on a replica set)."""
        if self.oplog is not None:
            return datetime.fromtimestamp(self.oplog.end[0], UTC)
        return datetime.fromisoformat(self.finished_at)

    def to_json(self) -> dict[str, Any]:
        from travellr_ops.output import to_jsonable

        data: dict[str, Any] = to_jsonable(self)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        oplog = data.get("oplog")
        return cls(
            name=data["name"],
            database=data["database"],
            tool_version=data["tool_version"],
            server_version=data["server_version"],
            topology=data["topology"],
            started_at=data["started_at"],
            finished_at=data["finished_at"],
            status=data["status"],
            collections=[CollectionEntry(**c) for c in data["collections"]],
            files={k: FileEntry(**v) for k, v in data["files"].items()},
            oplog=OplogRange(
                start=tuple(oplog["start"]),
                end=tuple(oplog["end"]),
                entries=oplog["entries"],
                file=oplog.get("file"),
            )
            if oplog
            else None,
            verified_at=data.get("verified_at"),
            verify_result=data.get("verify_result"),
            format=data.get("format", FORMAT_VERSION),
        )


def read_manifest(path: Path) -> Manifest:
    try:
        return Manifest.from_json(json.loads((path / MANIFEST).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckFailed(f"the manifest of {path.name} is unreadable: {exc}") from None


def write_manifest(path: Path, manifest: Manifest) -> None:
    write_atomic(path / MANIFEST, json.dumps(manifest.to_json(), indent=2).encode())


def backups(backup_dir: Path) -> list[tuple[Path, Manifest | None]]:
    """Every backup directory, oldest first, with its manifest (None when unreadable)."""
    if not backup_dir.is_dir():
        return []
    found: list[tuple[Path, Manifest | None]] = []
    for path in sorted(backup_dir.iterdir()):
        if not path.is_dir() or not is_backup_name(path.name):
            continue
        try:
            found.append((path, read_manifest(path)))
        except CheckFailed:
            found.append((path, None))
    return found


def leftovers(backup_dir: Path) -> list[Path]:
    """Directories of backups that never finished (interrupted, failed, killed)."""
    if not backup_dir.is_dir():
        return []
    return sorted(p for p in backup_dir.iterdir() if p.name.startswith(TMP_PREFIX))


# -- files that are whole or absent ------------------------------------------------------


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dir(path: Path) -> None:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: a temporary file, fsynced, renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


class HashingWriter:
    """A file being written that counts and hashes its bytes (the file's SHA-256)."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        self.file: BinaryIO = os.fdopen(fd, "wb")
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.file.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> FileEntry:
        """fsync and close; the file's size and checksum."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        return FileEntry(self.size, self.hash.hexdigest())


def _zlib() -> Any:
    """ISA-L's zlib (python-isal) when installed: the same gzip format, about four times
    faster; else the standard library's. Both release the GIL while they work."""
    try:
        return importlib.import_module("isal.isal_zlib")
    except ImportError:
        import zlib

        return zlib


def _level(module: Any, level: int) -> int:
    # ISA-L has levels 0-3; map zlib's 1-9 onto them
    return min(3, 1 + (level - 1) // 3) if module.__name__.startswith("isal") else level


class GzipOut:
    """A gzip stream into a new file (0600); ``finish`` fsyncs it, ``abort`` removes it."""

    def __init__(self, path: Path, level: int) -> None:
        module = _zlib()
        self.path = path
        self.sink = HashingWriter(path)
        # wbits 31: a gzip header and trailer (mtime 0), what `mongorestore --gzip` reads
        self.compressor = module.compressobj(_level(module, level), module.DEFLATED, 31)

    def write(self, data: bytes) -> None:
        out = self.compressor.compress(data)
        if out:
            self.sink.write(out)

    def finish(self) -> FileEntry:
        self.sink.write(self.compressor.flush())
        return self.sink.close()

    def abort(self) -> None:
        try:
            self.sink.file.close()
        finally:
            self.path.unlink(missing_ok=True)


def open_gzip(path: Path) -> BinaryIO:
    """A .gz file for reading, decompressed by ISA-L when installed."""
    try:
        igzip: Any = importlib.import_module("isal.igzip")
    except ImportError:
        import gzip as igzip
    stream: BinaryIO = igzip.open(path, "rb")  # noqa: SIM115 - the caller closes it
    return stream


def documents_of(file: Path) -> Iterator[bytes]:
    """The raw BSON documents of a .bson.gz file, read in large chunks."""
    with open_gzip(file) as fh:
        pending = b""
        while chunk := fh.read(READ_CHUNK):
            data = pending + chunk if pending else chunk
            view = memoryview(data)
            pos = 0
            end = len(data)
            while end - pos >= 4:
                size = int.from_bytes(view[pos : pos + 4], "little")
                if size < 5:
                    raise OperationFailed(f"{file.name}: corrupt BSON (document size {size})")
                if pos + size > end:
                    break
                yield bytes(view[pos : pos + size])
                pos += size
            pending = bytes(view[pos:])
        if pending:
            raise OperationFailed(f"{file.name}: truncated BSON at the end")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=False)
