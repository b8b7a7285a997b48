"""`monitor once` against real servers: redis-server, SecantusDB (seeded) and the backend."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cli import invoke
from fixtures_servers import Backend, MongoServer, RedisServer, seed
from helpers_signals import sigint_at_default
from travellr_ops.settings import Settings

pytestmark = [pytest.mark.redis, pytest.mark.mongo]

#: thresholds this shared 2-core machine cannot breach by load alone (SecantusDB is a Python
#: server): the tests below are about where each figure comes from, not about load
CALM = {"db_query_ms": 60_000.0, "cpu_pct": 1000.0, "memory_pct": 100.0, "disk_pct": 100.0}


@dataclass
class Platform:
    redis: RedisServer
    mongo: MongoServer
    backend: Backend
    tmp: Path

    def settings(self, thresholds: dict[str, float] | None = None, **monitor: Any) -> Settings:
        return Settings(
            platform="none",
            state_dir=self.tmp / "state",
            disk_paths=[self.tmp],
            mongo={"uri": self.mongo.uri, "timeout_s": 2.0},
            redis={"url": self.redis.url, "timeout_s": 2.0},
            api={"url": self.backend.url, "timeout_s": 5.0},
            backup={"dir": self.tmp / "backups"},
            logs={"access_log": self.backend.access_log},
            thresholds={**CALM, **(thresholds or {})},
            monitor={"window_s": 1.0, "api_probes": 3, **monitor},
        )

    def config_file(self) -> Path:
        """The settings of ``settings()`` as a TOML file, for travellr-ops run as a process."""
        s = self.settings()

        def q(value: object) -> str:
            return json.dumps(str(value))  # a JSON string is a TOML basic string

        limits = "\n".join(f"{k} = {v}" for k, v in CALM.items())
        path = self.tmp / "travellr-ops.toml"
        path.write_text(
            f'platform = "none"\nstate_dir = {q(s.state_dir)}\ndisk_paths = [{q(self.tmp)}]\n'
            f"[mongo]\nuri = {q(s.mongo.uri)}\ntimeout_s = 2.0\n"
            f"[redis]\nurl = {q(s.redis.url)}\ntimeout_s = 2.0\n"
            f"[api]\nurl = {q(s.api.url)}\ntimeout_s = 5.0\n"
            f"[backup]\ndir = {q(s.backup.dir)}\n"
            f"[logs]\naccess_log = {q(s.logs.access_log)}\n"
            f"[thresholds]\n{limits}\n"
            "[monitor]\napi_probes = 3\n"
        )
        return path


@pytest.fixture
def platform(
    tmp_path: Path,
    redis_factory: Callable[[], RedisServer],
    mongo_factory: Callable[..., MongoServer],
    backend_factory: Callable[..., Backend],
) -> Platform:
    """A platform of this test's own, free to stop: Redis, a seeded MongoDB, the backend."""
    redis = redis_factory()
    mongo = mongo_factory()
    seed(mongo.uri)
    backend = backend_factory(redis_url=redis.url, mongo_uri=mongo.uri)
    return Platform(redis, mongo, backend, tmp_path)


def once(settings: Settings, *args: str) -> tuple[int, dict[str, Any], str]:
    result = invoke("monitor", "once", "--json", *args, settings=settings)
    return result.exit_code, result.json(), result.stderr


def by_key(sample: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        (f"{m['name']}:{m['subject']}" if m["subject"] else m["name"]): m for m in sample["metrics"]
    }


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


# ----------------------------------------------------------------------------------- all up


def test_all_up_every_metric_comes_from_its_source(platform: Platform, tmp_path: Path) -> None:
    prom = tmp_path / "textfile" / "travellr.prom"
    code, sample, _ = once(platform.settings(), "--metrics-file", str(prom))
    metrics = by_key(sample)
    assert code == 0, sample
    assert {m["verdict"] for m in sample["metrics"]} <= {"ok", "info", "idle", "insufficient"}
    # the monitor's own probes are in the access log, but not in the error rate; a handful of
    # requests is too few to judge a rate by
    errors = metrics["error_rate_pct"]
    assert "left out: 3 requests travellr-ops sent itself" in errors["detail"], errors
    assert errors["verdict"] == "insufficient" and "under the 50 needed" in errors["detail"]
    for key in (
        "api_response_p95_ms",
        "api_response_p50_ms",
        "db_query_ms",
        "cache_hit_rate_pct",
        "cpu_pct:backend",
        "memory_pct:mongodb",
        "cpu_pct:redis",
        f"disk_pct:{tmp_path}",
        "error_rate_pct",
        "active_users",
        "booking_conversion_pct",
    ):
        assert key in metrics, key
    assert metrics["api_response_p95_ms"]["value"] > 0
    assert "secantusd" in metrics["cpu_pct:mongodb"]["detail"]
    assert "redis-server" in metrics["cpu_pct:redis"]["detail"]
    assert metrics["db_query_ms"]["source"] == "timed queries"
    assert "opLatencies not reported" in metrics["db_query_ms"]["detail"]

    # the business figures are what the seeded data says, counted here independently
    client = platform.mongo.client()
    try:
        db = client.get_default_database()
        since = datetime.now(UTC) - timedelta(hours=24)
        users = {
            d["userId"]
            for d in db.searches.find({"createdAt": {"$gte": since}})
            if d.get("userId") is not None
        }
        bookings = db.bookings.count_documents({"createdAt": {"$gte": since}})
        searches = db.searches.count_documents({"createdAt": {"$gte": since}})
    finally:
        client.close()
    assert metrics["active_users"]["value"] == len(users) > 0
    assert metrics["booking_conversion_pct"]["value"] == round(bookings * 100 / searches, 2)

    # the sample is in the history store and in the textfile, in Prometheus's own format
    db_file = tmp_path / "state" / "travellr-ops.db"
    with sqlite3.connect(db_file) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert stored == len(sample["metrics"])
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    values = {
        s.labels["metric"]: s.value
        for s in families["travellr_monitor_value"].samples
        if not s.labels["subject"]
    }
    assert values["active_users"] == metrics["active_users"]["value"]
    assert not list(prom.parent.glob("*.tmp*"))  # written atomically: no leftovers


def test_human_output_is_a_table_of_value_threshold_verdict(platform: Platform) -> None:
    result = invoke("monitor", "once", settings=platform.settings())
    assert result.exit_code == 0, result.stderr
    for word in ("metric", "threshold", "verdict", "api_response_p95_ms", "error_rate_pct"):
        assert word in result.stdout
    assert "overall: ok" in result.stdout


# --------------------------------------------------------------------------------- faults


def test_backend_stopped_is_unknown_and_exit_3(platform: Platform) -> None:
    platform.backend.stop()
    code, sample, stderr = once(platform.settings())
    metrics = by_key(sample)
    assert code == 3
    assert metrics["api_response_p95_ms"]["verdict"] == "unknown"
    assert "refused" in metrics["api_response_p95_ms"]["detail"]
    assert metrics["cpu_pct:backend"]["verdict"] == "unknown"
    # the rest still comes out
    assert metrics["db_query_ms"]["verdict"] == "ok"
    assert metrics["cache_hit_rate_pct"]["verdict"] in ("ok", "idle", "insufficient")
    assert metrics["active_users"]["value"] is not None
    assert "unknown" in stderr


def test_redis_stopped_cache_unknown_others_come_out(platform: Platform) -> None:
    platform.redis.stop()
    code, sample, _ = once(platform.settings())
    metrics = by_key(sample)
    assert metrics["cache_hit_rate_pct"]["verdict"] == "unknown"
    assert "Redis" in metrics["cache_hit_rate_pct"]["detail"]
    assert metrics["cpu_pct:redis"]["verdict"] == "unknown"
    assert metrics["db_query_ms"]["verdict"] == "ok"
    # the backend answers the monitor's own probes 503: no error rate of the monitor's making
    assert metrics["api_response_p95_ms"]["value"] is not None
    errors = metrics["error_rate_pct"]
    assert errors["verdict"] == "insufficient", errors
    assert "requests travellr-ops sent itself" in errors["detail"]
    assert code == 3  # Redis unknown
    # users' requests answered 503 are a real error-rate breach
    for _ in range(60):
        assert get(platform.backend.url + "/api/health") == 503
    code, sample, _ = once(platform.settings())
    errors = by_key(sample)["error_rate_pct"]
    # 60 of ours and the fixture's own readiness probe
    assert errors["verdict"] == "breach" and re.match(r"60 of 6\d requests", errors["detail"])
    assert code == 1


def test_mongodb_stopped_db_metrics_unknown_others_come_out(platform: Platform) -> None:
    platform.mongo.stop()
    code, sample, _ = once(platform.settings(), "--window", "0.5")
    metrics = by_key(sample)
    for key in ("db_query_ms", "active_users", "booking_conversion_pct", "cpu_pct:mongodb"):
        assert metrics[key]["verdict"] == "unknown", key
    assert "refused" in metrics["db_query_ms"]["detail"]
    assert metrics["cache_hit_rate_pct"]["verdict"] in ("ok", "idle", "insufficient")
    assert metrics["cpu_pct:redis"]["verdict"] == "ok"
    assert code in (1, 3)  # 1 when the backend's 503s already breach the error rate


class _Slow(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(0.3)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_live_mongodb_stopped_is_seen_in_the_next_sample_not_at_the_next_query_round(
    platform: Platform,
) -> None:
    from travellr_ops.ops.monitor.sampler import open_sampler
    from travellr_ops.runtime import Runtime

    rt = Runtime(platform.settings(query_every_s=3600, stats_every_s=3600))
    with open_sampler(rt, live=True) as sampler:
        first = {m.key: m for m in sampler.sample(0.3).metrics}
        assert first["db_query_ms"].verdict == "ok"
        again = {m.key: m for m in sampler.sample(0.3).metrics}
        assert "taken" in again["db_query_ms"].detail  # the slow cadence: the last figure
        platform.mongo.stop()
        down = {m.key: m for m in sampler.sample(0.3).metrics}
    for key in ("db_query_ms", "active_users"):
        assert down[key].verdict == "unknown", (key, down[key].detail)


@pytest.fixture
def slow_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/slow"
    server.shutdown()
    server.server_close()


def test_slow_endpoint_breaches_the_api_threshold(platform: Platform, slow_endpoint: str) -> None:
    code, sample, _ = once(platform.settings(api_paths=[slow_endpoint]))
    api = by_key(sample)["api_response_p95_ms"]
    assert api["verdict"] == "breach" and api["value"] >= 300
    assert slow_endpoint in api["detail"]
    assert code == 1


def test_burst_of_5xx_breaches_the_error_rate(platform: Platform) -> None:
    for _ in range(3):
        assert get(platform.backend.url + "/api/trips/popular") == 200
    for _ in range(10):
        assert get(platform.backend.url + "/api/debug/error") == 500
    # 13 requests: a rate over so few says nothing (minimum samples)
    code, sample, _ = once(platform.settings())
    errors = by_key(sample)["error_rate_pct"]
    assert errors["verdict"] == "insufficient"
    assert re.match(r"10 of 1\d requests", errors["detail"]) and "under the 50" in errors["detail"]
    assert code == 0
    for _ in range(40):
        assert get(platform.backend.url + "/api/trips/popular") == 200
    code, sample, _ = once(platform.settings())
    errors = by_key(sample)["error_rate_pct"]
    assert errors["verdict"] == "breach"
    assert re.match(r"10 of 5\d requests", errors["detail"])
    assert code == 1


def test_low_hit_rate_from_a_known_mix(platform: Platform) -> None:
    import redis

    client = redis.Redis.from_url(platform.redis.url)
    client.set("known", "1")

    done = threading.Event()

    def traffic() -> None:
        # one hit and four misses at a time (MULTI/EXEC: the window never splits a batch),
        # until the sample is over: whenever its window falls, it sees a 1:4 mix (a fixed
        # burst after a fixed delay fell before the window when the machine was loaded)
        while not done.is_set():
            batch = client.pipeline(transaction=True)
            batch.get("known")
            for i in range(4):
                batch.get(f"missing:{i}")
            batch.execute()
            time.sleep(0.005)

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        code, sample, _ = once(platform.settings(), "--window", "2")
    finally:
        done.set()
        thread.join()
    cache = by_key(sample)["cache_hit_rate_pct"]
    hits, misses = (int(n) for n in re.findall(r"(\d+) (?:hits|misses)", cache["detail"]))
    # 20 % from the mix, a little less from the backend's own maintenance-flag reads (misses)
    assert cache["verdict"] == "breach"
    assert hits >= 20 and misses >= 4 * hits
    assert 15 <= cache["value"] <= 20
    assert code == 1


def test_breaches_during_maintenance_are_not_alarms(platform: Platform) -> None:
    import redis

    flag = {"message": "upgrading MongoDB", "by": "test"}
    redis.Redis.from_url(platform.redis.url).set("travellr:maintenance", json.dumps(flag))
    for _ in range(5):
        assert get(platform.backend.url + "/api/trips/popular") == 503
    slow = platform.settings({"api_response_ms": 0.001}, min_probes=1)  # every probe breaches
    result = invoke("monitor", "once", settings=slow)
    assert "maintenance mode ON: upgrading MongoDB" in result.stdout
    assert result.exit_code == 0  # the breaches are reported, but not alarms
    code, sample, stderr = once(slow)
    assert sample["maintenance"]["message"] == "upgrading MongoDB"
    metrics = by_key(sample)
    assert metrics["api_response_p95_ms"]["verdict"] == "breach"
    # the 503s maintenance served are no errors
    errors = metrics["error_rate_pct"]
    assert errors["value"] in (0.0, None) and "5 503s during maintenance" in errors["detail"]
    assert code == 0
    assert "not alarms" in stderr


def test_maintenance_503s_recorded_in_the_store_are_left_out_afterwards(
    platform: Platform,
) -> None:
    settings = platform.settings()
    assert invoke("maintenance", "on", "--yes", settings=settings).exit_code == 0
    for _ in range(60):
        assert get(platform.backend.url + "/api/trips/popular") == 503
    assert invoke("maintenance", "off", "--yes", settings=settings).exit_code == 0
    time.sleep(1.1)  # the access log's seconds: the next ones are outside the window
    for _ in range(55):
        assert get(platform.backend.url + "/api/trips/popular") == 200
    code, sample, _ = once(settings)
    errors = by_key(sample)["error_rate_pct"]
    assert sample["maintenance"] is None
    assert errors["verdict"] == "ok", errors
    assert re.match(r"0 of 5\d requests", errors["detail"])
    assert "60 503s during maintenance" in errors["detail"]
    assert code == 0


# ---------------------------------------------------------------------------- the store


def test_corrupt_store_is_reported_and_the_sample_still_printed(platform: Platform) -> None:
    settings = platform.settings()
    settings.state_dir.mkdir(parents=True)
    (settings.state_dir / "travellr-ops.db").write_bytes(b"this is not a database" * 100)
    result = invoke("monitor", "once", "--json", settings=settings)
    assert result.exit_code == 0
    # the sample came out whole (a handful of requests: too few to judge the error rate)
    assert by_key(result.json())["error_rate_pct"]["verdict"] == "insufficient"
    assert "damaged" in result.stderr and "hint" in result.stderr


def test_locked_store_is_reported_and_the_sample_still_printed(platform: Platform) -> None:
    settings = platform.settings(store_timeout_s=0.2)
    invoke("monitor", "once", "--json", settings=settings)  # creates the store
    holder = sqlite3.connect(settings.state_dir / "travellr-ops.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = invoke("monitor", "once", "--json", settings=settings)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 0
    assert result.json()["metrics"]
    assert "locked" in result.stderr


def test_bad_window_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("monitor", "once", "--window", "0", settings=Settings(state_dir=tmp_path))
    assert result.exit_code == 2
    assert "--window" in result.stderr


# ------------------------------------------------------------------------------------ live


def test_live_without_a_terminal_prints_a_line_per_sample_and_a_summary(
    platform: Platform,
) -> None:
    result = invoke(
        "monitor", "--interval", "0.5", "--duration", "2s", settings=platform.settings()
    )
    lines = [line for line in result.stdout.splitlines() if "api_response_p95_ms=" in line]
    assert len(lines) >= 3
    assert "summary:" in result.stdout and "p95" in result.stdout
    assert "overall: no threshold breached" in result.stdout
    assert result.exit_code == 0


def test_live_duration_ends_with_exit_1_and_the_breach_times(
    platform: Platform, slow_endpoint: str
) -> None:
    result = invoke(
        "monitor",
        "--interval",
        "1",
        "--duration",
        "2",
        settings=platform.settings(api_paths=[slow_endpoint]),
    )
    assert "api_response_p95_ms=" in result.stdout and "!" in result.stdout
    assert "breach 20" in result.stdout and "api_response_p95_ms" in result.stdout
    assert result.exit_code == 1


@pytest.mark.parametrize(
    "args",
    [("--interval", "0"), ("--interval", "soon"), ("--duration", "-5m"), ("--duration", "10x")],
)
def test_live_bad_interval_or_duration_is_exit_2(args: tuple[str, str], tmp_path: Path) -> None:
    result = invoke("monitor", *args, settings=Settings(state_dir=tmp_path))
    assert result.exit_code == 2
    assert args[0] in result.stderr


# ---------------------------------------------------------------------------------- report


def nearest_rank(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, -(-len(ordered) * pct // 100)) - 1]


@dataclass
class Filled:
    settings: Settings
    real: list[dict[str, Any]]  # the `monitor once --json` samples recorded
    planted_breaches: tuple[float, float]  # times of the two planted api breaches


def fill_history(platform: Platform) -> Filled:
    """Three real `monitor once` samples, plus planted rows: two consecutive API breaches
    half an hour ago, one sample an hour and a half ago (the previous period of --since 1h)
    and one three hours ago (in neither)."""
    from travellr_ops.ops.monitor.history import append, open_history
    from travellr_ops.ops.monitor.metrics import Sample, judged
    from travellr_ops.store import Store, store_path

    settings = platform.settings()
    real = []
    for _ in range(3):
        code, sample, stderr = once(settings)
        assert code in (0, 1), stderr
        real.append(sample)
    now = time.time()
    store = open_history(Store(store_path(settings.state_dir)))
    limit = settings.thresholds.api_response_ms

    def plant(at: float, api_ms: float) -> None:
        metric = judged("api_response_p95_ms", api_ms, "ms", limit, source="probes")
        append(store, Sample(at, 1.0, 1.0, None, [metric]), retention_days=30)

    try:
        breaches = (now - 1800, now - 1740)
        plant(breaches[0], 500.0)
        plant(breaches[1], 700.0)
        plant(now - 5400, 1000.0)  # the previous hour
        plant(now - 3 * 3600, 99_999.0)  # before both periods
    finally:
        store.close()
    return Filled(settings, real, breaches)


def report_json(settings: Settings, *args: str) -> dict[str, Any]:
    result = invoke("monitor", "report", "--json", *args, settings=settings)
    assert result.exit_code == 0, result.stderr
    return result.json()  # type: ignore[no-any-return]


def test_report_figures_breaches_and_trend_from_the_history(platform: Platform) -> None:
    filled = fill_history(platform)
    report = report_json(filled.settings, "--since", "1h")
    rows = {r["key"]: r for r in report["rows"]}
    assert report["samples"] == 5  # 3 real + 2 planted points in time
    assert report["previous_samples"] == 1

    # the API: the real p95s and the two planted breaches; the 3-hour-old 99999 is not in it
    real_api = [by_key(s)["api_response_p95_ms"]["value"] for s in filled.real]
    values = [*real_api, 500.0, 700.0]
    api = rows["api_response_p95_ms"]
    assert api["samples"] == 5
    assert api["min"] == min(values)
    assert api["max"] == 700.0
    assert api["p50"] == nearest_rank(values, 50)
    assert api["p95"] == nearest_rank(values, 95)
    real_breaches = sum(
        by_key(s)["api_response_p95_ms"]["verdict"] == "breach" for s in filled.real
    )
    assert api["breaches"] == 2 + real_breaches
    # trend: the p50 against the previous hour's only value, 1000 ms: lower latency is better
    assert api["trend"]["previous_p50"] == 1000.0
    assert api["trend"]["word"] == "better"
    assert api["trend"]["change_pct"] == round((api["p50"] - 1000.0) / 1000.0 * 100, 1)

    # the two consecutive planted breaches are one episode, with its times and worst value
    planted = [e for e in report["episodes"] if e["start"] == filled.planted_breaches[0]]
    assert len(planted) == 1
    assert planted[0]["key"] == "api_response_p95_ms"
    assert planted[0]["end"] == filled.planted_breaches[1]
    assert planted[0]["samples"] == 2 and planted[0]["worst"] == 700.0
    assert planted[0]["threshold"] == 200.0 and not planted[0]["maintenance"]

    # a metric only the real samples have: its figures are theirs; nothing earlier to compare
    real_db = [by_key(s)["db_query_ms"]["value"] for s in filled.real]
    db = rows["db_query_ms"]
    assert db["samples"] == 3
    assert (db["min"], db["max"]) == (min(real_db), max(real_db))
    assert db["p50"] == nearest_rank(real_db, 50)
    assert db["trend"]["word"] == "new"
    users = rows["active_users"]
    assert users["max"] == by_key(filled.real[-1])["active_users"]["value"]

    # the previous period of --since 2h reaches back to the 3-hour-old sample
    wider = {r["key"]: r for r in report_json(filled.settings, "--since", "2h")["rows"]}
    assert wider["api_response_p95_ms"]["max"] == 1000.0
    assert wider["api_response_p95_ms"]["trend"]["previous_p50"] == 99_999.0

    # for people: the table with the trend, and the breach episode with its time
    human = invoke("monitor", "report", "--since", "1h", settings=filled.settings)
    assert human.exit_code == 0
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(filled.planted_breaches[0]))
    assert f"breach {when}" in human.stdout
    assert "2 sample(s), worst 700 ms (limit 200)" in human.stdout
    assert "better" in human.stdout and "p95" in human.stdout


@pytest.mark.parametrize("since", ["0", "abc", "-1h", "7w", ""])
def test_report_bad_since_is_exit_2(since: str, tmp_path: Path) -> None:
    result = invoke("monitor", "report", "--since", since, settings=Settings(state_dir=tmp_path))
    assert result.exit_code == 2
    assert "--since" in result.stderr


@pytest.mark.parametrize("since", ["90", "1h30m", "1w", "2026-01-01T00:00:00Z"])
def test_report_since_takes_the_shared_time_grammar(since: str, tmp_path: Path) -> None:
    result = invoke(
        "monitor",
        "report",
        "--since",
        since,
        "--json",
        settings=Settings(state_dir=tmp_path, monitor={"retention_days": 3650}),
    )
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    if since == "2026-01-01T00:00:00Z":
        assert doc["since"] == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    else:
        expected = {"90": 90, "1h30m": 5400, "1w": 604800}[since]
        assert doc["until"] - doc["since"] == pytest.approx(expected, abs=1)


def test_report_since_further_back_than_the_history_keeps_is_exit_2(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, monitor={"retention_days": 7})
    result = invoke("monitor", "report", "--since", "8d", settings=settings)
    assert result.exit_code == 2
    assert "--since '8d' reaches further back than the history keeps (7 days)" in result.stderr


def test_report_html_that_cannot_be_written_is_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    page = blocker / "report.html"
    result = invoke("monitor", "report", "--html", str(page), settings=Settings(state_dir=tmp_path))
    assert result.exit_code == 2
    assert f"cannot write the report to {page}" in result.stderr


@pytest.mark.parametrize("args", [("once", "--window", "2h"), ("once", "--window", "soon")])
def test_once_bad_window_is_exit_2_without_a_server(args: tuple[str, ...], tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, redis={"url": "redis://127.0.0.1:9"})
    result = invoke("monitor", *args, settings=settings)
    assert result.exit_code == 2
    assert "--window" in result.stderr


def test_report_of_an_empty_history_says_so_and_exits_0(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    page = tmp_path / "report.html"
    result = invoke("monitor", "report", "--html", str(page), settings=settings)
    assert result.exit_code == 0
    assert "no samples in the history" in result.stderr
    assert "No samples in this period" in page.read_text()
    assert not (tmp_path / "state" / "travellr-ops.db").exists()  # a report creates no store
    assert report_json(settings)["rows"] == []


def external_refs(page: str) -> list[str]:
    """Every src/href of the page's elements (scripts, styles, images, links)."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Refs(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.extend(f"{tag} {v}" for k, v in attrs if k in ("src", "href") and v)

    Refs().feed(page)
    return found


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Any]:
    """Debian's headless chromium driven by selenium (no browser download)."""
    from servers import need

    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        need("selenium is not installed (pip install -e '.[dev]')")
    binary, driver_path = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
    if not (binary.exists() and driver_path.exists()):
        need("Debian's chromium and chromium-driver (apt) are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = str(binary)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--window-size=1280,2400",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(driver_path)))
    try:
        yield driver
    finally:
        driver.quit()


def test_report_html_opens_offline_in_chromium_with_every_chart_drawn(
    platform: Platform, chromium: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    filled = fill_history(platform)
    page = tmp_path / "out" / "report.html"
    result = invoke(
        "monitor", "report", "--since", "1h", "--html", str(page), settings=filled.settings
    )
    assert result.exit_code == 0, result.stderr
    assert "report written" in result.stderr
    assert [p.name for p in page.parent.iterdir()] == ["report.html"]  # atomic: no leftover
    assert external_refs(page.read_text()) == []  # self-contained: plotly.js is inline
    metrics = [r["key"] for r in report_json(filled.settings, "--since", "1h")["rows"]]

    chromium.get(page.as_uri())
    charts = chromium.find_elements(By.CSS_SELECTOR, "div.chart")
    assert [c.get_attribute("data-metric") for c in charts] == metrics
    WebDriverWait(chromium, 30).until(
        lambda d: all(c.find_elements(By.CSS_SELECTOR, "svg.main-svg") for c in charts)
    )
    # every chart has drawn its data; the API chart its threshold line and breach points
    for chart in charts:
        assert chart.find_elements(By.CSS_SELECTOR, "g.scatterlayer g.trace"), chart.text
    api = charts[metrics.index("api_response_p95_ms")]
    assert api.find_elements(By.CSS_SELECTOR, "g.shapelayer path")
    assert "threshold ≤ 200 ms" in api.text
    assert "breach" in api.text  # the legend of the breach points
    # nothing was fetched: the page needs no network (no CDN)
    assert chromium.execute_script("return performance.getEntriesByType('resource').length") == 0
    severe = [e for e in chromium.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    shot = tmp_path / "report.png"
    assert chromium.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def run_on_a_terminal(
    argv: list[str], env: dict[str, str], cwd: Path, until: bytes, timeout: float = 60
) -> tuple[int, bytes, bytes]:
    """Run ``argv`` on a new pseudo-terminal (its controlling terminal, 40x120); once ``until``
    has appeared on the screen, press Ctrl-C there. (exit code, screen before, screen after)."""
    import fcntl
    import os
    import pty
    import select
    import signal
    import struct
    import sys
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its terminal; Ctrl-C there signals its process group
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
            os.chdir(cwd)
            sigint_at_default()
            os.execve(sys.executable, [sys.executable, *argv], env)
        finally:
            os._exit(127)

    def read_until(done: Callable[[bytes], bool], deadline: float) -> bytes:
        seen = b""
        while not done(seen) and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal (it has ended)
                break
            if not chunk:
                break
            seen += chunk
        return seen

    try:
        before = read_until(lambda seen: until in seen, time.monotonic() + timeout)
        os.write(fd, b"\x03")  # what the keyboard sends: the line discipline makes it SIGINT
        after = read_until(lambda _: False, time.monotonic() + timeout)
    finally:
        deadline = time.monotonic() + 15
        while True:  # the child ends by itself; if it hangs, it is killed (and the test fails)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                break
            time.sleep(0.1)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), before, after


def test_live_ctrl_c_on_a_terminal_exits_130_and_restores_it(
    platform: Platform, tmp_path: Path
) -> None:
    import os

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "TERM": "xterm-256color",
        "TRAVELLR_CONFIG": str(platform.config_file()),
    }
    title = b"travellr-ops monitor: every 0.5 s"
    # Ctrl-C once a metric's row is on the screen (the title can come a write before the table)
    code, before, after = run_on_a_terminal(
        ["-m", "travellr_ops", "monitor", "--interval", "0.5"],
        env,
        tmp_path,
        until=b"api_response_p95_ms",
    )
    assert title in before, before.decode(errors="replace")[-2000:]
    assert b"api_response_p95_ms" in before  # the live table was on the screen
    assert b"\x1b[?25l" in before  # the cursor was hidden while it was
    assert code == 130, after.decode(errors="replace")[-2000:]
    screen = before + after
    # the terminal is given back: the cursor shown again, after its last hiding; the
    # alternate screen, if one was entered, left
    assert screen.rfind(b"\x1b[?25h") > screen.rfind(b"\x1b[?25l")
    assert screen.count(b"\x1b[?1049h") == screen.count(b"\x1b[?1049l")
    text = after.decode(errors="replace")
    assert "summary:" in text and "Traceback" not in text
