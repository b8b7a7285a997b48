"""markers.py: a test that needs a kind of server without carrying its marker fails, saying
which marker to add; a marked one runs as before."""

from __future__ import annotations

import pytest

INNER = """
import pytest
from markers import require_marker

@pytest.fixture
def docker_engine():
    return "unix:///nowhere"

@pytest.fixture
def stack(docker_engine):
    return docker_engine

def test_unmarked_uses_the_engine(stack):
    pass

@pytest.mark.docker
def test_marked_uses_the_engine(stack):
    pass

def test_unmarked_starts_a_mongo_server():
    require_marker("mongo")

@pytest.mark.mongo
def test_marked_starts_a_mongo_server():
    require_marker("mongo")
"""


def test_a_test_needing_a_server_without_its_marker_fails(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["markers"]')
    pytester.makepyfile(test_inner=INNER)

    result = pytester.runpytest("-p", "no:cacheprovider")

    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_unmarked_uses_the_engine uses docker_engine but is not marked docker:"
            " add pytest.mark.docker*",
            "*test_unmarked_starts_a_mongo_server starts a mongo server but is not marked mongo*",
        ]
    )
