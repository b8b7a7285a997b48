"""Which moments were inside maintenance, for the figures that leave maintenance out.

Two witnesses: the windows travellr-ops recorded in the store (`maintenance on/off`), which
hold while Redis is down or after the flag expired, and the flag in Redis now (set by hand, or
by another tool), which counts from its ``since``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from travellr_ops.ops.maintenance_windows import Window, windows
from travellr_ops.store import StoreError

if TYPE_CHECKING:
    from travellr_ops.runtime import Runtime


def recorded(rt: Runtime, since: float) -> list[Window]:
    """The store's windows overlapping [since, now]; a store that cannot be read has none
    (the figures are then counted whole, as before windows were kept)."""
    try:
        with rt.store() as store:
            return windows(store, since)
    except StoreError:
        return []


def from_flag(flag: dict[str, Any] | None, fallback_start: float) -> Window | None:
    """The window the flag read now stands for: from its ``since``, or (a flag without one)
    from ``fallback_start``, open-ended."""
    if not flag:
        return None
    started = fallback_start
    since = flag.get("since")
    if isinstance(since, str):
        with contextlib.suppress(ValueError):  # unreadable: from the fallback
            started = datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
    return Window(started, None, None, reason=str(flag.get("message", "")))


def second_in(found: list[Window]) -> Callable[[int], bool]:
    """A test of whole seconds (an access log's resolution): inside when any window overlaps
    the second."""

    def inside(second: int) -> bool:
        for w in found:
            end = w.end
            if w.started < second + 1 and (end is None or end > second):
                return True
        return False

    return inside


def as_flag(window: Window) -> dict[str, Any]:
    """A recorded window described as the flag would be, for a sample's maintenance field."""
    end = window.end
    left = "" if end is None else time.strftime(" until %H:%M:%S", time.localtime(end))
    return {
        "message": window.reason or f"maintenance window opened by {window.by or '?'}{left}",
        "by": window.by,
        "source": "store (the flag in Redis could not be read)",
    }
