"""`travellr-ops deploy` on Docker Compose: the real engine, the real stack, real images
(v2 healthy, v2-broken failing its health check, v2-errors healthy but answering 500s)."""

from __future__ import annotations

import contextlib
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from cli import invoke
from fixtures_docker import COMPOSE_FILE, ComposeStack
from helpers_signals import spawn_interruptible
from travellr_ops.safety import FileLock
from travellr_ops.settings import DeploySettings, Settings, Thresholds

pytestmark = pytest.mark.docker


def _version(stack: ComposeStack) -> str:
    """Which release answers the API, asked of the API itself."""
    with urllib.request.urlopen(stack.backend_url + "/api/health", timeout=10) as answer:
        return str(json.load(answer)["version"])


def _settings(stack: ComposeStack, tmp_path: Path, **deploy: Any) -> Settings:
    """The stack's settings, its compose file copied to a folder of this test's own (where
    deploy keeps the tag in .env), a short health gate."""
    project_dir = tmp_path / "project"
    project_dir.mkdir(exist_ok=True)
    compose_file = project_dir / "docker-compose.yml"
    shutil.copy(COMPOSE_FILE, compose_file)
    base = stack.settings(file=compose_file)
    values = {"watch_s": 4.0, "sample_interval_s": 1.0, "fail_after": 2, "probes": 5}
    values.update(deploy)
    return base.model_copy(
        update={
            "deploy": DeploySettings(**values),
            # latency is not what these tests are about: a loaded machine must not fail v2
            "thresholds": Thresholds(api_response_ms=3000),
            "mongo": base.mongo.model_copy(
                update={
                    "uri": f"mongodb://127.0.0.1:{stack.ports['mongodb']}/travellr"
                    "?directConnection=true"
                }
            ),
            "redis": base.redis.model_copy(
                update={"url": f"redis://127.0.0.1:{stack.ports['redis']}/0"}
            ),
            "backup": base.backup.model_copy(update={"dir": tmp_path / "backups"}),
            "state_dir": tmp_path / "state",  # this test's own history, audit log and locks
        }
    )


def _history(settings: Settings) -> list[dict[str, Any]]:
    result = invoke("--json", "deploy", "history", settings=settings)
    assert result.exit_code == 0, result.stderr
    return list(result.json())


def test_v2_passes_the_gate_with_a_backup_and_the_tag_stays_for_later_ups(
    stack: ComposeStack, tmp_path: Path
) -> None:
    settings = _settings(stack, tmp_path)

    result = invoke("--json", "deploy", "run", "--image", "v2", "--yes", settings=settings)

    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["outcome"] == "succeeded"
    assert report["before"]["image"] == "travellr-backend:v1"
    assert report["before"]["image_id"].startswith("sha256:")
    assert report["now"]["image"] == "travellr-backend:v2"
    assert len(report["samples"]) >= 3 and all(s["ok"] for s in report["samples"])
    assert (tmp_path / "backups" / report["backup"]).is_dir()
    assert _version(stack) == "v2"
    env_file = tmp_path / "project" / ".env"
    assert "TRAVELLR_BACKEND_TAG=v2" in env_file.read_text().splitlines()
    # a hand-typed `docker-compose up -d` in the project keeps the deployed release
    stack.compose("up", "-d", "backend", files=[tmp_path / "project" / "docker-compose.yml"])
    stack.wait_healthy()
    assert _version(stack) == "v2"
    (entry,) = _history(settings)
    assert entry["outcome"] == "succeeded" and entry["backup"] == report["backup"]
    audit = [json.loads(x) for x in (settings.state_dir / "audit.log").read_text().splitlines()]
    steps = [(a["action"], a.get("phase")) for a in audit if a.get("deploy_id") == report["id"]]
    for step in ("preflight", "backup", "record", "rollout", "watch"):
        assert (f"deploy {step}", "start") in steps and (f"deploy {step}", "end") in steps


def test_v2_broken_is_rolled_back_and_v1_serves_again(stack: ComposeStack, tmp_path: Path) -> None:
    settings = _settings(stack, tmp_path)

    result = invoke(
        "deploy", "run", "--image", "v2-broken", "--no-backup", "--yes", settings=settings
    )

    assert result.exit_code == 1, result.stderr
    assert "rolled back to travellr-backend:v1" in result.stderr
    assert _version(stack) == "v1"
    (entry,) = _history(settings)
    assert entry["outcome"] == "rolled_back"
    assert entry["backup"] == "skipped"
    assert "unhealthy" in entry["reason"]
    assert "TRAVELLR_BACKEND_TAG=v1" in (tmp_path / "project" / ".env").read_text()


@pytest.mark.parametrize(
    ("on_inconclusive", "outcome", "runs"),
    [("rollback", "inconclusive", "v1"), ("keep", "inconclusive_kept", "v2")],
)
def test_too_little_traffic_to_judge_is_inconclusive_not_a_failure(
    stack: ComposeStack, tmp_path: Path, on_inconclusive: str, outcome: str, runs: str
) -> None:
    # more requests needed per sample than the gate's own probes make: nothing can be judged
    settings = _settings(
        stack, tmp_path, min_requests=1000, extend_s=2.0, on_inconclusive=on_inconclusive
    )

    result = invoke(
        "--json", "deploy", "run", "--image", "v2", "--no-backup", "--yes", settings=settings
    )

    assert result.exit_code == 3, result.stderr
    report = result.json()
    assert report["outcome"] == outcome
    assert "too little data to judge" in report["failure"] and "(< 1000)" in report["failure"]
    # the watch went on past its 4 s, and every sample said why it could not judge
    assert report["samples"][-1]["elapsed_s"] >= 4
    assert all(s["ok"] and s["insufficient"] for s in report["samples"])
    assert _version(stack) == runs
    (entry,) = _history(settings)
    assert entry["outcome"] == outcome  # never "failed"


def test_v2_errors_is_caught_by_the_error_rate_and_rolled_back(
    stack: ComposeStack, tmp_path: Path
) -> None:
    settings = _settings(stack, tmp_path)

    result = invoke(
        "--json", "deploy", "run", "--image", "v2-errors", "--no-backup", "--yes", settings=settings
    )

    assert result.exit_code == 1, result.stderr
    report = result.json()
    assert report["outcome"] == "rolled_back"
    assert report["rollout"]["healthy"] is True  # readiness alone would have kept it
    assert "error rate" in report["failure"]
    failing = [s for s in report["samples"] if not s["ok"]]
    assert len(failing) >= 2 and all(s["errors"] > 0 for s in failing)
    assert report["now"]["image"] == "travellr-backend:v1"
    assert report["now"]["image_id"] == report["before"]["image_id"]
    assert _version(stack) == "v1"


def test_an_image_that_does_not_exist_is_stopped_by_preflight_before_any_change(
    stack: ComposeStack, tmp_path: Path
) -> None:
    settings = _settings(stack, tmp_path)
    before = stack.container("backend").id

    result = invoke(
        "deploy", "run", "--image", "v9-nope", "--no-backup", "--yes", settings=settings
    )

    assert result.exit_code == 1
    assert "preflight failed" in result.stderr and "v9-nope" in result.stderr
    assert stack.container("backend").id == before
    assert not (tmp_path / "project" / ".env").exists()
    (entry,) = _history(settings)
    assert entry["outcome"] == "preflight_failed"


def test_a_second_deploy_while_one_runs_exits_4_naming_the_holder(
    stack: ComposeStack, tmp_path: Path
) -> None:
    settings = _settings(stack, tmp_path)
    with FileLock(settings.state_dir / "locks", "deploy", "travellr-ops deploy run --image v2"):
        result = invoke("deploy", "run", "--image", "v2", "--yes", settings=settings)

    assert result.exit_code == 4
    assert "deploy lock is held by pid" in result.stderr and "--image v2" in result.stderr
    assert _version(stack) == "v1"


def test_dry_run_prints_the_plan_and_changes_nothing(stack: ComposeStack, tmp_path: Path) -> None:
    settings = _settings(stack, tmp_path)
    before = stack.container("backend").id

    result = invoke("deploy", "run", "--image", "v2", "--dry-run", settings=settings)

    assert result.exit_code == 0, result.stderr
    assert "would deploy travellr-backend:v2" in result.stderr
    assert "roll back to travellr-backend:v1" in result.stderr
    assert stack.container("backend").id == before
    assert _history(settings) == []


def test_without_a_terminal_it_needs_yes(stack: ComposeStack, tmp_path: Path) -> None:
    result = invoke("deploy", "run", "--image", "v2", settings=_settings(stack, tmp_path))

    assert result.exit_code == 4
    assert "--yes" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--image", "v2!"], "not a valid image tag"),
        (["--image", "v2", "--service", "frontend"], "known services: backend, mongodb, redis"),
    ],
)
def test_bad_input_exits_2(
    stack: ComposeStack, tmp_path: Path, args: list[str], message: str
) -> None:
    result = invoke("deploy", "run", *args, "--yes", settings=_settings(stack, tmp_path))

    assert result.exit_code == 2
    assert message in result.stderr


# -- signals, through a real process ------------------------------------------------------------
def _environment(settings: Settings) -> dict[str, str]:
    """The settings as a user's environment (TRAVELLR_SECTION='{json}'), nothing else of ours."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAVELLR_")}
    for key, value in settings.model_dump(mode="json", exclude_none=True).items():
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        env[f"TRAVELLR_{key.upper()}"] = text
    return env


def _start_deploy(settings: Settings, tmp_path: Path, *args: str) -> tuple[Any, Path]:
    return _start(settings, tmp_path, "deploy", "run", "--no-backup", "--yes", *args)


def _start(settings: Settings, tmp_path: Path, *args: str) -> tuple[Any, Path]:
    """``travellr-ops ARGS`` as a process of its own, its stderr in a file."""
    import subprocess
    import sys

    log = tmp_path / "deploy.err"
    proc = spawn_interruptible(
        [sys.executable, "-m", "travellr_ops", *args],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        env=_environment(settings),
    )
    return proc, log


def _wait_for(log: Path, text: str, proc: Any, timeout: float = 120) -> None:
    import time

    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def test_sigterm_during_the_watch_rolls_back_and_exits_143(
    stack: ComposeStack, tmp_path: Path
) -> None:
    import signal

    settings = _settings(stack, tmp_path, watch_s=120.0)
    proc, log = _start_deploy(settings, tmp_path, "--image", "v2")
    _wait_for(log, "sample +", proc)
    assert _version(stack) == "v2"

    proc.send_signal(signal.SIGTERM)

    assert proc.wait(120) == 143, log.read_text()
    assert "terminated (SIGTERM)" in log.read_text()
    assert _version(stack) == "v1"
    (entry,) = _history(settings)
    assert entry["outcome"] == "interrupted"


def test_sigkill_leaves_drift_that_status_reports_and_rollback_fixes(
    stack: ComposeStack, tmp_path: Path
) -> None:
    settings = _settings(stack, tmp_path, watch_s=120.0)
    proc, log = _start_deploy(settings, tmp_path, "--image", "v2")
    _wait_for(log, "sample +", proc)
    proc.kill()
    proc.wait(30)

    status = invoke("deploy", "status", settings=settings)

    assert status.exit_code == 1
    assert "was killed before it finished" in status.stderr
    assert "travellr-backend:v2" in status.stdout

    back = invoke("deploy", "rollback", "--yes", settings=settings)

    assert back.exit_code == 0, back.stderr
    assert _version(stack) == "v1"
    after = invoke("deploy", "status", settings=settings)
    assert after.exit_code == 0, after.stderr
    assert [e["kind"] for e in _history(settings)] == ["rollback", "deploy"]


def test_preflight_alone_shows_each_step_and_fails_on_a_missing_image(
    stack: ComposeStack, tmp_path: Path
) -> None:
    settings = _settings(stack, tmp_path, test_command="echo all good; exit 3")

    result = invoke("--json", "deploy", "preflight", "--image", "v9-nope", settings=settings)

    assert result.exit_code == 1
    steps = {s["name"]: s for s in result.json()["steps"]}
    assert steps["servers reachable"]["verdict"] == "ok"
    assert steps["image exists"]["verdict"] == "fail"
    assert steps["tests"]["verdict"] == "fail" and "exited 3: all good" in steps["tests"]["detail"]
    assert all(s["duration_ms"] >= 0 for s in steps.values())


# -- faults: a backup that fails, the platform gone midway, Ctrl-C, rollback --to ------------------
def test_a_backup_that_cannot_be_written_means_no_rollout(
    stack: ComposeStack, tmp_path: Path
) -> None:
    (tmp_path / "not-a-dir").write_text("a file where the backup folder should be")
    settings = _settings(stack, tmp_path)
    settings = settings.model_copy(
        update={"backup": settings.backup.model_copy(update={"dir": tmp_path / "not-a-dir" / "b"})}
    )
    before = stack.container("backend").id

    result = invoke("deploy", "run", "--image", "v2", "--yes", settings=settings)

    assert result.exit_code == 3, result.stderr  # as `backup create` exits: an operation failed
    assert "backup failed, nothing was rolled out" in result.stderr
    assert stack.container("backend").id == before
    assert _version(stack) == "v1"
    assert not (tmp_path / "project" / ".env").exists()
    (entry,) = _history(settings)
    assert entry["outcome"] == "backup_failed"
    status = invoke("deploy", "status", settings=settings)
    assert status.exit_code == 0, status.stderr


class SocketProxy:
    """A Unix socket that forwards to the Docker Engine's socket until it is stopped: the
    engine as one deploy sees it, made unreachable without touching the engine itself."""

    def __init__(self, listen: Path, target: str) -> None:
        import socket
        import threading

        self.listen, self.target = listen, target.removeprefix("unix://")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(listen))
        self.server.listen(16)
        self.open: list[Any] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"unix://{self.listen}"

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            with self.lock:
                self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: Any, sink: Any) -> None:
        import socket

        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        import socket

        self.server.close()
        self.listen.unlink(missing_ok=True)
        with self.lock:
            for s in self.open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


def test_the_platform_unreachable_midway_exits_3_and_status_tells_the_truth(
    stack: ComposeStack, tmp_path: Path
) -> None:
    proxy = SocketProxy(tmp_path / "engine.sock", stack.docker_host)
    real = _settings(stack, tmp_path, watch_s=120.0)
    through_proxy = real.model_copy(
        update={"compose": real.compose.model_copy(update={"docker_host": proxy.url})}
    )
    proc, log = _start_deploy(through_proxy, tmp_path, "--image", "v2")
    try:
        _wait_for(log, "sample +", proc)
        proxy.stop()  # the engine is gone for this deploy, mid-watch
        assert proc.wait(120) == 3, log.read_text()
    finally:
        proxy.stop()
        if proc.poll() is None:
            proc.kill()
    assert "Docker Engine" in log.read_text()
    assert _version(stack) == "v2"  # nothing could roll it back: the truth is v2 runs

    status = invoke("deploy", "status", settings=real)

    assert status.exit_code == 1, status.stderr
    assert "travellr-backend:v2" in status.stdout
    assert "did not finish" in status.stderr and "travellr-backend:v1" in status.stderr
    (entry,) = _history(real)
    # the gate saw the engine gone, and the rollback it started could not reach it either
    assert entry["outcome"] == "rollback_failed"
    assert "could not be done" in entry["reason"] and "Docker Engine" in entry["reason"]
    back = invoke("deploy", "rollback", "--yes", settings=real)
    assert back.exit_code == 0, back.stderr
    assert _version(stack) == "v1"


def test_ctrl_c_during_the_watch_rolls_back_and_a_second_one_does_not_stop_it(
    stack: ComposeStack, tmp_path: Path
) -> None:
    import signal

    settings = _settings(stack, tmp_path, watch_s=120.0)
    proc, log = _start_deploy(settings, tmp_path, "--image", "v2")
    _wait_for(log, "sample +", proc)

    proc.send_signal(signal.SIGINT)
    _wait_for(log, "rolling back to", proc)
    proc.send_signal(signal.SIGINT)  # impatient: the rollback must go on regardless

    assert proc.wait(120) == 130, log.read_text()
    text = log.read_text()
    assert "interrupted (Ctrl-C)" in text
    assert "the rollback goes on until it is done" in text
    assert _version(stack) == "v1"
    (entry,) = _history(settings)
    assert entry["outcome"] == "interrupted"


def test_rollback_to_a_named_tag_restores_it_and_an_unknown_tag_changes_nothing(
    stack: ComposeStack, tmp_path: Path
) -> None:
    settings = _settings(stack, tmp_path, watch_s=2.0)
    first = invoke("deploy", "run", "--image", "v2", "--no-backup", "--yes", settings=settings)
    assert first.exit_code == 0, first.stderr
    assert _version(stack) == "v2"
    before = stack.container("backend").id

    missing = invoke("deploy", "rollback", "--to", "v9-nope", "--yes", settings=settings)

    assert missing.exit_code == 1, missing.stderr
    assert "v9-nope" in missing.stderr
    assert stack.container("backend").id == before

    back = invoke("--json", "deploy", "rollback", "--to", "v1", "--yes", settings=settings)

    assert back.exit_code == 0, back.stderr
    report = back.json()
    assert report["now"]["image"] == "travellr-backend:v1"
    assert _version(stack) == "v1"
    assert "TRAVELLR_BACKEND_TAG=v1" in (tmp_path / "project" / ".env").read_text()
    assert [e["kind"] for e in _history(settings)] == ["rollback", "deploy"]
    assert invoke("deploy", "status", settings=settings).exit_code == 0


def test_ctrl_c_during_a_rollback_is_noted_and_the_rollback_finishes(
    stack: ComposeStack, tmp_path: Path
) -> None:
    import signal

    settings = _settings(stack, tmp_path, watch_s=2.0)
    first = invoke("deploy", "run", "--image", "v2", "--no-backup", "--yes", settings=settings)
    assert first.exit_code == 0, first.stderr
    proc, log = _start(settings, tmp_path, "deploy", "rollback", "--to", "v1", "--yes")
    _wait_for(log, "recreating backend", proc)

    proc.send_signal(signal.SIGINT)

    assert proc.wait(120) == 0, log.read_text()
    assert "SIGINT: the rollback goes on until it is done" in log.read_text()
    assert _version(stack) == "v1"
    assert [e["outcome"] for e in _history(settings)] == ["succeeded", "succeeded"]
