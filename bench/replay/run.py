"""bench/replay: how fast `backup restore --until` replays the oplog, against the server's
own floor, on a SecantusDB replica set of the bench's own.

    .venv/bin/python bench/replay/run.py [--inserts 20000] [--updates 5000] [--deletes 1000]
                                         [--batch 1000] [--repeat 2]

A workload like the recovery bench's writer (bookings inserted one at a time, some updated,
some deleted) is written to a source database; its oplog entries are read back raw, as the
restore reads an archive. Then, each into a fresh database of the same server:

- ``one write a round trip``: the replay with batches of 1, i.e. what it did before batching
  (one replace_one / update_one / delete_one per logged write);
- ``batched``: the replay as `backup restore` runs it (``REPLAY_BATCH`` writes per bulk write);
- ``floor``: the server's raw insert floor, the final documents inserted as raw BSON batches
  (insert_many), which is what any replay must at least pay to get that data in.

Each replayed database must equal the source, document for document, or the bench fails.
Printed: entries/s of each, and the batched replay's time as a ratio to the floor and to the
one-write-a-round-trip loop.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "recovery"))
sys.path.insert(0, str(HERE.parents[1] / "src"))

from run import Mongo, free_port  # noqa: E402  # bench/recovery's server and port helpers

SOURCE = "replay_source"


def workload(client: Any, inserts: int, updates: int, deletes: int) -> None:
    """Acknowledged writes one at a time, as the app makes them."""
    coll = client[SOURCE].bookings
    rng = random.Random(7)
    for i in range(inserts):
        coll.insert_one(
            {"_id": i, "tripId": f"trip-{i % 500}", "userId": f"user-{rng.randrange(5000)}",
             "status": "pending", "seats": rng.randrange(1, 5), "total": rng.random() * 900,
             "createdAt": time.time()}
        )  # fmt: skip
    for i in rng.sample(range(inserts), updates):
        coll.update_one({"_id": i}, {"$set": {"status": "confirmed"}, "$inc": {"seats": 1}})
    for i in rng.sample(range(inserts), deletes):
        coll.delete_one({"_id": i})


def documents(client: Any, db: str) -> list[Any]:
    return sorted(client[db].bookings.find(), key=lambda d: d["_id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inserts", type=int, default=20000)
    parser.add_argument("--updates", type=int, default=5000)
    parser.add_argument("--deletes", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=None, help="(REPLAY_BATCH)")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    from bson.raw_bson import RawBSONDocument
    from pymongo import MongoClient

    from travellr_ops.adapters.mongo import MongoAdapter
    from travellr_ops.adapters.mongo_dump import MongoDump, split_documents
    from travellr_ops.ops.backup.restore import REPLAY_BATCH, Until, replay

    batch = args.batch or REPLAY_BATCH
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        mongo = Mongo(free_port(), Path(tmp) / "mongo")
        mongo.start()
        try:
            client: Any = MongoClient("127.0.0.1", mongo.port, directConnection=True)
            adapter = MongoAdapter(f"mongodb://127.0.0.1:{mongo.port}/{SOURCE}", SOURCE)
            dump = MongoDump(adapter)
            bounds = dump.oplog_bounds()
            after = bounds[1] if bounds else (0, 0)
            print(
                f"workload: {args.inserts} inserts, {args.updates} updates, {args.deletes}"
                " deletes, one acknowledged write at a time"
            )
            workload(client, args.inserts, args.updates, args.deletes)
            raw = list(dump.oplog_raw(after, db=SOURCE))
            expected = documents(client, SOURCE)
            print(f"oplog entries to replay: {len(raw)}; documents at the end: {len(expected)}")
            until = Until.parse("2999-01-01T00:00:00Z")
            times: dict[str, list[float]] = {"one write a round trip": [], "batched": [],
                                             "floor": []}  # fmt: skip
            for r in range(args.repeat):
                for label, size in (("one write a round trip", 1), ("batched", batch)):
                    target = f"replay_{size}_{r}"
                    t0 = time.perf_counter()
                    applied, skipped = replay(dump, iter(raw), SOURCE, target, None, until,
                                              batch=size)  # fmt: skip
                    times[label].append(time.perf_counter() - t0)
                    if applied != len(raw) or skipped or documents(client, target) != expected:
                        sys.exit(f"FAIL: the {label} replay does not equal the source")
                    client.drop_database(target)
                target = f"replay_floor_{r}"
                docs = [RawBSONDocument(d) for b in client[SOURCE].bookings.find_raw_batches()
                        for d in split_documents(b)]  # fmt: skip
                t0 = time.perf_counter()
                for i in range(0, len(docs), 1000):
                    client[target].bookings.insert_many(docs[i : i + 1000], ordered=False)
                times["floor"].append(time.perf_counter() - t0)
                client.drop_database(target)
            print(f"\n{'way':<24}{'median s':>10}{'entries/s':>12}")
            med = {k: statistics.median(v) for k, v in times.items()}
            for label, seconds in med.items():
                rate = (len(raw) if label != "floor" else len(expected)) / seconds
                print(f"{label:<24}{seconds:>10.2f}{rate:>12,.0f}")
            print(
                f"\nbatched (batch {batch}): {med['batched'] / med['floor']:.2f}x the raw insert"
                f" floor, {med['one write a round trip'] / med['batched']:.1f}x faster than one"
                " write a round trip"
            )
            adapter.close()
            client.close()
        finally:
            mongo.discard()


if __name__ == "__main__":
    main()
