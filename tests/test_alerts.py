"""`monitor --alert` and `monitor once --alert` against real servers (redis-server, SecantusDB,
the stand-in backend) and a real webhook receiver on 127.0.0.1 (an http.server thread that
keeps every body it is sent): one message per episode change, the root cause named, silence
in maintenance, retries of a webhook that failed, and a slow receiver that never holds up the
sampling."""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cli import invoke
from fixtures_servers import Backend, MongoServer, RedisServer, seed
from servers import closed_settings, free_port
from travellr_ops.ops.alerts.rules import problems
from travellr_ops.ops.monitor.metrics import Metric, Sample
from travellr_ops.settings import AlertSettings, Settings
from travellr_ops.vocab.verdict import Verdict, exit_code_of

#: thresholds the shared 2-core machine cannot breach by load alone: the episodes here come
#: from the faults each test plants, never from a slow moment of the machine
CALM = {
    "api_response_ms": 5_000.0,
    "db_query_ms": 60_000.0,
    "cpu_pct": 1000.0,
    "memory_pct": 100.0,
    "disk_pct": 100.0,
}


# ------------------------------------------------------------------------------ the receiver
@dataclass
class Got:
    path: str
    body: dict[str, Any]
    at: float


@dataclass
class Receiver:
    """Webhooks on 127.0.0.1: each path answers ``status[path]`` (200) after ``delay[path]``."""

    url: str
    got: list[Got] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)
    delay: dict[str, float] = field(default_factory=dict)

    def bodies(self, path: str, event: str | None = None) -> list[dict[str, Any]]:
        return [g.body for g in self.got if g.path == path and event in (None, g.body.get("event"))]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver("")

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(made.delay.get(self.path, 0.0))
            made.got.append(Got(self.path, json.loads(raw), time.time()))
            self.send_response(made.status.get(self.path, 200))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # what `config validate` asks
            self.send_response(405)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    made.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield made
    server.shutdown()
    server.server_close()


# ------------------------------------------------------------------------------ the platform
@dataclass
class Platform:
    redis: RedisServer
    mongo: MongoServer
    backend: Backend
    tmp: Path

    def settings(
        self,
        hooks: list[Any],
        thresholds: dict[str, float] | None = None,
        error_window_s: float = 3.0,
        **alerts: Any,
    ) -> Settings:
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
            # a short error-rate window: a repaired fault's 503s leave it soon
            monitor={"window_s": 0.5, "api_probes": 3, "error_window_s": error_window_s},
            alerts={"webhooks": hooks, **alerts},
        )

    def traffic(self, path: str = "/api/health", n: int = 60) -> None:
        """Requests from clients (not the monitor), so that the error rate has its data; at
        once, as each may wait for a server that is down."""

        def get(_: int) -> None:
            with contextlib.suppress(urllib.error.HTTPError):
                urllib.request.urlopen(self.backend.url + path, timeout=10).close()

        with ThreadPoolExecutor(20) as pool:
            list(pool.map(get, range(n)))


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


def alert_once(settings: Settings) -> tuple[int, str]:
    """`monitor once --alert`; its exit code is checked to be the sample's own, whatever the
    alerts and their webhooks did."""
    result = invoke("monitor", "once", "--alert", "--json", settings=settings)
    sample = result.json()
    counted = [
        m["verdict"]
        for m in sample["metrics"]
        if not (sample["maintenance"] and m["verdict"] == "breach")
    ]
    assert result.exit_code == exit_code_of(counted), result.stderr
    return result.exit_code, result.stderr


# ------------------------------------------------------------------------- episode lifecycle
@pytest.mark.redis
@pytest.mark.mongo
def test_cron_runs_send_one_opened_a_reminder_after_repeat_and_one_resolved(
    platform: Platform, receiver: Receiver
) -> None:
    hooks = [{"url": receiver.url + "/slack"}, {"url": receiver.url + "/json", "format": "json"}]
    settings = platform.settings(hooks)
    assert alert_once(settings)[0] == 0
    assert receiver.got == []  # healthy: nothing to say

    platform.redis.stop()
    codes = [alert_once(settings)[0] for _ in range(3)]
    assert all(codes)  # the sample's own: 3 (Redis unknown) or 1 (the probes' 503s breach)
    opened = receiver.bodies("/json", "opened")
    assert len(receiver.bodies("/json")) == 1 and len(opened) == 1  # once, not per run
    assert opened[0]["root_cause"] == "redis" and opened[0]["kind"] == "down"
    assert "cache_hit_rate_pct" in {m["metric"] for m in opened[0]["metrics"]}
    slack = receiver.bodies("/slack")
    assert len(slack) == 1 and "OPENED" in slack[0]["text"] and "Redis is down" in slack[0]["text"]

    time.sleep(2.5)
    alert_once(platform.settings(hooks, repeat_s=2.0))
    reminders = receiver.bodies("/json", "reminder")
    assert len(reminders) == 1 and reminders[0]["episode"] == opened[0]["episode"]
    assert "STILL OPEN" in receiver.bodies("/slack")[-1]["text"]

    platform.redis.start()
    time.sleep(3)  # the error rate's window passes over the outage's 503s
    assert alert_once(settings)[0] == 0
    resolved = receiver.bodies("/json", "resolved")
    assert len(resolved) == 1 and resolved[0]["episode"] == opened[0]["episode"]
    assert resolved[0]["resolved"] is not None
    assert "RESOLVED" in receiver.bodies("/slack")[-1]["text"]
    alert_once(settings)
    assert len(receiver.bodies("/json")) == 3  # opened, reminder, resolved: nothing more


@pytest.mark.redis
@pytest.mark.mongo
def test_mongodb_down_is_one_alert_naming_it_with_the_api_symptoms_under_it(
    platform: Platform, receiver: Receiver
) -> None:
    settings = platform.settings(
        [{"url": receiver.url + "/json", "format": "json"}], error_window_s=60.0
    )
    platform.mongo.kill()
    platform.traffic("/api/health")  # the backend answers them 503 now
    code, stderr = alert_once(settings)
    sent = receiver.bodies("/json")
    assert len(sent) == 1, sent
    alert = sent[0]
    assert alert["event"] == "opened" and alert["root_cause"] == "mongodb"
    assert alert["root_cause_name"] == "MongoDB" and alert["kind"] == "down"
    api = [s for s in alert["symptoms"] if s["component"] == "api"]
    assert api, alert
    assert "error_rate_pct" in {m["metric"] for m in api[0]["metrics"]}
    assert "5xx" in alert["text"] and "MongoDB is down" in alert["text"]
    assert "alert opened: #" in stderr and "MongoDB" in stderr
    assert code != 0

    platform.mongo.start()
    alert_once(settings)  # MongoDB answers; the error rate of the last minute still holds its 503s
    assert len(receiver.bodies("/json")) == 1  # the same episode still: no API one opens
    alert_once(  # the outage has left the error rate's window
        platform.settings([{"url": receiver.url + "/json", "format": "json"}], error_window_s=1.0)
    )
    events = [(b["event"], b["episode"]) for b in receiver.bodies("/json")]
    assert events == [("opened", alert["episode"]), ("resolved", alert["episode"])]


# ------------------------------------------------------------------------------ maintenance
@pytest.mark.redis
@pytest.mark.mongo
def test_maintenance_silences_alerts_even_of_redis_itself_and_after_it_only_new_is_sent(
    platform: Platform, receiver: Receiver
) -> None:
    # an episode open before the maintenance: every disk over a 0 % limit
    settings = platform.settings(
        [{"url": receiver.url + "/json", "format": "json"}], thresholds={"disk_pct": 0.0}
    )
    alert_once(settings)
    assert receiver.got == []  # one breaching sample is not yet an episode (open_after 2)
    alert_once(settings)
    assert [b["root_cause"] for b in receiver.bodies("/json", "opened")] == ["host"]

    on = invoke("maintenance", "on", "-m", "Redis and MongoDB upgrade", "--yes", settings=settings)
    assert on.exit_code == 0, on.stderr
    platform.mongo.kill()
    alert_once(settings)  # the flag is read from Redis: silence
    platform.redis.stop()
    alert_once(settings)  # Redis down: no flag to read, the store's window says maintenance
    assert len(receiver.got) == 1

    platform.redis.start()  # started empty: its flag is gone, the window in the store is not
    alert_once(settings)
    assert len(receiver.got) == 1
    assert invoke("maintenance", "off", "--yes", settings=settings).exit_code == 0

    alert_once(settings)  # MongoDB is still down: new since maintenance began; the disks not
    opened = receiver.bodies("/json", "opened")
    assert [b["root_cause"] for b in opened] == ["host", "mongodb"]
    assert receiver.bodies("/json", "reminder") == []


# ------------------------------------------------------------------------ webhooks that fail
@pytest.mark.redis
@pytest.mark.mongo
def test_failing_webhook_keeps_the_exit_code_and_is_retried_at_the_next_run(
    platform: Platform, receiver: Receiver
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/hook"
    hooks = [{"url": receiver.url + "/flaky", "format": "json"}, {"url": closed, "format": "json"}]
    settings = platform.settings(hooks)
    # an unreachable webhook is a warning at config validate, not a failure
    checked = invoke("config", "validate", "--json", settings=settings)
    assert checked.exit_code == 0, checked.stdout
    rows = {f["item"]: f for f in checked.json()["findings"]}
    assert (
        rows["alerts.webhooks[1]"]["warning"] and "refused" in rows["alerts.webhooks[1]"]["detail"]
    )
    assert "answers (HTTP 405)" in rows["alerts.webhooks[0]"]["detail"]

    platform.redis.stop()
    receiver.status["/flaky"] = 500
    code, stderr = alert_once(settings)  # exit code: the sample's own (checked there)
    assert code in (1, 3)
    assert "failed (HTTP 500); retried at the next run" in stderr
    assert "failed (cannot reach http://127.0.0.1:" in stderr and "/hook" not in stderr
    assert len(receiver.bodies("/flaky")) == 1  # tried once, refused

    receiver.status["/flaky"] = 200
    alert_once(settings)
    retried = receiver.bodies("/flaky")
    assert len(retried) == 2 and retried[1]["event"] == "opened"  # the same message, again
    alert_once(settings)
    assert len(receiver.bodies("/flaky")) == 2  # delivered: never sent twice


@pytest.mark.redis
@pytest.mark.mongo
def test_a_slow_receiver_never_delays_the_next_live_sample(
    platform: Platform, receiver: Receiver
) -> None:
    receiver.delay["/slow"] = 4.0
    settings = platform.settings([{"url": receiver.url + "/slow", "format": "json"}], timeout_s=8.0)
    platform.redis.stop()  # an episode opens at the first sample
    result = invoke(
        "monitor", "--interval", "1", "--duration", "6", "--alert", "--json", settings=settings
    )
    times = [doc["time"] for doc in map(json.loads, result.stdout.splitlines()) if "metrics" in doc]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) >= 4, times
    assert max(gaps) < 3.0, gaps  # sending in line would hold one sample back 4 s
    assert [b["event"] for b in receiver.bodies("/slow")] == ["opened"]  # it did arrive


# ---------------------------------------------------------------------------- configuration
def test_malformed_webhook_url_is_exit_2_at_config_validate(tmp_path: Path) -> None:
    settings = closed_settings(tmp_path).model_copy(
        update={
            "alerts": AlertSettings(
                webhooks=[{"url": "hooks.example.com/no-scheme"}, {"url": "http://:80/x"}]
            )
        }
    )
    result = invoke("config", "validate", "--json", settings=settings)
    assert result.exit_code == 2  # before the servers' exit 3: the setting itself is wrong
    rows = {f["item"]: f for f in result.json()["findings"]}
    assert "scheme must be http or https" in rows["alerts.webhooks[0]"]["detail"]
    assert rows["alerts.webhooks[1]"]["detail"].endswith("no host")
    shown = invoke("config", "show", "--json", settings=settings)
    assert shown.exit_code == 0


def test_insufficient_idle_and_info_never_open_an_episode() -> None:
    def metric(name: str, verdict: Verdict) -> Metric:
        return Metric(name, 1.0, "%", verdict, 1.0)

    sample = Sample(
        time.time(),
        1.0,
        1.0,
        None,
        [
            metric("error_rate_pct", Verdict.INSUFFICIENT),
            metric("cache_hit_rate_pct", Verdict.IDLE),
            metric("active_users", Verdict.INFO),
            metric("db_query_ms", Verdict.OK),
        ],
    )
    assert problems(sample, Settings()) == {}
    sample.metrics[0].verdict = Verdict.BREACH
    assert list(problems(sample, Settings())) == ["api"]
