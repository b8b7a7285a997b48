"""Raw-BSON streaming for backups: dump, restore and oplog reading over ``MongoAdapter``.

Documents travel as the bytes the server sent (``find_raw_batches``) and are sent back as
``RawBSONDocument``s: nothing is decoded and re-encoded on the way, which keeps backups
byte-identical and fast. Oplog entries, which the replay must understand, are the one thing
decoded here (``decode``). Timestamps leave this module as ``(seconds, increment)`` pairs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from travellr_ops.adapters.mongo import MongoAdapter
from travellr_ops.errors import AuthError, OperationFailed

OplogTime = tuple[int, int]

#: one replayed write: (kind, _id, document or update), see ``MongoDump.apply_writes``
ReplayWrite = tuple[str, Any, Any]

OPLOG = "oplog.rs"

#: error codes that mean a replayed command's effect is already there: NamespaceExists,
#: NamespaceNotFound, IndexNotFound
ALREADY_DONE = {
    "create": (48,),
    "drop": (26,),
    "dropIndexes": (26, 27),
}


@dataclass
class CollectionInfo:
    name: str
    type: str
    #: listCollections' options and the indexes, in MongoDB Extended JSON (canonical)
    metadata_json: str
    uuid: str | None
    indexes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ServerInfo:
    version: str
    topology: str  # replica_set | standalone
    set_name: str | None


class MongoDump:
    """The raw operations a backup needs, with pymongo's errors translated to ours."""

    def __init__(self, mongo: MongoAdapter) -> None:
        self.mongo = mongo

    @property
    def database(self) -> str:
        return self.mongo.database_name

    @contextmanager
    def _long_read(self, doing: str) -> Iterator[None]:
        """A read the server may take long over: its timeout is reported as such (not as
        an unreachable server), with the setting that sets it."""
        from pymongo.errors import ExecutionTimeout, NetworkTimeout

        with self.mongo.errors(doing):
            try:
                yield
            except (NetworkTimeout, ExecutionTimeout):
                limit = self.mongo.read_timeout_s
                raise OperationFailed(
                    f"timed out {doing}"
                    + (f" after {limit:g} s" if limit is not None else "")
                    + " (the server answers, but this read took longer)",
                    hint="raise backup.read_timeout_s (a large oplog takes a busy server long"
                    " to scan)",
                ) from None

    def server_info(self) -> ServerInfo:
        with self.mongo.errors("reading the server version"):
            build = self.mongo.client.admin.command("buildInfo")
            hello = self.mongo.client.admin.command("hello")
        set_name = hello.get("setName")
        return ServerInfo(
            version=str(build.get("version", "unknown")),
            topology="replica_set" if set_name else "standalone",
            set_name=str(set_name) if set_name else None,
        )

    def host_cores(self) -> int | None:
        """The server host's CPU cores (hostInfo), or None when it does not say."""
        try:
            info = self.mongo.optional_command("hostInfo", admin=True)
        except AuthError:  # a user without the hostInfo privilege
            return None
        cores = (info or {}).get("system", {}).get("numCores")
        return int(cores) if isinstance(cores, int) and cores > 0 else None

    def server_time(self) -> OplogTime | None:
        """The server's newest operation time (None without a replica set)."""
        with self.mongo.errors("reading the server's operation time"):
            hello = self.mongo.client.admin.command("hello")
        last = hello.get("lastWrite", {}).get("opTime", {}).get("ts")
        return (last.time, last.inc) if last is not None else None

    def server_clock(self) -> float:
        """The server's clock, in epoch seconds (hello's localTime)."""
        from datetime import UTC

        with self.mongo.errors("reading the server's clock"):
            hello = self.mongo.client.admin.command("hello")
        return float(hello["localTime"].replace(tzinfo=UTC).timestamp())

    def collections(self, db: str, names: Sequence[str] | None = None) -> list[CollectionInfo]:
        """Every collection of ``db`` (views and system collections left out), with its
        metadata in mongodump's ``.metadata.json`` format."""
        from bson import json_util
        from bson.binary import Binary

        found: list[CollectionInfo] = []
        with self.mongo.errors(f"listing the collections of {db}"):
            database = self.mongo.client[db]
            for info in database.list_collections():
                name = str(info["name"])
                kind = str(info.get("type", "collection"))
                if name.startswith("system.") or kind != "collection":
                    continue
                if names is not None and name not in names:
                    continue
                indexes = [dict(spec) for spec in database[name].list_indexes()]
                for spec in indexes:
                    spec.pop("ns", None)
                raw_uuid = info.get("info", {}).get("uuid")
                uuid = raw_uuid.hex() if isinstance(raw_uuid, Binary) else None
                meta: dict[str, Any] = {
                    "indexes": indexes,
                    "uuid": uuid or "",
                    "collectionName": name,
                    "type": kind,
                    "options": dict(info.get("options", {})),
                }
                text = json_util.dumps(meta, json_options=json_util.CANONICAL_JSON_OPTIONS)
                found.append(CollectionInfo(name, kind, text, uuid, indexes))
        return found

    def count(self, db: str, collection: str) -> int:
        with self.mongo.errors(f"counting {db}.{collection}"):
            return int(self.mongo.client[db][collection].count_documents({}))

    def estimated_count(self, db: str, collection: str) -> int:
        with self.mongo.errors(f"counting {db}.{collection}"):
            return int(self.mongo.client[db][collection].estimated_document_count())

    def raw_batches(self, db: str, collection: str, batch_size: int = 2000) -> Iterator[bytes]:
        """The collection's documents as raw BSON, one bytes object per server batch."""
        with self._long_read(f"reading {db}.{collection}"):
            cursor = self.mongo.client[db][collection].find_raw_batches(
                {}, batch_size=batch_size, sort=None
            )
            try:
                yield from cursor
            finally:
                cursor.close()

    def insert_raw(self, db: str, collection: str, documents: Sequence[bytes]) -> None:
        """Insert documents given as raw BSON, unordered, as they are (no re-encoding)."""
        from bson.raw_bson import RawBSONDocument

        docs = [RawBSONDocument(raw) for raw in documents]
        with self.mongo.errors(f"inserting into {db}.{collection}"):
            self.mongo.client[db][collection].insert_many(docs, ordered=False)

    def collection_names(self, db: str) -> list[str]:
        with self.mongo.errors(f"listing the collections of {db}"):
            return sorted(self.mongo.client[db].list_collection_names())

    def drop_collection(self, db: str, collection: str) -> None:
        with self.mongo.errors(f"dropping {db}.{collection}"):
            self.mongo.client[db].drop_collection(collection)

    def drop_database(self, db: str) -> None:
        with self.mongo.errors(f"dropping the database {db}"):
            self.mongo.client.drop_database(db)

    def create_collection(self, db: str, collection: str, metadata_json: str) -> None:
        """Create the collection with the options of its mongodump metadata."""
        from bson import json_util

        meta = json_util.loads(metadata_json)
        options = dict(meta.get("options") or {})
        with self.mongo.errors(f"creating {db}.{collection}"):
            self.mongo.client[db].command({"create": collection, **options})

    def create_indexes(self, db: str, collection: str, metadata_json: str) -> list[str]:
        """Build the indexes named in the collection's mongodump metadata (not _id's)."""
        from bson import json_util

        meta = json_util.loads(metadata_json)
        specs = [dict(s) for s in meta.get("indexes", []) if s.get("name") != "_id_"]
        for spec in specs:
            spec.pop("ns", None)
        if not specs:
            return []
        with self.mongo.errors(f"building the indexes of {db}.{collection}"):
            self.mongo.client[db].command({"createIndexes": collection, "indexes": specs})
        return [str(s["name"]) for s in specs]

    def index_names(self, db: str, collection: str) -> list[str]:
        with self.mongo.errors(f"listing the indexes of {db}.{collection}"):
            return sorted(str(i["name"]) for i in self.mongo.client[db][collection].list_indexes())

    # -- the oplog -----------------------------------------------------------------------

    def oplog_first(self) -> OplogTime | None:
        """The oldest entry's ts (None without an oplog): where the oplog reaches back to."""
        from pymongo.errors import OperationFailure

        with self._long_read("reading the oplog"):
            try:
                first = self.mongo.client.local[OPLOG].find_one(
                    {}, {"ts": 1}, sort=[("$natural", 1)]
                )
            except OperationFailure:
                return None
        return (first["ts"].time, first["ts"].inc) if first is not None else None

    def oplog_bounds(self) -> tuple[OplogTime, OplogTime] | None:
        """The oldest and newest entry's ts, or None when the server keeps no oplog."""
        from pymongo.errors import OperationFailure

        oplog = self.mongo.client.local[OPLOG]
        with self._long_read("reading the oplog"):
            try:
                first = oplog.find_one({}, {"ts": 1}, sort=[("$natural", 1)])
                last = oplog.find_one({}, {"ts": 1}, sort=[("$natural", -1)])
            except OperationFailure:
                return None
        if first is None or last is None:
            return None
        return (first["ts"].time, first["ts"].inc), (last["ts"].time, last["ts"].inc)

    def oplog_raw(
        self,
        after: OplogTime,
        *,
        db: str | None = None,
        inclusive: bool = False,
        until: OplogTime | None = None,
    ) -> Iterator[bytes]:
        """Raw oplog entries with ts > ``after`` (>= when ``inclusive``), oldest first;
        with ``db``, only those of that database (and admin commands: mongod's
        transactions are ``applyOps`` entries on ``admin.$cmd``).

        The ts range is the query's top-level field and the order natural, which mongod
        answers by seeking to ``after`` instead of scanning the history before it
        (SecantusDB scans its oplog for any query: one scan per call)."""
        import re

        from bson.timestamp import Timestamp

        ts: dict[str, Any] = {"$gte" if inclusive else "$gt": Timestamp(*after)}
        if until is not None:
            ts["$lte"] = Timestamp(*until)
        query: dict[str, Any] = {"ts": ts}
        if db is not None:
            query["$or"] = [{"ns": {"$regex": f"^{re.escape(db)}\\."}}, {"ns": "admin.$cmd"}]
        with self._long_read("reading the oplog"):
            cursor = self.mongo.client.local[OPLOG].find_raw_batches(query, sort=[("$natural", 1)])
            try:
                for batch in cursor:
                    yield from split_documents(batch)  # type: ignore[arg-type]  # raw bytes, typed as a document
            finally:
                cursor.close()

    # -- replay (restore --until) --------------------------------------------------------

    def apply_writes(self, db: str, collection: str, writes: Sequence[ReplayWrite]) -> None:
        """Replayed writes to one collection, in their order, as one ordered bulk write
        (pymongo splits it at the server's message size): ``("replace", _id, document)``
        upserts the whole document, ``("update", _id, update)`` applies an update document,
        ``("delete", _id, None)`` deletes. One round trip per batch instead of per write."""
        from pymongo import DeleteOne, ReplaceOne, UpdateOne

        ops: list[Any] = []
        for kind, doc_id, payload in writes:
            if kind == "replace":
                ops.append(ReplaceOne({"_id": doc_id}, payload, upsert=True))
            elif kind == "update":
                ops.append(UpdateOne({"_id": doc_id}, payload))
            elif kind == "delete":
                ops.append(DeleteOne({"_id": doc_id}))
            else:
                raise ValueError(f"unknown replayed write {kind!r}")
        with self.mongo.errors(f"replaying {len(ops)} write(s) on {db}.{collection}"):
            self.mongo.client[db][collection].bulk_write(ops, ordered=True)

    def replay_command(self, db: str, command: Mapping[str, Any]) -> None:
        """Run a logged collection command again; one whose effect is already there (the
        collection exists, or is gone) is done, as an oplog replay must be idempotent."""
        from pymongo.errors import OperationFailure

        name = next(iter(command))
        with self.mongo.errors(f"replaying {name} on {db}"):
            try:
                self.mongo.client[db].command(dict(command))
            except OperationFailure as exc:
                if exc.code in ALREADY_DONE.get(name, ()):
                    return
                raise

    def rename_collection(self, db: str, source: str, to: str, *, drop_target: bool) -> None:
        with self.mongo.errors(f"renaming {db}.{source} to {to}"):
            self.mongo.client.admin.command(
                "renameCollection", f"{db}.{source}", to=f"{db}.{to}", dropTarget=drop_target
            )


def split_documents(data: bytes | memoryview) -> Iterator[bytes]:
    """The BSON documents of a concatenation (a .bson file or a raw batch), undecoded."""
    view = memoryview(data)
    pos = 0
    end = len(view)
    while pos < end:
        if end - pos < 5:
            raise OperationFailed("truncated BSON: a document is cut short")
        size = int.from_bytes(view[pos : pos + 4], "little")
        if size < 5 or pos + size > end:
            raise OperationFailed("truncated BSON: a document is cut short")
        yield bytes(view[pos : pos + size])
        pos += size


def decode(raw: bytes) -> Mapping[str, Any]:
    """One oplog entry, for the replay to read. Its sub-documents stay raw BSON, so the
    documents and values the replay writes back are the bytes the server logged."""
    from bson.raw_bson import RawBSONDocument

    return RawBSONDocument(raw)


def oplog_time(entry: Mapping[str, Any]) -> OplogTime:
    ts = entry["ts"]
    return int(ts.time), int(ts.inc)


def oplog_ts_of_raw(raw: bytes) -> OplogTime:
    """The ``ts`` of a raw oplog entry, reading only that field."""
    from bson.raw_bson import RawBSONDocument

    ts = RawBSONDocument(raw)["ts"]
    return int(ts.time), int(ts.inc)
