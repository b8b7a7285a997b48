"""`travellr-ops service` on Docker Compose, against a real Docker Engine and the real stack."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from cli import invoke
from fixtures_docker import SESSION_LABEL, ComposeStack
from helpers_signals import spawn_interruptible
from travellr_ops.settings import ComposeSettings, Settings

pytestmark = pytest.mark.docker


def _hit(url: str) -> None:
    with contextlib.suppress(urllib.error.HTTPError):  # the debug endpoint answers 500
        urllib.request.urlopen(url, timeout=10).read()


def _env(stack: ComposeStack) -> dict[str, str]:
    """The environment a user's shell would give travellr-ops for this stack."""
    return {
        **os.environ,
        "TRAVELLR_PLATFORM": "compose",
        "TRAVELLR_COMPOSE__PROJECT": stack.project,
        "TRAVELLR_COMPOSE__DOCKER_HOST": stack.docker_host,
        "TRAVELLR_STATE_DIR": str(stack.state_dir),
    }


# -- status -----------------------------------------------------------------------------------
@pytest.mark.docker
def test_status_of_a_healthy_stack(stack: ComposeStack) -> None:
    result = invoke("--json", "service", "status", settings=stack.settings())

    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["ok"] is True
    services = {s["name"]: s for s in doc["services"]}
    assert set(services) == {"backend", "mongodb", "redis"}
    backend = services["backend"]
    assert backend["available"] is True
    (inst,) = backend["instances"]
    assert inst["state"] == "running"
    assert inst["health"] == "healthy"
    assert inst["image"] == "travellr-backend:v1"
    assert inst["image_digest"].startswith("sha256:")
    assert inst["started_at"]


@pytest.mark.docker
def test_backend_stopped_behind_our_back_is_reported_down_then_restart_brings_it_back(
    stack: ComposeStack,
) -> None:
    stack.container("backend").stop(timeout=10)

    down = invoke("service", "status", settings=stack.settings())

    assert down.exit_code == 1
    assert "backend" in down.stderr and "exited" in down.stderr
    assert "0/1" in down.stdout

    restarted = invoke("service", "restart", "backend", "--yes", settings=stack.settings())

    assert restarted.exit_code == 0, restarted.stderr
    assert "running and healthy" in restarted.stderr
    assert stack.healthy("backend")
    with urllib.request.urlopen(stack.backend_url + "/api/health", timeout=10) as answer:
        assert answer.status == 200
    audit = [json.loads(x) for x in (stack.state_dir / "audit.log").read_text().splitlines()]
    assert audit[-1]["action"] == "service restart backend"
    assert audit[-1]["outcome"] == "ok"
    after = invoke("service", "status", "backend", settings=stack.settings())
    assert after.exit_code == 0, after.stderr


@pytest.mark.docker
def test_restart_without_yes_and_without_a_terminal_is_refused(stack: ComposeStack) -> None:
    started = stack.container("backend").attrs["State"]["StartedAt"]

    refused = invoke("service", "restart", "backend", settings=stack.settings())
    dry = invoke("service", "restart", "backend", "--dry-run", settings=stack.settings())

    assert refused.exit_code == 4
    assert dry.exit_code == 0, dry.stderr
    assert "would restart backend" in dry.stderr
    assert stack.container("backend").attrs["State"]["StartedAt"] == started


@pytest.mark.docker
def test_unknown_service_exits_2_naming_the_known_ones(stack: ComposeStack) -> None:
    result = invoke("service", "status", "frontend", settings=stack.settings())

    assert result.exit_code == 2
    assert "unknown service 'frontend'" in result.stderr
    assert "backend, mongodb, redis" in result.stderr


# -- logs -------------------------------------------------------------------------------------
@pytest.mark.docker
def test_logs_grep_finds_an_error_the_backend_logged(stack: ComposeStack) -> None:
    before = invoke("service", "logs", "backend", "--grep", "ERROR", settings=stack.settings())
    _hit(stack.backend_url + "/api/debug/error")

    after = invoke("service", "logs", "backend", "--grep", "ERROR", settings=stack.settings())

    assert after.exit_code == 0, after.stderr
    lines = after.stdout.splitlines()
    assert len(lines) > len(before.stdout.splitlines())
    assert all("ERROR" in line.upper() for line in lines)
    # each line: timestamp, container, text
    stamp, source, *_ = lines[-1].split(" ")
    assert stamp.endswith("Z") and stamp[:4].isdigit()
    assert source == stack.container("backend").name


@pytest.mark.docker
def test_logs_level_error_keeps_only_errors(stack: ComposeStack) -> None:
    _hit(stack.backend_url + "/api/debug/error")
    _hit(stack.backend_url + "/api/health")

    result = invoke(
        "--json", "service", "logs", "backend", "--level", "ERROR", "--tail", "500",
        settings=stack.settings(),
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    texts = [line["text"] for line in result.json()["lines"]]
    assert texts
    assert all("ERROR" in t.upper() or "CRITICAL" in t.upper() for t in texts)


@pytest.mark.docker
def test_logs_of_several_services_are_interleaved_by_time(stack: ComposeStack) -> None:
    result = invoke(
        "--json", "service", "logs", "backend", "mongodb", "redis", "--tail", "20",
        settings=stack.settings(),
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    lines = result.json()["lines"]
    sources = {line["source"] for line in lines}
    assert {stack.container(s).name for s in ("backend", "mongodb", "redis")} <= sources
    times = [line["time"] for line in lines]
    assert times == sorted(times)


@pytest.mark.docker
def test_logs_bad_since_and_bad_regex_are_usage_errors(stack: ComposeStack) -> None:
    since = invoke("service", "logs", "backend", "--since", "yesterday", settings=stack.settings())
    regex = invoke("service", "logs", "backend", "--grep", "(", settings=stack.settings())

    assert since.exit_code == 2
    assert regex.exit_code == 2


@pytest.mark.docker
def test_logs_follow_streams_and_ctrl_c_exits_130(stack: ComposeStack) -> None:
    env = _env(stack)
    proc = spawn_interruptible(
        [sys.executable, "-m", "travellr_ops", "service", "logs", "backend", "-f", "--tail", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # the --tail 1 line: the stream is open
        _hit(stack.backend_url + "/api/debug/error")
        seen = ""
        for _ in range(50):
            seen = proc.stdout.readline()
            if "ERROR" in seen.upper():
                break
        assert "ERROR" in seen.upper()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 130
    assert "Traceback" not in proc.stderr.read() if proc.stderr else True


# -- stats and top ----------------------------------------------------------------------------
@pytest.mark.docker
def test_stats_show_real_figures(stack: ComposeStack) -> None:
    result = invoke("--json", "service", "stats", settings=stack.settings())

    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["cpu_threshold_pct"] == 70.0
    usage = {u["service"]: u for u in doc["usage"]}
    assert set(usage) == {"backend", "mongodb", "redis"}
    for u in usage.values():
        assert u["cpu_pct"] is not None and u["cpu_pct"] >= 0
        assert u["memory_bytes"] > 1024 * 1024  # a real process uses more than a MiB
        assert u["memory_limit_bytes"] >= u["memory_bytes"]
        assert 0 < u["memory_pct"] < 100
        assert u["block_read_bytes"] is not None


@pytest.mark.docker
def test_stats_over_the_memory_threshold_exits_1(stack: ComposeStack) -> None:
    settings = stack.settings()
    settings.thresholds.memory_pct = 0.0001

    result = invoke("service", "stats", "backend", settings=settings)

    assert result.exit_code == 1
    assert "over threshold" in result.stderr and "memory" in result.stderr


@pytest.mark.docker
def test_stats_watch_refreshes_until_ctrl_c(stack: ComposeStack) -> None:
    proc = spawn_interruptible(
        [sys.executable, "-m", "travellr_ops", "--json", "service", "stats", "backend",
         "--watch", "--interval", "0.5"],
        env=_env(stack), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        readings = [json.loads(proc.stdout.readline()) for _ in range(2)]
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 130
    for reading in readings:
        (usage,) = reading["usage"]
        assert usage["memory_bytes"] > 0


@pytest.mark.docker
def test_top_lists_the_processes_in_the_container(stack: ComposeStack) -> None:
    result = invoke("--json", "service", "top", "backend", settings=stack.settings())

    assert result.exit_code == 0, result.stderr
    (listing,) = result.json()["instances"]
    assert "PID" in listing["titles"]
    assert any("server.js" in " ".join(p) for p in listing["processes"])


# -- up / down ----------------------------------------------------------------------------------
@pytest.mark.docker
def test_down_then_up_of_the_backend(stack: ComposeStack) -> None:
    down = invoke("service", "down", "backend", "--yes", settings=stack.settings())

    assert down.exit_code == 0, down.stderr
    status = invoke("--json", "service", "status", "backend", settings=stack.settings())
    assert status.exit_code == 1
    assert status.json()["services"][0]["instances"] == []
    # the same verdict as on Kubernetes (test_service_k8s): stopped on purpose, exit 1
    assert status.json()["services"][0]["stopped"] is True
    human = invoke("service", "status", "backend", settings=stack.settings())
    assert human.exit_code == 1 and "backend is stopped" in human.stderr

    up = invoke("service", "up", "backend", "--yes", settings=stack.settings())

    assert up.exit_code == 0, up.stderr
    # `up` waited until the backend was healthy again
    assert invoke("service", "status", settings=stack.settings()).exit_code == 0


# -- persistence -------------------------------------------------------------------------------
@pytest.mark.docker
def test_restarts_of_mongodb_and_redis_keep_their_data(stack: ComposeStack) -> None:
    from pymongo import MongoClient
    from redis import Redis

    mongo_uri = f"mongodb://127.0.0.1:{stack.ports['mongodb']}/persisted"
    redis_url = f"redis://127.0.0.1:{stack.ports['redis']}/0"
    s = stack.settings()
    s.mongo.uri = mongo_uri
    s.redis.url = redis_url

    def counted() -> int:
        client: Any = MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
        try:
            return int(client.persisted.bookings.count_documents({}))
        finally:
            client.close()

    def cached() -> bytes | None:
        with Redis.from_url(redis_url, socket_timeout=10) as client:
            return client.get("travellr:persisted")

    def started(service: str) -> str:
        return str(stack.container(service).attrs["State"]["StartedAt"])

    client: Any = MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
    client.persisted.bookings.insert_many([{"n": i} for i in range(1000)])
    client.close()
    with Redis.from_url(redis_url) as r:
        r.set("travellr:persisted", b"kept")
    try:
        before = started("mongodb")
        restarted = invoke("db", "restart", "--yes", settings=s)
        assert restarted.exit_code == 0, restarted.stderr
        assert started("mongodb") != before  # the server really went away and came back
        assert counted() == 1000

        for service in ("mongodb", "redis"):
            before = started(service)
            restarted = invoke("service", "restart", service, "--yes", settings=s)
            assert restarted.exit_code == 0, restarted.stderr
            assert started(service) != before
        assert counted() == 1000
        assert cached() == b"kept"
    finally:
        client = MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
        client.drop_database("persisted")
        client.close()
        with Redis.from_url(redis_url) as r:
            r.delete("travellr:persisted")


# -- faults ------------------------------------------------------------------------------------
@pytest.mark.docker
def test_restart_of_a_container_that_dies_reports_its_last_logs(
    docker_engine: str, tmp_path: Path
) -> None:
    project = f"travellrdies{os.getpid()}"
    compose_file = tmp_path / "compose.yml"
    compose_file.write_text(
        f"""
services:
  backend:
    image: travellr-backend:v1
    network_mode: none
    restart: "no"
    labels:
      {SESSION_LABEL}: {project}
    command: ["sh", "-c", "echo booting; sleep 1; echo 'FATAL cannot read /etc/travellr/secrets'; exit 3"]
    healthcheck:
      test: ["CMD", "false"]
      interval: 5s
"""
    )
    stack = ComposeStack(project, docker_engine, tmp_path / "state", tmp_path)
    settings = Settings(
        state_dir=tmp_path / "state",
        compose=ComposeSettings(project=project, docker_host=docker_engine),
    )
    try:
        stack.compose("up", "-d", files=[compose_file])

        result = invoke("service", "restart", "backend", "--yes", settings=settings)

        assert result.exit_code == 1
        assert "died" in result.stderr
        assert "exit code 3" in result.stderr
        assert "FATAL cannot read /etc/travellr/secrets" in result.stdout
        audit = [json.loads(x) for x in (tmp_path / "state" / "audit.log").read_text().splitlines()]
        assert audit[-1]["outcome"] == "failed"
    finally:
        stack.remove_everything()


@pytest.mark.docker
def test_restart_of_a_backend_whose_health_check_fails_exits_1(stack: ComposeStack) -> None:
    stack.compose("up", "-d", "backend", env={"TRAVELLR_BACKEND_TAG": "v2-broken"})

    result = invoke("service", "restart", "backend", "--yes", settings=stack.settings())

    assert result.exit_code == 1
    assert "unhealthy" in result.stderr
    assert "did not come back healthy" in result.stderr
    status = invoke("--json", "service", "status", "backend", settings=stack.settings())
    assert status.exit_code == 1
    assert status.json()["services"][0]["image"] == "travellr-backend:v2-broken"


def test_an_engine_that_is_not_there_exits_3_with_a_hint(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path,
        compose=ComposeSettings(docker_host=f"unix://{tmp_path}/nothing-here.sock"),
    )

    result = invoke("service", "status", settings=settings)

    assert result.exit_code == 3
    assert "no Docker Engine at" in result.stderr
    assert "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_engine_that_is_down_exits_3(tmp_path: Path) -> None:
    # A socket file whose listener is gone: what a stopped dockerd leaves behind.
    path = tmp_path / "docker.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    settings = Settings(state_dir=tmp_path, compose=ComposeSettings(docker_host=f"unix://{path}"))

    result = invoke("service", "logs", "backend", settings=settings)

    assert result.exit_code == 3
    assert "down (connection refused)" in result.stderr


@pytest.mark.docker
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a socket only root may use")
def test_no_permission_on_the_socket_exits_3(docker_engine: str) -> None:
    script = (
        "import os, sys\n"
        # everything imported first: the unprivileged user may not read the venv
        "import docker, rich.markup, rich.table, rich.console\n"
        "import travellr_ops.adapters.docker, travellr_ops.ops.service, travellr_ops.safety\n"
        "from travellr_ops.cli.app import run\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "sys.exit(run(sys.argv[1:]))\n"
    )
    env = {
        **os.environ,
        "TRAVELLR_PLATFORM": "compose",  # whatever ./travellr-ops.toml (the sandbox's) says
        "TRAVELLR_COMPOSE__DOCKER_HOST": docker_engine,
        # places the unprivileged user may look at (pytest's tmp folders are root's only)
        "TRAVELLR_STATE_DIR": "/nonexistent/state",
        "HOME": "/nonexistent",
        "XDG_CONFIG_HOME": "/nonexistent",
    }
    done = subprocess.run(
        [sys.executable, "-c", script, "service", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 3, done.stderr
    assert "no permission" in done.stderr
