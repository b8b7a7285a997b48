"""Pure logic of `deploy`: input checks, request counting, the gate's streak rule, where a
rollback goes by revision number, webhooks (a real local HTTP server on 127.0.0.1), the
history store."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cli import invoke
from servers import free_port
from travellr_ops.adapters.docker import ComposePlatform
from travellr_ops.adapters.kubernetes import KubernetesPlatform
from travellr_ops.adapters.platform_types import LogLine, Release
from travellr_ops.ops.deploy.gate import GateSample, count_requests, watch
from travellr_ops.ops.deploy.history import History
from travellr_ops.ops.deploy.notify import Notifier
from travellr_ops.settings import ComposeSettings, DeploySettings, Settings


@pytest.mark.parametrize(
    ("watch", "message"),
    [
        ("soon", "--watch 'soon' is not a duration"),
        ("0", "--watch '0' is not a duration of more than 0 seconds"),
        ("1x", "--watch '1x' is not a duration"),
    ],
)
def test_a_bad_watch_exits_2_before_any_server_is_asked(
    tmp_path: Path, watch: str, message: str
) -> None:
    # nothing listens where the Docker Engine is said to be: a server asked would exit 3
    engine = f"tcp://127.0.0.1:{free_port()}"
    settings = Settings(state_dir=tmp_path, compose=ComposeSettings(docker_host=engine))

    result = invoke("deploy", "run", "--image", "v2", "--watch", watch, "--yes", settings=settings)

    assert result.exit_code == 2, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "audit.log").exists()


def test_requests_are_counted_in_combined_and_short_formats() -> None:
    lines = [
        '127.0.0.1 - - [28/Nov/2026:04:12:00 +0000] "GET /api/trips/popular HTTP/1.1" 500 30 "-" "x"',
        '127.0.0.1 - - [28/Nov/2026:04:12:00 +0000] "GET /api/health HTTP/1.1" 200 30 "-" "x"',
        "GET /api/trips?page=1 500 13ms",
        "GET /api/health 200 2ms",
        "travellr-backend v2 listening on port 5000",
    ]
    assert count_requests([LogLine(None, "c", t) for t in lines]) == (4, 2)


class _Gate:
    def __init__(self, oks: list[bool]) -> None:
        self.oks = oks

    def sample(self) -> GateSample:
        ok = self.oks.pop(0)
        return GateSample(
            "t",
            0,
            ok,
            "1/1",
            "ok",
            1.0,
            10,
            0 if ok else 5,
            0.0,
            0,
            [] if ok else ["error rate 50 %"],
        )


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _watch(oks: list[bool]) -> Any:
    clock = _Clock()
    return watch(_Gate(oks), 4, 1, 2, lambda s: None, sleep=clock.sleep, clock=clock)  # type: ignore[arg-type]


def test_one_bad_sample_is_not_a_failure_but_fail_after_in_a_row_is() -> None:
    passed = _watch([False, True, False, True])
    failed = _watch([True, False, False, True])

    assert passed.passed and len(passed.samples) == 4
    assert not failed.passed and len(failed.samples) == 3
    assert "error rate 50 %" in (failed.failure or "")


class _ThinGate:
    """Samples that pass but cannot judge the error rate until ``judged_from``."""

    def __init__(self, judged_from: int) -> None:
        self.judged_from = judged_from
        self.taken = 0

    def sample(self) -> GateSample:
        self.taken += 1
        thin = self.taken < self.judged_from
        return GateSample(
            "t",
            0,
            True,
            "1/1",
            "ok",
            1.0,
            2 if thin else 20,
            0,
            0.0,
            0,
            insufficient=["error rate over 2 requests (< 5): 0 5xx"] if thin else [],
        )


def test_too_little_traffic_extends_the_watch_then_is_inconclusive() -> None:
    clock = _Clock()
    # judged on the 6th sample: the 4 s watch goes on until then (within 5 s more)
    later = watch(_ThinGate(6), 4, 1, 2, lambda s: None, clock.sleep, clock, extend_s=5)  # type: ignore[arg-type]
    assert later.passed and not later.inconclusive and len(later.samples) == 6
    never = watch(_ThinGate(99), 4, 1, 2, lambda s: None, clock.sleep, clock, extend_s=3)  # type: ignore[arg-type]
    assert not never.passed and never.inconclusive and len(never.samples) == 7
    assert "too little data" in (never.failure or "") and "(< 5)" in (never.failure or "")
    assert never.samples[-1].verdict == "insufficient"


def test_webhooks_get_slack_json_and_a_failing_one_only_warns(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(200 if self.path == "/ok" else 500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    warnings: list[str] = []
    try:
        settings = Settings(
            state_dir=tmp_path,
            deploy=DeploySettings(webhook_url=base + "/ok", webhook_urls=[base + "/broken"]),
        )
        Notifier(settings, warnings.append).send("rollback", "deploy 7 rolled back")
    finally:
        server.shutdown()
        server.server_close()

    assert received[0] == {
        "text": "deploy 7 rolled back",
        "event": "rollback",
        "username": "travellr-ops",
    }
    assert len(received) == 2
    assert len(warnings) == 1 and "/broken failed (rollback): HTTP 500" in warnings[0]


def test_an_unreachable_webhook_costs_at_most_its_timeout(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # listening, never answering
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
        settings = Settings(
            state_dir=tmp_path, deploy=DeploySettings(webhook_url=url, webhook_timeout_s=0.5)
        )
        warnings: list[str] = []
        Notifier(settings, warnings.append).send("start", "deploy 1 started")

    assert len(warnings) == 1 and "failed (start)" in warnings[0]


def test_history_keeps_rows_across_writers(tmp_path: Path) -> None:
    first, second = History(tmp_path), History(tmp_path)
    a = first.start(
        kind="deploy",
        service="backend",
        platform="compose",
        started_at="t1",
        user="u",
        host="h",
        image_to="travellr-backend:v2",
    )
    b = second.start(
        kind="rollback",
        service="backend",
        platform="compose",
        started_at="t2",
        user="u",
        host="h",
        image_to="travellr-backend:v1",
    )
    first.update(a, outcome="succeeded", image_from="travellr-backend:v1")

    entries = History(tmp_path).entries("backend")

    assert [(e.id, e.outcome) for e in entries] == [(b, "running"), (a, "succeeded")]
    assert entries[1].expected_image == ("travellr-backend:v2", None)


def test_kubernetes_rolls_back_by_revision_number_and_compose_by_image() -> None:
    kubernetes = KubernetesPlatform(Settings(platform="kubernetes"))
    compose = ComposePlatform(Settings(platform="compose"))
    now = Release("backend", "kubernetes", "travellr-backend:v2", revision="3")

    previous = kubernetes.rollback_revision(now, None)
    named = kubernetes.rollback_revision(now, "1")

    assert previous is not None and (previous.revision, previous.image) == ("2", now.image)
    assert named is not None and named.revision == "1"
    assert kubernetes.rollback_revision(now, "v1") is None  # a tag: rolled back by image
    assert kubernetes.rollback_revision(Release("backend", "kubernetes", "x"), None) is None
    assert compose.rollback_revision(now, "1") is None
    assert compose.rollback_revision(now, None) is None
