"""A healthy Travellr platform on 127.0.0.1 and the faults bench/doctor plants in it.

Shared by bench/doctor/run.py and tests/test_doctor*.py, so that the suite the bench measures
is the suite the tests assert. The sandbox is made of the tests' own server classes
(tests/fixtures_servers.py: redis-server, SecantusDB, the Node.js backend) on free ports with
their state in one folder; MongoDB runs with --auth (the wrong-password fault needs it).
Light traffic over a few hundred cached search pages runs all the time, as a real platform has
(so that a cache hit rate means something); `heal()` puts the platform back as it was healthy.

Each fault is (name, expected top cause, plant, repair). Planting acts behind travellr-ops'
back, as the world does: kill or SIGSTOP a server, CONFIG SET Redis, mount a full tmpfs...
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
for extra in (REPO / "src", REPO / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from fixtures_servers import Backend, MongoServer, RedisServer, seed  # noqa: E402
from travellr_ops.settings import Settings  # noqa: E402

USER, PASSWORD = "travellr", "doctor-pw"
DESTINATIONS = ("Lisbon", "Kyoto", "Paris", "Oslo", "Lima", "Cairo", "Hanoi", "Cusco")
#: the cached pages the background traffic walks through (each once per round)
PAGES = [f"/api/search?destination={d}&page={p}" for d in DESTINATIONS for p in range(40)]
TRAFFIC_PER_S = 25.0
SLOW_PATH = "/api/trips/popular"


def _get(url: str, timeout: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


class Traffic:
    """Users: GETs of the cached pages at a steady rate, in a daemon thread."""

    def __init__(self, base: str, per_s: float = TRAFFIC_PER_S) -> None:
        self.base = base
        self.per_s = per_s
        self.extra: list[str] = []  # paths requested besides the pages (a fault's)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            _get(self.base + PAGES[n % len(PAGES)], 2)
            for path in list(self.extra):
                _get(self.base + path, 2)
            n += 1
            self._stop.wait(1 / self.per_s)


@dataclass
class Sandbox:
    """redis-server + SecantusDB (--auth, seeded) + the backend, in ``root``."""

    root: Path
    redis: RedisServer = field(init=False)
    mongo: MongoServer = field(init=False)
    backend: Backend = field(init=False)
    traffic: Traffic = field(init=False)
    #: settings changes a fault makes (the wrong password)
    overrides: dict[str, Any] = field(default_factory=dict)

    def start(self) -> Sandbox:
        self.root.mkdir(parents=True, exist_ok=True)
        for d in ("data", "backups", "state"):
            (self.root / d).mkdir(exist_ok=True)
        self.redis = RedisServer(self.root / "redis").start()
        self.mongo = MongoServer(self.root / "mongo", memory=False)
        self.mongo.start()
        seed(self.mongo.uri)
        client = self.mongo.client()
        client.admin.command(
            "createUser", USER, pwd=PASSWORD, roles=["root"], mechanisms=["SCRAM-SHA-256"]
        )
        client.close()
        self.mongo.stop()
        self.mongo.start("--auth")
        self.backend = Backend(
            self.root / "backend",
            redis_url=self.redis.url,
            mongo_uri=self.mongo_uri(),
            RATE_LIMIT_PER_MIN="1000000",
        ).start()
        self.traffic = Traffic(self.backend.url)
        self.ensure_indexes()
        self.warm()
        self.traffic.start()
        return self

    def mongo_uri(self, password: str = PASSWORD) -> str:
        return f"mongodb://{USER}:{password}@127.0.0.1:{self.mongo.port}/travellr?authSource=admin"

    def settings(self, **over: Any) -> Settings:
        values: dict[str, Any] = {
            "platform": "none",
            "state_dir": self.root / "state",
            "disk_paths": [self.root / "data"],
            "mongo": {"uri": self.mongo_uri(), "timeout_s": 3.0},
            "redis": {"url": self.redis.url, "timeout_s": 3.0},
            "api": {"url": self.backend.url, "timeout_s": 5.0},
            "backup": {"dir": self.root / "backups"},
            "logs": {"access_log": self.backend.access_log, "app_log": self.backend.app_log},
            "monitor": {
                "api_paths": [SLOW_PATH, PAGES[0]],
                "error_window_s": 15.0,
            },
            # a 2-core machine shared with other work: latency and CPU limits it meets
            "thresholds": {"api_response_ms": 500.0, "cpu_pct": 200.0},
        }
        for key, value in {**self.overrides, **over}.items():
            if isinstance(value, dict) and isinstance(values.get(key), dict):
                values[key] = {**values[key], **value}
            else:
                values[key] = value
        return Settings(**values)

    def ensure_indexes(self) -> None:
        from travellr_ops.cli.app import run

        code = run(
            ["db", "indexes", "ensure", "--yes", "--quiet"],
            settings=self.settings(),
            interactive=False,
        )
        assert code == 0, f"db indexes ensure: exit {code}"

    def warm(self) -> None:
        """Every page the traffic walks through, once (the cache of a platform in service)."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda p: _get(self.backend.url + p), [SLOW_PATH, *PAGES]))
        time.sleep(2.5)  # lookups of a healthy cache in the window doctor measures

    @contextlib.contextmanager
    def planted(self, fault: Fault) -> Iterator[None]:
        """The fault in place for the block, repaired after it however the block ends."""
        fault.plant(self)
        try:
            yield
        finally:
            self.repair(fault)

    def repair(self, fault: Fault) -> None:
        """Undo the fault, then rotate the access log: the 5xx answers of the outage are not
        the next run's news (the monitor's error window would show them for a while)."""
        fault.repair(self)
        with open(self.backend.access_log, "w"):
            pass

    def redis_cli(self, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.redis.port), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return done.stdout.strip()

    def stop(self) -> None:
        self.traffic.stop()
        for server in (self.backend, self.mongo, self.redis):
            try:
                server.discard()
            except Exception as exc:  # a best-effort clean-up: report, go on
                print(f"warning: {type(server).__name__}: {exc}", file=sys.stderr)


# -- the faults ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fault:
    name: str
    #: the cause doctor must put first
    expected: str
    plant: Callable[[Sandbox], None]
    repair: Callable[[Sandbox], None]
    #: the symptom a person would give (None: doctor without one)
    symptom: str | None = None


def _mongo_pid(sb: Sandbox) -> int:
    return int((sb.mongo.dir / "mongo.pid").read_text().strip())


def _mongo_start(sb: Sandbox) -> None:
    sb.mongo.start()  # with --auth still (start keeps the last extra arguments)


def _redis_full(sb: Sandbox) -> None:
    used = _used(sb)
    sb.redis_cli("config", "set", "maxmemory-policy", "noeviction")
    sb.redis_cli("config", "set", "maxmemory", str(used + (2 << 20)))
    payload = "x" * 20_000
    script = "".join(f"SET junk:{n} {payload}\n" for n in range(200))
    subprocess.run(
        ["redis-cli", "-p", str(sb.redis.port)],
        input=script,
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )


def _used(sb: Sandbox) -> int:
    for line in sb.redis_cli("info", "memory").splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    raise RuntimeError("no used_memory in INFO")


def _redis_unfull(sb: Sandbox) -> None:
    keys = sb.redis_cli("--scan", "--pattern", "junk:*").split()
    if keys:
        sb.redis_cli("unlink", *keys)
    sb.redis_cli("config", "set", "maxmemory", "0")
    sb.redis_cli("config", "set", "maxmemory-policy", "noeviction")


def _redis_restart(sb: Sandbox) -> None:
    sb.redis.start()
    sb.warm()


def _errors_on(sb: Sandbox) -> None:
    sb.traffic.extra[:] = ["/api/debug/error"]
    time.sleep(2.0)


def _errors_off(sb: Sandbox) -> None:
    sb.traffic.extra[:] = []
    time.sleep(0.5)


def _slow_on(sb: Sandbox) -> None:
    """The backend again, with slow_paths.js delaying one endpoint (the backend unchanged)."""
    sb.backend.stop()
    sb.backend.env["NODE_OPTIONS"] = f"--require {Path(__file__).parent / 'slow_paths.js'}"
    sb.backend.env["DOCTOR_SLOW_PATHS"] = f"{SLOW_PATH}=700"
    sb.backend.start()


def _slow_off(sb: Sandbox) -> None:
    sb.backend.stop()
    sb.backend.env.pop("NODE_OPTIONS", None)
    sb.backend.env.pop("DOCTOR_SLOW_PATHS", None)
    sb.backend.start()


def _disk_full(sb: Sandbox) -> None:
    target = sb.root / "backups"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)], check=True)
    with open(target / "filler", "wb") as f, contextlib.suppress(OSError):
        f.write(b"\0" * (2 << 20))  # more than fits: full is what is wanted


def _disk_free(sb: Sandbox) -> None:
    subprocess.run(["umount", str(sb.root / "backups")], check=True)


def _maintenance_on(sb: Sandbox) -> None:
    flag = {
        "message": "database upgrade",
        "by": "ops@old-host",
        "reason": "upgrade",
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
        "until": None,
    }
    sb.redis_cli("set", "travellr:maintenance", json.dumps(flag))


def _maintenance_off(sb: Sandbox) -> None:
    sb.redis_cli("del", "travellr:maintenance")


def _drop_index(sb: Sandbox) -> None:
    from pymongo import MongoClient

    client: Any = MongoClient(sb.mongo_uri(), serverSelectionTimeoutMS=5000)
    try:
        client.travellr.trips.drop_index([("destination", 1), ("startDate", 1)])
    finally:
        client.close()


def _client(sb: Sandbox) -> Any:
    from pymongo import MongoClient

    return MongoClient(sb.mongo_uri(), serverSelectionTimeoutMS=5000)


def _profiler(sb: Sandbox, on: bool) -> None:
    """`db profile on|off` (on: operations over thresholds.db_query_ms, doctor's threshold)."""
    from travellr_ops.cli.app import run

    action = "on" if on else "off"
    code = run(
        ["db", "profile", action, "--yes", "--quiet"], settings=sb.settings(), interactive=False
    )
    assert code == 0, f"db profile {action}: exit {code}"


def _profiler_off(sb: Sandbox) -> None:
    """The profiler off, and its record gone: what it saw is not the next run's news."""
    _profiler(sb, False)
    client = _client(sb)
    try:
        client.travellr.drop_collection("system.profile")
    finally:
        client.close()


#: the weekly report: bookings per destination, each booking joined to its trip
REPORT = [
    {"$lookup": {"from": "trips", "localField": "tripId", "foreignField": "_id", "as": "trip"}},
    {"$unwind": "$trip"},
    {"$group": {"_id": "$trip.destination", "bookings": {"$sum": 1}}},
    {"$sort": {"bookings": -1}},
]
REPORT_RUNS = 3


def _slow_report(sb: Sandbox) -> None:
    """The profiler on, and a heavy report aggregation run against the database a few times
    (no index finding explains it: `db indexes analyze` looks at find shapes)."""
    _profiler(sb, True)
    client = _client(sb)
    try:
        for _ in range(REPORT_RUNS):
            list(client.travellr.bookings.aggregate(REPORT))
    finally:
        client.close()


#: trips added so that a search without its index scans enough to be slow
PLANTED_TRIPS = 20_000


def _slow_searches(sb: Sandbox) -> None:
    """The trips collection grown, the search index dropped, the profiler on, and the app's
    search (a declared query shape) run: each one a slow COLLSCAN the profiler records."""
    _drop_index(sb)
    client = _client(sb)
    try:
        start = datetime(2027, 1, 1, tzinfo=UTC)
        client.travellr.trips.insert_many(
            [
                {
                    "destination": f"Planted {n % 97}",
                    "startDate": start + timedelta(days=n % 365),
                    "price": 100 + n % 900,
                    "planted": True,
                }
                for n in range(PLANTED_TRIPS)
            ]
        )
        _profiler(sb, True)
        for destination in DESTINATIONS[:3]:
            list(
                client.travellr.trips.find({"destination": destination})
                .sort("startDate", 1)
                .limit(20)
            )
    finally:
        client.close()


def _slow_searches_repair(sb: Sandbox) -> None:
    client = _client(sb)
    try:
        client.travellr.trips.delete_many({"planted": True})
    finally:
        client.close()
    _profiler_off(sb)
    sb.ensure_indexes()


def _flush(sb: Sandbox) -> None:
    sb.redis_cli("flushall")
    time.sleep(0.3)


SANDBOX_FAULTS: list[Fault] = [
    Fault("mongodb stopped", "mongodb_down", lambda sb: sb.mongo.kill(), _mongo_start, "db"),
    Fault(
        "mongodb hung (SIGSTOP)",
        "mongodb_hung",
        lambda sb: os.kill(_mongo_pid(sb), signal.SIGSTOP),
        lambda sb: os.kill(_mongo_pid(sb), signal.SIGCONT),
        "db",
    ),
    Fault(
        "mongodb wrong password",
        "mongodb_auth",
        lambda sb: sb.overrides.update(mongo={"uri": sb.mongo_uri("wrong-pw")}),
        lambda sb: sb.overrides.pop("mongo", None),
        "db",
    ),
    Fault("redis stopped", "redis_down", lambda sb: sb.redis.stop(), _redis_restart),
    Fault("redis full, noeviction", "redis_full", _redis_full, _redis_unfull, "cache"),
    Fault("hit rate collapsed (flush)", "cache_cold", _flush, lambda sb: sb.warm(), "cache"),
    Fault("backend answers 500s", "api_errors", _errors_on, _errors_off, "down"),
    Fault("one endpoint slow", "slow_api", _slow_on, _slow_off, "slow"),
    Fault("backup disk full (tmpfs)", "disk_full", _disk_full, _disk_free),
    Fault(
        "maintenance flag forgotten",
        "maintenance_forgotten",
        _maintenance_on,
        _maintenance_off,
        "down",
    ),
    Fault(
        "declared index missing",
        "missing_index",
        _drop_index,
        lambda sb: sb.ensure_indexes(),
        "slow",
    ),
    # the profiler's slow operations on the collection missing its index join that cause's
    # evidence: one cause, not two
    Fault(
        "index missing, slow searches profiled",
        "missing_index",
        _slow_searches,
        _slow_searches_repair,
        "slow",
    ),
    Fault(
        "slow report aggregation profiled", "slow_operations", _slow_report, _profiler_off, "cpu"
    ),
]


def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None
