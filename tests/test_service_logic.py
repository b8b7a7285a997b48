"""The parts of `service` that need no server: time windows, log filters, docker stats maths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from travellr_ops.adapters.docker import stats_usage
from travellr_ops.adapters.log_streams import stamped_line
from travellr_ops.errors import UsageError
from travellr_ops.ops.service import log_filter
from travellr_ops.vocab.timespec import parse_since

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "ago"),
    [("10m", timedelta(minutes=10)), ("2h", timedelta(hours=2)), ("30s", timedelta(seconds=30)),
     ("1d", timedelta(days=1)), ("1.5h", timedelta(minutes=90))],
)  # fmt: skip
def test_since_durations(text: str, ago: timedelta) -> None:
    assert parse_since(text, now=NOW) == NOW - ago


def test_since_times_without_a_zone_are_utc() -> None:
    assert parse_since("2026-05-01T10:00:00", now=NOW) == datetime(2026, 5, 1, 10, tzinfo=UTC)


def test_since_nonsense_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        parse_since("last tuesday", now=NOW)


def test_grep_is_a_case_insensitive_regex() -> None:
    keep = log_filter("error|timeout", None)
    assert keep("2026 ERROR db down")
    assert keep("upstream Timeout after 5 s")
    assert not keep("GET /api/health 200")


def test_level_keeps_that_level_and_worse() -> None:
    keep = log_filter(None, "warning")
    assert keep("12:00 WARN slow query")
    assert keep("12:00 ERROR boom")
    assert keep("12:00 CRITICAL disk full")
    assert not keep("12:00 INFO started")
    assert not keep("a line with no level")


def test_bad_regex_and_level_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        log_filter("(", None)
    with pytest.raises(UsageError):
        log_filter(None, "LOUD")


def test_engine_log_lines_keep_their_timestamp() -> None:
    line = stamped_line("c1", b"2026-05-01T12:00:00.123456789Z hello world\r")
    assert line.time == datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert (line.source, line.text) == ("c1", "hello world")
    bare = stamped_line("c1", b"no stamp here")
    assert bare.time is None and bare.text == "no stamp here"


def test_stats_figures_follow_the_docker_cli() -> None:
    raw = {
        "cpu_stats": {"cpu_usage": {"total_usage": 3_000}, "system_cpu_usage": 20_000,
                      "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": 1_000}, "system_cpu_usage": 10_000},
        "memory_stats": {"usage": 300, "limit": 1000, "stats": {"total_inactive_file": 100}},
        "networks": {"eth0": {"rx_bytes": 5, "tx_bytes": 7}, "eth1": {"rx_bytes": 1, "tx_bytes": 1}},
        "blkio_stats": {"io_service_bytes_recursive": [
            {"op": "Read", "value": 10}, {"op": "Write", "value": 20}, {"op": "Read", "value": 1}]},
    }  # fmt: skip
    usage = stats_usage("backend", "c1", raw)
    assert usage.cpu_pct == 40.0  # 2000/10000 of the machine, times 2 CPUs
    assert (usage.memory_bytes, usage.memory_limit_bytes, usage.memory_pct) == (200, 1000, 20.0)
    assert (usage.net_rx_bytes, usage.net_tx_bytes) == (6, 8)
    assert (usage.block_read_bytes, usage.block_write_bytes) == (11, 20)


def test_stats_of_a_first_reading_have_no_cpu_figure() -> None:
    usage = stats_usage("backend", "c1", {"cpu_stats": {}, "precpu_stats": {}, "memory_stats": {}})
    assert usage.cpu_pct is None and usage.memory_bytes is None and usage.net_rx_bytes is None


def _adapter_imports() -> dict[str, set[str]]:
    """Which adapters modules each adapters module imports, lazily (in a function) or not."""
    import ast
    from pathlib import Path

    import travellr_ops.adapters as package

    folder = Path(package.__file__).parent
    # a module, or a package (every module in it) taken as one
    files = {p.stem: [p] for p in folder.glob("*.py") if p.stem != "__init__"}
    files |= {p.parent.name: sorted(p.parent.glob("*.py")) for p in folder.glob("*/__init__.py")}
    names = set(files)
    graph: dict[str, set[str]] = {}
    for name in names:
        found = set()
        for file in files[name]:
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    parts = node.module.split(".")
                    if parts[:2] == ["travellr_ops", "adapters"] and len(parts) >= 3:
                        found.add(parts[2])
                    if node.module == "travellr_ops.adapters":
                        found |= {a.name for a in node.names if a.name in names}
        graph[name] = found - {name}
    return graph


def test_the_adapters_import_no_circle() -> None:
    graph = _adapter_imports()

    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(
            n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start]
        )

    circles = sorted(name for name in graph if reaches(name, name))
    assert circles == []
    # the shared types sit below both platforms, the factory above them
    assert graph["platform_types"] == set()
    assert {"docker", "kubernetes"} <= graph["platform"]
    assert "platform" not in graph["docker"] | graph["kubernetes"]


def test_scale_takes_n_as_the_readme_writes_it(tmp_path: Path) -> None:
    from cli import invoke
    from travellr_ops.settings import Settings

    s = Settings(platform="none", state_dir=tmp_path)
    # N (or --replicas N) is accepted: what stops these is the platform setting, not parsing
    for args in (["3"], ["--replicas", "3"], ["3", "-r", "3"]):
        result = invoke("service", "scale", "backend", *args, "--yes", settings=s)
        assert result.exit_code == 2 and 'platform = "none"' in result.stderr, result.stderr
    for args in ([], ["3", "--replicas", "4"]):
        result = invoke("service", "scale", "backend", *args, settings=s)
        assert result.exit_code == 2
        assert "number of instances" in result.stderr and "service scale backend 3" in result.stderr
        assert "env var" not in result.stderr and "None" not in result.stderr
    negative = invoke("service", "scale", "backend", "--", "-1", settings=s)
    assert negative.exit_code == 2 and "env var" not in negative.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["logs", "--since", "1x"], "--since '1x' is not a duration or a time"),
        (["logs", "backend", "--since", "last tuesday"], "--since 'last tuesday'"),
        (
            ["restart", "backend", "--timeout", "soon", "--yes"],
            "--timeout 'soon' is not a duration",
        ),
        (["restart", "backend", "--timeout", "0"], "--timeout '0' is not a duration of more"),
        (["stats", "--watch", "--interval", "1x"], "--interval '1x' is not a duration"),
        (["stats", "--watch", "--interval", "100ms"], "--interval must be at least 500ms"),
    ],
)
def test_bad_times_are_refused_before_the_platform_is_reached(
    args: list[str], said: str, tmp_path: Path
) -> None:
    from cli import invoke
    from servers import closed_settings

    # an engine that is not there: reaching it would be exit 3, "no Docker Engine at"
    s = closed_settings(tmp_path)
    result = invoke("service", *args, settings=s)
    assert result.exit_code == 2, result.stderr
    assert said in result.stderr
    assert "Docker Engine" not in result.stderr
