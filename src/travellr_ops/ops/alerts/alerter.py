"""What `monitor --alert` and `monitor once --alert` do with each sample.

The sample's problems move the episodes on (in the store, in one short transaction), the
messages due are kept for every webhook, and then they are sent: by `monitor once` before it
exits (each POST bounded by ``alerts.timeout_s``), by the live monitor in a background thread,
so that a receiver that answers slowly never delays the next sample. Nothing here changes the
monitor's exit code: a store or a webhook that fails is a warning, and what was not sent is
sent at a later run.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from travellr_ops.ops import maintenance_windows
from travellr_ops.ops.alerts.delivery import Delivered, deliver, enqueue, malformed
from travellr_ops.ops.alerts.episodes import Message, advance
from travellr_ops.ops.alerts.rules import problems
from travellr_ops.store import StoreError

if TYPE_CHECKING:
    from travellr_ops.ops.monitor.metrics import Sample
    from travellr_ops.runtime import Runtime


@dataclass
class Alerted:
    """What one sample did to the alerts."""

    messages: list[Message] = field(default_factory=list)
    #: maintenance was on (the flag, or a window in the store): nothing moved
    silenced: bool = False
    #: deliveries kept for the webhooks
    queued: int = 0
    #: what `monitor once` sent (None: sent in the background, or not at all)
    delivered: Delivered | None = None


class Alerter:
    """The alerts of one monitor run; ``observe`` each sample, ``close`` at the end."""

    def __init__(self, rt: Runtime, background: bool) -> None:
        self.rt = rt
        self.background = background
        self._thread: threading.Thread | None = None
        self._notes: queue.SimpleQueue[str] = queue.SimpleQueue()
        for hook in rt.settings.alerts.webhooks:
            why = malformed(hook.url)
            if why is not None:
                rt.warn(f"alerts.webhooks: {hook.url!r} is skipped: {why} (config validate)")

    def observe(self, sample: Sample) -> Alerted:
        self._relay()
        settings = self.rt.settings
        done = Alerted()
        try:
            with self.rt.store() as store:
                if sample.maintenance or maintenance_windows.active(store, sample.time):
                    done.silenced = True
                    return done
                found = problems(sample, settings)
                done.messages = advance(
                    store, found, sample.time, settings.alerts, settings.monitor.retention_days
                )
                done.queued = enqueue(store, done.messages, settings)
        except StoreError as exc:
            self.rt.warn(f"alerts not updated: {exc.message}")
            return done
        if self.background:
            self._send_behind()
        else:
            done.delivered = self._send(deadline=time.monotonic() + settings.alerts.timeout_s * 2)
        return done

    def close(self) -> None:
        """Wait a little for the messages in flight, then send what the last sample added."""
        limit = self.rt.settings.alerts.timeout_s
        if self._thread is not None:
            self._thread.join(limit + 1)
            if self._thread.is_alive():
                self._relay()
                return  # a receiver still hangs: the rest goes at the next run
        self._send(deadline=time.monotonic() + limit)
        self._relay()

    def _send_behind(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return  # still sending: what waits goes with the next sample
        self._thread = threading.Thread(
            target=self._send, name="alert-delivery", kwargs={"notes": True}, daemon=True
        )
        self._thread.start()

    def _send(self, deadline: float | None = None, notes: bool = False) -> Delivered | None:
        warn = self._notes.put if notes else self.rt.warn
        try:
            with (
                self.rt.store() as store,
                self.rt.http(timeout_s=self.rt.settings.alerts.timeout_s) as http,
            ):
                return deliver(store, http, self.rt.settings, warn, deadline)
        except StoreError as exc:
            warn(f"alert messages not sent: {exc.message}")
            return None

    def _relay(self) -> None:
        """The background thread's warnings, said from the monitor's own thread."""
        while True:
            try:
                self.rt.warn(self._notes.get_nowait())
            except queue.Empty:
                return


def describe(message: Message, webhooks: int) -> str:
    """One line for the monitor's stderr."""
    to = f"to {webhooks} webhook(s)" if webhooks else "(no alerts.webhooks configured)"
    return f"alert {message.event}: #{message.episode} {message.headline} {to}"
