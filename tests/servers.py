"""What a test does when a real server it needs cannot be had.

Outside CI a developer without, say, a Docker Engine still gets the rest of the suite: the test
is skipped with the reason. Under CI (CI=true) nothing may be skipped for want of a server, so
the same situation fails the test loudly.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import NoReturn

import pytest

from travellr_ops.settings import Settings

IN_CI = os.environ.get("CI", "").lower() == "true"


def need(reason: str) -> NoReturn:
    """Fail under CI, skip elsewhere, because a required server is unavailable."""
    if IN_CI:
        pytest.fail(f"required server unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"server unavailable: {reason}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_settings(tmp_path: Path) -> Settings:
    """Settings whose every server is absent: MongoDB, Redis and the API on closed ports, a
    Docker Engine socket that does not exist. For checks that must end before any is asked."""
    return Settings(
        platform="compose",
        state_dir=tmp_path / "state",
        mongo={"uri": f"mongodb://127.0.0.1:{free_port()}/travellr", "timeout_s": 0.5},
        redis={"url": f"redis://127.0.0.1:{free_port()}/0", "timeout_s": 0.5},
        api={"url": f"http://127.0.0.1:{free_port()}", "timeout_s": 0.5},
        compose={"docker_host": f"unix://{tmp_path}/no-engine.sock"},
        backup={"dir": tmp_path / "backups"},
    )
