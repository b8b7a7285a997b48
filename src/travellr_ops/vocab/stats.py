"""The one percentile of the tool: nearest-rank, as most monitoring tools report it.

The p-th percentile of n values is the value at rank ceil(p/100 * n) of the sorted values
(at least rank 1): always a value that occurred, p100 is the maximum, p50 of an even count is
the lower middle value. The monitor, the deploy gate, health and the benchmarks all use it, so
they agree on the same samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], pct: float) -> float | None:
    """The nearest-rank ``pct``-th percentile of ``values`` (None when there are none)."""
    ordered = sorted(values)
    if not ordered:
        return None
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} is not between 0 and 100")
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
