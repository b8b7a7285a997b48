"""Every group on every platform: the read-only commands that read the backend's logs
(`monitor once`, `security logs`, `incident open`, `checklist morning`) against the sandbox's
plain processes, the compose stack and the Kubernetes testbed, with traffic the test sends
itself: good requests, 500s (/api/debug/error) and failed logins (POST /api/auth/login), from
a client address of its own (X-Forwarded-For), counted against what was sent.

Each platform is one test (one stack, every command once): the logs are where that platform's
stack writes them, named by no setting but the platform.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli import invoke
from fixtures_docker import ComposeStack
from fixtures_k8s import K8sNamespace, backend_deployment, k8s_node_sim
from fixtures_servers import Backend
from travellr_ops.settings import Settings
from travellr_ops.vocab.logformat import access_time, request_status

GOOD, ERRORS, FAILED_LOGINS = 12, 3, 3
LOG_FILES = k8s_node_sim.LOG_FILES_ANNOTATION
#: thresholds no healthy test machine breaches, so that only the error rate can
CALM = {"api_response_ms": 60_000.0, "db_query_ms": 60_000.0, "cpu_pct": 1000.0}
CALM |= {"memory_pct": 100.0, "disk_pct": 100.0, "cache_hit_rate_pct": 0.0}


@dataclass
class Traffic:
    start: datetime
    ip: str
    marker: str
    good: int = GOOD
    errors: int = ERRORS
    failed_logins: int = FAILED_LOGINS

    @property
    def requests(self) -> int:
        return self.good + self.errors + self.failed_logins


def send_traffic(base_url: str) -> Traffic:
    """The test's own requests, from the start of a second of their own."""
    time.sleep(1.05 - time.time() % 1)
    start = datetime.now(UTC).replace(microsecond=0)
    ip = f"198.51.100.{secrets.randbelow(250) + 1}"
    marker = f"matrix{secrets.token_hex(3)}"
    headers = {"X-Forwarded-For": ip, "User-Agent": "platform-matrix"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=15) as client:
        for i in range(GOOD):
            assert client.get(f"/api/trips/popular?{marker}={i}").status_code == 200
        for i in range(ERRORS):
            assert client.get(f"/api/debug/error?{marker}={i}").status_code == 500
        for i in range(FAILED_LOGINS):
            body = {"email": f"{marker}-{i}@example.com", "password": "wrong"}
            assert client.post("/api/auth/login", json=body).status_code == 401
    return Traffic(start, ip, marker)


def access_lines_since(text: str, start: datetime, status: str = "") -> int:
    """An independent count: the access-log lines of ``text`` from ``start`` on (whose status
    starts with ``status``)."""
    return sum(
        1
        for line in text.splitlines()
        if (when := access_time(line))
        and when >= start
        and str(request_status(line) or "").startswith(status)
    )


def check_every_group(
    settings: Settings,
    sent: Traffic,
    log_text: Callable[[], str],
    security_source: list[str],
    where: str,
) -> dict[str, Any]:
    """Each read-only command once; the figures each reported, for the closing note."""

    def logged(since: datetime, status: str = "") -> int:
        return access_lines_since(log_text(), since, status)

    figures: dict[str, Any] = {"sent": sent.requests, "500s": sent.errors}
    figures["failed_logins_sent"] = sent.failed_logins
    elapsed = (datetime.now(UTC) - sent.start).total_seconds()
    # the error rate is read after the sample's first phase (the platform's usage primed, the
    # probe window), seconds after the command starts: the error window reaches back over
    # that too
    margin = 30
    settings.monitor.error_window_s = math.ceil(elapsed) + margin  # the test's traffic and after

    # monitor once: the error rate is the test's 500s over every request since it began, and
    # what the window reaches before (up to the margin; a backend other tests share may have
    # logged 5xx there): bounded by independent counts of the log
    before = logged(sent.start)
    errors_before = logged(sent.start, "5")
    monitor = invoke("--json", "monitor", "once", settings=settings)
    after = logged(sent.start - timedelta(seconds=margin))
    errors_after = logged(sent.start - timedelta(seconds=margin), "5")
    (rate,) = [m for m in monitor.json()["metrics"] if m["name"] == "error_rate_pct"]
    assert rate["verdict"] != "unknown", rate["detail"]
    errors, requests = map(int, re.match(r"(\d+) of (\d+) requests 5xx", rate["detail"]).groups())
    assert where in rate["detail"]
    assert errors_before == sent.errors  # the independent count sees the test's 500s
    assert errors_before <= errors <= errors_after, (rate["detail"], errors_after)
    assert sent.requests <= requests and before <= requests <= after, (before, requests, after)
    figures["monitor"] = {"requests": requests, "errors": errors, "rate_pct": rate["value"]}

    # security logs: every request, and the test's failed logins, by its client address
    before = logged(sent.start)
    review = invoke(
        "--json",
        "security",
        "logs",
        *security_source,
        "--since",
        sent.start.isoformat(),
        settings=settings,
    )
    after = logged(sent.start)
    assert review.exit_code == 0, review.stderr
    doc = review.json()
    assert before <= doc["requests"] <= after and doc["requests"] >= sent.requests
    assert doc["failed_logins_by_ip"] == {sent.ip: sent.failed_logins}
    (mine,) = [row for row in doc["denied_by_ip"] if row["key"] == sent.ip]
    assert mine["401"] == sent.failed_logins
    figures["security logs"] = {
        "requests": doc["requests"],
        "failed_logins": doc["failed_logins"],
        "401_from_test_ip": mine["401"],
    }

    # incident open: the last access and app log lines are its evidence
    opened = invoke(
        "--json", "incident", "open", "platform matrix", "--severity", "3", settings=settings
    )
    assert opened.exit_code == 0, opened.stderr
    evidence = {e["source"]: e for e in opened.json()["evidence"]}
    access, app = evidence["access log"], evidence["app log"]
    assert access["state"] == "ok" and app["state"] == "ok", (access["detail"], app["detail"])
    assert where in access["data"]["path"]
    assert any(sent.marker in line for line in access["data"]["lines"])
    assert any(f"ip={sent.ip}" in line for line in app["data"]["lines"])
    figures["incident open"] = {
        "access_lines": len(access["data"]["lines"]),
        "test_requests_among_them": sum(sent.marker in ln for ln in access["data"]["lines"]),
        "app_lines": len(app["data"]["lines"]),
    }

    # checklist morning: the metrics step is known; the 500s are ERROR lines in the app log
    morning = invoke("--json", "checklist", "morning", settings=settings)
    steps = {s["name"]: s for s in morning.json()["steps"]}
    assert steps["metrics"]["verdict"] != "unknown", steps["metrics"]["detail"]
    errors_step = steps["backend-errors"]
    assert errors_step["verdict"] == "fail", errors_step["detail"]
    assert errors_step["data"]["count"] >= sent.errors
    assert all(f"ip={sent.ip}" in line for line in errors_step["data"]["newest"])
    figures["checklist morning"] = {
        "metrics": steps["metrics"]["verdict"],
        "backend-errors": errors_step["detail"],
    }
    return figures


def _report(platform: str, figures: dict[str, Any]) -> None:
    print(f"\nplatform matrix, {platform}: {figures}")


# ---------------------------------------------------------------------------------- sandbox
@pytest.mark.redis
@pytest.mark.mongo
def test_sandbox_processes(
    backend: Backend, redis_url: str, seeded_mongo_uri: str, tmp_path: Path
) -> None:
    """platform none: the backend's own log files."""
    settings = Settings(
        platform="none",
        state_dir=tmp_path / "state",
        disk_paths=[tmp_path],
        mongo={"uri": seeded_mongo_uri, "timeout_s": 3.0},
        redis={"url": redis_url, "timeout_s": 3.0},
        api={"url": backend.url},
        backup={"dir": tmp_path / "backups"},
        logs={"access_log": backend.access_log, "app_log": backend.app_log},
        thresholds=CALM,
        monitor={"window_s": 0.5, "api_probes": 1},
        checklist={"cache_window_s": 0.5},
    )
    sent = send_traffic(backend.url)
    figures = check_every_group(
        settings,
        sent,
        backend.access_log.read_text,
        [],
        str(backend.access_log),
    )
    _report("none", figures)


# ---------------------------------------------------------------------------------- compose
@pytest.mark.docker
def test_compose_stack(stack: ComposeStack, tmp_path: Path) -> None:
    """compose: the access log inside the backend container (LOG_DIR), the app log on its
    standard output; `security logs --source service` reads both."""
    base = stack.settings()
    settings = Settings(
        platform="compose",
        state_dir=tmp_path / "state",
        disk_paths=[tmp_path],
        compose=base.compose,
        mongo={
            "uri": f"mongodb://127.0.0.1:{stack.ports['mongodb']}/travellr?directConnection=true",
            "timeout_s": 3.0,
        },
        redis={"url": f"redis://127.0.0.1:{stack.ports['redis']}/0", "timeout_s": 3.0},
        api={"url": stack.backend_url},
        backup={"dir": tmp_path / "backups"},
        thresholds=CALM,
        monitor={"window_s": 0.5, "api_probes": 1},
        checklist={"cache_window_s": 0.5},
    )
    sent = send_traffic(stack.backend_url)

    def log_text() -> str:
        code, out = stack.container("backend").exec_run(["cat", "/var/log/travellr/access.log"])
        assert code == 0
        return str(out.decode())

    figures = check_every_group(
        settings,
        sent,
        log_text,
        ["--source", "service"],
        "compose:backend:/var/log/travellr/access.log",
    )
    _report("compose", figures)


# ------------------------------------------------------------------------------- kubernetes
@pytest.mark.k8s
@pytest.mark.redis
@pytest.mark.mongo
def test_kubernetes_testbed(
    k8s_ns: K8sNamespace, backend: Backend, redis_url: str, seeded_mongo_uri: str, tmp_path: Path
) -> None:
    """kubernetes: the pod logs, through the API server and the (simulated) kubelet. The
    testbed runs no container: its node serves as the backend pod's log the lines of a real
    backend process (its access and app log files, merged by time, as a backend writing both
    to its standard output shows them), so that the test's own requests are what the pod
    logs hold."""
    k8s_ns.apply(
        backend_deployment(
            replicas=1,
            annotations={LOG_FILES: f"{backend.access_log},{backend.app_log}"},
        )
    )
    for name in ("mongodb", "redis"):
        k8s_ns.apply(backend_deployment(name=name, image=f"travellr-{name}:testbed", replicas=1))
    for name in ("travellr-backend", "mongodb", "redis"):
        k8s_ns.wait_available(name)
    _wait_for_pod_metrics(k8s_ns, 3)
    base = k8s_ns.settings()
    settings = Settings(
        platform="kubernetes",
        state_dir=tmp_path / "state",
        disk_paths=[tmp_path],
        kubernetes=base.kubernetes,
        mongo={"uri": seeded_mongo_uri, "timeout_s": 3.0},
        redis={"url": redis_url, "timeout_s": 3.0},
        api={"url": backend.url},
        backup={"dir": tmp_path / "backups"},
        thresholds=CALM,
        monitor={"window_s": 0.5, "api_probes": 1},
        checklist={"cache_window_s": 0.5},
    )
    sent = send_traffic(backend.url)
    figures = check_every_group(
        settings,
        sent,
        backend.access_log.read_text,
        ["--source", "service"],
        "kubernetes:backend (pod logs)",
    )
    _report("kubernetes", figures)


def _wait_for_pod_metrics(ns: K8sNamespace, pods: int, timeout: float = 30) -> None:
    """The simulated metrics API publishes each pod's usage every few seconds: wait for all."""
    from kubernetes import client

    deadline = time.monotonic() + timeout
    with ns.cluster.api_client() as api:
        custom = client.CustomObjectsApi(api)
        while time.monotonic() < deadline:
            found = custom.list_namespaced_custom_object(
                k8s_node_sim.METRICS_GROUP, k8s_node_sim.METRICS_VERSION, ns.name, "pods"
            )
            if len(found["items"]) >= pods:
                return
            time.sleep(0.5)
    raise AssertionError(f"no metrics for {pods} pods in {timeout:g} s")
