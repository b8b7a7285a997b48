"""Oplog entries turned into plain writes, for servers that offer no ``applyOps``.

Understands both update formats that servers write for ``$v: 2``:

- SecantusDB: ``{"$v": 2, "diff": {"updatedFields": {...}, "removedFields": [...],
  "truncatedArrays": [{"field": f, "newSize": n}]}}`` (dotted paths);
- mongod: ``{"$v": 2, "diff": {"u": {...}, "i": {...}, "d": {f: false}, "s<field>": subdiff}}``
  where an array's sub-diff has ``"a": true``, an optional new length ``"l"``, and
  ``"u<index>"`` / ``"s<index>"`` entries;

plus full replacements, legacy ``$set``/``$unset`` updates, and transactions (several
entries sharing one ``ts``, or mongod's ``applyOps`` command entry). Every write produced is
idempotent (inserts become upserting replacements; diffs carry resulting values), so an entry
replayed onto data that already holds it changes nothing, as ``mongorestore --oplogReplay``
relies on too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["replace", "update", "delete", "command"]

#: commands the replay carries out; any other command entry is reported and skipped
REPLAYED_COMMANDS = ("create", "drop", "createIndexes", "dropIndexes", "renameCollection")

#: fields of logged index specs that are no createIndexes options
INTERNAL_INDEX_FIELDS = frozenset({"entryFormat", "ns"})


@dataclass
class Write:
    kind: Kind
    collection: str
    doc_id: Any = None
    #: replace: the whole document
    document: Any = None
    #: update: update documents applied in order (a truncation must precede the sets)
    updates: list[dict[str, Any]] = field(default_factory=list)
    #: command: the command document, with collection names of the target database
    command: dict[str, Any] | None = None


class UnsupportedEntry(ValueError):
    """An oplog entry this replay cannot turn into writes."""


def writes_for(entry: Mapping[str, Any], db: str) -> list[Write]:
    """The writes that reproduce ``entry`` on database ``db`` (none for other databases)."""
    op = entry.get("op")
    ns = str(entry.get("ns", ""))
    if op == "n":
        return []
    if op == "c":
        return _command(entry, ns, db)
    entry_db, _, collection = ns.partition(".")
    if entry_db != db or not collection:
        return []
    o = entry["o"]
    if op == "i":
        return [Write("replace", collection, o["_id"], document=o)]
    if op == "d":
        return [Write("delete", collection, o["_id"])]
    if op == "u":
        doc_id = entry["o2"]["_id"]
        if not any(str(key).startswith("$") for key in o):
            return [Write("replace", collection, doc_id, document=o)]
        return [Write("update", collection, doc_id, updates=update_documents(o))]
    raise UnsupportedEntry(f"unknown oplog operation {op!r} on {ns}")


def _command(entry: Mapping[str, Any], ns: str, db: str) -> list[Write]:
    o = entry["o"]
    if "applyOps" in o:  # mongod's transaction: one command entry holding every write
        writes: list[Write] = []
        for inner in o["applyOps"]:
            writes.extend(writes_for(inner, db))
        return writes
    if ns.partition(".")[0] != db:
        return []
    name = next(iter(o))
    if name == "dropDatabase":
        # both SecantusDB and mongod (4.2+) log a drop entry for each collection first
        return []
    if name not in REPLAYED_COMMANDS:
        raise UnsupportedEntry(f"oplog command {name!r} is not replayed")
    command = {str(k): v for k, v in o.items()}
    if name == "createIndexes" and "indexes" not in command:
        # mongod logs one index per entry: {createIndexes: coll, v, key, name, ...}
        spec = {k: v for k, v in command.items() if k != "createIndexes"}
        command = {"createIndexes": command["createIndexes"], "indexes": [spec]}
    if name == "createIndexes":
        # servers log internal fields (SecantusDB's entryFormat, mongod's ns) that a
        # createIndexes command refuses
        command["indexes"] = [
            {k: v for k, v in dict(spec).items() if k not in INTERNAL_INDEX_FIELDS}
            for spec in command["indexes"]
        ]
    if name == "dropIndexes" and "index" not in command:
        command = {"dropIndexes": command["dropIndexes"], "index": command.get("indexName", "*")}
    if name == "renameCollection":
        source = str(command["renameCollection"]).partition(".")[2]
        to_db, _, target = str(command["to"]).partition(".")
        if to_db != db:  # moved to another database: gone from this one
            return [Write("command", source, command={"drop": source})]
        # collection names only (the replay names the databases); dropTarget is logged as
        # the dropped collection's UUID, or true
        renamed = {"renameCollection": source, "to": target}
        return [Write("command", source, command={**renamed, "dropTarget": "dropTarget" in o})]
    return [Write("command", str(command[name]), command=command)]


def update_documents(o: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Update documents (``$set``/``$unset``/array truncation) equivalent to an update entry."""
    if o.get("$v") == 2 and "diff" in o:
        diff = o["diff"]
        if any(k in diff for k in ("updatedFields", "removedFields", "truncatedArrays")):
            # kept as the raw sub-document: its values go back byte for byte (an int64 stays
            # an int64, which a decoded dict would turn into an int32)
            sets = diff.get("updatedFields") or {}
            unsets = list(diff.get("removedFields") or [])
            truncations = [
                (t["field"], int(t["newSize"])) for t in diff.get("truncatedArrays") or []
            ]
        else:
            flat: dict[str, Any] = {}
            sets, unsets, truncations = flat, [], []
            _flatten_mongod_diff(diff, "", flat, unsets, truncations)
        return _as_updates(sets, unsets, truncations)
    # legacy (v1) update entries are update documents already
    update = {k: v for k, v in o.items() if k != "$v"}
    return [update] if update else []


def _as_updates(
    sets: Mapping[str, Any], unsets: list[str], truncations: list[tuple[str, int]]
) -> list[dict[str, Any]]:
    updates: list[dict[str, Any]] = [
        {"$push": {path: {"$each": [], "$slice": size}}} for path, size in truncations
    ]
    last: dict[str, Any] = {}
    if sets:
        last["$set"] = sets
    if unsets:
        last["$unset"] = {path: "" for path in unsets}
    if last:
        updates.append(last)
    return updates


def _flatten_mongod_diff(
    diff: Mapping[str, Any],
    prefix: str,
    sets: dict[str, Any],
    unsets: list[str],
    truncations: list[tuple[str, int]],
) -> None:
    if diff.get("a") is True:  # an array's sub-diff
        if "l" in diff:
            truncations.append((prefix.rstrip("."), int(diff["l"])))
        for key, value in diff.items():
            if key in ("a", "l"):
                continue
            if key.startswith("u"):
                sets[f"{prefix}{key[1:]}"] = value
            elif key.startswith("s"):
                _flatten_mongod_diff(value, f"{prefix}{key[1:]}.", sets, unsets, truncations)
        return
    for key, value in diff.items():
        if key in ("u", "i"):
            for name, new in value.items():
                sets[f"{prefix}{name}"] = new
        elif key == "d":
            unsets.extend(f"{prefix}{name}" for name in value)
        elif key.startswith("s"):
            _flatten_mongod_diff(value, f"{prefix}{key[1:]}.", sets, unsets, truncations)
        else:
            raise UnsupportedEntry(f"unknown field {key!r} in an update diff")
