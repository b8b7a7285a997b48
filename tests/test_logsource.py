"""The one log source: where each platform's access and app logs are, read incrementally and
bounded, and never a silent zero. Settings and local files need no server; the file inside
the compose containers is read from the real stack."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fixtures_docker import ComposeStack
from fixtures_k8s import K8sNamespace, backend_deployment
from travellr_ops.errors import ConfigError
from travellr_ops.ops import logsource
from travellr_ops.ops.logsource import LogSource, LogUnavailable, Reader
from travellr_ops.settings import Settings, load_settings


def _combined(when: datetime, path: str, status: int) -> str:
    stamp = when.strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'127.0.0.1 - - [{stamp}] "GET {path} HTTP/1.1" {status} 12 "-" "test"\n'


def test_each_platform_reads_where_its_stack_writes() -> None:
    none = Settings(platform="none")
    assert logsource.log_source(none, "access").label == "logs/access.log"
    assert logsource.log_source(none, "app").label == "logs/app.log"
    compose = Settings(platform="compose")
    assert (
        logsource.log_source(compose, "access").label
        == "compose:backend:/var/log/travellr/access.log"
    )
    assert logsource.log_source(compose, "app").label == "compose:backend (standard output)"
    k8s = Settings(platform="kubernetes")
    assert logsource.log_source(k8s, "access").label == "kubernetes:backend (pod logs)"
    # a path set on its own is a file on this machine (a volume mounted from the container)
    mounted = Settings(platform="compose", logs={"access_log": "/srv/travellr/access.log"})
    assert logsource.log_source(mounted, "access") == LogSource(
        "access", "file", Path("/srv/travellr/access.log"), "compose"
    )
    inside = Settings(
        platform="compose", logs={"access_source": "container", "access_log": "/logs/a.log"}
    )
    assert logsource.log_source(inside, "access").label == "compose:backend:/logs/a.log"
    with pytest.raises(ConfigError, match="needs a platform"):
        logsource.log_source(Settings(platform="none", logs={"app_source": "service"}), "app")


def test_the_deploy_gates_log_settings_moved_to_logs_with_a_warning(tmp_path: Path) -> None:
    config = tmp_path / "travellr-ops.toml"
    config.write_text(
        'platform = "compose"\n[deploy]\ncontainer_access_log = "/var/log/app/access.log"\n'
    )
    loaded = load_settings(config)
    assert loaded.settings.logs.access_source == "container"
    assert loaded.settings.logs.access_log == Path("/var/log/app/access.log")
    assert loaded.deprecations == [
        "deploy.container_access_log is deprecated: use logs.access_log instead"
    ]
    config.write_text('platform = "compose"\n[deploy]\nerror_source = "access_log"\n')
    loaded = load_settings(config)
    assert logsource.log_source(loaded.settings, "access").label == "logs/access.log"
    assert loaded.deprecations == [
        "deploy.error_source is deprecated: use logs.access_source instead"
    ]
    # "service" was what an unset source does now: the platform's own place
    assert Settings(deploy={"error_source": "service"}).logs.access_source is None


def test_a_file_is_read_incrementally_from_a_bounded_tail(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    now = datetime.now(UTC)
    old = "".join(_combined(now - timedelta(hours=2), f"/old/{i}", 200) for i in range(2000))
    log.write_text(old + _combined(now, "/new", 200))
    source = LogSource("access", "file", log, "none")
    reader = Reader(source, max_bytes=4096)
    first = reader.read_bytes()
    assert 0 < len(first) < 60 and first[-1].endswith(b'"test"')  # the tail, not the file
    assert b"/new" in first[-1]
    with open(log, "a") as out:
        out.write(_combined(now, "/later", 500) + _combined(now, "/half", 200)[:30])
    assert [b"/later" in line for line in reader.read_bytes()] == [True]  # whole lines only
    # with a start, only what came from then on
    since = Reader(source, since=now - timedelta(minutes=1), max_bytes=1 << 20).read()
    assert [line.text.split('"')[1] for line in since] == [
        "GET /new HTTP/1.1",
        "GET /later HTTP/1.1",
    ]


def test_lines_of_another_kind_are_no_silent_zero(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("2026-12-02T20:00:00.000Z INFO backend started port=5000\n")
    reader = Reader(LogSource("access", "file", log, "none"))
    assert len(reader.read_bytes()) == 1
    with pytest.raises(LogUnavailable, match=r"no access-log lines found in .*app.log \(1 line"):
        reader.check()
    with pytest.raises(LogUnavailable, match="no access log at"):
        Reader(LogSource("access", "file", tmp_path / "none.log", "none")).read()


@pytest.mark.docker
def test_the_file_inside_the_container_is_read_where_the_last_read_stopped(
    stack: ComposeStack,
) -> None:
    """Through `docker exec`: the first read is the tail, the next only what came since; a
    truncated file is read again from its start."""
    import httpx

    settings = stack.settings()
    source = logsource.log_source(settings, "access")
    assert source.source == "container"
    marker = f"/api/trips/popular?logsource={datetime.now(UTC).timestamp()}"
    from travellr_ops.adapters.docker import ComposePlatform

    platform = ComposePlatform(settings)
    reader = Reader(source, platform, max_bytes=64 << 10)
    try:
        reader.read_bytes()
        for _ in range(3):
            httpx.get(stack.backend_url + marker, timeout=10)
        got = [line for line in reader.read_bytes() if marker.encode() in line]
        assert len(got) == 3
        assert not [line for line in reader.read_bytes() if marker.encode() in line]
        reader.check()
        stack.container("backend").exec_run(["sh", "-c", ": > /var/log/travellr/access.log"])
        httpx.get(stack.backend_url + marker, timeout=10)
        assert len([line for line in reader.read_bytes() if marker.encode() in line]) == 1
    finally:
        reader.close()
        platform.close()


@pytest.mark.docker
def test_the_services_output_holds_no_access_log_and_says_so(stack: ComposeStack) -> None:
    """The backend writes its access log to a file only: read from standard output, the
    monitor's error rate is unknown with why, not 0 requests."""
    from cli import invoke

    settings = stack.settings().model_copy(
        update={"logs": Settings(logs={"access_source": "service"}).logs}
    )
    settings.monitor.window_s = 0.5
    result = invoke("--json", "monitor", "once", settings=settings)
    (rate,) = [m for m in result.json()["metrics"] if m["name"] == "error_rate_pct"]
    assert rate["verdict"] == "unknown"
    assert "no access-log lines found in compose:backend (standard output)" in rate["detail"]


@pytest.mark.k8s
def test_pod_logs_without_the_backends_lines_are_unknown_never_zero(k8s_ns: K8sNamespace) -> None:
    """The testbed's own simulated pods print short request lines (`GET /api/trips 200 12ms`),
    neither the combined-format access log nor the app log: the monitor's error rate and a
    security review say so and are unknown (exit 3), where they used to count 0."""
    from cli import invoke

    k8s_ns.apply(backend_deployment(replicas=2))
    k8s_ns.wait_available("travellr-backend")
    settings = k8s_ns.settings()
    settings.monitor.window_s = 0.5
    where = "kubernetes:backend (pod logs)"

    review = invoke("--json", "security", "logs", "--source", "service", settings=settings)
    assert review.exit_code == 3
    assert f"no access-log lines found in {where}" in review.stderr
    assert f"no app-log lines found in {where}" in review.stderr
    assert "error: no log could be read" in review.stderr

    sample = invoke("--json", "monitor", "once", settings=settings)
    (rate,) = [m for m in sample.json()["metrics"] if m["name"] == "error_rate_pct"]
    assert rate["verdict"] == "unknown"
    assert f"no access-log lines found in {where}" in rate["detail"]
    assert "none in combined format" in rate["detail"]


@pytest.mark.docker
def test_a_review_missing_its_access_log_is_incomplete_not_clean(stack: ComposeStack) -> None:
    """The app log read but the access log not (a wrong path inside the container): the
    review is unknown (exit 3) and says which log it could not read, not 0 requests and 0."""
    from cli import invoke

    settings = stack.settings().model_copy(
        update={
            "logs": Settings(logs={"access_source": "container", "access_log": "/nope.log"}).logs
        }
    )
    review = invoke("security", "logs", "--source", "service", "--since", "1h", settings=settings)
    assert review.exit_code == 3
    assert "cannot read /nope.log in" in review.stderr
    assert "the review is incomplete: nothing read from compose:backend:/nope.log" in review.stderr
