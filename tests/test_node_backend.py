"""The stand-in backend is a Node.js app (scripts/sandbox/server.js): what is particular to it.
Its API contract (endpoints, keys, logs, switches) is tested in test_sandbox.py."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from fixtures_servers import REPO, Backend
from servers import need
from travellr_ops.vocab.logformat import parse_access, parse_app

SANDBOX = REPO / "scripts" / "sandbox"

pytestmark = [pytest.mark.redis, pytest.mark.mongo]


def fetch(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=15) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_the_process_is_node_on_the_locked_dependencies(backend: Backend) -> None:
    assert backend._proc is not None
    proc = psutil.Process(backend._proc.pid)
    assert proc.name() in ("node", "nodejs")
    assert proc.cmdline()[-1] == str(SANDBOX / "server.js")
    lock = json.loads((SANDBOX / "package-lock.json").read_text())["packages"]
    for name in ("express", "mongodb", "redis"):
        installed = json.loads((SANDBOX / "node_modules" / name / "package.json").read_text())
        assert installed["version"] == lock[f"node_modules/{name}"]["version"]


def test_both_logs_are_the_shared_formats(backend: Backend) -> None:
    fetch(backend.url + "/api/search?destination=Oslo&page=0")
    fetch(backend.url + "/api/debug/error")
    access = [parse_access(line) for line in backend.access_log.read_text().splitlines()]
    assert all(access), "every access line parses"
    last = access[-1]
    assert last is not None
    assert (last.method, last.path, last.status) == ("GET", "/api/debug/error", 500)
    assert last.size is not None and last.size > 0
    app = [parse_app(line) for line in backend.app_log.read_text().splitlines()]
    assert all(app), "every app line parses"
    started = next(r for r in app if r is not None and r.message == "backend started")
    assert started.level == "INFO" and started.fields["version"] == "test"
    assert started.fields["pid"] == str(backend._proc.pid if backend._proc else "")


def test_cpu_endpoint_burns_what_it_is_asked(backend: Backend) -> None:
    started = time.perf_counter()
    status, body = fetch(backend.url + "/api/debug/cpu?ms=300")
    took = time.perf_counter() - started
    assert status == 200 and body["ms"] == 300 and body["rounds"] > 0
    assert took >= 0.3


def test_leak_switch_keeps_memory(
    backend_factory: Any, redis_url: str, seeded_mongo_uri: str
) -> None:
    leaky = backend_factory(
        redis_url=redis_url, mongo_uri=seeded_mongo_uri, BACKEND_LEAK_KB_PER_REQ="100"
    )
    assert leaky._proc is not None
    proc = psutil.Process(leaky._proc.pid)
    before = proc.memory_info().rss
    for _ in range(300):
        fetch(leaky.url + "/api/health")
    grown = proc.memory_info().rss - before
    assert grown > 300 * 100 * 1024 * 0.8  # ~30 MB kept, not collected


def test_kubernetes_manifest_variable_names_work(
    tmp_path: Path, redis_url: str, seeded_mongo_uri: str
) -> None:
    """config/k8s/backend.yaml passes MONGODB_URI (not MONGO_URI): both are read."""
    api = Backend(tmp_path, redis_url=redis_url, mongo_uri="mongodb://127.0.0.1:1/none")
    api.env.pop("MONGO_URI")
    api.env["MONGODB_URI"] = seeded_mongo_uri
    api.start()
    try:
        status, body = fetch(api.url + "/api/health")
        assert status == 200 and body["checks"]["mongodb"]["ok"] is True
    finally:
        api.stop()


def test_sigterm_stops_it_cleanly_and_logs_it(
    backend_factory: Any, redis_url: str, seeded_mongo_uri: str
) -> None:
    api = backend_factory(redis_url=redis_url, mongo_uri=seeded_mongo_uri)
    assert api._proc is not None
    started = time.monotonic()
    api._proc.send_signal(signal.SIGTERM)
    assert api._proc.wait(10) == 0
    assert time.monotonic() - started < 5
    assert "INFO backend stopping signal=SIGTERM" in api.app_log.read_text()


def test_the_lock_installs_offline_from_npms_cache(tmp_path: Path) -> None:
    """What the images' build relies on: `npm ci` from the lock with no registry (--offline:
    npm's cache only, a miss is an error)."""
    npm = shutil.which("npm")
    if npm is None:
        need("npm is not installed (scripts/setup.sh)")
    app = tmp_path / "app"
    app.mkdir()
    for name in ("package.json", "package-lock.json", "server.js"):
        shutil.copy(SANDBOX / name, app / name)
    done = subprocess.run(
        [npm, "ci", "--offline", "--no-audit", "--no-fund"],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    probe = subprocess.run(
        ["node", "-e", "require('express'); require('mongodb'); require('redis')"],
        cwd=app,
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0, probe.stderr


@pytest.mark.docker
def test_the_images_run_debians_nodejs(docker_engine: str) -> None:
    """The compose images carry Debian's nodejs and node_modules from the lock: no network."""
    done = subprocess.run(
        [
            "/usr/bin/docker", "-H", docker_engine, "run", "--rm", "--network", "none",
            "travellr-backend:v1", "node", "-e",
            "console.log(process.version, require('/app/node_modules/mongodb/package.json').version)",
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    version, driver = done.stdout.split()
    assert version.startswith("v18.")  # bookworm's nodejs
    lock = json.loads((SANDBOX / "package-lock.json").read_text())["packages"]
    assert driver == lock["node_modules/mongodb"]["version"]
