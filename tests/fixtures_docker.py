"""A real Docker Engine and the Travellr compose stack (config/docker-compose.yml) on it.

`docker_engine` (session): our own dockerd from scripts/testbed/docker.sh (no bridge, host
network on 127.0.0.1 only) with the stack's images built (cached by recipe). `compose_stack`
(session): one compose project, with a name unique to this test session, on free ports; every
container it makes is labelled with that session and removed at the end, with the project's
named volumes (its MongoDB and Redis data). `stack` (per test):
the same, with every service running and healthy again before the test starts.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from servers import free_port, need
from travellr_ops.settings import ComposeSettings, Settings

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "testbed" / "docker.sh"
COMPOSE_FILE = ROOT / "config" / "docker-compose.yml"
SESSION_LABEL = "org.travellr.test.session"
SERVICES = ("backend", "mongodb", "redis")


def _run_script(*args: str, timeout: float) -> str:
    try:
        done = subprocess.run(
            ["bash", str(SCRIPT), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        need(f"docker.sh {' '.join(args)} did not finish within {timeout:g} s")
    if done.returncode != 0:
        need(f"docker.sh {' '.join(args)} failed: {done.stderr.strip()[-600:]}")
    return done.stdout.strip()


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[str]:
    """The DOCKER_HOST of a running engine with the stack's images built.

    An engine this session started is stopped at its end, unless another test session still
    has containers on it; one that was already running is left alone.
    """
    if not Path("/usr/sbin/dockerd").exists():
        need("Docker Engine not installed (bash scripts/testbed/docker.sh install)")
    was_running = subprocess.run(["bash", str(SCRIPT), "status"], check=False).returncode == 0
    host = _run_script("start", timeout=120)
    try:
        _run_script("images", timeout=1200)
        yield host
    finally:
        if not was_running and not _other_sessions(host):
            _run_script("stop", timeout=60)


def _other_sessions(host: str) -> bool:
    client = docker_client(host)
    try:
        return bool(client.containers.list(all=True, filters={"label": SESSION_LABEL}))
    except Exception:  # an engine we cannot ask has nothing to protect
        return False
    finally:
        client.close()


def docker_client(host: str) -> Any:
    import docker

    return docker.DockerClient(base_url=host, timeout=60)


@dataclass
class ComposeStack:
    """One compose project of the Travellr stack, and ways to poke at it behind the tool's back."""

    project: str
    docker_host: str
    state_dir: Path
    workdir: Path
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        names = {"backend": "BACKEND", "mongodb": "MONGO", "redis": "REDIS"}
        return {f"TRAVELLR_{names[s]}_PORT": str(p) for s, p in self.ports.items()}

    @property
    def backend_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['backend']}"

    def settings(self, **compose: Any) -> Settings:
        values: dict[str, Any] = {
            "project": self.project,
            "docker_host": self.docker_host,
            "file": COMPOSE_FILE,
            "env": self.env,
            "restart_timeout_s": 90.0,
        }
        values.update(compose)
        return Settings(
            platform="compose",
            state_dir=self.state_dir,
            compose=ComposeSettings(**values),
            api={"url": self.backend_url},
        )

    def compose(
        self, *args: str, files: list[Path] | None = None, env: dict[str, str] | None = None
    ) -> None:
        """Run docker-compose (v1, Debian's) on this project, as a user would."""
        argv = ["docker-compose", "-p", self.project]
        for f in files or [COMPOSE_FILE, self.workdir / "labels.yml"]:
            argv += ["-f", str(f)]
        full_env = {**os.environ, **self.env, **(env or {}), "DOCKER_HOST": self.docker_host}
        done = subprocess.run(
            [*argv, *args], env=full_env, capture_output=True, text=True, timeout=300, check=False
        )
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(argv + list(args))} failed:\n{done.stderr}")

    def client(self) -> Any:
        return docker_client(self.docker_host)

    def container(self, service: str) -> Any:
        client = self.client()
        (found,) = client.containers.list(
            all=True,
            filters={
                "label": [
                    f"com.docker.compose.project={self.project}",
                    f"com.docker.compose.service={service}",
                ]
            },
        )
        return found

    def healthy(self, service: str) -> bool:
        try:
            c = self.container(service)
        except ValueError:
            return False
        return bool(
            c.status == "running"
            and (c.attrs["State"].get("Health") or {}).get("Status") == "healthy"
        )

    def wait_healthy(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not all(self.healthy(s) for s in SERVICES):
            if time.monotonic() > deadline:
                states = {s: self.healthy(s) for s in SERVICES}
                raise AssertionError(f"stack {self.project} not healthy in {timeout:g} s: {states}")
            time.sleep(0.5)

    def remove_everything(self) -> None:
        client = self.client()
        try:
            for label in (
                f"com.docker.compose.project={self.project}",
                f"{SESSION_LABEL}={self.project}",
            ):
                for c in client.containers.list(all=True, filters={"label": label}):
                    c.remove(force=True, v=True)
            # the named volumes (mongo-data, redis-data) outlive their containers
            project = {"label": f"com.docker.compose.project={self.project}"}
            for volume in client.volumes.list(filters=project):
                volume.remove(force=True)
        finally:
            client.close()


@pytest.fixture(scope="session")
def compose_stack(
    docker_engine: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ComposeStack]:
    workdir = tmp_path_factory.mktemp("compose")
    project = f"travellrtest{secrets.token_hex(4)}"
    stack = ComposeStack(
        project=project,
        docker_host=docker_engine,
        state_dir=workdir / "state",
        workdir=workdir,
        ports={s: free_port() for s in SERVICES},
    )
    # Every container this session makes carries its label, for the clean-up below.
    labels = "services:\n" + "".join(
        f"  {s}:\n    labels:\n      {SESSION_LABEL}: {project}\n" for s in SERVICES
    )
    (workdir / "labels.yml").write_text(labels)
    try:
        stack.compose("up", "-d")
        stack.wait_healthy()
        yield stack
    finally:
        try:
            # the data is scratch: kill at once (-t 0) rather than wait on clean shutdowns
            stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "0")
        finally:
            stack.remove_everything()


@pytest.fixture
def stack(compose_stack: ComposeStack) -> ComposeStack:
    """The session's stack, every service running and healthy before the test."""
    backend = compose_stack.container("backend") if compose_stack.healthy("backend") else None
    if backend is None or backend.attrs["Config"]["Image"] != "travellr-backend:v1":
        compose_stack.compose("up", "-d", "backend")
    if not all(compose_stack.healthy(s) for s in SERVICES):
        compose_stack.compose("up", "-d")
        compose_stack.wait_healthy()
    return compose_stack
