#!/usr/bin/env python3
"""Seed a Travellr database with realistic users, trips, bookings and searches.

    seed.py [--uri mongodb://127.0.0.1:27017/travellr] [--scale 1.0] [--quiet]

The database named in the URI is dropped and refilled. --scale 1.0 gives 5,000 users,
10,000 trips, 40,000 bookings and 20,000 searches (75,000 documents); tests use 0.02.
Every user's password is SEED_PASSWORD ("travellr-demo"): the backend's login accepts it.

Indexes created (the app's index set, as the shipped indexes.toml declares it):
    users     {email: 1}                 unique
    users     {referralCode: 1}          sparse, unique (only some users have a code)
    trips     {destination: 1, startDate: 1}
    bookings  {userId: 1, createdAt: -1}
    searches  {createdAt: 1}             TTL, expireAfterSeconds 2592000 (30 days)
    searches  {userId: 1, createdAt: -1}
The ONE index deliberately missing (for `db indexes analyze` to find and `ensure` to add):
    bookings  {tripId: 1, status: 1}     used by GET /api/bookings?tripId=..&status=..
so `bookings.find({tripId: X, status: "confirmed"})` is a COLLSCAN.

Stdlib + pymongo only (it also runs under Debian's python3-pymongo 3.11).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from datetime import UTC, datetime, timedelta

from pymongo import ASCENDING, DESCENDING, MongoClient

SEED_PASSWORD = "travellr-demo"
BATCH = 2000
PER_SCALE = {"users": 5000, "trips": 10000, "bookings": 40000, "searches": 20000}

FIRST = [
    "Ana",
    "Ben",
    "Chloe",
    "David",
    "Emma",
    "Farid",
    "Grace",
    "Hugo",
    "Ines",
    "Jonas",
    "Kenji",
    "Lea",
    "Mateo",
    "Nora",
    "Omar",
    "Priya",
]
LAST = [
    "Silva",
    "Smith",
    "Tanaka",
    "Müller",
    "Rossi",
    "Dubois",
    "Kowalski",
    "Haddad",
    "Novak",
    "Okafor",
    "Garcia",
    "Chen",
]
DESTINATIONS = [
    ("Lisbon", "Portugal"),
    ("Kyoto", "Japan"),
    ("Lima", "Peru"),
    ("Oslo", "Norway"),
    ("Cairo", "Egypt"),
    ("Hanoi", "Vietnam"),
    ("Paris", "France"),
    ("Cusco", "Peru"),
    ("Reykjavik", "Iceland"),
    ("Marrakesh", "Morocco"),
    ("Bali", "Indonesia"),
    ("Cape Town", "South Africa"),
    ("Vancouver", "Canada"),
    ("Santorini", "Greece"),
    ("Queenstown", "New Zealand"),
    ("Havana", "Cuba"),
    ("Prague", "Czechia"),
    ("Petra", "Jordan"),
    ("Banff", "Canada"),
    ("Zanzibar", "Tanzania"),
]
KINDS = ["city break", "trek", "beach", "cruise", "safari", "food tour", "ski", "road trip"]
STATUSES = ["confirmed"] * 6 + ["pending"] * 2 + ["cancelled", "completed"]


def password_hash(password: str, salt: bytes) -> str:
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 1000)
    return f"pbkdf2_sha256$1000${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, iterations, salt, digest = stored.split("$")
    except ValueError:
        return False
    got = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
    return got.hex() == digest


def insert(coll, docs, quiet: bool) -> None:
    for i in range(0, len(docs), BATCH):
        coll.insert_many(docs[i : i + BATCH], ordered=False)
    if not quiet:
        print(f"  {coll.name}: {len(docs)}", file=sys.stderr)


def seed(uri: str, scale: float, quiet: bool = False) -> dict[str, int]:
    rng = random.Random(20261128)
    n = {k: max(1, int(v * scale)) for k, v in PER_SCALE.items()}
    client = MongoClient(uri, serverSelectionTimeoutMS=10000)
    db = client.get_default_database()
    client.drop_database(db.name)
    now = datetime.now(UTC).replace(microsecond=0)

    # One salt for the whole run keeps a 5k-user seed fast; each hash is still real PBKDF2.
    hashed = password_hash(SEED_PASSWORD, bytes(rng.getrandbits(8) for _ in range(16)))
    users = []
    for i in range(n["users"]):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        user = {
            "email": f"{first.lower()}.{last.lower()}{i}@example.com",
            "name": f"{first} {last}",
            "passwordHash": hashed,
            "createdAt": now - timedelta(days=rng.randrange(1, 900)),
            "preferences": {
                "currency": rng.choice(["EUR", "USD", "GBP", "JPY"]),
                "newsletter": rng.random() < 0.4,
            },
            "role": "admin" if i == 0 else "customer",
        }
        if rng.random() < 0.15:
            user["referralCode"] = f"REF{i:06d}"
        users.append(user)
    insert(db.users, users, quiet)
    user_ids = [u["_id"] for u in users]

    trips = []
    for i in range(n["trips"]):
        city, country = DESTINATIONS[i % len(DESTINATIONS)]
        start = now + timedelta(days=rng.randrange(-120, 365))
        kind = rng.choice(KINDS)
        trips.append(
            {
                "title": f"{kind.title()} in {city}",
                "destination": city,
                "country": country,
                "kind": kind,
                "startDate": start,
                "endDate": start + timedelta(days=rng.randrange(2, 21)),
                "price": {"amount": rng.randrange(150, 6000), "currency": "EUR"},
                "capacity": rng.randrange(8, 40),
                "rating": round(rng.uniform(3.0, 5.0), 1),
                "bookingsCount": 0,
                "createdAt": now - timedelta(days=rng.randrange(1, 600)),
            }
        )
    insert(db.trips, trips, quiet)
    trip_ids = [t["_id"] for t in trips]
    popular = trip_ids[: max(1, len(trip_ids) // 50)]

    bookings = []
    for _ in range(n["bookings"]):
        # A fifth of the bookings go to the popular 2 % of trips, as in real traffic.
        trip = rng.choice(popular) if rng.random() < 0.2 else rng.choice(trip_ids)
        seats = rng.randrange(1, 5)
        bookings.append(
            {
                "userId": rng.choice(user_ids),
                "tripId": trip,
                "status": rng.choice(STATUSES),
                "seats": seats,
                "total": {"amount": seats * rng.randrange(150, 6000), "currency": "EUR"},
                "createdAt": now - timedelta(minutes=rng.randrange(1, 60 * 24 * 365)),
            }
        )
    insert(db.bookings, bookings, quiet)

    searches = []
    for _ in range(n["searches"]):
        city, _country = rng.choice(DESTINATIONS)
        searches.append(
            {
                "userId": rng.choice(user_ids) if rng.random() < 0.7 else None,
                "destination": city,
                "filters": {
                    "maxPrice": rng.choice([None, 500, 1000, 2500]),
                    "kind": rng.choice([None, *KINDS]),
                },
                "results": rng.randrange(0, 60),
                "createdAt": now - timedelta(minutes=rng.randrange(1, 60 * 24 * 29)),
            }
        )
    insert(db.searches, searches, quiet)

    db.users.create_index([("email", ASCENDING)], unique=True)
    db.users.create_index([("referralCode", ASCENDING)], unique=True, sparse=True)
    db.trips.create_index([("destination", ASCENDING), ("startDate", ASCENDING)])
    db.bookings.create_index([("userId", ASCENDING), ("createdAt", DESCENDING)])
    db.searches.create_index([("createdAt", ASCENDING)], expireAfterSeconds=2592000)
    db.searches.create_index([("userId", ASCENDING), ("createdAt", DESCENDING)])
    # Deliberately NOT created: bookings {tripId: 1, status: 1} (see the docstring).
    client.close()
    return n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default="mongodb://127.0.0.1:27017/travellr")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    if not args.quiet:
        print(f"seeding {args.uri.rsplit('@', 1)[-1]} at scale {args.scale}", file=sys.stderr)
    counts = seed(args.uri, args.scale, args.quiet)
    if not args.quiet:
        total = sum(counts.values())
        print(f"seeded {total} documents in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
