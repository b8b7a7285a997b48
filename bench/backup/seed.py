"""The benchmark's database: >= 300 MB of BSON in four Travellr collections, built once.

Kept in a SecantusDB data directory outside the checkout (BENCH_BACKUP_DIR, default
/var/tmp/travellr-bench-backup) and reused while its marker file says it is complete.
"""

from __future__ import annotations

import os
import random
import string
from datetime import UTC, datetime, timedelta
from typing import Any

#: BENCH_BACKUP_MB sets a smaller (or larger) database; the default is the figure's size
TARGET_BYTES = int(float(os.environ.get("BENCH_BACKUP_MB", "320")) * 1024 * 1024)
COLLECTIONS = {"users": 0.2, "trips": 0.2, "bookings": 0.35, "searches": 0.25}
WORDS = [
    "".join(random.Random(i).choices(string.ascii_lowercase, k=3 + i % 8)) for i in range(2000)
]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(WORDS, k=words))


def make_doc(name: str, i: int, rng: random.Random) -> dict[str, Any]:
    now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i)
    base: dict[str, Any] = {"seq": i, "createdAt": now, "updatedAt": now}
    if name == "users":
        base.update(
            email=f"user{i}@example.com",
            name=_text(rng, 2),
            bio=_text(rng, 250),
            prefs={"lang": rng.choice(["en", "pt", "ja"]), "tags": rng.sample(WORDS, 8)},
        )
    elif name == "trips":
        base.update(
            tripId=i,
            destination=_text(rng, 1),
            price=rng.uniform(50, 5000),
            itinerary=[{"day": d, "plan": _text(rng, 30)} for d in range(8)],
        )
    elif name == "bookings":
        base.update(
            userId=rng.randrange(100_000),
            tripId=rng.randrange(50_000),
            status=rng.choice(["confirmed", "pending", "cancelled"]),
            seats=rng.randint(1, 6),
            notes=_text(rng, 120),
            payments=[{"amount": rng.uniform(10, 900), "ref": _text(rng, 2)} for _ in range(4)],
        )
    else:
        base.update(
            userId=rng.randrange(100_000),
            query=_text(rng, 4),
            results=[rng.randrange(50_000) for _ in range(100)],
            filters={"from": now, "to": now + timedelta(days=7), "text": _text(rng, 60)},
        )
    return base


def seed(client: Any, db_name: str) -> dict[str, int]:
    import bson

    db = client[db_name]
    db.client.drop_database(db_name)
    sizes: dict[str, int] = {}
    for name, share in COLLECTIONS.items():
        rng = random.Random(name)
        goal = int(TARGET_BYTES * share)
        total = 0
        i = 0
        while total < goal:
            batch = [make_doc(name, i + k, rng) for k in range(1000)]
            i += len(batch)
            total += sum(len(bson.encode(d)) for d in batch)
            db[name].insert_many(batch, ordered=False)
        db[name].create_index("seq")
        if name in ("bookings", "searches"):
            db[name].create_index([("userId", 1), ("createdAt", -1)])
        sizes[name] = total
    return sizes
