"""Ctrl-C and SIGTERM while a deploy changes the service: one mechanism for `deploy run` and
`deploy rollback`.

A rollback that is stopped halfway leaves the service on neither release, so while one runs a
signal is noted, not obeyed. Before it, during the rollout and the health gate's watch, the
first signal stops them (``KeyboardInterrupt`` or ``Terminated``), which starts the rollback,
and shields that rollback in the same handler, so that a second signal cannot land in the gap.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from travellr_ops.adapters.platform_types import Progress

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(BaseException):
    """SIGTERM during the rollout or the watch (raised in the main thread, like Ctrl-C)."""


class Signals:
    """Holds the process's handlers of SIGINT and SIGTERM and puts them back on exit.

    Signal handlers can only be set in the main thread; elsewhere (a test's thread) this does
    nothing and signals reach the process as they would without it.
    """

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.active = threading.current_thread() is threading.main_thread()
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        if self.active:
            self._old = {signum: signal.getsignal(signum) for signum in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)

    def cancel_on_signal(self) -> None:
        """From now on the first signal stops what runs and shields what follows."""
        self._handle(self._stop)

    def shield(self) -> None:
        """From now on signals are noted, not obeyed."""
        self._handle(self._note)

    def _handle(self, handler: Any) -> None:
        if self.active:
            for signum in SIGNALS:
                signal.signal(signum, handler)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.shield()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt()
        raise Terminated()

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.progress(f"{signal.Signals(signum).name}: the rollback goes on until it is done")


@contextlib.contextmanager
def shielded(progress: Progress) -> Iterator[None]:
    """A block during which signals are noted, not obeyed (a rollback)."""
    with Signals(progress) as signals:
        signals.shield()
        yield
