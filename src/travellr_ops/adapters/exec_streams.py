"""What every platform's exec shares: the user's stdin fed to a remote process in the
background, and the exit code a command has when the platform could not start it."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

from travellr_ops.adapters.platform_types import ExecIO

#: what a shell answers for a command it cannot run (found but not executable / not found)
CANNOT_EXECUTE = 126
NOT_FOUND = 127
#: the most read from stdin at once
CHUNK = 64 * 1024


def read_some(stream: BinaryIO) -> bytes:
    """What is there to read now (at least one byte), b"" at end of input.

    A terminal in raw mode hands over each key as it is typed; a pipe, what was written."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        fd = -1
    if fd >= 0:
        return os.read(fd, CHUNK)
    read1 = getattr(stream, "read1", None)
    return bytes(read1(CHUNK) if read1 is not None else stream.read(CHUNK))


def feed_stdin(
    stream: BinaryIO | None,
    send: Callable[[bytes], None],
    end: Callable[[], None],
) -> threading.Thread | None:
    """Copy ``stream`` to ``send`` in a daemon thread, then call ``end`` (the remote process
    sees end of input). A send that fails (the process is gone) just stops the copy: the
    command's end is told by its output, not by its input."""
    if stream is None:
        return None

    def pump() -> None:
        with contextlib.suppress(OSError, ValueError):
            while True:
                data = read_some(stream)
                if not data:
                    break
                send(data)
        with contextlib.suppress(OSError, ValueError):
            end()

    thread = threading.Thread(target=pump, name="exec-stdin", daemon=True)
    thread.start()
    return thread


@contextmanager
def following_size(io: ExecIO, apply: Callable[[int, int], None]) -> Iterator[None]:
    """With a terminal: its size to ``apply(rows, columns)`` now and after every resize,
    until the block ends. A size that cannot be passed on is only a nicety lost."""
    if not io.tty or io.size is None:
        yield
        return
    size, done = io.size, threading.Event()

    def send() -> None:
        with contextlib.suppress(Exception):
            apply(*size())

    def follow() -> None:
        while not done.is_set():
            if io.resized.wait(0.5):
                io.resized.clear()
                if not done.is_set():
                    send()

    send()
    thread = threading.Thread(target=follow, name="exec-resize", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
