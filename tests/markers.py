"""Every test that needs a kind of server carries that kind's marker, so `-m "not docker"` (or
k8s, redis, mongo) leaves out exactly the tests that need one.

Two checks, both failing the test with what to add: at set-up, a test that uses a server
fixture of a kind (directly or through another fixture) without the marker; at run time, a
test that starts a server itself (`MongoServer(...).start()`, `redis_factory()`) without it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# The fixtures every fixture of a kind builds on: pytest's fixture closure finds the rest
# (compose_stack, stack, k8s_ns, redis_url, backend, ...).
SERVER_FIXTURES = {
    "docker": {"docker_engine"},
    "k8s": {"k8s_cluster"},
    "redis": {"redis_server", "redis_cluster"},
    "mongo": {"mongo_server", "mongo_standalone_server", "seeded_mongo_server"},
}

_running: pytest.Item | None = None


def _unmarked(item: pytest.Item, kind: str, why: str) -> str:
    return (
        f"{item.nodeid} {why} but is not marked {kind}: add pytest.mark.{kind} to it "
        "(or to its module's pytestmark)"
    )


def require_marker(kind: str) -> None:
    """Called by a server as it starts: the running test must be marked with its kind."""
    if _running is not None and _running.get_closest_marker(kind) is None:
        pytest.fail(_unmarked(_running, kind, f"starts a {kind} server"), pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    used = set(getattr(item, "fixturenames", ()))
    for kind, roots in SERVER_FIXTURES.items():
        if used & roots and item.get_closest_marker(kind) is None:
            fixture = sorted(used & roots)[0]
            pytest.fail(_unmarked(item, kind, f"uses {fixture}"), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    global _running
    _running = item
    try:
        yield
    finally:
        _running = None
