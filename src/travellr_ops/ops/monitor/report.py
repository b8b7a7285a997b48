"""`monitor report`: the history of a period, per metric, against the period before it.

For each metric of the period [until - span, until): min, p50, p95 and max of its known
values (nearest rank, like everywhere in the monitor), how many samples breached, and the
trend: its p50 against the p50 of the previous period of the same length. Breaches are
grouped into episodes: consecutive breaching samples of one metric, with their start, end
and worst value. With ``html``, the same report with a chart per metric is written as one
self-contained page (see ``report_html``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from travellr_ops.ops.monitor.history import MetricHistory, load_histories, open_history
from travellr_ops.ops.monitor.metrics import BREACH, UNKNOWN, percentile
from travellr_ops.settings import Settings
from travellr_ops.store import Store, store_path

#: a p50 within this many percent of the previous period's is "steady"
STEADY_PCT = 5.0
#: breach episodes listed (the newest; all are counted)
EPISODES_LISTED = 200


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


def monitor_report(
    settings: Settings, span_s: float, html: Path | None = None, now: float | None = None
) -> Report:
    """The report of the last ``span_s`` seconds from the history store; the HTML page too."""
    until = time.time() if now is None else now
    since = until - span_s
    path = store_path(settings.state_dir)
    current: dict[str, MetricHistory] = {}
    previous: dict[str, MetricHistory] = {}
    if path.exists():  # no store yet: an empty history, not a new empty file
        store = Store(path, settings.store.timeout_s)
        try:
            open_history(store)
            current = load_histories(store, since, until)
            previous = load_histories(store, since - span_s, since)
        finally:
            store.close()
    report = summarize(current, previous, since, until)
    report.store = path
    if html is not None:
        from travellr_ops.ops.monitor.report_html import write_html

        write_html(html, report, current)
        report.html = html
    return report


def summarize(
    current: dict[str, MetricHistory],
    previous: dict[str, MetricHistory],
    since: float,
    until: float,
) -> Report:
    rows: list[ReportRow] = []
    episodes: list[Episode] = []
    breach_count = alarm_count = 0
    for key, history in current.items():
        known = [v for v in history.values if v is not None]
        breaches = sum(v == BREACH for v in history.verdicts)
        breach_count += breaches
        alarm_count += sum(
            v == BREACH and not m
            for v, m in zip(history.verdicts, history.maintenance, strict=True)
        )
        episodes += _episodes(history)
        p50 = percentile(known, 50) if known else None
        rows.append(
            ReportRow(
                key,
                history.metric,
                history.subject,
                history.unit,
                history.direction,
                next((t for t in reversed(history.thresholds) if t is not None), None),
                len(history.values),
                len(history.values) - len(known),
                sum(v == UNKNOWN for v in history.verdicts),
                min(known) if known else None,
                p50,
                percentile(known, 95) if known else None,
                max(known) if known else None,
                breaches,
                _trend(p50, previous.get(key), judged_as=_judged_as(history)),
            )
        )
    episodes.sort(key=lambda e: e.start)
    return Report(
        since=since,
        until=until,
        span_s=until - since,
        samples=len({t for h in current.values() for t in h.times}),
        previous_samples=len({t for h in previous.values() for t in h.times}),
        rows=rows,
        episodes=episodes[-EPISODES_LISTED:],
        episode_count=len(episodes),
        breach_count=breach_count,
        alarm_count=alarm_count,
    )


def _judged_as(history: MetricHistory) -> str | None:
    """The direction a metric is judged in ("max"/"min"), or None when it has no threshold."""
    return history.direction if any(t is not None for t in history.thresholds) else None


def _trend(p50: float | None, before: MetricHistory | None, *, judged_as: str | None) -> Trend:
    known = [v for v in before.values if v is not None] if before else []
    if p50 is None or not known:
        return Trend("new", None, len(known), None)
    old = percentile(known, 50)
    change = None if old == 0 else round((p50 - old) / abs(old) * 100, 1)
    if p50 == old or (change is not None and abs(change) < STEADY_PCT):
        word = "steady"
    elif judged_as is None:
        word = "up" if p50 > old else "down"
    else:
        word = "worse" if (p50 > old) == (judged_as == "max") else "better"
    return Trend(word, old, len(known), change)


def _episodes(history: MetricHistory) -> list[Episode]:
    found: list[Episode] = []
    current: Episode | None = None
    worse = max if history.direction != "min" else min
    for t, value, verdict, threshold, maint in zip(
        history.times,
        history.values,
        history.verdicts,
        history.thresholds,
        history.maintenance,
        strict=True,
    ):
        if verdict != BREACH:
            current = None
            continue
        if current is None:
            current = Episode(history.key, t, t, 0, value, threshold, history.unit, True)
            found.append(current)
        current.end = t
        current.samples += 1
        current.maintenance = current.maintenance and maint
        if value is not None:
            current.worst = value if current.worst is None else worse(current.worst, value)
    return found
