"""`monitor once`: one sample of every metric, added to the history and, when asked, written
as node_exporter textfile metrics.

The sample is the result even when the store or the metrics file fails: what went wrong is
handed back beside it, so the command shows the sample first and the failure after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from travellr_ops.errors import TravellrError
from travellr_ops.ops.monitor.history import append, open_history
from travellr_ops.ops.monitor.metrics import Sample, gauges
from travellr_ops.ops.monitor.sampler import open_sampler
from travellr_ops.store import StoreError

if TYPE_CHECKING:
    from travellr_ops.runtime import Runtime


@dataclass
class Taken:
    sample: Sample
    #: why the sample is not in the history (None: it is)
    not_recorded: StoreError | None = None
    #: why the metrics file was not written (None: it was, or none was asked for)
    metrics_file_error: TravellrError | None = None


def sample_once(
    rt: Runtime,
    window_s: float | None = None,
    metrics_file: Path | None = None,
    *,
    keep: bool = True,
) -> Taken:
    """One sample, appended to the monitor's history unless ``keep`` is False (doctor's: it
    is taken while doctor's own checks sample Redis keys, which count as cache hits, so it
    is no fair record of the usual hit rate that doctor compares against)."""
    with open_sampler(rt) as sampler:
        taken = Taken(sampler.sample(window_s))
    if keep:
        taken.not_recorded = record(rt, taken.sample)
    if metrics_file is not None:
        from travellr_ops.prometheus import write_textfile

        try:
            write_textfile(metrics_file, gauges(taken.sample))
        except TravellrError as exc:
            taken.metrics_file_error = exc
    return taken


def record(rt: Runtime, sample: Sample) -> StoreError | None:
    """Append the sample to the history; a store that fails is returned, never raised."""
    try:
        with rt.store() as store:
            append(open_history(store), sample, rt.settings.monitor.retention_days)
    except StoreError as exc:
        return exc
    return None
