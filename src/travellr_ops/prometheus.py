"""node_exporter textfile metrics, written with the Prometheus client library's own format.

``write_textfile`` builds a private registry of gauges and writes it atomically
(prometheus_client writes a temporary file and renames it), so the node_exporter never reads
half a file. Used by `monitor once --metrics-file` and `backup ... --metrics-file`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from travellr_ops.errors import TravellrError


@dataclass
class Gauge:
    name: str
    help: str
    #: (label values, value) per series; label names in ``labels``
    series: list[tuple[tuple[str, ...], float]] = field(default_factory=list)
    labels: tuple[str, ...] = ()


def write_textfile(path: Path, gauges: Sequence[Gauge]) -> None:
    from prometheus_client import CollectorRegistry, write_to_textfile
    from prometheus_client import Gauge as PromGauge

    registry = CollectorRegistry()
    for spec in gauges:
        gauge = PromGauge(spec.name, spec.help, spec.labels, registry=registry)
        for values, value in spec.series:
            (gauge.labels(*values) if spec.labels else gauge).set(value)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), registry)
    except OSError as exc:
        raise TravellrError(
            f"cannot write the metrics file {path}: {exc.strerror or exc}",
            hint="node_exporter's textfile directory must be writable by this user",
        ) from None
