"""The live monitor: a sample every interval, each recorded, and what it keeps between
samples (sparklines, extremes, breaches), with memory bounded however long it runs."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from travellr_ops.errors import ExitCode
from travellr_ops.ops.monitor.history import append, open_history
from travellr_ops.ops.monitor.metrics import Metric, Sample
from travellr_ops.ops.monitor.sampler import open_sampler
from travellr_ops.store import StoreError
from travellr_ops.vocab.stats import percentile
from travellr_ops.vocab.verdict import Verdict

if TYPE_CHECKING:
    from travellr_ops.runtime import Runtime

#: values per metric behind the summary's p95 (beyond it, the p95 of the latest ones)
SUMMARY_VALUES = 10_000
#: breaches listed in the summary (all are counted)
BREACHES_KEPT = 200
SPARK = "▁▂▃▄▅▆▇█"


@dataclass
class Series:
    key: str
    unit: str
    threshold: float | None
    direction: str
    recent: deque[float | None]
    values: deque[float] = field(default_factory=lambda: deque(maxlen=SUMMARY_VALUES))
    low: float | None = None
    high: float | None = None
    last: Metric | None = None

    def add(self, metric: Metric) -> None:
        self.last = metric
        self.recent.append(metric.value)
        if metric.value is None:
            return
        self.values.append(metric.value)
        self.low = metric.value if self.low is None else min(self.low, metric.value)
        self.high = metric.value if self.high is None else max(self.high, metric.value)

    def sparkline(self) -> str:
        known = [v for v in self.recent if v is not None]
        if not known:
            return ""
        low, high = min(known), max(known)
        span = (high - low) or 1.0
        return "".join(
            " " if v is None else SPARK[int((v - low) / span * (len(SPARK) - 1))]
            for v in self.recent
        )


@dataclass
class BreachEvent:
    time: float
    key: str
    value: float | None
    threshold: float | None
    maintenance: bool


@dataclass
class SummaryRow:
    key: str
    unit: str
    samples: int
    min: float | None
    p95: float | None
    max: float | None
    threshold: float | None
    breaches: int


@dataclass
class Summary:
    samples: int
    started: float
    ended: float
    rows: list[SummaryRow]
    breaches: list[BreachEvent]
    breach_count: int
    #: breaches outside maintenance mode (they make the run fail)
    alarm_count: int

    @property
    def verdict(self) -> Verdict:
        return Verdict.BREACH if self.alarm_count else Verdict.OK

    @property
    def exit_code(self) -> ExitCode:
        return self.verdict.exit_code


class Tracker:
    """Every metric's recent values (sparklines), min/max/p95 and breaches of a live run."""

    def __init__(self, spark_width: int = 40) -> None:
        self.spark_width = spark_width
        self.series: dict[str, Series] = {}
        self.breaches: deque[BreachEvent] = deque(maxlen=BREACHES_KEPT)
        self.breach_count: dict[str, int] = {}
        self.alarm_count = 0
        self.samples = 0
        self.started: float | None = None
        self.ended: float | None = None
        self.latest: Sample | None = None

    def add(self, sample: Sample) -> None:
        self.samples += 1
        self.latest = sample
        self.started = self.started or sample.time
        self.ended = sample.time
        for m in sample.metrics:
            series = self.series.get(m.key)
            if series is None:
                series = Series(
                    m.key, m.unit, m.threshold, m.direction, deque(maxlen=self.spark_width)
                )
                self.series[m.key] = series
            series.add(m)
            if m.verdict == Verdict.BREACH:
                self.breach_count[m.key] = self.breach_count.get(m.key, 0) + 1
                self.alarm_count += not sample.maintenance
                self.breaches.append(
                    BreachEvent(sample.time, m.key, m.value, m.threshold, bool(sample.maintenance))
                )

    def summary(self) -> Summary:
        rows = [
            SummaryRow(
                s.key,
                s.unit,
                len(s.values),
                s.low,
                percentile(s.values, 95),
                s.high,
                s.threshold,
                self.breach_count.get(s.key, 0),
            )
            for s in self.series.values()
        ]
        return Summary(
            self.samples,
            self.started or 0.0,
            self.ended or 0.0,
            rows,
            list(self.breaches),
            sum(self.breach_count.values()),
            self.alarm_count,
        )


class LiveRun:
    """One sample every ``interval_s`` until ``duration_s`` is over (or forever), each one
    added to the tracker and the history, and handed to ``on_sample`` to be shown.

    The caller stops a run without a duration by interrupting it (Ctrl-C): the exception
    passes through, every client and the store are closed, and ``tracker`` holds what the run
    saw for its summary. A store that fails is reported once to ``on_store_error`` and the run
    goes on without recording.
    """

    def __init__(
        self,
        rt: Runtime,
        interval_s: float,
        duration_s: float | None = None,
        on_store_error: Callable[[StoreError], None] = lambda exc: None,
    ) -> None:
        self.rt = rt
        self.interval_s = interval_s
        self.duration_s = duration_s
        self.on_store_error = on_store_error
        self.tracker = Tracker()

    def run(self, on_sample: Callable[[Sample], None]) -> Summary:
        deadline = None if self.duration_s is None else time.monotonic() + self.duration_s
        retention = self.rt.settings.monitor.retention_days
        with self.rt.store() as store, open_sampler(self.rt, live=True) as sampler:
            recording = True
            #: the time the previous sample spent after its window (its database work): the
            #: next window is that much shorter, so that samples stay an interval apart
            after_window = 0.0
            while deadline is None or time.monotonic() < deadline - 0.05:
                window = max(self.interval_s - after_window, self.interval_s / 5)
                if deadline is not None:
                    window = max(min(window, deadline - time.monotonic()), 0.1)
                sample = sampler.sample(window)
                after_window = max(sample.duration_ms / 1000 - window, 0.0)
                self.tracker.add(sample)
                if recording:
                    try:
                        append(open_history(store), sample, retention)
                    except StoreError as exc:
                        self.on_store_error(exc)
                        store.close()
                        recording = False
                on_sample(sample)
        return self.tracker.summary()
