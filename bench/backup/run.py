"""bench/backup: `backup create` / `backup restore` against floors and a naive loop, same run.

    .venv/bin/python bench/backup/run.py [--skip-naive] [--create-only]

The database (>= 300 MB of BSON in four collections) is built once and reused (seed.py,
server.py). Each figure is measured on the same server in the same run:

- read floor: find_raw_batches of every collection to nowhere (sequential, and with the
  tool's parallelism; the faster counts);
- `backup create` (the CLI, in-process);
- naive: find() -> bson.encode -> gzip, one collection at a time;
- insert floor: unordered insert_many of raw batches held in memory (sequential, and with the
  tool's parallelism; the faster counts);
- `backup restore --db ... --drop --yes` into a new database, and once more over it (each
  collection then written beside the existing one and renamed over it);
- the same index builds on the insert floor's copy (a restore must build them too);
- naive restore: gzip -> bson.decode_all -> insert_many, one collection at a time, then the
  same index builds.

Targets: create <= 1.15x the read floor; restore <= 1.15x the insert floor plus the same
index builds (on SecantusDB building indexes takes about as long as inserting); both >= 3x
faster than naive. The tool runs with the backup.parallelism it chooses itself (printed), or
BENCH_PARALLELISM. BENCH_BACKUP_MB=N seeds a database of about N MB instead of 320.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "src"))

from server import DB, Server, ensure_seeded  # noqa: E402

#: the floors' parallel variant; the tool runs with backup.parallelism (BENCH_PARALLELISM
#: overrides it, e.g. 1 for a server that slows down under parallel cursors)
PARALLELISM = 4


#: the floors and the tool run this many times (best counts): the machine is shared
REPEAT = int(os.environ.get("BENCH_REPEAT", "2"))


def timed(label: str, fn: Callable[[], Any], repeat: int = 1) -> float:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    took = min(runs)
    shown = "  ".join(f"{r:6.2f}" for r in runs)
    print(f"  {label:<42} {took:7.2f} s   (runs: {shown})", flush=True)
    return took


def gzip_engine() -> str:
    try:
        import isal  # noqa: F401

        return "ISA-L (python-isal)"
    except ImportError:
        return "zlib"


def build_indexes(client: Any, source: str, target: str, names: list[str]) -> None:
    """The source's indexes on the target (what a restore must build besides the data)."""
    for name in names:
        specs = [dict(s) for s in client[source][name].list_indexes() if s["name"] != "_id_"]
        for spec in specs:
            spec.pop("ns", None)
        if specs:
            client[target].command({"createIndexes": name, "indexes": specs})


def main() -> None:
    import bson
    from bson.raw_bson import RawBSONDocument
    from pymongo import MongoClient

    from travellr_ops.cli.app import run
    from travellr_ops.settings import Settings

    skip_naive = "--skip-naive" in sys.argv
    server = Server().start()
    work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    try:
        sizes = ensure_seeded(server)
        total_mb = sum(sizes.values()) / 1e6
        client: Any = MongoClient(server.uri, maxPoolSize=16)
        db = client[DB]
        names = sorted(sizes)
        print(f"database: {total_mb:.0f} MB of BSON in {', '.join(names)}")
        backup: dict[str, Any] = {"dir": work / "backups"}
        if os.environ.get("BENCH_PARALLELISM"):
            backup["parallelism"] = int(os.environ["BENCH_PARALLELISM"])
        settings = Settings(
            mongo={"uri": server.uri, "timeout_s": 30}, backup=backup, state_dir=work / "state"
        )
        from travellr_ops.ops.backup.create import choose_parallelism
        from travellr_ops.runtime import Runtime

        with Runtime(settings).dump() as probe:
            chosen = choose_parallelism(settings, probe)
        print(f"backup.parallelism = {chosen.workers} ({chosen.source}); gzip by {gzip_engine()}")

        def read_one(name: str) -> None:
            for _ in db[name].find_raw_batches({}):
                pass

        def read_seq() -> None:
            for name in names:
                read_one(name)

        def read_par() -> None:
            with ThreadPoolExecutor(PARALLELISM) as pool:
                list(pool.map(read_one, names))

        def tool_create() -> None:
            code = run(["--quiet", "backup", "create"], settings=settings)
            assert code == 0, f"backup create exited {code}"

        naive_dir = work / "naive"
        naive_dir.mkdir()

        def naive_create() -> None:
            for name in names:
                with gzip.open(naive_dir / f"{name}.bson.gz", "wb") as fh:
                    for doc in db[name].find({}):
                        fh.write(bson.encode(doc))

        print("create:")
        floor_seq = timed("read floor, sequential", read_seq, REPEAT)
        floor_par = timed(f"read floor, {PARALLELISM} collections at once", read_par, REPEAT)
        create_t = timed("backup create", tool_create, REPEAT)
        naive_c = timed("naive find/encode/gzip loop", naive_create) if not skip_naive else None
        read_floor = min(floor_seq, floor_par)
        if "--create-only" in sys.argv:
            print(f"\ncreate:  {create_t / read_floor:.2f}x the read floor (target <= 1.15x)")
            return

        backup_name = sorted(p.name for p in (work / "backups").iterdir() if p.name[0] != ".")[-1]
        raw: dict[str, list[list[bytes]]] = {}
        for name in names:
            batches, batch, size = [], [], 0
            with gzip.open(work / "backups" / backup_name / DB / f"{name}.bson.gz") as fh:
                data = fh.read()
            view = memoryview(data)
            pos = 0
            while pos < len(data):
                n = int.from_bytes(view[pos : pos + 4], "little")
                batch.append(bytes(view[pos : pos + n]))
                size += n
                pos += n
                if size >= 8 << 20:
                    batches.append(batch)
                    batch, size = [], 0
            if batch:
                batches.append(batch)
            raw[name] = batches

        def insert_one(target: str, name: str) -> None:
            coll = client[target][name]
            for batch in raw[name]:
                coll.insert_many([RawBSONDocument(d) for d in batch], ordered=False)

        def insert_seq() -> None:
            client.drop_database("floor_seq")
            for name in names:
                insert_one("floor_seq", name)

        def insert_par() -> None:
            client.drop_database("floor_par")
            with ThreadPoolExecutor(PARALLELISM) as pool:
                list(pool.map(lambda n: insert_one("floor_par", n), names))

        def tool_restore() -> None:
            client.drop_database("restored")
            restore_over()

        def restore_over() -> None:
            code = run(
                [
                    "--quiet",
                    "backup",
                    "restore",
                    backup_name,
                    "--db",
                    "restored",
                    "--drop",
                    "--yes",
                ],
                settings=settings,
            )
            assert code == 0, f"backup restore exited {code}"

        def naive_restore() -> None:
            client.drop_database("naive")
            for name in names:
                with gzip.open(naive_dir / f"{name}.bson.gz", "rb") as fh:
                    docs = bson.decode_all(fh.read())
                for i in range(0, len(docs), 1000):
                    client["naive"][name].insert_many(docs[i : i + 1000])
            build_indexes(client, DB, "naive", names)

        def index_floor() -> None:
            build_indexes(client, DB, best_floor_db, names)

        print("restore:")
        ins_seq = timed("insert floor, sequential", insert_seq, REPEAT)
        ins_par = timed(f"insert floor, {PARALLELISM} collections at once", insert_par, REPEAT)
        best_floor_db = "floor_seq" if ins_seq <= ins_par else "floor_par"
        index_t = timed("  + building the same indexes on it", index_floor)
        client.drop_database("floor_seq")
        client.drop_database("floor_par")
        restore_t = timed("backup restore into a new database", tool_restore, REPEAT)
        over_t = timed("backup restore over it (--drop: staged, renamed)", restore_over)
        client.drop_database("restored")
        naive_r = timed("naive decode/insert loop", naive_restore) if not skip_naive else None
        client.drop_database("naive")
        insert_floor = min(ins_seq, ins_par)

        print()
        print(f"create:  {create_t / read_floor:.2f}x the read floor (target <= 1.15x)", end="")
        print(f", {naive_c / create_t:.1f}x faster than naive (target >= 3x)" if naive_c else "")
        print(
            f"restore: {restore_t / (insert_floor + index_t):.2f}x the insert floor plus the same"
            f" index builds (target <= 1.15x); {restore_t / insert_floor:.2f}x the bare insert"
            " floor",
            end="",
        )
        print(f", {naive_r / restore_t:.1f}x faster than naive (target >= 3x)" if naive_r else "")
        print(
            f"restore over the existing collections: {over_t / (insert_floor + index_t):.2f}x"
            " the insert floor plus index builds (each collection is written beside its"
            " original and renamed over it)"
        )
        print(
            f"throughput: read floor {total_mb / read_floor:.1f} MB/s, create "
            f"{total_mb / create_t:.1f} MB/s, insert floor {total_mb / insert_floor:.1f} MB/s, "
            f"restore {total_mb / restore_t:.1f} MB/s"
        )
        client.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
