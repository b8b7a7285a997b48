"""The image of travellr-ops itself (config/docker/Dockerfile), built on the Docker testbed by
scripts/testbed/docker.sh ops-image (cached by its recipe), run against the compose stack."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fixtures_docker import SCRIPT, ComposeStack
from servers import need


@pytest.fixture(scope="module")
def ops_image(docker_engine: str) -> str:
    try:
        done = subprocess.run(
            ["bash", str(SCRIPT), "ops-image"],
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
    except subprocess.TimeoutExpired:
        need("docker.sh ops-image did not finish within 1200 s")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def _run(stack: ComposeStack, image: str, *args: str) -> tuple[int, str, str]:
    """`docker run --network host IMAGE ARGS` as the image's own (non-root) user, with the
    stack's settings in its environment and the engine's socket (for the platform check)."""
    socket = stack.docker_host.removeprefix("unix://")
    env = {
        "TRAVELLR_PLATFORM": "compose",
        "TRAVELLR_COMPOSE__PROJECT": stack.project,
        "TRAVELLR_COMPOSE__DOCKER_HOST": stack.docker_host,
        "TRAVELLR_API__URL": stack.backend_url,
        "TRAVELLR_MONGO__URI": f"mongodb://127.0.0.1:{stack.ports['mongodb']}/travellr"
        "?directConnection=true",
        "TRAVELLR_REDIS__URL": f"redis://127.0.0.1:{stack.ports['redis']}/0",
    }
    client = stack.client()
    try:
        container = client.containers.run(
            image,
            list(args),
            environment=env,
            network_mode="host",
            volumes={socket: {"bind": socket, "mode": "rw"}},
            group_add=[str(os.stat(socket).st_gid)],  # the socket's group, not root
            detach=True,
        )
        try:
            code = int(container.wait(timeout=120)["StatusCode"])
            out = container.logs(stdout=True, stderr=False).decode()
            err = container.logs(stdout=False, stderr=True).decode()
        finally:
            container.remove(force=True)
    finally:
        client.close()
    return code, out, err


@pytest.mark.docker
def test_the_image_runs_help_config_and_health_against_the_stack(
    stack: ComposeStack, ops_image: str
) -> None:
    client = stack.client()
    try:
        config: Any = client.images.get(ops_image).attrs["Config"]
    finally:
        client.close()
    assert config["User"] not in ("", "0", "root") and config["Entrypoint"] == ["travellr-ops"]

    code, out, err = _run(stack, ops_image, "--help")
    assert code == 0, err
    assert "deploy" in out and "backup" in out

    code, out, err = _run(stack, ops_image, "--json", "config", "show")
    assert code == 0, err
    shown = json.loads(out)
    assert stack.project in json.dumps(shown)

    code, out, err = _run(stack, ops_image, "--json", "health")
    assert code == 0, err + out
    checks = {c["name"]: c["verdict"] for c in json.loads(out)["checks"]}
    assert checks["mongodb"] == checks["redis"] == checks["api"] == "ok", checks


def test_the_manifests_name_the_image() -> None:
    root = Path(__file__).resolve().parents[1]
    from travellr_ops import __version__

    for manifest in ("config/k8s/backup-cronjob.yaml", "config/ci/deploy.yml"):
        assert f"travellr-ops:{__version__}" in (root / manifest).read_text(), manifest
