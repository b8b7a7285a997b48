"""The Docker Compose platform: a thin adapter over the Docker SDK (``docker``).

Containers are found by the labels compose puts on them (``com.docker.compose.project`` and
``com.docker.compose.service``), so projects started by compose v1 (``docker-compose``) and v2
(``docker compose``) look the same. Reading and restarting go through the Engine API; ``up``,
``down`` and ``scale`` call the compose binary, which owns the project's definition.

The SDK is imported only inside functions: ``--help`` never pays for it.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from travellr_ops.adapters.exec_streams import feed_stdin, following_size
from travellr_ops.adapters.log_streams import follow_all, split_lines, stamp_time, stamped_line
from travellr_ops.adapters.platform_types import (
    ExecIO,
    ExecTarget,
    FileChunk,
    FileCursor,
    Instance,
    LogLine,
    ProcessList,
    Progress,
    Release,
    ResourceUsage,
    RestartResult,
    ServiceStatus,
    check_image_tag,
)
from travellr_ops.errors import (
    CheckFailed,
    ConfigError,
    OperationFailed,
    ServiceError,
    TravellrError,
    Unreachable,
    UsageError,
)

if TYPE_CHECKING:
    from travellr_ops.settings import Settings

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"
WORKING_DIR_LABEL = "com.docker.compose.project.working_dir"
NUMBER_LABEL = "com.docker.compose.container-number"
COMPOSE_PREFIX = "com.docker.compose."
#: on a --debug-copy container: the container it copies
DEBUG_COPY_LABEL = "org.travellr.ops.debug-copy-of"
#: the entrypoint of a --debug-copy: a shell that sleeps until it is killed
SLEEP_FOREVER = ("/bin/sh", "-c", "while :; do sleep 3600; done")
#: how long an exec's exit code may lag the end of its stream
EXEC_SETTLE_S = 5.0
EXEC_CHUNK = 64 * 1024
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
#: seconds between looks at a restarting container. Each look is one inspect (a few ms on the
#: engine); the container turns healthy when a check ends, and every moment between that and
#: our next look is added to a restart, a rollout or a `deploy rollback` (0.25 s cost 0.125 s
#: on average, a tenth of the budget `deploy rollback` has over `docker-compose up -d`).
POLL_S = 0.05
#: how long a container without a health check must stay up after a restart to count
STABLE_WITHOUT_CHECK = timedelta(seconds=2)
#: log lines shown when a container dies or does not become healthy
LAST_LOG_LINES = 20
#: `read_file` inside a container: "$1" the file, "$2" the inode of the previous read ("-":
#: none), "$3" the offset it stopped at, "$4" the most to read. Prints "INODE START CUT
#: RESTARTED" on a line, then the bytes from START: after the previous read, from the start
#: of a new file (rotated: another inode; truncated: smaller than the offset), or the last
#: "$4" bytes (the first read, or more written since than "$4"; CUT=1: the first line is cut).
_READ_FILE = r"""
st=$(stat -L -c '%i %s' "$1") || exit 3
ino=${st% *}; size=${st#* }; start=$3; restarted=0; cut=0
if [ "$2" = "-" ]; then start=-1
elif [ "$ino" != "$2" ] || [ "$size" -lt "$3" ]; then start=0; restarted=1; fi
if [ "$start" -lt 0 ] || [ $((size - start)) -gt "$4" ]; then
  if [ "$size" -gt "$4" ]; then start=$((size - $4)); cut=1; else start=0; fi
fi
echo "$ino $start $cut $restarted"
if [ "$size" -gt "$start" ]; then tail -c +$((start + 1)) "$1" | head -c $((size - start)); fi
"""


def connect(docker_host: str | None, timeout_s: float) -> Any:
    """A Docker client for ``docker_host``, or for the standard Docker environment
    (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH, as the docker CLI reads them) when None.
    The API version is negotiated, so engines from 20.10 (API 1.41) on work."""
    import docker

    if docker_host:
        return docker.DockerClient(base_url=docker_host, timeout=int(timeout_s))
    return docker.DockerClient.from_env(timeout=int(timeout_s))


class ComposePlatform:
    """Travellr's services as containers of one compose project on one Docker Engine."""

    name = "compose"

    def __init__(self, settings: Settings, client_factory: Any = connect) -> None:
        self.settings = settings
        self.compose = settings.compose
        self._factory = client_factory
        self._client: Any = None

    # -- connection and errors ------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            with self._errors("connecting to the Docker Engine"):
                self._client = self._factory(self.compose.docker_host, self.compose.timeout_s)
                self._client.ping()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def _where(self) -> str:
        return self.compose.docker_host or "the default Docker socket (DOCKER_HOST)"

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn SDK and connection errors into the project's errors, with a hint."""
        try:
            import docker.errors as derr
            import requests.exceptions as rerr
        except ImportError:  # pragma: no cover - docker is a dependency
            raise ConfigError(
                "the Docker SDK for Python is not installed",
                hint="pip install docker (it comes with travellr-ops)",
            ) from None
        try:
            yield
        except TravellrError:
            raise
        except derr.NotFound as exc:
            raise OperationFailed(f"{doing}: {_explain(exc)}") from None
        except derr.APIError as exc:
            raise OperationFailed(f"the Docker Engine refused {doing}: {_explain(exc)}") from None
        except (derr.DockerException, rerr.RequestException, OSError) as exc:
            raise self._connection_error(exc, doing) from None

    def _connection_error(self, exc: BaseException, doing: str) -> ServiceError:
        chain = _chain(exc)
        where = self._where
        setting = "set compose.docker_host (TRAVELLR_COMPOSE__DOCKER_HOST) or DOCKER_HOST"
        if any(isinstance(e, PermissionError) for e in chain) or "Permission denied" in str(exc):
            return Unreachable(
                f"no permission to use the Docker Engine socket ({where}) while {doing}",
                hint="run as root or as a member of the docker group (usermod -aG docker $USER)",
            )
        if any(isinstance(e, FileNotFoundError) for e in chain) or "No such file" in str(exc):
            installed = shutil.which("dockerd") is not None
            why = "is not running" if installed else "is not installed"
            return Unreachable(
                f"no Docker Engine at {where}: Docker {why} (no such socket) while {doing}",
                hint=(
                    "start it (systemctl start docker), or " + setting
                    if installed
                    else "install it (apt-get install docker.io), or " + setting
                ),
            )
        if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in str(exc):
            return Unreachable(
                f"the Docker Engine at {where} is down (connection refused) while {doing}",
                hint="start it (systemctl start docker), or " + setting,
            )
        if any(isinstance(e, TimeoutError) for e in chain) or "timed out" in str(exc).lower():
            return Unreachable(
                f"the Docker Engine at {where} did not answer within"
                f" {self.compose.timeout_s:g} s while {doing}",
                hint="check the engine (docker info); raise compose.timeout_s if it is just slow",
            )
        return Unreachable(
            f"cannot reach the Docker Engine at {where} while {doing}: {_first_line(exc)}",
            hint=setting,
        )

    # -- names ----------------------------------------------------------------------------
    def _logical(self) -> dict[str, str]:
        return {
            "backend": self.compose.backend_service,
            "mongodb": self.compose.mongodb_service,
            "redis": self.compose.redis_service,
        }

    def _containers(self, service: str | None = None) -> list[Any]:
        filters = {"label": [f"{PROJECT_LABEL}={self.compose.project}"]}
        if service is not None:
            filters["label"].append(f"{SERVICE_LABEL}={service}")
        with self._errors(f"listing containers of compose project {self.compose.project!r}"):
            found = self.client.containers.list(all=True, filters=filters)
        return sorted(found, key=lambda c: c.name)

    def services(self) -> list[str]:
        """The runbook's names first, then any other service of the project."""
        known = list(self._logical())
        compose_names = set(self._logical().values())
        for container in self._containers():
            name = container.labels.get(SERVICE_LABEL, "")
            if name and name not in compose_names:
                compose_names.add(name)
                known.append(name)
        return known

    def _resolve(self, service: str) -> tuple[str, str]:
        """(name shown to people, compose service name); UsageError for an unknown one."""
        logical = self._logical()
        if service in logical:
            return service, logical[service]
        by_compose = {v: k for k, v in logical.items()}
        if service in by_compose:
            return by_compose[service], service
        known = self.services()
        if service in known:
            return service, service
        raise UsageError(
            f"unknown service {service!r} in compose project {self.compose.project!r};"
            f" known services: {', '.join(known)}",
            hint="pass one of the known services (compose.project names the project)",
        )

    # -- status ---------------------------------------------------------------------------
    def status(self, service: str | None = None) -> list[ServiceStatus]:
        if service is not None:
            shown, compose_name = self._resolve(service)
            return [self._status(shown, self._containers(compose_name))]
        by_service: dict[str, list[Any]] = {}
        for container in self._containers():
            by_service.setdefault(container.labels.get(SERVICE_LABEL, ""), []).append(container)
        result = []
        for shown, compose_name in self._logical().items():
            result.append(self._status(shown, by_service.pop(compose_name, [])))
        for compose_name, containers in sorted(by_service.items()):
            result.append(self._status(compose_name, containers))
        return result

    def _status(self, shown: str, containers: list[Any]) -> ServiceStatus:
        instances = [_instance(c) for c in containers]
        ready = sum(1 for i in instances if i.ready)
        desired = max(1, len(instances))
        image = instances[0].image if instances else None
        if not instances:
            message = (
                f"stopped: no container in compose project {self.compose.project!r}"
                " (service up starts it)"
            )
        else:
            troubles = [_trouble(i) for i in instances if not i.ready]
            message = "; ".join(troubles) if troubles else f"{ready}/{desired} running and healthy"
        return ServiceStatus(
            name=shown,
            platform=self.name,
            available=bool(instances) and ready == len(instances),
            stopped=not instances,
            desired=desired,
            ready=ready,
            image=image,
            instances=instances,
            message=message,
        )

    # -- restart --------------------------------------------------------------------------
    def restart(self, service: str, timeout_s: float, progress: Progress) -> RestartResult:
        """Restart every container of the service, then wait until each is running and
        healthy (or has no health check), dies, turns unhealthy, or the time is up."""
        shown, compose_name = self._resolve(service)
        containers = self._containers(compose_name)
        if not containers:
            raise OperationFailed(
                f"service {shown!r} has no container in compose project"
                f" {self.compose.project!r}: nothing to restart",
                hint=f"create it with `travellr-ops service up {shown}`",
            )
        started = time.monotonic()
        deadline = started + timeout_s
        for container in containers:
            stop_timeout = container.attrs.get("Config", {}).get("StopTimeout") or 10
            progress(f"restarting {container.name}")
            with self._errors(f"restarting container {container.name}"):
                container.restart(timeout=stop_timeout)
        return self._settle(shown, compose_name, containers, started, deadline, progress)

    def _settle(
        self,
        shown: str,
        compose_name: str,
        containers: list[Any],
        started: float,
        deadline: float,
        progress: Progress,
        running: str = "",
    ) -> RestartResult:
        """Wait until each container is healthy (or the first that fails), then the result;
        ``running`` says what it runs now (" on IMAGE") in the reason of a success."""
        healthy, reason, failed = True, "", None
        for container in containers:
            ok, why = self._wait_healthy(container, deadline, progress)
            if not ok:
                healthy, reason, failed = False, why, container
                break
        status = self._status(shown, self._containers(compose_name))
        seconds = time.monotonic() - started
        if healthy:
            reason = f"{shown}{running}: {status.message} after {seconds:.1f} s"
        result = RestartResult(
            service=shown, healthy=healthy, seconds=seconds, status=status, reason=reason
        )
        if failed is not None:
            result.last_logs = self._last_logs(failed)
        return result

    def _wait_healthy(
        self, container: Any, deadline: float, progress: Progress
    ) -> tuple[bool, str]:
        with self._errors(f"inspecting container {container.name}"):
            container.reload()
        first_start = container.attrs["State"].get("StartedAt")
        restarts = container.attrs.get("RestartCount", 0)
        said = ""
        while True:
            state = container.attrs["State"]
            status = state.get("Status", "")
            health = (state.get("Health") or {}).get("Status")
            if status in ("exited", "dead") or (
                container.attrs.get("RestartCount", 0) > restarts
                or state.get("StartedAt") != first_start
            ):
                return False, (
                    f"{container.name} died while starting: {_exit_reason(state)}"
                    + (
                        f" (restarted by its policy, {status} now)"
                        if status == "restarting"
                        else ""
                    )
                )
            if status == "running" and health == "healthy":
                return True, ""
            if status == "running" and health is None:
                # No health check: it counts once it has stayed up a moment, not at exec.
                up_since = stamp_time(state.get("StartedAt"))
                if up_since is None or datetime.now(UTC) - up_since >= STABLE_WITHOUT_CHECK:
                    return True, ""
            if health == "unhealthy":
                return False, f"{container.name} is unhealthy: {_last_health_output(state)}"
            now = f"{container.name}: {status}" + (f", health {health}" if health else "")
            if now != said:
                progress(f"waiting for {now}")
                said = now
            if time.monotonic() >= deadline:
                return False, (
                    f"{container.name} was not running and healthy in time ({now});"
                    f" last health check: {_last_health_output(state)}"
                )
            time.sleep(POLL_S)
            with self._errors(f"inspecting container {container.name}"):
                container.reload()

    def _last_logs(self, container: Any, lines: int = LAST_LOG_LINES) -> list[str]:
        try:
            with self._errors(f"reading the log of {container.name}"):
                raw = container.logs(tail=lines, timestamps=False)
        except TravellrError as exc:
            return [f"({exc.message})"]
        text: str = raw.decode("utf-8", "replace")
        return text.splitlines()[-lines:]

    # -- logs -----------------------------------------------------------------------------
    def logs(
        self,
        services: Sequence[str],
        *,
        tail: int | None = None,
        since: datetime | None = None,
        follow: bool = False,
        previous: bool = False,  # compose keeps one log across restarts: nothing to add
    ) -> Iterator[LogLine]:
        """Every container's log, streamed (never held whole), interleaved by time."""
        containers: list[Any] = []
        for service in services or ["backend"]:
            containers.extend(self._containers(self._resolve(service)[1]))
        if not containers:
            return iter(())
        streams = [self._open_log(c, tail, since, follow) for c in containers]
        if follow:
            return follow_all(streams)
        # Each container's lines come in time order: a k-way merge keeps memory flat.
        epoch = datetime.min.replace(tzinfo=UTC)
        return heapq.merge(*(s.lines() for s in streams), key=lambda x: x.time or epoch)

    def _open_log(
        self, container: Any, tail: int | None, since: datetime | None, follow: bool
    ) -> _LogStream:
        kwargs: dict[str, Any] = {"stream": True, "timestamps": True, "follow": follow}
        kwargs["tail"] = "all" if tail is None else tail
        if since is not None:
            kwargs["since"] = since
        with self._errors(f"reading the log of {container.name}"):
            raw = container.logs(**kwargs)
        return _LogStream(container.name, raw, self._errors)

    # -- stats and top --------------------------------------------------------------------
    def stats(self, service: str | None = None) -> list[ResourceUsage]:
        if service is not None:
            shown, compose_name = self._resolve(service)
            pairs = [(shown, c) for c in self._containers(compose_name)]
        else:
            names = {v: k for k, v in self._logical().items()}
            pairs = [
                (names.get(c.labels.get(SERVICE_LABEL, ""), c.labels.get(SERVICE_LABEL, "")), c)
                for c in self._containers()
            ]
        running = [(s, c) for s, c in pairs if c.status == "running"]
        if not running:
            return []

        def sample(pair: tuple[str, Any]) -> ResourceUsage:
            shown, container = pair
            with self._errors(f"reading the stats of {container.name}"):
                raw = container.stats(stream=False)
            return stats_usage(shown, container.name, raw)

        # Each sample takes the engine about a second (two readings): take them side by side.
        with ThreadPoolExecutor(max_workers=min(8, len(running))) as pool:
            return list(pool.map(sample, running))

    def top(self, service: str) -> list[ProcessList]:
        shown, compose_name = self._resolve(service)
        containers = [c for c in self._containers(compose_name) if c.status == "running"]
        if not containers:
            raise OperationFailed(
                f"service {shown!r} has no running container",
                hint=f"see `travellr-ops service status {shown}`",
            )
        result = []
        for container in containers:
            with self._errors(f"listing the processes of {container.name}"):
                listing = container.top()
            result.append(
                ProcessList(
                    instance=container.name,
                    titles=list(listing.get("Titles") or []),
                    processes=[list(p) for p in listing.get("Processes") or []],
                )
            )
        return result

    # -- exec (issue 20) --------------------------------------------------------------------
    def exec_target(self, service: str, instance: int | None = None) -> ExecTarget:
        """The ``instance``-th container of the service (compose's container number), else
        its first running one (else its first, so that --debug-copy can copy a dead one)."""
        shown, compose_name = self._resolve(service)
        containers = self._containers(compose_name)
        if not containers:
            raise OperationFailed(
                f"service {shown!r} has no container in compose project {self.compose.project!r}",
                hint=f"create it with `travellr-ops service up {shown}`",
            )
        if instance is not None:
            numbered = {c.labels.get(NUMBER_LABEL, ""): c for c in containers}
            chosen = numbered.get(str(instance))
            if chosen is None:
                raise UsageError(
                    f"service {shown!r} has no instance {instance}; it has"
                    f" {', '.join(sorted(n for n in numbered if n)) or 'none numbered'}",
                    hint="--instance takes compose's container number (1 is the first)",
                )
        else:
            running = [c for c in containers if c.status == "running"]
            chosen = (running or containers)[0]
        return ExecTarget(service=shown, instance=chosen.name, state=chosen.status)

    def exec(self, target: ExecTarget, command: Sequence[str], io: ExecIO) -> int:
        """As `docker exec [-i] [-t]`: the exec's stream through the engine's hijacked
        connection (stdout and stderr multiplexed in 8-byte-headed frames unless a TTY),
        stdin copied in alongside and half-closed at its end; the exit code from inspect."""
        import docker.errors as derr

        api = self.client.api
        doing = f"running {' '.join(command)!r} in {target.instance}"
        with self._errors(doing):
            try:
                created = api.exec_create(
                    target.instance,
                    list(command),
                    stdin=io.stdin is not None,
                    tty=io.tty,
                    stdout=True,
                    stderr=True,
                )
            except derr.APIError as exc:
                if exc.status_code != 409:  # 409: it stopped since we looked (crash-looping)
                    raise
                raise OperationFailed(
                    f"{target.instance} is not running: {_explain(exc)}",
                    hint=f"--debug-copy runs it in a sleeping copy of {target.instance}",
                ) from None
            exec_id = created["Id"]
            wrapped = api.exec_start(exec_id, tty=io.tty, socket=True)
        sock = getattr(wrapped, "_sock", wrapped)
        try:
            feed_stdin(io.stdin, sock.sendall, lambda: sock.shutdown(socket.SHUT_WR))

            def resize(rows: int, columns: int) -> None:
                api.exec_resize(exec_id, height=rows, width=columns)

            try:
                with following_size(io, resize):
                    _copy_exec_output(sock, io)
            except OSError as exc:
                raise self._lost(doing, exc) from None
        finally:
            with contextlib.suppress(OSError):
                sock.close()
        return self._exit_code(exec_id, doing)

    def _exit_code(self, exec_id: str, doing: str) -> int:
        """The exec's exit code; its stream can end a moment before the engine records it."""
        deadline = time.monotonic() + EXEC_SETTLE_S
        while True:
            try:
                with self._errors(doing):
                    info = self.client.api.exec_inspect(exec_id)
            except Unreachable as exc:
                raise self._lost(doing, exc) from None
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            if time.monotonic() >= deadline:
                raise Unreachable(
                    f"the connection to the Docker Engine at {self._where} ended while {doing}"
                    " was still running",
                    hint="the command may still be running in the container",
                )
            time.sleep(0.01)

    def _lost(self, doing: str, exc: BaseException) -> Unreachable:
        return Unreachable(
            f"lost the connection to the Docker Engine at {self._where} while {doing}:"
            f" {_first_line(exc)}",
            hint="the command may still be running in the container",
        )

    @contextmanager
    def debug_copy(self, target: ExecTarget) -> Iterator[ExecTarget]:
        """A copy of the container (its image ID, environment, mounts, network mode, user and
        working directory) whose entrypoint only sleeps, without the compose labels (compose
        must not count it as an instance), removed when the block ends however it ends."""
        api = self.client.api
        with self._errors(f"inspecting container {target.instance}"):
            attrs = api.inspect_container(target.instance)
        config, host = attrs.get("Config", {}), attrs.get("HostConfig", {})
        name = f"{attrs['Name'].lstrip('/')}-debug-{os.urandom(3).hex()}"
        labels = {
            k: v
            for k, v in (config.get("Labels") or {}).items()
            if not k.startswith(COMPOSE_PREFIX)
        }
        labels[DEBUG_COPY_LABEL] = target.instance
        mounts = [_mount(m) for m in attrs.get("Mounts") or []]
        with self._errors(f"creating a debug copy of {target.instance}"):
            host_config = api.create_host_config(
                mounts=[m for m in mounts if m is not None],
                network_mode=host.get("NetworkMode") or None,
                restart_policy={"Name": "no"},
            )
            created = api.create_container(
                attrs["Image"],
                name=name,
                entrypoint=list(SLEEP_FOREVER),
                command=[],
                environment=config.get("Env") or [],
                user=config.get("User") or None,
                working_dir=config.get("WorkingDir") or None,
                labels=labels,
                host_config=host_config,
                healthcheck={"Test": ["NONE"]},
                stop_signal="SIGKILL",
            )
        copy_id = created["Id"]
        try:
            with self._errors(f"starting the debug copy {name}"):
                api.start(copy_id)
            yield ExecTarget(
                service=target.service, instance=name, state="running", copy_of=target.instance
            )
        finally:
            with contextlib.suppress(Exception), self._errors(f"removing the debug copy {name}"):
                api.remove_container(copy_id, force=True, v=False)

    # -- up, down, scale: the compose binary ------------------------------------------------
    def up(self, service: str | None = None) -> None:
        """`compose up -d [SERVICE]`, then wait (compose v1 does not) until what it started is
        running and healthy; CheckFailed when it is not within compose.restart_timeout_s."""
        names = [self._resolve(service)[1]] if service else []
        # A named service starts alone (--no-deps): compose would otherwise recreate any
        # dependency whose definition drifted, e.g. the database in the middle of a restore.
        self._compose("up", "-d", *(["--no-deps", *names] if names else []))
        deadline = time.monotonic() + self.compose.restart_timeout_s
        for name in names or [n for n in self.services() if n in self._compose_names()]:
            for container in self._containers(self._resolve(name)[1]):
                ok, why = self._wait_healthy(container, deadline, lambda message: None)
                if not ok:
                    tail = " | ".join(self._last_logs(container, 5))
                    raise CheckFailed(
                        f"`up` started {container.name}, but {why.removeprefix(container.name + ' ')}",
                        hint=f"its last log lines: {tail}" if tail else None,
                    )

    def _compose_names(self) -> set[str]:
        found = {c.labels.get(SERVICE_LABEL, "") for c in self._containers()}
        names = {k for k, v in self._logical().items() if v in found}
        return names | found

    def down(self, service: str | None = None) -> None:
        if service is None:
            self._compose("down")
        else:
            # `down SERVICE` is v2 only; stop + rm is the same on both.
            self._compose("rm", "--stop", "--force", self._resolve(service)[1])

    def scale(self, service: str, replicas: int) -> ServiceStatus:
        if replicas < 0:
            raise UsageError(f"replicas must be 0 or more, not {replicas}")
        shown, compose_name = self._resolve(service)
        self._compose(
            "up", "-d", "--no-recreate", "--scale", f"{compose_name}={replicas}", compose_name
        )
        return self._status(shown, self._containers(compose_name))

    def _project_files(self) -> list[str]:
        """The compose file(s): from the settings, else from the project's own labels."""
        if self.compose.file is not None:
            return [str(self.compose.file)]
        for container in self._containers():
            files = container.labels.get(CONFIG_FILES_LABEL, "")
            workdir = container.labels.get(WORKING_DIR_LABEL, "")
            if files:
                return [str(Path(workdir, f)) for f in files.split(",") if f]
        raise ConfigError(
            f"no compose file for project {self.compose.project!r}: compose.file is not set"
            " and the project has no containers to learn it from",
            hint="set compose.file (TRAVELLR_COMPOSE__FILE), e.g. config/docker-compose.yml",
        )

    def _compose(self, *args: str, extra_env: dict[str, str] | None = None) -> None:
        base = compose_command(tuple(self.compose.command))
        files = [arg for f in self._project_files() for arg in ("-f", f)]
        argv = [*base, "-p", self.compose.project, *files, *args]
        # The compose binary reads the user's environment (image tags, ports) like a shell
        # would; we add the engine's address and the settings' own variables.
        env = dict(os.environ)
        if self.compose.docker_host:
            env["DOCKER_HOST"] = self.compose.docker_host
        env.update(self.compose.env)
        env.update(extra_env or {})
        try:
            done = subprocess.run(
                argv,
                env=env,
                capture_output=True,
                text=True,
                timeout=self.compose.command_timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise OperationFailed(
                f"`{' '.join(argv)}` did not finish within {self.compose.command_timeout_s:g} s"
            ) from None
        if done.returncode != 0:
            lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
            raise OperationFailed(
                f"`{' '.join(argv[len(base) :])}` failed (exit {done.returncode}):"
                f" {lines[-1] if lines else 'no output'}",
                hint=f"run `{' '.join(argv)}` by hand to see all it says",
            )

    # -- deploy ---------------------------------------------------------------------------
    def release(self, service: str) -> Release:
        shown, compose_name = self._resolve(service)
        containers = self._containers(compose_name)
        status = self._status(shown, containers)
        return Release(
            service=shown,
            platform=self.name,
            # the reference the container was created from, as compose resolved the tag
            image=containers[0].attrs.get("Config", {}).get("Image", "") if containers else "",
            image_ids={c.name: c.attrs.get("Image", "") for c in containers},
            ready=status.ready,
            desired=status.desired if containers else 0,
        )

    def image_for(self, service: str, tag: str) -> str:
        repository, _ = _split_image(self.release(service).image or "")
        if not repository:
            raise OperationFailed(
                f"service {service!r} has no container to learn its image from",
                hint=f"start it first (`travellr-ops service up {service}`)",
            )
        wanted_repo, wanted_tag = _split_image(tag) if ":" in tag else (repository, tag)
        if wanted_repo != repository:
            raise UsageError(
                f"the compose file sets only the tag of {repository}; {tag!r} names another image",
                hint=f"pass a tag (e.g. v2) or {repository}:TAG",
            )
        check_image_tag(wanted_tag)
        return f"{repository}:{wanted_tag}"

    def image_exists(self, image: str) -> bool:
        import docker.errors as derr

        with self._errors(f"looking up image {image}"):
            try:
                self.client.images.get(image)
            except derr.ImageNotFound:
                return False
        return True

    def set_image(
        self, service: str, image: str, timeout_s: float, progress: Progress
    ) -> RestartResult:
        """`TAG=... compose up -d --no-deps SERVICE` (recreates it on the new image), the tag
        kept in the project's env file for later `up`s, then wait until it is healthy."""
        shown, compose_name = self._resolve(service)
        _, tag = _split_image(image)
        started = time.monotonic()
        variable = self.settings.deploy.tag_variable
        progress(f"recreating {shown} on {image}")
        self._compose("up", "-d", "--no-deps", compose_name, extra_env={variable: tag})
        self._keep_tag(variable, tag)
        containers = self._containers(compose_name)
        deadline = started + timeout_s
        return self._settle(
            shown, compose_name, containers, started, deadline, progress, f" on {image}"
        )

    def restore(
        self, service: str, release: Release, timeout_s: float, progress: Progress
    ) -> RestartResult:
        """Back to the recorded image ID: by its tag while the tag still points at it, else
        by a tag pinned to the ID (the tag was moved since)."""
        import docker.errors as derr

        image, wanted = release.image, release.image_id
        if wanted:
            with self._errors(f"looking up image {image}"):
                try:
                    now = self.client.images.get(image).id
                except derr.ImageNotFound:
                    now = None
                if now != wanted:
                    try:
                        found = self.client.images.get(wanted)
                    except derr.ImageNotFound:
                        raise OperationFailed(
                            f"the recorded image {wanted[:19]} ({image}) is gone from the engine",
                            hint=f"load it again, or roll back to a tag: --to {image}",
                        ) from None
                    repository, _ = _split_image(image)
                    pinned = f"rollback-{wanted.removeprefix('sha256:')[:12]}"
                    found.tag(repository, pinned)
                    progress(f"{image} now points elsewhere: using {repository}:{pinned}")
                    image = f"{repository}:{pinned}"
        return self.set_image(service, image, timeout_s, progress)

    def read_file(
        self, service: str, path: str, cursors: dict[str, FileCursor], max_bytes: int
    ) -> list[FileChunk]:
        """The file ``path`` inside each running container after its cursor (a container not
        read before: its last ``max_bytes``), one ``docker exec`` of POSIX sh, stat, tail
        and head each: the image needs nothing else."""
        _, compose_name = self._resolve(service)
        chunks: list[FileChunk] = []
        for container in self._containers(compose_name):
            if container.status != "running":
                continue
            cursor = cursors.setdefault(container.name, FileCursor())
            args = [path, cursor.inode or "-", str(cursor.offset), str(max_bytes)]
            with self._errors(f"reading {path} in {container.name}"):
                code, (out, err) = container.exec_run(
                    ["sh", "-c", _READ_FILE, "sh", *args], demux=True
                )
            out, err = out or b"", err or b""
            header, _, data = out.partition(b"\n")
            if code != 0 or header.count(b" ") != 3:
                said = (err or out).decode("utf-8", "replace").strip()[:200]
                raise OperationFailed(
                    f"cannot read {path} in {container.name}: {said or f'exit code {code}'}",
                    hint="set logs.access_log / logs.app_log to the file inside the container"
                    " (the compose file's LOG_DIR), or logs.*_source = 'service'",
                )
            inode, start, cut, restarted = header.decode().split(" ")
            cursor.inode, cursor.offset = inode, int(start) + len(data)
            chunks.append(FileChunk(container.name, data, cut == "1", restarted == "1"))
        return chunks

    def _keep_tag(self, variable: str, tag: str) -> None:
        """Write VARIABLE=tag into the project's env file, other lines kept as they were."""
        path = self.settings.deploy.env_file or Path(self._project_files()[0]).parent / ".env"
        try:
            old = path.read_text().splitlines() if path.exists() else []
            kept = [ln for ln in old if ln.split("=", 1)[0].strip() != variable]
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("\n".join([*kept, f"{variable}={tag}"]) + "\n")
            os.replace(tmp, path)
        except OSError as exc:
            raise OperationFailed(
                f"{variable}={tag} runs now, but could not be kept in {path}: {exc}",
                hint=f"add {variable}={tag} to {path} by hand, or a later `up` reverts it",
            ) from None

    # -- describe -------------------------------------------------------------------------
    def describe(self, instance: str) -> dict[str, Any]:
        """One container in detail, with its engine events of the last hour."""
        try:
            with self._errors(f"inspecting container {instance}"):
                container = self.client.containers.get(instance)
        except OperationFailed:
            known = [c.name for c in self._containers()]
            raise UsageError(
                f"no container {instance!r}; containers of project"
                f" {self.compose.project!r}: {', '.join(known) or '(none)'}"
            ) from None
        attrs = container.attrs
        state = attrs.get("State", {})
        inst = _instance(container)
        now = datetime.now(UTC)
        with self._errors(f"reading the events of {instance}"):
            raw_events = self.client.events(
                since=now - timedelta(hours=1),
                until=now,
                filters={"container": container.id},
                decode=True,
            )
            events = [
                {
                    "time": datetime.fromtimestamp(e.get("time", 0), UTC).isoformat(),
                    "action": e.get("Action") or e.get("status"),
                }
                for e in raw_events
                # health checks run as execs every few seconds: their events drown the rest
                if not str(e.get("Action") or e.get("status") or "").startswith("exec_")
            ]
        return {
            "name": container.name,
            "service": container.labels.get(SERVICE_LABEL, ""),
            "project": container.labels.get(PROJECT_LABEL, ""),
            "state": inst.state,
            "health": inst.health,
            "image": inst.image,
            "image_id": inst.image_digest,
            "started_at": inst.started_at.isoformat() if inst.started_at else None,
            "restarts": inst.restarts,
            "exit_code": state.get("ExitCode"),
            "oom_killed": state.get("OOMKilled"),
            "command": " ".join(attrs.get("Config", {}).get("Cmd") or []),
            "network_mode": attrs.get("HostConfig", {}).get("NetworkMode"),
            "health_log": [
                {"end": h.get("End"), "exit_code": h.get("ExitCode"), "output": h.get("Output")}
                for h in (state.get("Health") or {}).get("Log", [])[-5:]
            ],
            "events": events[-20:],
        }

    def rollback_revision(self, now: Release, to: str | None) -> Release | None:
        return None  # compose keeps no revisions: a rollback names an image


# -- the compose binary ----------------------------------------------------------------------
@functools.cache
def compose_command(configured: tuple[str, ...] = ()) -> list[str]:
    """The compose binary: the configured one, else v2 `docker compose`, else v1
    `docker-compose`. Detected once per process."""
    if configured:
        return list(configured)
    docker = shutil.which("docker")
    if docker:
        try:
            probe = subprocess.run(
                [docker, "compose", "version"], capture_output=True, timeout=20, check=False
            )
            if probe.returncode == 0:
                return [docker, "compose"]
        except (OSError, subprocess.TimeoutExpired):
            pass
    v1 = shutil.which("docker-compose")
    if v1:
        return [v1]
    raise ConfigError(
        "no compose binary: neither `docker compose` (v2) nor `docker-compose` (v1) works",
        hint="install one (apt-get install docker-compose), or set compose.command",
    )


# -- logs ------------------------------------------------------------------------------------
class _LogStream:
    """One container's log as LogLines, split from the engine's chunks as they arrive."""

    def __init__(self, source: str, raw: Any, errors: Any) -> None:
        self.source = source
        self.raw = raw
        self._errors = errors

    def lines(self) -> Iterator[LogLine]:
        with self._errors(f"reading the log of {self.source}"):
            for line in split_lines(self.raw):
                yield stamped_line(self.source, line)

    def close(self) -> None:
        close = getattr(self.raw, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):  # a stream that already ended
                close()


# -- exec ------------------------------------------------------------------------------------
def _copy_exec_output(sock: Any, io: ExecIO) -> None:
    """The exec's output to the user's stdout/stderr until the engine ends the stream: raw
    with a TTY, else frames of [stream (1 stdout, 2 stderr), 0, 0, 0, length (4, big-endian)]."""
    if io.tty:
        while chunk := sock.recv(EXEC_CHUNK):
            io.stdout.write(chunk)
            io.stdout.flush()
        return
    buffer = b""
    while chunk := sock.recv(EXEC_CHUNK):
        buffer += chunk
        while len(buffer) >= 8:
            size = int.from_bytes(buffer[4:8], "big")
            if len(buffer) < 8 + size:
                break
            out = io.stderr if buffer[0] == 2 else io.stdout
            out.write(buffer[8 : 8 + size])
            out.flush()
            buffer = buffer[8 + size :]


def _mount(mount: dict[str, Any]) -> Any:
    """A container's mount (from inspect) as the same mount for a new container."""
    from docker.types import Mount

    kind = mount.get("Type")
    read_only = not mount.get("RW", True)
    if kind == "volume":
        return Mount(mount["Destination"], mount.get("Name"), type="volume", read_only=read_only)
    if kind == "bind":
        return Mount(mount["Destination"], mount["Source"], type="bind", read_only=read_only)
    if kind == "tmpfs":
        return Mount(mount["Destination"], None, type="tmpfs")
    return None


# -- container details -----------------------------------------------------------------------
def _split_image(image: str) -> tuple[str, str]:
    """("travellr-backend", "v1") of "travellr-backend:v1"; a registry port is not a tag."""
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return name, tag


def _instance(container: Any) -> Instance:
    attrs = container.attrs
    state = attrs.get("State", {})
    status = state.get("Status", container.status)
    # The engine keeps the last health verdict of a stopped container: it says nothing now.
    health = (state.get("Health") or {}).get("Status") if status == "running" else None
    host_config = attrs.get("HostConfig", {})
    ports: list[str] = []
    for port, bindings in (attrs.get("NetworkSettings", {}).get("Ports") or {}).items():
        for b in bindings or []:
            ports.append(f"{b.get('HostIp', '')}:{b.get('HostPort')}->{port}")
    if not ports and host_config.get("NetworkMode") == "host":
        ports.append("host network")
    last = None
    if status in ("exited", "dead", "restarting") or state.get("OOMKilled"):
        last = _exit_reason(state)
    return Instance(
        name=container.name,
        state=status,
        ready=status == "running" and health in (None, "healthy"),
        health=health,
        restarts=int(attrs.get("RestartCount", 0)),
        started_at=stamp_time(state.get("StartedAt")) if status == "running" else None,
        image=attrs.get("Config", {}).get("Image", ""),
        image_digest=attrs.get("Image"),
        ports=ports,
        last_termination=last,
    )


def _exit_reason(state: dict[str, Any]) -> str:
    parts = [f"exit code {state.get('ExitCode')}"]
    if state.get("OOMKilled"):
        parts.insert(0, "OOMKilled")
    if state.get("Error"):
        parts.append(str(state["Error"]))
    finished = stamp_time(state.get("FinishedAt"))
    if finished is not None:
        parts.append(f"at {finished.strftime('%Y-%m-%d %H:%M:%S')} UTC")
    return ", ".join(parts)


def _trouble(inst: Instance) -> str:
    if inst.state != "running":
        return f"{inst.name} is {inst.state}" + (
            f" ({inst.last_termination})" if inst.last_termination else ""
        )
    return f"{inst.name} is {inst.health or 'not ready'}"


def _last_health_output(state: dict[str, Any]) -> str:
    log = (state.get("Health") or {}).get("Log") or []
    if not log:
        return "(none yet)"
    last = log[-1]
    output = " ".join(str(last.get("Output", "")).split())
    return f"exit {last.get('ExitCode')}: {output[-300:] or '(no output)'}"


# -- stats -----------------------------------------------------------------------------------
def stats_usage(service: str, instance: str, raw: dict[str, Any]) -> ResourceUsage:
    """The figures `docker stats` shows, from one stats reading (the CLI's own formulas)."""
    cpu = raw.get("cpu_stats") or {}
    pre = raw.get("precpu_stats") or {}
    cpu_pct = None
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (
        pre.get("cpu_usage") or {}
    ).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [1])
    if system_delta > 0 and pre.get("system_cpu_usage"):
        cpu_pct = round(cpu_delta / system_delta * online * 100.0, 2)
    mem = raw.get("memory_stats") or {}
    used = limit = pct = None
    if "usage" in mem:
        detail = mem.get("stats") or {}
        # like the docker CLI: page cache that could be dropped is not "used"
        inactive = detail.get("total_inactive_file", detail.get("inactive_file", 0))
        used = max(0, int(mem["usage"]) - int(inactive))
        limit = int(mem.get("limit") or 0) or None
        pct = round(used / limit * 100.0, 2) if limit else None
    rx = tx = None
    networks = raw.get("networks")
    if networks:
        rx = sum(int(n.get("rx_bytes", 0)) for n in networks.values())
        tx = sum(int(n.get("tx_bytes", 0)) for n in networks.values())
    read = write = None
    entries = (raw.get("blkio_stats") or {}).get("io_service_bytes_recursive")
    if entries is not None:
        read = sum(int(e.get("value", 0)) for e in entries if e.get("op", "").lower() == "read")
        write = sum(int(e.get("value", 0)) for e in entries if e.get("op", "").lower() == "write")
    return ResourceUsage(
        instance=instance,
        service=service,
        cpu_pct=cpu_pct,
        memory_bytes=used,
        memory_limit_bytes=limit,
        memory_pct=pct,
        net_rx_bytes=rx,
        net_tx_bytes=tx,
        block_read_bytes=read,
        block_write_bytes=write,
    )


# -- helpers ---------------------------------------------------------------------------------
def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, its causes and contexts, and exceptions carried in their args."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 50:
        e = todo.pop()
        if any(e is s for s in seen):
            continue
        seen.append(e)
        for nxt in (
            e.__cause__,
            e.__context__,
            *[a for a in e.args if isinstance(a, BaseException)],
        ):
            if nxt is not None:
                todo.append(nxt)
        reason = getattr(e, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
    return seen


def _explain(exc: Any) -> str:
    return str(getattr(exc, "explanation", None) or exc).splitlines()[0]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
