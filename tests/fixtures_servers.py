"""Real Redis, MongoDB-wire (SecantusDB) and stand-in backend servers for tests.

Every server listens on 127.0.0.1 on a free port, keeps its files in a pytest tmp dir, is
started through the same scripts the sandbox uses (scripts/testbed/{redis,mongo}.sh,
scripts/sandbox/seed.py, scripts/sandbox/server.js) and is thrown away by its fixture: its data is scratch, so
SecantusDB is killed (SIGKILL) rather than waited on for its 2-4 s clean shutdown, and no
process outlives the session. A server that cannot be started makes the test skip outside CI
and fail under CI (servers.need).

Session fixtures (shared; a test that stops one must start it again):
  redis_server / redis_url            one redis-server            redis://127.0.0.1:P/0
  redis_cluster_url                   one node of a 3-primary Redis Cluster
  mongo_server / mongo_uri            SecantusDB replica set      mongodb://127.0.0.1:P/travellr
  mongo_standalone_uri                SecantusDB --standalone
  seeded_mongo_uri                    its own replica set, small seed (scripts/sandbox/seed.py);
                                      treat as read-only
  backend / backend_url               the stand-in backend on redis_url + seeded_mongo_uri;
                                      backend.log_dir holds access.log and app.log
Function fixtures (a test's own, free to stop, change and restart):
  redis_factory(), mongo_factory(standalone=, memory=, extra=), backend_factory(redis_url,
  mongo_uri, **env), fresh_seeded_mongo_uri (a freshly seeded db of its own, dropped after).
Module fixture:
  module_servers    a ServerSet (.redis(), .mongo(...), .backend(...)) whose servers the
                    module's tests share: for tests that leave them as they found them.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from markers import require_marker
from servers import free_port, need

REPO = Path(__file__).resolve().parents[1]
REDIS_SH = REPO / "scripts" / "testbed" / "redis.sh"
MONGO_SH = REPO / "scripts" / "testbed" / "mongo.sh"
SEED_PY = REPO / "scripts" / "sandbox" / "seed.py"
BACKEND_JS = REPO / "scripts" / "sandbox" / "server.js"
VENV_BIN = Path(sys.executable).parent

# Small enough for a quick session, big enough that a COLLSCAN is visible in explain.
TEST_SEED_SCALE = "0.02"


class ServerStartError(RuntimeError):
    """A testbed script failed; the message is its stderr."""


def _script(*argv: str | Path, timeout: float = 120) -> None:
    env = {**os.environ, "VENV": str(VENV_BIN.parent)}
    try:
        res = subprocess.run(
            ["bash", *map(str, argv)], capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired as exc:
        raise ServerStartError(f"{Path(str(argv[0])).name} {argv[1]}: timed out") from exc
    if res.returncode != 0:
        msg = res.stderr.strip() or f"exit status {res.returncode}"
        raise ServerStartError(msg)


def _pid_alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


class RedisServer:
    """One redis-server; `stop()` and `start()` again keep the same port."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.dir = workdir
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return _pid_alive(self.dir / "redis.pid")

    def start(self) -> RedisServer:
        require_marker("redis")
        _script(REDIS_SH, "start", "--port", str(self.port), "--dir", self.dir)
        return self

    def stop(self) -> None:
        _script(REDIS_SH, "stop", "--dir", self.dir)

    def discard(self) -> None:
        """Stop for good (nothing persisted: redis-server exits at once on SIGTERM)."""
        self.stop()


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too, as Redis requires."""
    while True:
        port = free_port()
        if port <= 55535 and _bindable(port + 10000):
            return port


class RedisCluster:
    """Three primaries on 127.0.0.1, slots spread by `redis-cli --cluster create`."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.ports: list[int] = []
        while len(self.ports) < 3:
            port = _free_cluster_port()
            if port not in self.ports:
                self.ports.append(port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> RedisCluster:
        require_marker("redis")
        _script(
            REDIS_SH, "cluster-start", "--ports", ",".join(map(str, self.ports)), "--dir", self.dir
        )
        return self

    def stop(self) -> None:
        _script(REDIS_SH, "cluster-stop", "--dir", self.dir)

    def discard(self) -> None:
        self.stop()


class MongoServer:
    """One SecantusDB, with the test-only commands on (`configureFailPoint`: fault tests arm a
    failure on it). In memory unless `memory=False`; then its data stays in `dir/data` across
    `stop()`/`start()`.

    `stop()` waits for the clean shutdown (2-4 s) when there is data to keep; a server in
    memory has none and is killed at once (to its clients both are a dropped connection).
    A server that cannot start makes the test skip, or fail under CI (servers.need).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        standalone: bool = False,
        memory: bool = True,
        extra: tuple[str, ...] = (),
    ) -> None:
        _require("secantusd-py", "scripts/testbed/mongo.sh install")
        self.dir = workdir
        self.port = port or free_port()
        self.standalone = standalone
        self.memory = memory
        self.extra = extra

    def uri_for(self, db: str) -> str:
        return f"mongodb://127.0.0.1:{self.port}/{db}"

    @property
    def uri(self) -> str:
        return self.uri_for("travellr")

    @property
    def running(self) -> bool:
        return _pid_alive(self.dir / "mongo.pid")

    def start(self, *extra: str) -> MongoServer:
        """Start (again); `extra` server arguments replace the previous ones (`--auth`)."""
        require_marker("mongo")
        self.extra = extra or self.extra
        argv: list[str | Path] = [MONGO_SH, "start", "--port", str(self.port), "--dir", self.dir]
        if self.standalone:
            argv.append("--standalone")
        if self.memory:
            argv.append("--memory")
        argv += ["--extra", " ".join(("--enable-test-commands", *self.extra))]
        try:
            _script(*argv)
        except ServerStartError as exc:  # mongo.sh has stopped what it started
            need(f"MongoServer: {exc}")
        return self

    def stop(self) -> None:
        if self.memory:
            self.kill()
        else:
            _script(MONGO_SH, "stop", "--dir", self.dir, timeout=60)

    def kill(self) -> None:
        """SIGKILL: a crash (the journal keeps acknowledged writes), and no wait for shutdown."""
        _script(MONGO_SH, "stop", "--dir", self.dir, "--kill")

    def discard(self) -> None:
        """Stop for good: the data is scratch, so nothing is worth a clean shutdown."""
        self.kill()

    def client(self, db: str | None = None) -> Any:
        from pymongo import MongoClient

        return MongoClient(self.uri_for(db or "travellr"), serverSelectionTimeoutMS=5000)


class Backend:
    """The stand-in Travellr backend (scripts/sandbox/server.js, on Node.js) as a child process."""

    def __init__(
        self,
        workdir: Path,
        *,
        redis_url: str,
        mongo_uri: str,
        port: int | None = None,
        node: str = "node",
        **env: str,
    ) -> None:
        self.dir = workdir
        self.log_dir = workdir / "logs"
        self.port = port or free_port()
        self.node = node
        self.env = {
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "REDIS_URL": redis_url,
            "MONGO_URI": mongo_uri,
            "LOG_DIR": str(self.log_dir),
            "BACKEND_VERSION": "test",
            **env,
        }
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def access_log(self) -> Path:
        return self.log_dir / "access.log"

    @property
    def app_log(self) -> Path:
        return self.log_dir / "app.log"

    def start(self) -> Backend:
        self.dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        with open(self.dir / "stdout.log", "ab") as out:
            self._proc = subprocess.Popen(
                [self.node, str(BACKEND_JS)],
                env={**env, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                out_text = (self.dir / "stdout.log").read_text(errors="replace")[-2000:]
                raise ServerStartError(f"backend exited at start: {out_text}")
            try:
                # Any HTTP answer means it serves; a 503 (degraded) is still an answer.
                urllib.request.urlopen(self.url + "/api/health", timeout=2).close()
                return self
            except urllib.error.HTTPError:
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise ServerStartError("backend did not answer /api/health within 20 s")

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def discard(self) -> None:
        self.stop()


def seed(uri: str, scale: str = TEST_SEED_SCALE) -> None:
    """Fill the database of `uri` with scripts/sandbox/seed.py (drops what is there)."""
    res = subprocess.run(
        [sys.executable, str(SEED_PY), "--uri", uri, "--scale", scale, "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if res.returncode != 0:
        raise ServerStartError(f"seed.py failed: {res.stderr.strip()}")


def _require(binary: str, how: str) -> None:
    if shutil.which(binary) is None and not (VENV_BIN / binary).exists():
        need(f"{binary} is not installed ({how})")


def _started(server: Any) -> Any:
    try:
        return server.start()
    except ServerStartError as exc:
        _discard_quietly(server)  # a cluster may have started some of its nodes
        need(f"{type(server).__name__}: {exc}")


def _discard_quietly(server: Any) -> None:
    try:
        server.discard()
    except ServerStartError as exc:
        print(f"warning: could not stop {type(server).__name__}: {exc}", file=sys.stderr)


_S = TypeVar("_S")


class ServerSet:
    """Servers started for one test or one module, in folders under `root`; `discard()` stops
    every one of them (the newest first, so a backend goes before the servers it uses)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._made: list[Any] = []
        self._counter = itertools.count()

    def _add(self, server: _S) -> _S:
        self._made.append(_started(server))
        return server

    def _dir(self, kind: str) -> Path:
        return self.root / f"{kind}-{next(self._counter)}"

    def redis(self) -> RedisServer:
        _require("redis-server", "scripts/testbed/redis.sh install")
        return self._add(RedisServer(self._dir("redis")))

    def mongo(
        self, *, standalone: bool = False, memory: bool = False, extra: tuple[str, ...] = ()
    ) -> MongoServer:
        server = MongoServer(self._dir("mongo"), standalone=standalone, memory=memory, extra=extra)
        return self._add(server)

    def backend(self, *, redis_url: str, mongo_uri: str, **env: str) -> Backend:
        server = Backend(self._dir("backend"), redis_url=redis_url, mongo_uri=mongo_uri, **env)
        return self._add(server)

    def discard(self) -> None:
        while self._made:
            _discard_quietly(self._made.pop())


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[ServerSet]:
    """Servers of this test's own, thrown away when it ends."""
    made = ServerSet(tmp_path)
    yield made
    made.discard()


@pytest.fixture(scope="module")
def module_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerSet]:
    """Servers the module's tests share: a test that changes one puts it back as it was."""
    made = ServerSet(tmp_path_factory.mktemp("module-servers"))
    yield made
    made.discard()


# ----------------------------------------------------------------------------------- redis
@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    _require("redis-server", "scripts/testbed/redis.sh install")
    server = _started(RedisServer(tmp_path_factory.mktemp("redis")))
    yield server
    _discard_quietly(server)


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    _require("redis-server", "scripts/testbed/redis.sh install")
    cluster = _started(RedisCluster(tmp_path_factory.mktemp("redis-cluster")))
    yield cluster
    _discard_quietly(cluster)


@pytest.fixture(scope="session")
def redis_cluster_url(redis_cluster: RedisCluster) -> str:
    return redis_cluster.url


@pytest.fixture
def redis_factory(servers: ServerSet) -> Callable[[], RedisServer]:
    """Start redis-servers of this test's own; all are stopped when the test ends."""
    return servers.redis


# ----------------------------------------------------------------------------------- mongo
@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    server = _started(MongoServer(tmp_path_factory.mktemp("mongo-rs"), memory=False))
    yield server
    _discard_quietly(server)


@pytest.fixture(scope="session")
def mongo_uri(mongo_server: MongoServer) -> str:
    return mongo_server.uri


@pytest.fixture(scope="session")
def mongo_standalone_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    server = _started(
        MongoServer(tmp_path_factory.mktemp("mongo-sa"), standalone=True, memory=False)
    )
    yield server
    _discard_quietly(server)


@pytest.fixture(scope="session")
def mongo_standalone_uri(mongo_standalone_server: MongoServer) -> str:
    return mongo_standalone_server.uri


@pytest.fixture(scope="session")
def seeded_mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    server = _started(MongoServer(tmp_path_factory.mktemp("mongo-seeded"), memory=False))
    try:
        seed(server.uri)
    except ServerStartError as exc:
        _discard_quietly(server)
        need(str(exc))
    yield server
    _discard_quietly(server)


@pytest.fixture(scope="session")
def seeded_mongo_uri(seeded_mongo_server: MongoServer) -> str:
    """The seeded `travellr` db, shared by the session: do not change it (see fresh_...)."""
    return seeded_mongo_server.uri


_fresh_dbs = itertools.count()


@pytest.fixture
def fresh_seeded_mongo_uri(seeded_mongo_server: MongoServer) -> Iterator[str]:
    """A newly seeded database of this test's own on the seeded server, dropped afterwards."""
    name = f"travellr_t{os.getpid()}_{next(_fresh_dbs)}"
    uri = seeded_mongo_server.uri_for(name)
    try:
        seed(uri)
    except ServerStartError as exc:
        need(str(exc))
    yield uri
    client = seeded_mongo_server.client()
    try:
        client.drop_database(name)
    finally:
        client.close()


@pytest.fixture
def mongo_factory(servers: ServerSet) -> Callable[..., MongoServer]:
    """Start SecantusDB servers of this test's own; all are stopped when the test ends.

    mongo_factory(standalone=False, memory=False, extra=("--oplog-max-entries", "50"))
    """
    return servers.mongo


# --------------------------------------------------------------------------------- backend
@pytest.fixture(scope="session")
def backend(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, seeded_mongo_uri: str
) -> Iterator[Backend]:
    server = _started(
        Backend(tmp_path_factory.mktemp("backend"), redis_url=redis_url, mongo_uri=seeded_mongo_uri)
    )
    yield server
    server.discard()


@pytest.fixture(scope="session")
def backend_url(backend: Backend) -> str:
    return backend.url


@pytest.fixture
def backend_factory(servers: ServerSet) -> Callable[..., Backend]:
    """Start backends of this test's own against given servers: backend_factory(redis_url=,
    mongo_uri=, RATE_LIMIT_PER_MIN="5", ...); all are stopped when the test ends."""
    return servers.backend
