"""The monitor's samples in the shared store (``samples``: one row per metric per sample)."""

from __future__ import annotations

from dataclasses import dataclass

from travellr_ops.ops.monitor.metrics import Metric, Sample
from travellr_ops.store import Store

COMPONENT = "monitor"
SCHEMA = [
    """
    CREATE TABLE samples (
        time REAL NOT NULL,
        metric TEXT NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        value REAL,
        unit TEXT NOT NULL DEFAULT '',
        threshold REAL,
        direction TEXT NOT NULL DEFAULT 'max',
        verdict TEXT NOT NULL,
        maintenance INTEGER NOT NULL DEFAULT 0,
        source TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX samples_by_metric ON samples (metric, subject, time);
    CREATE INDEX samples_by_time ON samples (time)
    """,
]


@dataclass
class Row:
    time: float
    metric: str
    subject: str
    value: float | None
    unit: str
    threshold: float | None
    direction: str
    verdict: str
    maintenance: bool
    detail: str

    @property
    def key(self) -> str:
        return f"{self.metric}:{self.subject}" if self.subject else self.metric


def open_history(store: Store) -> Store:
    store.migrate(COMPONENT, SCHEMA)
    return store


def append(store: Store, sample: Sample, retention_days: float) -> int:
    """Add the sample's metrics; delete what is older than the retention. Rows deleted."""
    rows = [_row(sample, m) for m in sample.metrics]
    with store.write("recording a sample") as conn:
        conn.executemany(
            "INSERT INTO samples (time, metric, subject, value, unit, threshold, direction, "
            "verdict, maintenance, source, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        cursor = conn.execute(
            "DELETE FROM samples WHERE time < ?", (sample.time - retention_days * 86400,)
        )
        return int(cursor.rowcount)


def _row(sample: Sample, m: Metric) -> tuple[object, ...]:
    return (
        sample.time,
        m.name,
        m.subject,
        m.value,
        m.unit,
        m.threshold,
        m.direction,
        m.verdict,
        int(bool(sample.maintenance)),
        m.source,
        m.detail,
    )


def load(store: Store, since: float, until: float) -> list[Row]:
    rows = store.query(
        "SELECT time, metric, subject, value, unit, threshold, direction, verdict, maintenance, "
        "detail FROM samples WHERE time >= ? AND time < ? ORDER BY time",
        (since, until),
        doing="reading the monitor history",
    )
    return [
        Row(t, metric, subject, value, unit, threshold, direction, verdict, bool(maint), detail)
        for t, metric, subject, value, unit, threshold, direction, verdict, maint, detail in rows
    ]


@dataclass
class MetricHistory:
    """One metric's samples in a period, oldest first (value None: unknown or idle)."""

    metric: str
    subject: str
    unit: str
    direction: str
    times: list[float]
    values: list[float | None]
    verdicts: list[str]
    thresholds: list[float | None]
    maintenance: list[bool]

    @property
    def key(self) -> str:
        return f"{self.metric}:{self.subject}" if self.subject else self.metric


def load_histories(store: Store, since: float, until: float) -> dict[str, MetricHistory]:
    """Every metric's samples with since <= time < until, keyed like ``Metric.key``, in the
    order the metrics first appear. Streamed: a week of live samples is millions of rows."""
    found: dict[str, MetricHistory] = {}
    rows = store.rows(
        "SELECT time, metric, subject, value, unit, threshold, direction, verdict, maintenance "
        "FROM samples WHERE time >= ? AND time < ? ORDER BY time",
        (since, until),
        doing="reading the monitor history",
    )
    for t, metric, subject, value, unit, threshold, direction, verdict, maint in rows:
        key = f"{metric}:{subject}" if subject else metric
        history = found.get(key)
        if history is None:
            history = MetricHistory(metric, subject, unit, direction, [], [], [], [], [])
            found[key] = history
        history.times.append(t)
        history.values.append(value)
        history.verdicts.append(verdict)
        history.thresholds.append(threshold)
        history.maintenance.append(bool(maint))
    return found
