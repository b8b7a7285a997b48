"""What a monitor report is: per metric its figures and trend, and the breach episodes.

``report`` computes it from the history; ``report_html`` draws it. Both import it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Trend:
    """This period's p50 against the previous period's."""

    #: better / worse (judged metrics), up / down (the others), steady, or new (no earlier data)
    word: str
    previous_p50: float | None
    previous_samples: int
    #: the change of the p50 in percent of the previous one (None when that was 0 or absent)
    change_pct: float | None


@dataclass
class ReportRow:
    key: str
    metric: str
    subject: str
    unit: str
    direction: str
    #: the latest threshold recorded in the period (None: not judged)
    threshold: float | None
    samples: int
    #: samples without a value: the source did not answer (unknown) or nothing to judge (idle)
    missing: int
    unknown: int
    min: float | None
    p50: float | None
    p95: float | None
    max: float | None
    breaches: int
    trend: Trend


@dataclass
class Episode:
    """Consecutive breaching samples of one metric."""

    key: str
    start: float
    end: float
    samples: int
    #: the value furthest past the threshold
    worst: float | None
    threshold: float | None
    unit: str
    #: every sample of it was taken in maintenance mode (so it was not an alarm)
    maintenance: bool


@dataclass
class Report:
    since: float
    until: float
    span_s: float
    #: samples (points in time) in the period and in the previous one
    samples: int
    previous_samples: int
    rows: list[ReportRow]
    episodes: list[Episode]
    episode_count: int
    breach_count: int
    #: breaching samples outside maintenance mode
    alarm_count: int
    html: Path | None = None
    store: Path | None = None
