"""`checklist morning` and `checklist last` against a real platform of the test's own:
redis-server, a seeded SecantusDB replica set and the stand-in backend (its logs on disk)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cli import Result, invoke
from fixtures_servers import Backend, MongoServer, RedisServer, seed
from travellr_ops.settings import Settings

pytestmark = [pytest.mark.redis, pytest.mark.mongo]

#: thresholds this shared 2-core machine cannot breach by load alone (SecantusDB is a Python
#: server, and other helpers' tests run meanwhile): these tests are about each step's source
CALM = {
    "api_response_ms": 60_000.0,
    "db_query_ms": 60_000.0,
    "cpu_pct": 1000.0,
    "memory_pct": 100.0,
    "disk_pct": 100.0,
}


@dataclass
class Platform:
    redis: RedisServer
    mongo: MongoServer
    backend: Backend
    tmp: Path

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "platform": "none",
            "state_dir": self.tmp / "state",
            "disk_paths": [self.tmp],
            "mongo": {"uri": self.mongo.uri, "timeout_s": 2.0},
            "redis": {"url": self.redis.url, "timeout_s": 2.0},
            "api": {"url": self.backend.url, "timeout_s": 5.0},
            "backup": {"dir": self.tmp / "backups"},
            "logs": {"access_log": self.backend.access_log, "app_log": self.backend.app_log},
            "thresholds": CALM,
            "monitor": {"window_s": 0.5, "api_probes": 2},
            "checklist": {"cache_window_s": 0.5},
        }
        values.update(overrides)
        return Settings(**values)


@pytest.fixture
def platform(
    tmp_path: Path,
    redis_factory: Callable[[], RedisServer],
    mongo_factory: Callable[..., MongoServer],
    backend_factory: Callable[..., Backend],
) -> Platform:
    redis = redis_factory()
    mongo = mongo_factory()
    seed(mongo.uri)
    backend = backend_factory(redis_url=redis.url, mongo_uri=mongo.uri)
    return Platform(redis, mongo, backend, tmp_path)


def fresh_verified_backup(settings: Settings) -> str:
    created = invoke("backup", "create", "--json", settings=settings)
    assert created.exit_code == 0, created.stderr
    name = str(created.json()["name"])
    verified = invoke("backup", "verify", name, "--json", settings=settings)
    assert verified.exit_code == 0, verified.stderr
    return name


def morning(settings: Settings, *args: str) -> tuple[Result, dict[str, dict[str, Any]]]:
    result = invoke("checklist", "morning", "--json", *args, settings=settings)
    steps = {s["name"]: s for s in result.json()["steps"]}
    return result, steps


def not_passed(steps: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Steps that neither passed nor were too thin to judge (insufficient: fine, exit 0)."""
    return {
        name: s["verdict"]
        for name, s in steps.items()
        if s["verdict"] not in ("pass", "insufficient")
    }


# ------------------------------------------------------------------------------- morning


def test_healthy_sandbox_passes_and_the_run_is_recorded(platform: Platform) -> None:
    settings = platform.settings()
    fresh_verified_backup(settings)
    result, steps = morning(settings)
    assert result.exit_code == 0, not_passed(steps) and [s["detail"] for s in steps.values()]
    assert list(steps) == ["services", "backend-errors", "metrics", "cache", "backup", "disk"]
    assert not_passed(steps) == {}
    # no traffic but the checks' own: the hit rate is shown with its count, not judged
    if steps["cache"]["verdict"] == "insufficient":
        assert (
            "lookups" in steps["cache"]["detail"] and "needed to judge" in steps["cache"]["detail"]
        )
    thin = steps["metrics"]["detail"].split("too few events to judge: ", 1)[1]
    assert "error_rate_pct (" in thin and "under the 50 needed to judge" in thin
    assert all(s["kind"] == "auto" and s["duration_s"] >= 0 for s in steps.values())
    assert "0 ERROR lines in the last" in steps["backend-errors"]["detail"]
    assert "verified" in steps["backup"]["detail"]
    # the weekly and monthly routines never ran here: a warning, not a failure
    assert "the weekly checklist has never run" in result.stderr
    assert "the monthly checklist has never run" in result.stderr

    report = result.json()
    with sqlite3.connect(settings.state_dir / "travellr-ops.db") as conn:
        runs = conn.execute("SELECT id, routine, by, exit_code FROM checklist_runs").fetchall()
        stored = conn.execute(
            "SELECT name, verdict FROM checklist_steps WHERE run_id = ? ORDER BY position",
            (report["run_id"],),
        ).fetchall()
    assert [(r[1], r[3]) for r in runs] == [("morning", 0)]
    assert "@" in runs[0][2]  # user@host
    assert stored == [(name, steps[name]["verdict"]) for name in steps]

    last = invoke("checklist", "last", "--json", settings=settings).json()
    by_routine = {r["routine"]: r["last"] for r in last["routines"]}
    assert by_routine["morning"]["exit_code"] == 0
    assert by_routine["morning"]["by"] == runs[0][2]
    assert by_routine["weekly"] is None
    human = invoke("checklist", "last", "morning", settings=settings)
    assert human.exit_code == 0
    assert "morning" in human.stdout and "pass" in human.stdout


def test_planted_error_line_fails_backend_errors(platform: Platform) -> None:
    settings = platform.settings()
    fresh_verified_backup(settings)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    with open(platform.backend.app_log, "a") as log:
        log.write(f"{stamp} ERROR payment provider timeout planted=yes\n")
    result, steps = morning(settings)
    assert result.exit_code == 1
    assert not_passed(steps) == {"backend-errors": "fail"}
    assert steps["backend-errors"]["detail"].startswith("1 ERROR lines")
    assert "payment provider timeout" in steps["backend-errors"]["data"]["newest"][0]

    # cron: --quiet prints no table, but the mail says which step failed and the line
    quiet = invoke("--quiet", "checklist", "morning", settings=settings)
    assert quiet.exit_code == 1
    assert quiet.stdout == ""
    assert "morning: backend-errors: fail" in quiet.stderr
    assert "payment provider timeout" in quiet.stderr
    last = invoke("checklist", "last", "morning", "--json", settings=settings).json()
    run = last["routines"][0]["last"]
    assert run["exit_code"] == 1
    assert [s["name"] for s in run["steps"] if s["verdict"] == "fail"] == ["backend-errors"]


def test_stale_backup_fails_backup(platform: Platform) -> None:
    settings = platform.settings()
    name = fresh_verified_backup(settings)
    # move its timestamp back: a backup's time is its name
    from travellr_ops.ops.backup.store import name_for, time_of

    old = name_for(time_of(name) - timedelta(hours=30))
    (settings.backup.dir / name).rename(settings.backup.dir / old)
    result, steps = morning(settings)
    assert result.exit_code == 1
    assert not_passed(steps) == {"backup": "fail"}
    assert f"{old} is 30.0 h old" in steps["backup"]["detail"]
    assert "backup.max_age_hours = 24" in steps["backup"]["detail"]


def test_unverified_backup_fails_backup(platform: Platform) -> None:
    settings = platform.settings()
    created = invoke("backup", "create", "--json", settings=settings)
    assert created.exit_code == 0
    result, steps = morning(settings)
    assert result.exit_code == 1
    assert not_passed(steps) == {"backup": "fail"}
    assert "never verified" in steps["backup"]["detail"]


def test_redis_stopped_names_redis_and_the_steps_that_need_it(platform: Platform) -> None:
    settings = platform.settings()
    fresh_verified_backup(settings)
    platform.redis.stop()
    result, steps = morning(settings)
    # Redis gone: the services and cache steps cannot know (unknown, as `health` exits 3 for
    # a server that does not answer); the backend answers 503 "degraded" to the checks' own
    # probes, too few requests to make an error rate of (no users call this backend)
    assert not_passed(steps) == {"services": "unknown", "metrics": "unknown", "cache": "unknown"}
    assert "redis" in steps["services"]["detail"] and "down" in steps["services"]["detail"]
    assert "Connection refused" in steps["cache"]["detail"] or "redis" in steps["cache"]["detail"]
    assert "cache_hit_rate_pct unknown" in steps["metrics"]["detail"]
    assert result.exit_code == 3
    # users' requests answered 503 meanwhile are a real error rate: a failure, exit 1
    for _ in range(60):
        assert http_status(platform.backend.url + "/api/health") == 503
    result, steps = morning(settings)
    assert not_passed(steps) == {"services": "unknown", "metrics": "fail", "cache": "unknown"}
    assert steps["metrics"]["detail"].startswith("breached: error_rate_pct")
    assert result.exit_code == 1


def test_low_hit_rate_fails_cache(platform: Platform) -> None:
    settings = platform.settings()
    fresh_verified_backup(settings)
    import threading

    import redis

    client = redis.Redis.from_url(platform.redis.url)
    client.set("trip:1", "x")
    done = threading.Event()

    def traffic() -> None:
        # one hit and four misses at a time, while the checklist runs: its window sees 20 %
        while not done.is_set():
            batch = client.pipeline(transaction=True)
            batch.get("trip:1")
            for i in range(4):
                batch.get(f"trip:missing:{i}")
            batch.execute()
            time.sleep(0.005)

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        result, steps = morning(settings)
    finally:
        done.set()
        thread.join()
        client.close()
    assert result.exit_code == 1
    # the monitor's sample sees the same mix: both judge the cache by what it does now
    assert not_passed(steps) == {"cache": "fail", "metrics": "fail"}
    assert "(threshold 80 %)" in steps["cache"]["detail"]
    assert steps["cache"]["data"]["hit_rate_pct"] < 80
    assert "cache_hit_rate_pct" in steps["metrics"]["detail"]


def test_a_cold_start_long_ago_is_shown_not_judged(platform: Platform) -> None:
    """Lookups since Redis started (a cold cache, yesterday) are no current hit rate."""
    settings = platform.settings()
    fresh_verified_backup(settings)
    import redis

    client = redis.Redis.from_url(platform.redis.url)
    try:
        for i in range(50):
            client.get(f"trip:missing:{i}")
    finally:
        client.close()
    result, steps = morning(settings)
    assert result.exit_code == 0, steps
    assert steps["cache"]["verdict"] == "insufficient"
    assert "since Redis started: " in steps["cache"]["detail"]
    assert "(not judged)" in steps["cache"]["detail"]


def test_overdue_weekly_is_a_warning_with_the_last_run(platform: Platform) -> None:
    settings = platform.settings(checklist={"weekly_overdue_days": 0.000001})
    from travellr_ops.ops.checklist import record
    from travellr_ops.ops.checklist.runner import RunReport
    from travellr_ops.store import Store, store_path

    store = Store(store_path(settings.state_dir))
    try:
        record.record(
            record.open_store(store),
            RunReport("weekly", "2020-01-06T09:00:00+00:00", "2020-01-06T09:05:00+00:00",
                      "ops@host", "fail", 1, []),
            "travellr-ops checklist weekly",
        )  # fmt: skip
    finally:
        store.close()
    fresh_verified_backup(settings)
    result, _ = morning(settings)
    assert "the weekly checklist is overdue: last run" in result.stderr
    assert "2020-01-06T09:00:00+00:00 by ops@host, fail" in result.stderr
    assert result.exit_code == 0


# --------------------------------------------------------------------------- maintenance


def http_status(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_maintenance_before_during_after_round_trip(platform: Platform) -> None:
    settings = platform.settings()
    health = platform.backend.url + "/api/health"
    assert http_status(health) == 200

    # no terminal and no --yes: nothing is closed; the manual steps and the change are pending
    refused = invoke(
        "checklist", "maintenance", "before", "--json", "-m", "upgrading", settings=settings
    )
    steps = {s["name"]: s for s in refused.json()["steps"]}
    assert refused.exit_code == 4, steps
    assert steps["backup"]["verdict"] == "pass"
    assert steps["users-notified"]["verdict"] == "pending"
    assert steps["maintenance-on"]["verdict"] == "skipped"  # waits for the plan
    assert http_status(health) == 200

    before = invoke(
        "checklist", "maintenance", "before", "--json", "--yes",
        "-m", "upgrading the database", "--until", "30m", "--plan", "upgrade; rollback: restore",
        settings=settings,
    )  # fmt: skip
    steps = {s["name"]: s for s in before.json()["steps"]}
    assert before.exit_code == 0, {n: s["detail"] for n, s in steps.items()}
    assert steps["plan"]["kind"] == "auto" and steps["plan"]["data"]["plan"].startswith("upgrade")
    assert steps["users-notified"]["verdict"] == "acknowledged"
    assert steps["backend-503"]["verdict"] == "pass"
    assert http_status(health) == 503
    backups = sorted(p.name for p in settings.backup.dir.iterdir())
    assert steps["backup"]["data"]["name"] == backups[-1]

    during = invoke("checklist", "maintenance", "during", "--json", settings=settings)
    steps = {s["name"]: s for s in during.json()["steps"]}
    assert during.exit_code == 0
    assert "upgrading the database" in steps["maintenance-state"]["detail"]
    assert "min left" in steps["maintenance-state"]["detail"]
    assert "@" in steps["maintenance-state"]["data"]["by"]
    assert 0 < steps["maintenance-state"]["data"]["expires_in_s"] <= 1800
    assert http_status(health) == 503

    # `before` again, unconfirmed, asks what `maintenance on` asks: whose flag it replaces
    again = invoke(
        "checklist", "maintenance", "before", "--json", "-m", "second", "--plan", "p",
        settings=settings,
    )  # fmt: skip
    steps = {s["name"]: s for s in again.json()["steps"]}
    assert steps["maintenance-on"]["verdict"] == "pending", steps["maintenance-on"]
    plain = invoke("maintenance", "on", "-m", "second", settings=settings)
    assert plain.exit_code == 4
    replaces = [line for line in plain.stderr.splitlines() if "replaces the flag set by" in line]
    assert replaces and "upgrading the database" in replaces[0]
    assert replaces[0] in again.stderr.splitlines()
    status = invoke("maintenance", "status", settings=settings).stdout
    assert "upgrading the database" in status  # unchanged

    after = invoke("checklist", "maintenance", "after", "--json", "--yes", settings=settings)
    steps = {s["name"]: s for s in after.json()["steps"]}
    assert after.exit_code == 0, {n: s["detail"] for n, s in steps.items()}
    assert http_status(health) == 200
    assert steps["maintenance-off"]["data"]["was_on"] is True
    assert "before: " in steps["error-rate"]["detail"]  # compared with the before run
    assert steps["error-rate"]["data"]["after"]["errors"] == 0  # the 503s of the window excluded
    assert steps["logs"]["detail"].startswith("no ERROR lines since")
    assert steps["smoke-test"]["verdict"] == "acknowledged"

    during_now = invoke("checklist", "maintenance", "during", "--json", settings=settings)
    assert during_now.exit_code == 1  # maintenance is over: "during" fails


# ------------------------------------------------------------------------ weekly, monthly

OSV = Path(__file__).parent / "data" / "osv"
SANDBOX_BACKEND = Path(__file__).parents[1] / "scripts" / "sandbox"


def test_weekly_runs_each_task_and_reads_the_weeks_incidents(platform: Platform) -> None:
    settings = platform.settings(
        security={"backend_dir": SANDBOX_BACKEND, "advisories_dir": OSV, "live_audit": False}
    )
    first = invoke("checklist", "weekly", "--json", settings=settings)
    steps = {s["name"]: s for s in first.json()["steps"]}
    assert list(steps) == [
        "error-logs", "db-size", "indexes", "security-audit", "security-logs", "cache",
        "incidents", "dependency-updates",
    ]  # fmt: skip
    # the sandbox's seeded gaps are found: the missing bookings index, lodash's advisories
    assert steps["indexes"]["verdict"] == "fail" and "bookings" in steps["indexes"]["detail"]
    assert steps["security-audit"]["verdict"] == "fail"
    assert "lodash" in " ".join(steps["security-audit"]["data"]["newest"])
    assert steps["error-logs"]["verdict"] == "pass"
    assert steps["security-logs"]["verdict"] == "pass"
    assert steps["incidents"]["verdict"] == "pass"
    assert steps["incidents"]["detail"].startswith("0 incident(s) in the last 7 days")
    assert steps["dependency-updates"]["verdict"] == "pending"
    assert "no earlier weekly run" in steps["db-size"]["detail"]
    assert first.exit_code == 1

    # an incident closed without its Document step fails the review; an open one is named
    closed = invoke("incident", "open", "Checkout 500s", "-s", "2", "--json", settings=settings)
    closed_id = closed.json()["id"]
    assert invoke("incident", "close", closed_id, settings=settings).exit_code == 0
    still = invoke("incident", "open", "Slow search", "-s", "3", "--json", settings=settings)
    still_id = still.json()["id"]

    # a week later (here: now), the growth is measured against the last run
    client = platform.mongo.client()
    try:
        client.get_default_database().bookings.insert_many([{"n": i} for i in range(500)])
    finally:
        client.close()
    second = invoke("checklist", "weekly", "--json", "--yes", settings=settings)
    steps = {s["name"]: s for s in second.json()["steps"]}
    assert "+500 documents since" in steps["db-size"]["detail"]
    assert steps["dependency-updates"]["verdict"] == "acknowledged"
    assert steps["incidents"]["verdict"] == "fail"
    assert f"still open: {still_id}" in steps["incidents"]["detail"]
    assert f"closed without the Document step: {closed_id}" in steps["incidents"]["detail"]


def test_monthly_restore_test_really_restores_and_compares(platform: Platform) -> None:
    settings = platform.settings()
    name = fresh_verified_backup(settings)
    invoke("checklist", "morning", "--json", settings=settings)  # one monitor sample
    result = invoke("checklist", "monthly", "--json", "--yes", settings=settings)
    steps = {s["name"]: s for s in result.json()["steps"]}
    restore = steps["restore-test"]
    assert restore["verdict"] == "pass", restore["detail"]
    scratch = restore["data"]["restore_test"]["database"]
    assert scratch.startswith("travellr_verify_") and restore["data"]["name"] == name
    manifest_file = settings.backup.dir / name / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    assert manifest["verify_result"] == "restore-test ok"
    client = platform.mongo.client()
    try:
        assert scratch not in client.list_database_names()  # dropped afterwards
    finally:
        client.close()
    assert steps["performance"]["verdict"] == "pass"  # the morning's sample
    assert steps["incidents"]["verdict"] == "pass"  # none in the month
    assert steps["pitr-chain"]["verdict"] == "fail"  # no oplog archive here
    assert "1 backups, the oldest" in steps["backup-retention"]["detail"]

    # the comparison is real (after the restore, not of the files): a manifest that names an
    # index the backup's metadata does not hold fails it
    manifest["collections"][0]["indexes"].append("ghost_1")
    manifest_file.write_text(json.dumps(manifest))
    again = invoke("checklist", "monthly", "--json", "--yes", settings=settings)
    restore = {s["name"]: s for s in again.json()["steps"]}["restore-test"]
    assert restore["verdict"] == "fail"
    assert "restored, manifest says" in restore["detail"] and "ghost_1" in restore["detail"]
    assert again.exit_code == 1
