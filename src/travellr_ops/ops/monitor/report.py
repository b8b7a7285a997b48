"""`monitor report`: the history of a period, per metric, against the period before it.

For each metric of the period [until - span, until): min, p50, p95 and max of its known
values (nearest rank, like everywhere in the monitor), how many samples breached, and the
trend: its p50 against the p50 of the previous period of the same length. Breaches are
grouped into episodes: consecutive breaching samples of one metric, with their start, end
and worst value. With ``html``, the same report with a chart per metric is written as one
self-contained page (see ``report_html``).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from travellr_ops.errors import UsageError
from travellr_ops.ops.maintenance_windows import windows
from travellr_ops.ops.monitor.history import MetricHistory, load_histories, open_history
from travellr_ops.ops.monitor.report_model import Episode, Report, ReportRow, Trend
from travellr_ops.store import store_path
from travellr_ops.vocab.files import write_output
from travellr_ops.vocab.stats import percentile
from travellr_ops.vocab.timespec import HINT, parse_since
from travellr_ops.vocab.verdict import Verdict

if TYPE_CHECKING:
    from travellr_ops.runtime import Runtime

#: a p50 within this many percent of the previous period's is "steady"
STEADY_PCT = 5.0
#: breach episodes listed (the newest; all are counted)
EPISODES_LISTED = 200


def report_period(
    since: str, retention_days: float, now: datetime | None = None
) -> tuple[float, float]:
    """(since, until) in seconds since the epoch of the period ``--since`` names: a duration
    up to now, or from a time to now. Empty, or longer than the history keeps: exit 2."""
    now = now or datetime.now(UTC)
    start = parse_since(since, "--since", now)
    if start >= now:
        raise UsageError(f"--since {since!r} is not a time in the past", hint=HINT)
    if (now - start).total_seconds() > retention_days * 86400:
        raise UsageError(
            f"--since {since!r} reaches further back than the history keeps "
            f"({retention_days:g} days)",
            hint="ask for a shorter period, or raise monitor.retention_days",
        )
    return start.timestamp(), now.timestamp()


def monitor_report(rt: Runtime, since: float, until: float, html: Path | None = None) -> Report:
    """The report of the period [since, until) from the history store, against the period of
    the same length before it; the HTML page too (an unwritable ``html`` is exit 2)."""
    span_s = until - since
    path = store_path(rt.settings.state_dir)
    current: dict[str, MetricHistory] = {}
    previous: dict[str, MetricHistory] = {}
    maintenance: list[tuple[float, float]] = []
    if path.exists():  # no store yet: an empty history, not a new empty file
        with rt.store() as store:
            open_history(store)
            current = load_histories(store, since, until)
            previous = load_histories(store, since - span_s, since)
            if html is not None:
                maintenance = [
                    (w.started, until if w.end is None else w.end)
                    for w in windows(store, since, until)
                ]
    report = summarize(current, previous, since, until)
    report.store = path
    if html is not None:
        from travellr_ops.ops.monitor.report_html import render

        page = render(report, current, maintenance)
        with contextlib.suppress(OSError):  # the write below says why it cannot be made
            html.parent.mkdir(parents=True, exist_ok=True)
        write_output(html, page, "the report")
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
        breaches = sum(v == Verdict.BREACH for v in history.verdicts)
        breach_count += breaches
        alarm_count += sum(
            v == Verdict.BREACH and not m
            for v, m in zip(history.verdicts, history.maintenance, strict=True)
        )
        episodes += _episodes(history)
        p50 = percentile(known, 50)
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
                sum(v == Verdict.UNKNOWN for v in history.verdicts),
                min(known) if known else None,
                p50,
                percentile(known, 95),
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
    assert old is not None  # known is not empty
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
        if verdict != Verdict.BREACH:
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
