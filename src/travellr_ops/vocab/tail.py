"""The end of a file, read backwards in blocks: never the whole of a large log."""

from __future__ import annotations

import os
from pathlib import Path

BLOCK = 64 * 1024


def tail_bytes(path: Path, limit: int) -> bytes:
    """At most the last ``limit`` bytes of ``path`` (OSError as open() raises it)."""
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - limit))
        return handle.read(limit)


def tail_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of ``path``, read block by block from its end (OSError as
    open() raises it; undecodable bytes are replaced)."""
    if count <= 0:
        return []
    with open(path, "rb") as handle:
        position = handle.seek(0, os.SEEK_END)
        data = b""
        # one newline more than asked: the first line of the data read may be cut
        while position > 0 and data.count(b"\n") <= count:
            step = min(BLOCK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    return data.decode("utf-8", "replace").splitlines()[-count:]
