"""`travellr-ops service exec` on Docker Compose, against a real Docker Engine and the stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import invoke
from fixtures_docker import COMPOSE_FILE, ComposeStack
from helpers_exec import CuttableProxy
from helpers_signals import spawn_interruptible
from travellr_ops.adapters.docker import DEBUG_COPY_LABEL
from travellr_ops.safety import AuditLog

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[1]


def _audit(stack: ComposeStack) -> list[dict[str, object]]:
    return [
        e
        for e in AuditLog(stack.state_dir / "audit.log").entries()
        if str(e.get("action", "")).startswith("service exec")
    ]


def _ran_marker(stack: ComposeStack, path: str) -> bool:
    code, _ = stack.container("backend").exec_run(["test", "-e", path])
    return code == 0


def test_output_streams_and_the_commands_own_exit_code(stack: ComposeStack) -> None:
    result = invoke(
        "service",
        "exec",
        "backend",
        "--yes",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
        settings=stack.settings(),
    )

    assert result.exit_code == 7
    assert result.stdout == "out\n"
    assert "err\n" in result.stderr


def test_it_runs_in_the_services_container_with_its_environment(stack: ComposeStack) -> None:
    result = invoke(
        "service", "exec", "backend", "--yes", "--", "printenv", "PORT", settings=stack.settings()
    )

    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(stack.ports["backend"])


def test_a_command_that_does_not_exist_is_the_platforms_126_with_its_message(
    stack: ComposeStack,
) -> None:
    result = invoke(
        "service", "exec", "backend", "--yes", "--", "no-such-command", settings=stack.settings()
    )

    assert result.exit_code == 126  # what `docker exec` and `docker-compose exec` return
    assert "executable file not found" in result.stdout + result.stderr


def test_stdin_is_passed_through(stack: ComposeStack) -> None:
    text = "first line\nsecond line\n" + "x" * 200_000 + "\n"

    result = invoke(
        "service", "exec", "backend", "--yes", "--", "cat", settings=stack.settings(), input=text
    )

    assert result.exit_code == 0, result.stderr
    assert result.stdout == text


def _user_env(stack: ComposeStack) -> dict[str, str]:
    """The environment a user's shell gives travellr-ops for this stack (this checkout's code)."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "TRAVELLR_PLATFORM": "compose",
        "TRAVELLR_COMPOSE__PROJECT": stack.project,
        "TRAVELLR_COMPOSE__DOCKER_HOST": stack.docker_host,
        "TRAVELLR_STATE_DIR": str(stack.state_dir),
    }


def test_stdin_through_a_real_pipe_as_a_user_types_it(stack: ComposeStack) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "travellr_ops", "service", "exec", "backend", "--yes", "--", "cat"],
        input=b"x\n",
        env=_user_env(stack),
        capture_output=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout == b"x\n"


def test_the_audit_log_keeps_the_command_and_the_reason(stack: ComposeStack) -> None:
    result = invoke(
        "service",
        "exec",
        "backend",
        "--yes",
        "--reason",
        "INC-7: read the config",
        "--",
        "true",
        settings=stack.settings(),
    )

    assert result.exit_code == 0, result.stderr
    entry = _audit(stack)[-1]
    assert entry["action"] == "service exec backend"
    assert entry["user_reason"] == "INC-7: read the config"
    assert entry["outcome"] == "ok"
    assert entry["result"] == {"exit_code": 0}
    assert "true" in str(entry["summary"])
    assert entry["target"] == stack.container("backend").name


def test_refused_in_read_only_mode_and_nothing_runs(stack: ComposeStack) -> None:
    marker = "/tmp/exec-read-only-ran"

    result = invoke(
        "--read-only",
        "service",
        "exec",
        "backend",
        "--yes",
        "--",
        "touch",
        marker,
        settings=stack.settings(),
    )

    assert result.exit_code == 4
    assert "read-only" in result.stderr
    assert not _ran_marker(stack, marker)
    assert _audit(stack)[-1]["outcome"] == "refused"


def test_refused_without_a_terminal_unless_yes(stack: ComposeStack) -> None:
    marker = "/tmp/exec-unconfirmed-ran"

    refused = invoke("service", "exec", "backend", "--", "touch", marker, settings=stack.settings())

    assert refused.exit_code == 4
    assert "--yes" in refused.stderr
    assert not _ran_marker(stack, marker)

    dry = invoke(
        "service", "exec", "backend", "--dry-run", "--", "touch", marker, settings=stack.settings()
    )

    assert dry.exit_code == 0, dry.stderr
    assert f"would run `touch {marker}`" in dry.stderr
    assert not _ran_marker(stack, marker)


def test_a_protected_environment_needs_a_reason(stack: ComposeStack) -> None:
    settings = stack.settings().model_copy(update={"protected": True, "environment": "prod"})

    before = len(_audit(stack))

    refused = invoke("service", "exec", "backend", "--yes", "--", "true", settings=settings)

    assert refused.exit_code == 2
    assert "--reason" in refused.stderr and "prod" in refused.stderr
    assert len(_audit(stack)) == before  # refused before anything was planned or run

    planned = invoke(
        "service",
        "exec",
        "backend",
        "--dry-run",
        "--reason",
        "INC-8",
        "--",
        "true",
        settings=settings,
    )

    assert planned.exit_code == 0, planned.stderr
    assert "would run `true`" in planned.stderr


def test_an_unknown_service_is_a_usage_error(stack: ComposeStack) -> None:
    result = invoke("service", "exec", "nope", "--yes", "--", "true", settings=stack.settings())

    assert result.exit_code == 2
    assert "backend" in result.stderr  # the known services are listed


def test_instance_picks_compose_container_number(stack: ComposeStack) -> None:
    first = invoke(
        "service",
        "exec",
        "backend",
        "--instance",
        "1",
        "--yes",
        "--",
        "true",
        settings=stack.settings(),
    )
    missing = invoke(
        "service",
        "exec",
        "backend",
        "--instance",
        "2",
        "--yes",
        "--",
        "true",
        settings=stack.settings(),
    )

    assert first.exit_code == 0, first.stderr
    assert missing.exit_code == 2
    assert "no instance 2" in missing.stderr


def test_a_command_is_required(stack: ComposeStack) -> None:
    result = invoke("service", "exec", "backend", "--yes", settings=stack.settings())

    assert result.exit_code == 2
    assert "--" in result.stderr


# -- a container that keeps crashing ----------------------------------------------------------
@pytest.fixture
def crash_looping_backend(stack: ComposeStack, tmp_path: Path) -> Iterator[ComposeStack]:
    """The backend recreated with an entrypoint that exits at once: compose's restart policy
    keeps starting it, so it is 'restarting' most of the time (the `stack` fixture of the
    next test recreates it as it should be)."""
    override = tmp_path / "crash.yml"
    override.write_text(
        'services:\n  backend:\n    entrypoint: ["/bin/sh", "-c", "echo crashing; exit 3"]\n'
    )
    stack.compose(
        "up", "-d", "backend", files=[COMPOSE_FILE, stack.workdir / "labels.yml", override]
    )
    deadline = time.monotonic() + 30
    while stack.container("backend").attrs["RestartCount"] < 1:
        assert time.monotonic() < deadline, "the backend did not crash-loop"
        time.sleep(0.2)
    yield stack


def _debug_copies(stack: ComposeStack) -> list[object]:
    client = stack.client()
    try:
        return list(client.containers.list(all=True, filters={"label": DEBUG_COPY_LABEL}))
    finally:
        client.close()


def test_a_crash_looping_container_is_refused_with_a_hint_to_debug_copy(
    crash_looping_backend: ComposeStack,
) -> None:
    stack = crash_looping_backend
    # Restarting or exited most of the time; now and then running for an instant, when the
    # exec may start and die with it (a non-zero exit): the refusal comes within a few tries.
    results = []
    for _ in range(20):
        result = invoke(
            "service", "exec", "backend", "--yes", "--", "true", settings=stack.settings()
        )
        results.append(result)
        if "--debug-copy" in result.stderr:
            break
    assert result.exit_code == 3, [r.stderr for r in results]
    assert "--debug-copy" in result.stderr, [r.stderr for r in results]


def test_debug_copy_of_a_crash_looping_container_runs_in_a_copy_and_removes_it(
    crash_looping_backend: ComposeStack,
) -> None:
    stack = crash_looping_backend
    original = stack.container("backend")

    result = invoke(
        "service",
        "exec",
        "backend",
        "--yes",
        "--debug-copy",
        "--reason",
        "INC-9: why does it crash",
        "--",
        "sh",
        "-c",
        'printenv PORT; printenv MONGO_URI; cat /proc/1/cmdline | tr "\\0" " "; exit 5',
        settings=stack.settings(),
    )

    assert result.exit_code == 5, result.stderr
    port, mongo_uri, pid1 = result.stdout.splitlines()
    assert port == str(stack.ports["backend"])  # the same environment
    assert mongo_uri.startswith("mongodb://127.0.0.1:")
    assert "sleep" in pid1 and "crashing" not in pid1  # a sleeping entrypoint, not its own
    assert _debug_copies(stack) == []  # removed on the way out
    assert stack.container("backend").id == original.id  # the original is left as it was
    entry = _audit(stack)[-1]
    assert entry["user_reason"] == "INC-9: why does it crash"
    assert "debug copy" in str(entry["summary"])


def test_debug_copy_shares_the_volumes_and_the_network(stack: ComposeStack) -> None:
    stack.container("redis").exec_run(["redis-cli", "-p", str(stack.ports["redis"]), "save"])

    result = invoke(
        "service",
        "exec",
        "redis",
        "--yes",
        "--debug-copy",
        "--",
        "sh",
        "-c",
        f"ls /data; redis-cli -p {stack.ports['redis']} ping",
        settings=stack.settings(),
    )

    assert result.exit_code == 0, result.stderr
    assert "dump.rdb" in result.stdout  # the redis-data volume
    assert "PONG" in result.stdout  # the host network: the real redis answers on 127.0.0.1
    assert _debug_copies(stack) == []


# -- faults -----------------------------------------------------------------------------------
def test_a_connection_lost_mid_exec_is_exit_3(stack: ComposeStack, tmp_path: Path) -> None:
    proxy = CuttableProxy.unix(stack.docker_host.removeprefix("unix://"), tmp_path / "engine.sock")
    settings = stack.settings(docker_host=f"unix://{proxy.address}")
    timer = threading.Timer(2.0, proxy.cut)
    timer.start()
    try:
        started = time.monotonic()
        result = invoke(
            "service", "exec", "backend", "--yes", "--", "sleep", "30", settings=settings
        )
    finally:
        timer.cancel()
        proxy.cut()

    assert result.exit_code == 3, result.stderr
    assert "Docker Engine" in result.stderr
    assert time.monotonic() - started < 20


def test_a_terminal_gets_a_tty_of_its_size_resized_with_it_and_restored_after(
    stack: ComposeStack,
) -> None:
    import fcntl
    import pty
    import select
    import signal
    import struct
    import termios

    def set_size(rows: int, columns: int) -> None:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    master, slave = pty.openpty()
    set_size(41, 101)
    before = termios.tcgetattr(slave)
    # Engine API 1.41 takes a size only once the exec runs (as with `docker exec -t`): a
    # command that asks at once may see 0 0, so this one waits a moment.
    script = "tty; sleep 0.5; stty size; sleep 2; stty size; exit 3"
    argv = ["service", "exec", "backend", "--yes", "--", "sh", "-c", script]
    proc = subprocess.Popen(
        [sys.executable, "-m", "travellr_ops", *argv],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=_user_env(stack),
    )
    output, resized = b"", False
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                output += os.read(master, 65536)
            if not resized and b"41 101" in output:
                set_size(30, 90)  # the user resizes the window: the kernel says SIGWINCH
                proc.send_signal(signal.SIGWINCH)
                resized = True
        code = proc.wait(timeout=10)
        after = termios.tcgetattr(slave)
        while select.select([master], [], [], 0.2)[0]:
            output += os.read(master, 65536)
    finally:
        proc.kill()
        os.close(master)
        os.close(slave)

    text = output.decode(errors="replace")
    assert code == 3, text
    assert "/dev/pts/" in text  # a terminal inside the container
    assert "41 101" in text  # of the user's terminal's size
    assert "30 90" in text  # and resized with it
    assert after == before  # raw mode undone


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_debug_copy_is_removed(
    stack: ComposeStack, signum: signal.Signals, exit_code: int
) -> None:
    argv = ["service", "exec", "redis", "--yes", "--debug-copy", "--", "sleep", "60"]
    proc = spawn_interruptible(
        [sys.executable, "-m", "travellr_ops", *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_user_env(stack),
    )
    try:
        deadline = time.monotonic() + 60
        while not _debug_copies(stack):
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "no debug copy started"
            time.sleep(0.2)
        time.sleep(1.0)  # the exec is running in it now
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()

    assert proc.returncode == exit_code, stderr.decode()
    assert _debug_copies(stack) == []
