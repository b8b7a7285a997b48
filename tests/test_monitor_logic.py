"""The monitor's pieces that need no server: the history store and the access-log reader."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from travellr_ops.errors import ExitCode
from travellr_ops.ops.monitor.history import append, load, open_history
from travellr_ops.ops.monitor.metrics import Metric, Sample
from travellr_ops.ops.monitor.sources import AccessLog, LogUnavailable
from travellr_ops.store import Store, StoreError
from travellr_ops.vocab.stats import percentile
from travellr_ops.vocab.verdict import Verdict


def sample(at: float, value: float = 1.0) -> Sample:
    return Sample(at, 1.0, 1.0, None, [Metric("error_rate_pct", value, "%", "ok", 1.0)])


def test_concurrent_writers_lose_no_sample(tmp_path: Path) -> None:
    path = tmp_path / "travellr-ops.db"
    now = time.time()

    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        store = Store(path, timeout_s=10)
        try:
            open_history(store)
            for i in range(40):
                append(store, sample(now + offset + i * 0.001), retention_days=30)
        except BaseException as exc:  # a thread's exception would otherwise be lost
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = Store(path)
    assert len(load(store, now - 1, now + 10)) == 160
    store.close()


def test_retention_drops_old_samples(tmp_path: Path) -> None:
    store = open_history(Store(tmp_path / "s.db"))
    now = time.time()
    append(store, sample(now - 40 * 86400), retention_days=30)
    append(store, sample(now - 10 * 86400), retention_days=30)
    deleted = append(store, sample(now), retention_days=30)
    assert deleted == 1
    assert [round(r.time) for r in load(store, 0, now + 1)] == [
        round(now - 10 * 86400),
        round(now),
    ]


def test_groups_version_their_own_tables(tmp_path: Path) -> None:
    store = open_history(Store(tmp_path / "s.db"))
    store.migrate("deploy", ["CREATE TABLE deploys (time REAL)"])
    store.migrate("deploy", ["CREATE TABLE deploys (time REAL)"])  # already done: no error
    versions = dict(store.query("SELECT component, version FROM schema"))
    assert versions == {"monitor": 1, "deploy": 1}
    with pytest.raises(StoreError, match="newer travellr-ops"):
        store.migrate("deploy", [])


def test_corrupt_store_names_the_file_and_a_way_out(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(StoreError) as info:
        open_history(Store(path))
    assert str(path) in info.value.message and "mv" in (info.value.hint or "")


def log_line(status: int, when: datetime | None = None) -> str:
    stamp = (when or datetime.now(UTC)).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'127.0.0.1 - - [{stamp}] "GET /api/x HTTP/1.1" {status} 12 "-" "curl"\n'


def test_access_log_counts_5xx_in_the_window(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    old = datetime.fromtimestamp(time.time() - 3600, UTC)
    path.write_text(log_line(500, old) * 5 + log_line(200) * 3 + log_line(503) + "garbage\n")
    counts = AccessLog(path, window_s=300).read()
    assert (counts.requests, counts.errors) == (4, 1)


def test_access_log_leaves_out_the_monitors_probes_and_maintenance_503s(tmp_path: Path) -> None:
    from travellr_ops.ops.maintenance_windows import Window
    from travellr_ops.ops.monitor.maintenance_time import second_in
    from travellr_ops.ops.monitor.sources import MONITOR_AGENT

    path = tmp_path / "access.log"
    now = time.time()
    during = datetime.fromtimestamp(now - 100, UTC)
    after = datetime.fromtimestamp(now - 10, UTC)
    own = log_line(503).replace('"curl"', f'"{MONITOR_AGENT}"')
    older_own = log_line(200).replace('"curl"', '"travellr-ops/0.0.1 monitor"')
    path.write_text(  # in time order, as a log is written
        log_line(503, during) * 6
        + log_line(500, during)
        + log_line(503, after)
        + own * 4
        + older_own
        + log_line(200) * 2
    )
    window = Window(now - 120, None, now - 60)
    counts = AccessLog(path, window_s=300).read(second_in([window]))
    # the 503s inside the window are no errors; the 500 beside them, and a 503 after, are
    assert (counts.requests, counts.errors, counts.own, counts.maintenance) == (4, 2, 5, 6)
    assert (
        counts.left_out()
        == "left out: 5 requests travellr-ops sent itself and 6 503s during maintenance"
    )
    counts = AccessLog(path, window_s=300).read()
    assert (counts.requests, counts.errors, counts.maintenance) == (10, 8, 0)


def test_access_log_survives_rotation_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text(log_line(200) * 2)
    log = AccessLog(path, window_s=300)
    assert log.read().requests == 2
    with path.open("a") as f:  # written after our read, before the rotation
        f.write(log_line(500))
    path.rename(tmp_path / "access.log.1")
    path.write_text(log_line(502) * 2)
    counts = log.read()
    assert (counts.requests, counts.errors) == (5, 3)
    path.write_text(log_line(200))  # truncated in place (copytruncate), then one line
    counts = log.read()
    assert (counts.requests, counts.errors) == (6, 3)
    log.close()


def test_missing_access_log_is_a_source_down(tmp_path: Path) -> None:
    with pytest.raises(LogUnavailable, match="no access log"):
        AccessLog(tmp_path / "nope.log", 300).read()


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 100)) == (
        50.0,
        95.0,
        100.0,
    )


def test_tracker_keeps_bounded_recent_values_and_exact_extremes() -> None:
    from travellr_ops.ops.monitor.live import Tracker

    tracker = Tracker(spark_width=5)
    for i in range(1, 101):
        verdict = "breach" if i > 98 else "ok"
        tracker.add(Sample(float(i), 1, 1, None, [Metric("x", float(i), "ms", verdict, 98.0)]))
    series = tracker.series["x"]
    assert len(series.recent) == 5 and len(series.sparkline()) == 5
    row = tracker.summary().rows[0]
    assert (row.min, row.p95, row.max, row.breaches) == (1.0, 95.0, 100.0, 2)
    assert [b.time for b in tracker.summary().breaches] == [99.0, 100.0]


def metric(name: str, verdict: Verdict) -> Metric:
    return Metric(name, None if verdict == Verdict.UNKNOWN else 1.0, "ms", verdict, 1.0)


@pytest.mark.parametrize(
    ("verdicts", "maintenance", "word", "code"),
    [
        ([Verdict.OK, Verdict.IDLE, Verdict.INFO], None, "ok", ExitCode.OK),
        ([Verdict.OK, Verdict.UNKNOWN], None, "unknown", ExitCode.UNAVAILABLE),
        # a breach beside a metric whose source did not answer is a failure: exit 1
        ([Verdict.UNKNOWN, Verdict.BREACH], None, "breach", ExitCode.CHECK_FAILED),
        # in maintenance mode a breach is no alarm; the unknown metric still is
        ([Verdict.UNKNOWN, Verdict.BREACH], {"message": "m"}, "unknown", ExitCode.UNAVAILABLE),
        ([Verdict.OK, Verdict.BREACH], {"message": "m"}, "maintenance", ExitCode.OK),
    ],
)
def test_a_samples_verdict_and_exit_code_are_the_shared_ones(
    verdicts: list[Verdict], maintenance: dict[str, object] | None, word: str, code: ExitCode
) -> None:
    metrics = [metric(f"m{i}", v) for i, v in enumerate(verdicts)]
    sample = Sample(1.0, 1.0, 1.0, maintenance, metrics)
    assert (sample.verdict, sample.exit_code) == (word, code)


def test_report_html_draws_the_time_the_samples_cover_with_breaches_and_maintenance() -> None:
    """Ten minutes of samples in a 24 h report: the axis spans those ten minutes (not the day,
    where they were a vertical line at its right edge); breaches and maintenance are bands."""
    import re

    from travellr_ops.ops.monitor.history import MetricHistory
    from travellr_ops.ops.monitor.report import summarize
    from travellr_ops.ops.monitor.report_html import render

    now = time.time()
    times = [now - 600 + 5 * i for i in range(121)]
    values: list[float | None] = [10.0] * 121
    values[60:63] = [500.0, 600.0, 550.0]
    verdicts = ["breach" if v and v > 200 else "ok" for v in values]
    in_maintenance = [100 <= i < 110 for i in range(121)]
    history = MetricHistory(
        "api_response_p95_ms", "", "ms", "max", times, values, verdicts, [200.0] * 121,
        in_maintenance,
    )  # fmt: skip
    histories = {history.key: history}
    report = summarize(histories, {}, now - 86400, now)
    recorded = [(now - 900, now - 560)]  # a window from the store, begun before the samples
    page = render(report, histories, recorded)

    ranges = re.findall(r'"xaxis":\{[^{}]*"range":\["([^"]+)","([^"]+)"\]', page)
    assert ranges, "no x axis range in the page"
    start, end = (datetime.fromisoformat(t).timestamp() for t in ranges[0])
    assert times[0] - 60 <= start <= times[0] and times[-1] <= end <= times[-1] + 60
    shapes = re.findall(r'"fillcolor":"(#[0-9a-f]+)"', page)
    assert shapes.count("#c00") == 1  # one breach episode, one red band
    assert shapes.count("#36c") == 2  # the recorded window and the samples in maintenance
    assert "Red bands: breaches; blue bands: maintenance (2 window(s))" in page
