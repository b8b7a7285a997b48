"""What one sample is: metrics with value, threshold and verdict; how a sample ends a command.

Verdicts (``vocab.verdict``): ok (within its threshold); breach (over/under it); unknown (its
source did not answer: the reason is the detail); insufficient (a rate or percentile over
fewer events than its minimum: shown with its counts, neither ok nor breach); idle (nothing to
judge); info (no threshold, e.g. the business metrics). A breach while maintenance mode is on
is still a breach, but not an alarm: it does not make the command fail. A sample's exit code is the
shared one of its verdicts, so a breach beside an unknown metric is exit 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from travellr_ops.errors import ExitCode
from travellr_ops.prometheus import Gauge
from travellr_ops.vocab.verdict import Verdict, exit_code_of, worst

#: "max": the value must stay at or under the threshold; "min": at or over it
Direction = Literal["max", "min"]


@dataclass
class Metric:
    name: str
    value: float | None
    unit: str
    verdict: Verdict
    threshold: float | None = None
    direction: Direction = "max"
    #: what the metric is of, when there are several (a service, a file system)
    subject: str = ""
    #: where the figure comes from (e.g. "timed queries", "serverStatus.opLatencies")
    source: str = ""
    detail: str = ""

    @property
    def key(self) -> str:
        return f"{self.name}:{self.subject}" if self.subject else self.name


@dataclass
class Sample:
    #: when the sample's window ended (seconds since the epoch)
    time: float
    window_s: float
    duration_ms: float
    maintenance: dict[str, object] | None
    metrics: list[Metric] = field(default_factory=list)

    @property
    def breaches(self) -> list[Metric]:
        return [m for m in self.metrics if m.verdict == Verdict.BREACH]

    @property
    def alarms(self) -> list[Metric]:
        """Breaches that count: none while maintenance mode is on."""
        return [] if self.maintenance else self.breaches

    @property
    def unknown(self) -> list[Metric]:
        return [m for m in self.metrics if m.verdict == Verdict.UNKNOWN]

    @property
    def _counted(self) -> list[Verdict]:
        """The verdicts that judge the sample: a breach in maintenance mode is no alarm."""
        return [
            m.verdict
            for m in self.metrics
            if not (self.maintenance and m.verdict == Verdict.BREACH)
        ]

    @property
    def exit_code(self) -> ExitCode:
        return exit_code_of(self._counted)

    @property
    def verdict(self) -> Verdict:
        decisive = worst(self._counted)
        if decisive is not None and not decisive.fine:
            return decisive
        return Verdict.MAINTENANCE if self.maintenance else Verdict.OK


def judged(
    name: str,
    value: float | None,
    unit: str,
    threshold: float,
    direction: Direction = "max",
    *,
    subject: str = "",
    source: str = "",
    detail: str = "",
) -> Metric:
    """A metric with a threshold; a missing value is idle (nothing to judge), not a pass."""
    if value is None:
        verdict = Verdict.IDLE
    elif direction == "max":
        verdict = Verdict.BREACH if value > threshold else Verdict.OK
    else:
        verdict = Verdict.BREACH if value < threshold else Verdict.OK
    return Metric(name, value, unit, verdict, threshold, direction, subject, source, detail)


def unknown(
    name: str, unit: str, reason: str, threshold: float | None = None, subject: str = ""
) -> Metric:
    return Metric(name, None, unit, Verdict.UNKNOWN, threshold, subject=subject, detail=reason)


def gauges(sample: Sample) -> list[Gauge]:
    """The sample as node_exporter textfile gauges (value, threshold, breach, known)."""
    labels = ("metric", "subject", "unit")

    def series(values: list[tuple[Metric, float | None]]) -> list[tuple[tuple[str, ...], float]]:
        return [((m.name, m.subject, m.unit), v) for m, v in values if v is not None]

    ms = sample.metrics
    return [
        Gauge(
            "travellr_monitor_value",
            "The metric's value in the latest sample (see the unit label).",
            series([(m, m.value) for m in ms]),
            labels,
        ),
        Gauge(
            "travellr_monitor_threshold",
            "The metric's threshold (max for most; min for the cache hit rate).",
            series([(m, m.threshold) for m in ms]),
            labels,
        ),
        Gauge(
            "travellr_monitor_breach",
            "1 when the metric breached its threshold in the latest sample.",
            series(
                [(m, float(m.verdict == Verdict.BREACH)) for m in ms if m.threshold is not None]
            ),
            labels,
        ),
        Gauge(
            "travellr_monitor_source_up",
            "0 when the metric's source did not answer (its value is unknown).",
            series([(m, float(m.verdict != Verdict.UNKNOWN)) for m in ms]),
            labels,
        ),
        Gauge(
            "travellr_monitor_maintenance",
            "1 while maintenance mode is on (breaches are then not alarms).",
            [((), float(bool(sample.maintenance)))],
        ),
        Gauge(
            "travellr_monitor_last_sample_timestamp_seconds",
            "When the latest sample was taken.",
            [((), sample.time)],
        ),
    ]
