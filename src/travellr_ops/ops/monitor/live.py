"""What a live monitor keeps between samples, with memory bounded however long it runs."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from travellr_ops.errors import UsageError
from travellr_ops.ops.monitor.metrics import BREACH, Metric, Sample, percentile

#: values per metric behind the summary's p95 (beyond it, the p95 of the latest ones)
SUMMARY_VALUES = 10_000
#: breaches listed in the summary (all are counted)
BREACHES_KEPT = 200
SPARK = "▁▂▃▄▅▆▇█"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, option: str) -> float:
    """Seconds of "90", "90s", "10m", "24h" or "7d"; a UsageError (exit 2) otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"] if match else 0.0
    if seconds <= 0:
        raise UsageError(
            f"{option} must be a positive duration like 30s, 10m, 24h or 7d, not {text!r}"
        )
    return seconds


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
            if m.verdict == BREACH:
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
                percentile(list(s.values), 95) if s.values else None,
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
