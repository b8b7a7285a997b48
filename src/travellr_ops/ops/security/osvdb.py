"""The imported OSV database: ``security db update`` reads OSV's per-ecosystem exports
(``<ecosystem>/all.zip``, one JSON record per advisory, the files ``osv-scanner --offline``
downloads) into one SQLite file in the state directory, and ``security audit`` matches the
backend's packages against it.

Validated before it is used: every JSON file of an archive must be an OSV record (an ``id``, a
``modified`` time, ranges of a known type); one bad record refuses the whole update, naming it.
The new database is built beside the current one and swapped in by one rename, so an update
that fails at any point leaves the previous database as it was. Each ecosystem remembers the
date of the archive it came from: the database's age.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import struct
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from travellr_ops.errors import UsageError
from travellr_ops.ops.security.deps import NPM, PYPI, Dependency
from travellr_ops.ops.security.osv import Finding, key, match
from travellr_ops.vocab.timespec import format_duration
from travellr_ops.vocab.verdict import Verdict

if TYPE_CHECKING:
    from travellr_ops.adapters.http import HttpAdapter

#: the ecosystems the backend uses; records of others are counted and left out
ECOSYSTEMS = (NPM, PYPI)
#: OSV's range types; a GIT range names commits, which the audit does not match against
RANGE_TYPES = ("SEMVER", "ECOSYSTEM", "GIT")
FILE_NAME = "advisories.sqlite"
#: how many bad records an error names (all are counted)
NAMED = 5
#: records inserted at once (memory stays at one batch, not the whole archive)
BATCH = 5000
#: a zip member's local header: signature ... file name length, extra field length
_LOCAL_HEADER = struct.Struct("<4s22xHH")

_SCHEMA = """
CREATE TABLE records (id TEXT NOT NULL, body BLOB NOT NULL, deflated INTEGER NOT NULL);
CREATE TABLE packages (ecosystem TEXT NOT NULL, name TEXT NOT NULL, record INTEGER NOT NULL);
CREATE TABLE ecosystems (
    ecosystem TEXT PRIMARY KEY, source TEXT NOT NULL, archive_date TEXT NOT NULL,
    imported_at TEXT NOT NULL, records INTEGER NOT NULL, newest TEXT
);
"""


def location(state_dir: Path) -> Path:
    return state_dir / "osv" / FILE_NAME


@dataclass(frozen=True)
class EcosystemInfo:
    """What the database holds of one ecosystem, and how old it is."""

    ecosystem: str
    #: the URL or file it was imported from
    source: str
    #: when the archive was published (its Last-Modified header, or the file's mtime)
    archive_date: datetime
    imported_at: datetime
    records: int
    #: the latest ``modified`` time among its records
    newest: datetime | None

    def age_s(self, now: datetime) -> float:
        return max(0.0, (now - self.archive_date).total_seconds())


@dataclass
class Archive:
    """One OSV export on disk, and where it came from."""

    path: Path
    source: str
    date: datetime


@dataclass
class ImportReport:
    database: Path
    #: the ecosystems this update replaced
    updated: list[EcosystemInfo]
    #: the ecosystems carried over unchanged from the previous database
    kept: list[EcosystemInfo]
    withdrawn: int = 0
    #: records that affect neither npm nor PyPI packages (an all-ecosystems export)
    other_ecosystems: int = 0
    duplicates: int = 0
    seconds: float = 0.0


@dataclass
class _Build:
    conn: sqlite3.Connection
    rowid: int = 0
    seen: set[str] = field(default_factory=set)
    newest: dict[str, datetime] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    sources: dict[str, list[Archive]] = field(default_factory=dict)
    bad: list[str] = field(default_factory=list)
    withdrawn: int = 0
    other: int = 0
    duplicates: int = 0


# --------------------------------------------------------------------------- update
def update(
    sources: list[str],
    database: Path,
    open_http: Callable[[], AbstractContextManager[HttpAdapter]],
    *,
    now: datetime | None = None,
) -> ImportReport:
    """Download or open each source (a URL or a zip file), then import them all at once.

    ``open_http`` gives the HTTP client, opened only when a source is a URL. Every error is
    raised before the database changes: a download that fails, a file that is not an OSV
    archive, one bad record.
    """
    database.parent.mkdir(parents=True, exist_ok=True)
    files = [s for s in sources if not _is_url(s)]
    for name in files:
        if not Path(name).is_file():
            raise UsageError(f"--from {name}: no such file", hint="give a zip file or a URL")
    with contextlib.ExitStack() as stack:
        archives = [Archive(Path(f), f, _mtime(Path(f))) for f in files]
        urls = [s for s in sources if _is_url(s)]
        if urls:
            http = stack.enter_context(open_http())
            for url in urls:
                archives.append(_download(http, url, database.parent, stack))
        return import_archives(archives, database, now=now)


def _is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _download(http: HttpAdapter, url: str, directory: Path, stack: contextlib.ExitStack) -> Archive:
    fd, name = tempfile.mkstemp(prefix=".download-", suffix=".zip", dir=directory)
    stack.callback(Path(name).unlink, missing_ok=True)
    with os.fdopen(fd, "wb") as file:
        headers = http.download(url, file)
    date = datetime.now(UTC)
    with contextlib.suppress(TypeError, ValueError, IndexError):
        modified = parsedate_to_datetime(headers.get("last-modified", ""))
        date = min(date, modified if modified.tzinfo else modified.replace(tzinfo=UTC))
    return Archive(Path(name), url, date)


def import_archives(
    archives: list[Archive], database: Path, *, now: datetime | None = None
) -> ImportReport:
    """Build a new database from ``archives`` (plus the ecosystems of the current database
    that they do not cover) and swap it in; UsageError, the current one untouched, if any
    archive is not a readable OSV export."""
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    database.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".advisories-", suffix=".sqlite", dir=database.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        conn = sqlite3.connect(temporary)
        try:
            # a crash mid-build loses only the temporary file: no journal needed
            conn.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + _SCHEMA)
            build = _Build(conn)
            for archive in archives:
                _read(build, archive)
            _refuse_bad(build)
            updated = [
                EcosystemInfo(
                    eco,
                    " ".join(a.source for a in build.sources[eco]),
                    min(a.date for a in build.sources[eco]),
                    now,
                    build.counts.get(eco, 0),
                    build.newest.get(eco),
                )
                for eco in ECOSYSTEMS
                if eco in build.sources
            ]
            if not updated:
                raise UsageError(
                    f"no npm or PyPI advisories in {', '.join(a.source for a in archives)}",
                    hint="download OSV's npm/all.zip and PyPI/all.zip exports",
                )
            kept = _carry_over(build, database, {e.ecosystem for e in updated})
            conn.execute("CREATE INDEX packages_by_name ON packages (ecosystem, name)")
            conn.executemany(
                "INSERT INTO ecosystems VALUES (?, ?, ?, ?, ?, ?)",
                [_info_row(e) for e in updated + kept],
            )
            conn.commit()
        finally:
            conn.close()
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, database)
        _fsync_dir(database.parent)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return ImportReport(
        database,
        updated,
        kept,
        withdrawn=build.withdrawn,
        other_ecosystems=build.other,
        duplicates=build.duplicates,
        seconds=time.perf_counter() - started,
    )


def _read(build: _Build, archive: Archive) -> None:
    ecosystems: set[str] = set()
    records: list[tuple[int, str, bytes, int]] = []
    links: list[tuple[str, str, int]] = []
    members, bad_before = 0, len(build.bad)
    try:
        with zipfile.ZipFile(archive.path) as zf:
            for info, raw, deflated in _json_members(zf):
                members += 1
                try:
                    record = json.loads(raw)
                except ValueError as exc:
                    build.bad.append(f"{info.filename}: not JSON ({exc})")
                    continue
                problem = problem_of(record)
                if problem:
                    build.bad.append(f"{info.filename}: {problem}")
                    continue
                if record.get("withdrawn"):
                    build.withdrawn += 1
                    continue
                if record["id"] in build.seen:
                    build.duplicates += 1
                    continue
                filed = _filed_under(record)
                if not filed:
                    build.other += 1
                    continue
                build.seen.add(record["id"])
                build.rowid += 1
                # kept as the archive holds it: the database is no bigger than the zip
                if deflated is None:
                    records.append((build.rowid, record["id"], raw, 0))
                else:
                    records.append((build.rowid, record["id"], deflated, 1))
                modified = _time(record["modified"])
                for eco, name in filed:
                    links.append((eco, name, build.rowid))
                for eco in {eco for eco, _ in filed}:
                    ecosystems.add(eco)
                    build.counts[eco] = build.counts.get(eco, 0) + 1
                    if eco not in build.newest or modified > build.newest[eco]:
                        build.newest[eco] = modified
                if len(records) >= BATCH:
                    _insert(build.conn, records, links)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise UsageError(
            f"{archive.source} is not a readable zip archive ({exc})",
            hint="the download may be truncated: fetch it again; the database was not changed",
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot read {archive.source}: {exc.strerror or exc}") from None
    if members == 0:
        raise UsageError(
            f"{archive.source} is not an OSV archive: it holds no .json records",
            hint="OSV's exports are <ecosystem>/all.zip; the database was not changed",
        )
    if len(build.bad) - bad_before == members:
        raise UsageError(
            f"{archive.source} is not an OSV archive: none of its {members} JSON files is an "
            f"OSV record ({build.bad[bad_before]})",
            hint="OSV's exports are <ecosystem>/all.zip; the database was not changed",
        )
    _insert(build.conn, records, links)
    for eco in ecosystems:
        build.sources.setdefault(eco, []).append(archive)


def _insert(
    conn: sqlite3.Connection,
    records: list[tuple[int, str, bytes, int]],
    links: list[tuple[str, str, int]],
) -> None:
    conn.executemany("INSERT INTO records (rowid, id, body, deflated) VALUES (?, ?, ?, ?)", records)
    conn.executemany("INSERT INTO packages VALUES (?, ?, ?)", links)
    records.clear()
    links.clear()


def _json_members(
    zf: zipfile.ZipFile,
) -> Iterator[tuple[zipfile.ZipInfo, bytes, bytes | None]]:
    """The ``.json`` members of an archive in file order, CRC-checked: (member, its bytes,
    its raw deflate stream when it is deflated).

    Deflated and stored members are read straight from the file: ``ZipFile.read`` builds a
    file object per member, which for OSV's one-small-file-per-advisory exports costs more
    than decompressing and parsing the record; other methods go through it.
    """
    fp = zf.fp
    members = [i for i in zf.infolist() if not i.is_dir() and i.filename.endswith(".json")]
    members.sort(key=lambda i: i.header_offset)
    for info in members:
        if fp is None or info.flag_bits & 0x1 or info.compress_type not in (0, 8):
            yield info, zf.read(info), None
            continue
        fp.seek(info.header_offset)
        header = fp.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"{info.filename}: bad local header")
        name_length, extra_length = _LOCAL_HEADER.unpack(header)[-2:]
        fp.seek(name_length + extra_length, os.SEEK_CUR)
        stream = fp.read(info.compress_size)
        if len(stream) != info.compress_size:
            raise zipfile.BadZipFile(f"{info.filename}: ends early")
        data = zlib.decompress(stream, -15) if info.compress_type == 8 else stream
        if zlib.crc32(data) != info.CRC:
            raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
        yield info, data, stream if info.compress_type == 8 else None


def _refuse_bad(build: _Build) -> None:
    if not build.bad:
        return
    named = "; ".join(build.bad[:NAMED])
    more = f" (and {len(build.bad) - NAMED} more)" if len(build.bad) > NAMED else ""
    raise UsageError(
        f"{len(build.bad)} bad record(s): {named}{more}",
        hint="the database was not changed; an archive that is not OSV's own export may "
        "need fixing at its source",
    )


def problem_of(record: Any) -> str:
    """Why ``record`` is not a usable OSV record ("" when it is)."""
    if not isinstance(record, dict):
        return "not an OSV record (not a JSON object)"
    if not isinstance(record.get("id"), str) or not record["id"]:
        return "not an OSV record (no id)"
    modified = record.get("modified")
    if not isinstance(modified, str):
        return f"{record['id']}: no modified time"
    try:
        _time(modified)
    except ValueError:
        return f"{record['id']}: modified time {modified!r} is not RFC 3339"
    affected = record.get("affected") or []
    if not isinstance(affected, list):
        return f"{record['id']}: affected is not a list"
    for entry in affected:
        if not isinstance(entry, dict):
            return f"{record['id']}: an affected entry is not an object"
        for rng in entry.get("ranges") or []:
            kind = rng.get("type") if isinstance(rng, dict) else None
            if kind not in RANGE_TYPES:
                return f"{record['id']}: unknown range type {kind!r}"
            if not isinstance(rng.get("events"), list) or not rng["events"]:
                return f"{record['id']}: a {kind} range without events"
    return ""


def _filed_under(record: dict[str, Any]) -> set[tuple[str, str]]:
    filed = set()
    for entry in record.get("affected") or []:
        package = entry.get("package")
        if not isinstance(package, dict):
            continue
        eco, name = package.get("ecosystem"), package.get("name")
        if eco in ECOSYSTEMS and isinstance(name, str):
            filed.add((str(eco), key(str(eco), name)))
    return filed


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _carry_over(build: _Build, database: Path, updated: set[str]) -> list[EcosystemInfo]:
    """Copy the ecosystems this update does not cover from the current database."""
    if not database.is_file():
        return []
    try:
        previous = OsvDatabase(database)
    except UsageError:
        return []  # an unreadable old database: nothing to keep
    try:
        kept = [e for e in previous.ecosystems() if e.ecosystem not in updated]
    finally:
        previous.close()
    if not kept:
        return []
    conn, offset = build.conn, build.rowid
    conn.execute("ATTACH DATABASE ? AS previous", (f"file:{database}?mode=ro",))
    for info in kept:
        conn.execute(
            "INSERT INTO records (rowid, id, body, deflated) SELECT rowid + ?, id, body, deflated"
            " FROM previous.records WHERE rowid IN"
            " (SELECT record FROM previous.packages WHERE ecosystem = ?)"
            " AND rowid + ? NOT IN (SELECT rowid FROM main.records)",
            (offset, info.ecosystem, offset),
        )
        conn.execute(
            "INSERT INTO packages SELECT ecosystem, name, record + ?"
            " FROM previous.packages WHERE ecosystem = ?",
            (offset, info.ecosystem),
        )
    conn.commit()
    conn.execute("DETACH DATABASE previous")
    return kept


def _info_row(info: EcosystemInfo) -> tuple[str, str, str, str, int, str | None]:
    return (
        info.ecosystem,
        info.source,
        info.archive_date.isoformat(),
        info.imported_at.isoformat(),
        info.records,
        info.newest.isoformat() if info.newest else None,
    )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class EcosystemStatus:
    ecosystem: str
    records: int
    newest: datetime | None
    archive_date: datetime
    age_s: float
    verdict: Verdict


@dataclass
class DatabaseStatus:
    database: Path
    ecosystems: list[EcosystemStatus]
    #: ok, warn (older than the maximum age) or unknown (no database)
    verdict: Verdict
    detail: str


def status(database: Path, max_age_days: float, now: datetime | None = None) -> DatabaseStatus:
    """The age of each ecosystem of the imported database (``security db status``)."""
    now = now or datetime.now(UTC)
    if not database.is_file():
        return DatabaseStatus(
            database, [], Verdict.UNKNOWN, "no OSV database: run `security db update`"
        )
    try:
        db = OsvDatabase(database)
    except UsageError as exc:
        return DatabaseStatus(database, [], Verdict.UNKNOWN, exc.message)
    try:
        infos = db.ecosystems()
    finally:
        db.close()
    limit = max_age_days * 86400
    rows = [
        EcosystemStatus(
            e.ecosystem,
            e.records,
            e.newest,
            e.archive_date,
            e.age_s(now),
            Verdict.WARN if e.age_s(now) > limit else Verdict.OK,
        )
        for e in infos
    ]
    old = [r for r in rows if r.verdict is Verdict.WARN]
    if old:
        detail = (
            f"{', '.join(r.ecosystem for r in old)} older than {format_duration(limit)}: "
            "run `security db update`"
        )
        return DatabaseStatus(database, rows, Verdict.WARN, detail)
    total = sum(r.records for r in rows)
    return DatabaseStatus(database, rows, Verdict.OK, f"{total:,} advisories, none stale")


# --------------------------------------------------------------------------- reading
class OsvDatabase:
    """The imported database, opened read-only: an update swapping in a new file meanwhile
    does not disturb an audit that already opened the old one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            self._conn.execute("SELECT count(*) FROM ecosystems").fetchone()
        except sqlite3.Error as exc:
            raise UsageError(
                f"{path} is not a travellr-ops OSV database ({exc})",
                hint="run `travellr-ops security db update` to import it again",
            ) from None

    def ecosystems(self) -> list[EcosystemInfo]:
        rows = self._conn.execute(
            "SELECT ecosystem, source, archive_date, imported_at, records, newest"
            " FROM ecosystems ORDER BY ecosystem"
        ).fetchall()
        return [
            EcosystemInfo(
                eco, src, _time(archive), _time(imported), count, _time(new) if new else None
            )
            for eco, src, archive, imported, count, new in rows
        ]

    def records_of(self, ecosystem: str, name: str) -> Iterator[dict[str, Any]]:
        for body, deflated in self._conn.execute(
            "SELECT body, deflated FROM records WHERE rowid IN"
            " (SELECT record FROM packages WHERE ecosystem = ? AND name = ?)",
            (ecosystem, key(ecosystem, name)),
        ):
            yield _record(body, deflated)

    def match(self, dep: Dependency) -> list[Finding]:
        return match(self.records_of(dep.ecosystem, dep.name), dep)

    def match_all(self, deps: list[Dependency]) -> list[Finding]:
        """The findings of every dependency, with one query per ecosystem."""
        found: list[Finding] = []
        for ecosystem in sorted({d.ecosystem for d in deps}):
            mine = [d for d in deps if d.ecosystem == ecosystem]
            names = sorted({key(ecosystem, d.name) for d in mine})
            filed: dict[str, list[dict[str, Any]]] = {}
            for name, body, deflated in self._conn.execute(
                "SELECT p.name, r.body, r.deflated"
                " FROM packages p JOIN records r ON r.rowid = p.record"
                " WHERE p.ecosystem = ? AND p.name IN (SELECT value FROM json_each(?))",
                (ecosystem, json.dumps(names)),
            ):
                filed.setdefault(name, []).append(_record(body, deflated))
            for dep in mine:
                found += match(filed.get(key(ecosystem, dep.name), []), dep)
        return found

    def close(self) -> None:
        self._conn.close()


def _record(body: bytes, deflated: int) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(zlib.decompress(body, -15) if deflated else body)
    return record
