"""bench/recovery: how many acknowledged writes a crash loses (RPO) and how long until the
app has its data back (RTO), measured on servers of the bench's own.

    .venv/bin/python bench/recovery/run.py [--quick] [--rounds N] [--rate 200] [--scale 1.0]
                                           [--poll 1.0] [--interval 60] [--cases cron,follow]

Each round, on a SecantusDB replica set (data on disk), redis-server and the stand-in backend
(scripts/sandbox/server.js), all on 127.0.0.1 ports of the bench's own:

1. the database is seeded (scripts/sandbox/seed.py --scale) and `backup create` runs;
2. the archive runs: case ``cron`` runs `backup oplog-archive` every ``--interval`` seconds
   (60: cron's minute), each run a new process, at a random phase; case ``follow`` runs
   `backup oplog-archive --follow` with backup.oplog_poll_s = ``--poll``;
3. a writer inserts bookings at ``--rate`` per second, one acknowledged insert at a time
   (w:1, no retries), recording when each was acknowledged and counting its errors;
4. at a random moment the server gets SIGKILL and its data directory is deleted (the disk
   is gone); the archiver is stopped (it must not read the new server's oplog);
5. a fresh server starts on the same port and `backup restore NAME --until latest` (as far
   as the backup and the archive reach; `backup list` shows that moment) brings it back;
6. RTO ends when the backend answers the app's bookings query (GET /api/bookings?tripId=)
   again after the restore. RPO: the acknowledged writes missing from the restored database,
   in seconds (the kill minus the acknowledgement of the oldest missing write).

The baseline, in the same round on the same data: the physical floor of getting that data
into a new server, i.e. starting a fresh server, inserting the restored database's documents
as raw batches held in memory, and building the same indexes (bench/backup's restore floor,
plus the server start). RTO is printed as a ratio to it.

Targets: RPO <= 60 s with the per-minute archive, <= 5 s with --follow. ``--quick``: one
round of each case on a smaller database (scale 0.05), about 3 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SRC = REPO / "src"
SEED_PY = REPO / "scripts" / "sandbox" / "seed.py"
BACKEND_JS = REPO / "scripts" / "sandbox" / "server.js"
SECANTUSD = Path(sys.executable).parent / "secantusd-py"
DB = "travellr"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ping(port: int, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    from pymongo import MongoClient

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"secantusd-py on port {port} exited at start")
        client: Any = MongoClient(
            "127.0.0.1", port, directConnection=True, serverSelectionTimeoutMS=200
        )
        try:
            client.admin.command("ping")
            return
        except Exception:
            time.sleep(0.02)
        finally:
            client.close()
    sys.exit(f"secantusd-py on port {port} did not answer within {timeout:g} s")


class Mongo:
    """A SecantusDB replica set with its data in ``dir``; ``kill`` is the crash."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start; seconds until it answers ping."""
        self.dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        log = open(self.dir / "mongo.log", "ab")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(
            [str(SECANTUSD), "--host", "127.0.0.1", "--port", str(self.port),
             "--storage-path", str(self.dir / "data"), "--oplog-max-entries", "1000000",
             "--oplog-retention-seconds", "86400", "--cache-size", "256M"],
            cwd=self.dir, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        ping(self.port, proc=self.proc)
        return time.perf_counter() - started

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def discard(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Platform:
    """redis-server and the backend, kept for the whole run; the backend finds each round's
    database on the same port."""

    def __init__(self, work: Path, mongo_port: int) -> None:
        self.work = work
        self.redis_port = free_port()
        self.api_port = free_port()
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(
            HOST="127.0.0.1",
            PORT=str(self.api_port),
            REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            MONGO_URI=f"mongodb://127.0.0.1:{mongo_port}/{DB}",
            LOG_DIR=str(work / "backend-logs"),
            RATE_LIMIT_PER_MIN="1000000",
        )
        self.backend = subprocess.Popen(
            ["node", str(BACKEND_JS)],
            env=env,
            stdout=open(work / "backend.out", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def bookings(self, trip: str) -> list[Any] | None:
        """The app's bookings query; None unless it answers 200."""
        url = f"http://127.0.0.1:{self.api_port}/api/bookings?tripId={trip}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                body = json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None
        found = body.get("results") if isinstance(body, dict) else None
        return found if isinstance(found, list) else None

    def stop(self) -> None:
        for proc in (self.backend, self.redis):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


class Cli:
    """travellr-ops as cron or a person runs it: a new process each time."""

    def __init__(self, port: int, work: Path, poll_s: float) -> None:
        self.work = work
        self.env = {
            **os.environ,
            "PYTHONPATH": str(SRC),
            "TRAVELLR_MONGO__URI": f"mongodb://127.0.0.1:{port}/{DB}",
            "TRAVELLR_MONGO__TIMEOUT_S": "2",
            "TRAVELLR_BACKUP__DIR": str(work / "backups"),
            "TRAVELLR_BACKUP__OPLOG_POLL_S": str(poll_s),
            "TRAVELLR_STATE_DIR": str(work / "state"),
            "TRAVELLR_API__URL": "http://127.0.0.1:9",
        }

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "travellr_ops", *args]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.argv(*args), env=self.env, cwd=self.work, capture_output=True, text=True
        )
        if check and done.returncode != 0:
            sys.exit(f"travellr-ops {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.argv(*args), env=self.env, cwd=self.work,
            stdout=subprocess.DEVNULL, stderr=open(self.work / "archive.err", "ab"),
        )  # fmt: skip


class Archiver:
    """``cron``: `backup oplog-archive` every ``interval`` s at a random phase, each run a new
    process; ``follow``: one `backup oplog-archive --follow`."""

    def __init__(self, cli: Cli, mode: str, interval: float) -> None:
        self.cli, self.mode, self.interval = cli, mode, interval
        self.stop_flag = threading.Event()
        self.running: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.mode == "follow":
            self.running = self.cli.spawn("--quiet", "backup", "oplog-archive", "--follow")
            return
        self.thread = threading.Thread(target=self._cron, daemon=True)
        self.thread.start()

    def _cron(self) -> None:
        due = time.monotonic() + random.uniform(0, self.interval)
        while not self.stop_flag.wait(max(0.0, due - time.monotonic())):
            with self.lock:
                if self.stop_flag.is_set():
                    return
                self.running = self.cli.spawn("--quiet", "backup", "oplog-archive")
            self.running.wait()
            self.runs += 1
            due += self.interval

    def stop(self) -> None:
        """At the crash: no new run, the one in flight ended (it must not reach the new
        server's oplog once that starts on the same port)."""
        with self.lock:
            self.stop_flag.set()
            proc = self.running
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(30)
        if self.thread is not None:
            self.thread.join(30)


@dataclass
class Writer:
    """Acknowledged inserts at a steady rate, one at a time; each acknowledgement's time."""

    port: int
    rate: float
    trip: Any
    acked: list[tuple[int, float]] = field(default_factory=list)
    errors_before_kill: int = 0
    #: what the first error before the kill said
    first_error: str = ""
    refused_after_kill: int = 0
    killed: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    started: float = 0.0

    def run(self) -> None:
        from datetime import UTC, datetime

        from pymongo import MongoClient

        client: Any = MongoClient(
            f"mongodb://127.0.0.1:{self.port}/{DB}",
            w=1,
            retryWrites=False,
            serverSelectionTimeoutMS=500,
            socketTimeoutMS=2000,
        )
        coll = client[DB].bookings
        self.started = time.monotonic()
        i = 0
        try:
            while not self.done.is_set():
                due = self.started + i / self.rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                doc = {
                    "_id": f"bench-{i:08d}",
                    "tripId": self.trip,
                    "userId": i % 5000,
                    "status": "confirmed",
                    "seats": 1 + i % 4,
                    "createdAt": datetime.now(UTC),
                }
                try:
                    coll.insert_one(doc)
                    self.acked.append((i, time.time()))
                except Exception as exc:
                    if self.killed.is_set():
                        self.refused_after_kill += 1
                    else:
                        self.errors_before_kill += 1
                        self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"
                i += 1
        finally:
            client.close()


@dataclass
class Round:
    case: str
    rpo_s: float
    lost: int
    acked: int
    holes: int
    rate: float
    writer_errors: int
    first_error: str
    refused: int
    rto_s: float
    restore_s: float
    start_s: float
    floor_s: float
    floor_start_s: float
    archive_runs: int
    until: str
    oplog_read_s: float

    @property
    def ratio(self) -> float:
        return self.rto_s / self.floor_s


def physical_floor(port: int, work: Path) -> tuple[float, float]:
    """Start a fresh server and insert the restored database's documents as raw batches held
    in memory, then build the same indexes: (seconds in all, of which the start)."""
    from bson.raw_bson import RawBSONDocument
    from pymongo import MongoClient

    source: Any = MongoClient("127.0.0.1", port, directConnection=True)
    data: dict[str, list[list[bytes]]] = {}
    specs: dict[str, list[dict[str, Any]]] = {}
    from bson import decode_iter
    from bson.codec_options import CodecOptions

    raw_options: Any = CodecOptions(document_class=RawBSONDocument)
    for name in source[DB].list_collection_names():
        batches = []
        for batch in source[DB][name].find_raw_batches({}, batch_size=5000):
            batches.append([d.raw for d in decode_iter(batch, codec_options=raw_options)])
        data[name] = batches
        specs[name] = [
            {k: v for k, v in dict(s).items() if k != "ns"}
            for s in source[DB][name].list_indexes()
            if s["name"] != "_id_"
        ]
    source.close()
    floor = Mongo(free_port(), work / "floor")
    started = time.perf_counter()
    start_s = floor.start()
    target: Any = MongoClient("127.0.0.1", floor.port, directConnection=True)
    for name, batches in data.items():
        for batch in batches:
            if batch:
                target[DB][name].insert_many([RawBSONDocument(d) for d in batch], ordered=False)
    for name, indexes in specs.items():
        if indexes:
            target[DB].command({"createIndexes": name, "indexes": indexes})
    took = time.perf_counter() - started
    target.close()
    floor.discard()
    return took, start_s


def oplog_read_floor(port: int) -> float:
    """The least an archive round costs the server: one query for the oplog entries after
    the newest (none come back; SecantusDB scans its whole oplog for it). Best of three."""
    from pymongo import MongoClient

    client: Any = MongoClient("127.0.0.1", port, directConnection=True)
    oplog = client.local["oplog.rs"]
    newest = next(oplog.find({}, {"ts": 1}).sort("$natural", -1).limit(1))["ts"]
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        list(oplog.find({"ts": {"$gt": newest}}))
        runs.append(time.perf_counter() - started)
    client.close()
    return min(runs)


def one_round(
    case: str, args: argparse.Namespace, work: Path, port: int, platform: Platform
) -> Round:
    from pymongo import MongoClient

    shutil.rmtree(work / "backups", ignore_errors=True)
    shutil.rmtree(work / "state", ignore_errors=True)
    mongo = Mongo(port, work / "mongo")
    mongo.start()
    seeded = subprocess.run(
        [sys.executable, str(SEED_PY), "--uri", f"mongodb://127.0.0.1:{port}/{DB}",
         "--scale", str(args.scale), "--quiet"],
        capture_output=True, text=True,
    )  # fmt: skip
    if seeded.returncode != 0:
        sys.exit(f"seed.py failed: {seeded.stderr}")
    client: Any = MongoClient("127.0.0.1", port, directConnection=True)
    trip = client[DB].trips.find_one({}, {"_id": 1})["_id"]
    client.close()
    cli = Cli(port, work, args.poll)
    cli.run("--quiet", "backup", "create")
    oplog_floor = oplog_read_floor(port)
    base = json.loads(cli.run("backup", "list", "--json", check=False).stdout)["backups"][-1]
    archiver = Archiver(cli, case, args.interval)
    writer = Writer(port, args.rate, trip)
    thread = threading.Thread(target=writer.run, daemon=True)
    archiver.start()
    thread.start()
    low, high = (5.0, 65.0) if case == "cron" else (5.0, 15.0)
    if not args.quick:
        low, high = (30.0, 30.0 + 2 * args.interval) if case == "cron" else (20.0, 60.0)
    time.sleep(random.uniform(low, high))

    # the crash: the process and its disk are gone
    writer.killed.set()
    killed_at = time.time()
    kill_clock = time.perf_counter()
    mongo.kill()
    archiver.stop()
    writer.done.set()
    thread.join(30)
    shutil.rmtree(mongo.dir, ignore_errors=True)

    # recovery: a fresh server, the restore to the newest recoverable moment
    start_s = mongo.start()
    listed = json.loads(cli.run("backup", "list", "--json", check=False).stdout)
    until = str(listed["window"]["newest"])
    began = time.perf_counter()
    cli.run("--quiet", "backup", "restore", base["name"], "--until", "latest", "--yes")
    restore_s = time.perf_counter() - began
    # answered, even with no booking of that trip (all of them may be lost)
    while platform.bookings(str(trip)) is None:
        time.sleep(0.02)
    rto_s = time.perf_counter() - kill_clock

    client = MongoClient("127.0.0.1", port, directConnection=True)
    restored = {
        int(d["_id"][6:])
        for d in client[DB].bookings.find({"_id": {"$regex": "^bench-"}}, {"_id": 1})
    }
    client.close()
    lost = [(i, t) for i, t in writer.acked if i not in restored]
    newest_restored = max(restored, default=-1)
    holes = sum(1 for i, _ in lost if i < newest_restored)
    rpo_s = killed_at - min(t for _, t in lost) if lost else 0.0
    span = (writer.acked[-1][1] - writer.acked[0][1]) if len(writer.acked) > 1 else 1.0
    floor_s, floor_start_s = physical_floor(port, work)
    mongo.discard()
    return Round(
        case, round(rpo_s, 2), len(lost), len(writer.acked), holes,
        round(len(writer.acked) / span, 1), writer.errors_before_kill, writer.first_error[:160],
        writer.refused_after_kill, round(rto_s, 2), round(restore_s, 2), round(start_s, 2),
        round(floor_s, 2), round(floor_start_s, 2), archiver.runs, until, round(oplog_floor, 3),
    )  # fmt: skip


def spread(values: list[float]) -> str:
    return f"{min(values):7.2f} {statistics.median(values):7.2f} {max(values):7.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of each case, small db")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0, help="writer inserts per second")
    parser.add_argument("--scale", type=float, default=None, help="seed.py --scale (1.0)")
    parser.add_argument("--poll", type=float, default=1.0, help="--follow's oplog_poll_s")
    parser.add_argument("--interval", type=float, default=60.0, help="cron's interval")
    parser.add_argument("--cases", default="cron,follow")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 1
    if args.scale is None:
        args.scale = 0.05 if args.quick else 1.0
    sys.path.insert(0, str(SRC))
    cases = args.cases.split(",")
    work = Path(tempfile.mkdtemp(prefix="bench-recovery-", dir="/var/tmp"))
    port = free_port()
    platform = Platform(work, port)
    print(
        f"recovery bench: seed scale {args.scale:g}, writer {args.rate:g}/s, cron every"
        f" {args.interval:g} s, --follow polling every {args.poll:g} s; {args.rounds} round(s)"
        f" of {', '.join(cases)}; work dir {work}",
        flush=True,
    )
    results: list[Round] = []
    try:
        for k in range(args.rounds):
            for case in cases:
                r = one_round(case, args, work, port, platform)
                results.append(r)
                print(
                    f"  {case:<6} round {k + 1}: RPO {r.rpo_s:6.2f} s ({r.lost} of {r.acked}"
                    f" acknowledged writes lost, {r.holes} out of order; {r.rate:g}/s,"
                    f" {r.writer_errors} writer errors before the kill, {r.refused} refused"
                    f" after it); restored to {r.until}; RTO {r.rto_s:.2f} s (server start"
                    f" {r.start_s:.2f} s, restore {r.restore_s:.2f} s) = {r.ratio:.2f}x the"
                    f" floor {r.floor_s:.2f} s; {r.archive_runs} cron archive run(s)",
                    flush=True,
                )
                print(
                    f"    oplog read floor {r.oplog_read_s:.3f} s (one query for the entries"
                    " after the newest: the least each archive round costs the server)",
                    flush=True,
                )
                if r.first_error:
                    print(f"    first writer error: {r.first_error}", flush=True)
    finally:
        platform.stop()
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"{'case':<8} {'metric':<22} {'min':>7} {'median':>7} {'max':>7}")
    for case in cases:
        rows = [r for r in results if r.case == case]
        if not rows:
            continue
        for label, values in (
            ("RPO s (writes lost)", [r.rpo_s for r in rows]),
            ("lost writes", [float(r.lost) for r in rows]),
            ("RTO s", [r.rto_s for r in rows]),
            ("restore floor s", [r.floor_s for r in rows]),
            ("RTO / floor", [r.ratio for r in rows]),
        ):
            print(f"{case:<8} {label:<22} {spread(values)}")
    for case, target in (("cron", 60.0), ("follow", 5.0)):
        rows = [r for r in results if r.case == case]
        if rows:
            worst = max(r.rpo_s for r in rows)
            verdict = "met" if worst <= target else "MISSED"
            print(f"{case}: RPO target <= {target:g} s {verdict} (worst {worst:.2f} s)")
    follow = [r for r in results if r.case == "follow"]
    if follow:
        floor = statistics.median(r.oplog_read_s for r in follow)
        print(
            f"--follow's physical floor: poll {args.poll:g} s + oplog read {floor:.2f} s ="
            f" {args.poll + floor:.2f} s between archived moments, before any load"
        )
    errors = sum(r.writer_errors for r in results)
    holes = sum(r.holes for r in results)
    print(f"writer errors before the kills: {errors}; lost writes out of order: {holes}")


if __name__ == "__main__":
    main()
