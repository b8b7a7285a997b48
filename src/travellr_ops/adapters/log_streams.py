"""Log lines as both platforms stream them: chunks split into lines, the engine's or kubelet's
timestamp taken off each line, and several followed streams read at once.

``docker logs --timestamps`` and ``kubectl logs --timestamps`` write the same prefix (RFC 3339
with nanoseconds, ``2026-05-01T12:00:00.123456789Z``), so one function reads both.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Protocol

from travellr_ops.adapters.platform_types import LogLine
from travellr_ops.errors import TravellrError
from travellr_ops.vocab.logformat import leading_time


def split_lines(chunks: Iterable[bytes], *, keep_partial: bool = True) -> Iterator[bytes]:
    """The lines of a streamed answer as they arrive, without their newline; the unfinished
    last line too, unless ``keep_partial`` is false (a half-sent JSON event is no event)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *whole, pending = pending.split(b"\n")
        yield from whole
    if pending and keep_partial:
        yield pending


def stamped_line(source: str, raw: bytes) -> LogLine:
    """A log line with its leading timestamp taken off into ``time`` (None when it has none)."""
    text = raw.decode("utf-8", "replace").rstrip("\r")
    stamp, _, rest = text.partition(" ")
    when = leading_time(stamp)
    if when is None:
        return LogLine(None, source, text)
    return LogLine(when, source, rest)


def stamp_time(value: str | None) -> datetime | None:
    """An RFC 3339 time as the engine and the API server write them; None for none or the
    zero time (``0001-01-01T00:00:00Z``, a container that never started)."""
    if not value or value.startswith("0001-"):
        return None
    return leading_time(value)


class LogStream(Protocol):
    """One container's or pod's log, read line by line; ``close`` ends a read in progress."""

    source: str

    def lines(self) -> Iterator[LogLine]: ...

    def close(self) -> None: ...


def follow_all(streams: Sequence[LogStream]) -> Iterator[LogLine]:
    """Lines of several followed streams as they come; closing the iterator ends them all.

    A stream that fails says why in one line of its own, and the others go on.
    """
    lines: queue.Queue[LogLine | None] = queue.Queue(maxsize=10000)

    def pump(stream: LogStream) -> None:
        said = False
        try:
            for line in stream.lines():
                said = True
                lines.put(line)
        except TravellrError as exc:
            why = "log stream ended" if said else "no logs"
            lines.put(LogLine(None, stream.source, f"[{why}: {exc.message}]"))
        except Exception:  # a stream closed under us while following
            pass
        finally:
            lines.put(None)

    for stream in streams:
        threading.Thread(target=pump, args=(stream,), daemon=True).start()
    open_streams = len(streams)
    try:
        while open_streams:
            try:
                item = lines.get(timeout=0.5)  # a timeout keeps Ctrl-C deliverable
            except queue.Empty:
                continue
            if item is None:
                open_streams -= 1
            else:
                yield item
    finally:
        for stream in streams:
            with contextlib.suppress(Exception):  # a stream that already ended
                stream.close()
