"""The `monitor report --html` page: the report's tables and a plotly chart per metric.

One self-contained file: plotly.js is inlined once (with the first chart), so the page opens
offline, from a mail attachment or an air-gapped host, with no CDN. Each chart draws the
metric's values over the time the samples cover (the same span on every chart, so that they
line up; not the whole --since period, where ten minutes of samples were a vertical line at
its right edge), its breaches as red points on red-shaded spans, maintenance windows shaded
blue, and its threshold as a dashed line. A series longer than ``MAX_POINTS`` is thinned to the worst value of each run of samples
(the highest for a "max" metric), so a week of 5-second samples stays a light page and no
breach disappears. ``render`` returns the page; ``report`` writes it.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from travellr_ops.ops.monitor.history import MetricHistory
from travellr_ops.ops.monitor.report_model import Report, ReportRow
from travellr_ops.vocab.verdict import Verdict

MAX_POINTS = 2000

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.breach { color: #b00; font-weight: bold; }
.better { color: #070; } .worse { color: #b00; }
.chart { max-width: 1100px; }
"""


#: a span of time shaded on the charts: (start, end), seconds since the epoch
Span = tuple[float, float]


def covered(histories: dict[str, MetricHistory]) -> tuple[float, float] | None:
    """The time the samples cover (first to last), over every metric; None without samples."""
    times = [t for h in histories.values() for t in (h.times[:1] + h.times[-1:])]
    return (min(times), max(times)) if times else None


def render(
    report: Report,
    histories: dict[str, MetricHistory],
    maintenance: Sequence[Span] = (),
) -> str:
    title = "travellr-ops monitor report"
    period = f"{_when(report.since)} to {_when(report.until)} ({time.strftime('%Z')})"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{title}</title><style>{_CSS}</style></head><body>",
        f"<h1>{title}</h1>",
        f"<p>{html.escape(period)}: {report.samples} samples "
        f"(previous period: {report.previous_samples}); {report.breach_count} breaching "
        f"samples, {report.alarm_count} outside maintenance.</p>",
    ]
    if not report.rows:
        parts.append("<p>No samples in this period.</p>")
    else:
        parts += [_summary_table(report.rows), _episode_table(report), "<h2>Charts</h2>"]
        span = covered(histories) or (report.since, report.until)
        # a little room either side, so that the first and last points are not on the edge
        pad = max((span[1] - span[0]) * 0.02, 1.0)
        axis = (span[0] - pad, span[1] + pad)
        shaded = _maintenance_spans(histories, maintenance)
        parts.append(
            f"<p>Charts over the time the samples cover: {html.escape(_when(span[0]))} to "
            f"{html.escape(_when(span[1]))}. Red bands: breaches; blue bands: maintenance "
            f"({len(shaded)} window(s)).</p>"
        )
        for index, row in enumerate(report.rows):
            chart = _chart(row, histories[row.key], axis, shaded, index, first=index == 0)
            parts.append(chart)
    parts.append("</body></html>")
    return "\n".join(parts)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def _summary_table(rows: Sequence[ReportRow]) -> str:
    head = ["metric", "samples", "min", "p50", "p95", "max", "threshold", "breaches", "trend"]
    body = []
    for r in rows:
        trend = r.trend.word
        if r.trend.change_pct is not None:
            trend += f" ({r.trend.change_pct:+g} %)"
        cells = [
            r.key,
            str(r.samples),
            _num(r.min),
            _num(r.p50),
            _num(r.p95),
            _num(r.max),
            "" if r.threshold is None else f"{_sign(r)} {r.threshold:g}",
            str(r.breaches or ""),
        ]
        tds = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        css = f' class="{r.trend.word}"' if r.trend.word in ("better", "worse") else ""
        mark = ' class="breach"' if r.breaches else ""
        body.append(f"<tr{mark}>{tds}<td{css}>{html.escape(trend)}</td></tr>")
    ths = "".join(f"<th>{h}</th>" for h in head)
    units = "values in each metric's unit (ms, %, users)"
    return f"<h2>Metrics</h2><p>{units}</p><table><tr>{ths}</tr>{''.join(body)}</table>"


def _episode_table(report: Report) -> str:
    if not report.episodes:
        return "<h2>Breaches</h2><p>No threshold was breached.</p>"
    rows = []
    for e in reversed(report.episodes):
        note = " (maintenance)" if e.maintenance else ""
        cells = [e.key, _when(e.start), _when(e.end), str(e.samples), f"{_num(e.worst)} {e.unit}"]
        tds = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        rows.append(
            f'<tr class="breach">{tds}<td>{html.escape(_num(e.threshold) + note)}</td></tr>'
        )
    more = report.episode_count - len(report.episodes)
    tail = f"<p>… and {more} earlier episodes.</p>" if more else ""
    ths = "".join(f"<th>{h}</th>" for h in ("metric", "from", "to", "samples", "worst", "limit"))
    return f"<h2>Breaches</h2><table><tr>{ths}</tr>{''.join(rows)}</table>{tail}"


def _sign(row: ReportRow) -> str:
    return "≥" if row.direction == "min" else "≤"


def _thin(history: MetricHistory) -> tuple[list[int], int]:
    """Indexes of the points to draw (every one, or the worst of each run), and the run length."""
    n = len(history.times)
    if n <= MAX_POINTS:
        return list(range(n)), 1
    step = -(-n // MAX_POINTS)
    low = history.direction == "min"
    picked = []
    for start in range(0, n, step):
        run = [i for i in range(start, min(start + step, n)) if history.values[i] is not None]
        if not run:
            picked.append(start)
            continue
        pick = min if low else max
        picked.append(pick(run, key=lambda i: history.values[i] or 0.0))
    return picked, step


def _runs(times: list[float], marked: list[bool]) -> list[Span]:
    """Consecutive marked samples as spans, each widened by half the gap to its neighbours
    (a single sample is a band, not a line)."""
    spans: list[Span] = []
    start: int | None = None
    for i, on in enumerate([*marked, False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            end = i - 1
            before = (times[start] - times[start - 1]) / 2 if start > 0 else 0.0
            after = (times[end + 1] - times[end]) / 2 if end + 1 < len(times) else 0.0
            half = max(before, after, 0.5)
            spans.append((times[start] - (before or half), times[end] + (after or half)))
            start = None
    return spans


def _maintenance_spans(histories: dict[str, MetricHistory], recorded: Sequence[Span]) -> list[Span]:
    """The maintenance windows the store recorded, and the runs of samples taken in
    maintenance mode (a flag set by hand has no record), merged where they overlap."""
    spans = list(recorded)
    longest = max(histories.values(), key=lambda h: len(h.times), default=None)
    if longest is not None:
        spans += _runs(longest.times, longest.maintenance)
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _chart(
    row: ReportRow,
    history: MetricHistory,
    axis: Span,
    maintenance: Sequence[Span],
    index: int,
    *,
    first: bool,
) -> str:
    import plotly.graph_objects as go

    points, step = _thin(history)
    x = [datetime.fromtimestamp(history.times[i]) for i in points]
    y = [history.values[i] for i in points]
    fig: Any = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=row.key, connectgaps=False))
    hits = [i for i in points if history.verdicts[i] == Verdict.BREACH]
    if hits:
        fig.add_trace(
            go.Scatter(
                x=[datetime.fromtimestamp(history.times[i]) for i in hits],
                y=[history.values[i] for i in hits],
                mode="markers",
                name="breach",
                marker={"color": "#c00", "size": 9, "symbol": "x"},
            )
        )
    thresholds = {t for t in history.thresholds if t is not None}
    if len(thresholds) == 1:
        fig.add_hline(
            y=row.threshold,
            line_dash="dash",
            line_color="#c00",
            annotation_text=f"threshold {_sign(row)} {row.threshold:g} {row.unit}",
            annotation_position="top left",
        )
    elif thresholds:  # changed during the period: drawn as it was at each sample
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[history.thresholds[i] for i in points],
                mode="lines",
                name="threshold",
                line={"dash": "dash", "color": "#c00", "shape": "hv"},
            )
        )
    for start, end in maintenance:
        fig.add_vrect(
            x0=datetime.fromtimestamp(max(start, axis[0])),
            x1=datetime.fromtimestamp(min(end, axis[1])),
            fillcolor="#36c",
            opacity=0.15,
            line_width=0,
            layer="below",
        )
    breached = [v == Verdict.BREACH for v in history.verdicts]
    for start, end in _runs(history.times, breached):
        fig.add_vrect(
            x0=datetime.fromtimestamp(start),
            x1=datetime.fromtimestamp(end),
            fillcolor="#c00",
            opacity=0.12,
            line_width=0,
            layer="below",
        )
    subtitle = f" — each point the worst of {step} samples" if step > 1 else ""
    fig.update_layout(
        title=f"{row.key} ({row.unit}){subtitle}",
        height=320,
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
        yaxis_title=row.unit,
        # the time the samples cover, the same on every chart, so that they line up
        xaxis_range=[datetime.fromtimestamp(axis[0]), datetime.fromtimestamp(axis[1])],
        showlegend=bool(hits) or len(thresholds) > 1,
        template="plotly_white",
    )
    chart = fig.to_html(
        full_html=False,
        include_plotlyjs=first,  # True: plotly.js inlined once, with the first chart
        div_id=f"chart-{index}",
        config={"displaylogo": False, "responsive": True},
    )
    return f'<div class="chart" data-metric="{html.escape(row.key)}">{chart}</div>'
