"""Report files the user names (``--html FILE``, ``--sarif FILE``...): written whole or not at
all, and a path that cannot be written is the user's to fix (exit 2) in every group."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from travellr_ops.errors import UsageError


def write_output(
    path: Path, data: str | bytes, what: str = "the report", *, private: bool = False
) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed over it; ``private``: for
    its owner's eyes only (mode 600), as a report naming weaknesses is."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):  # e.g. the directory is a file: nothing was made
            tmp.unlink()
        raise UsageError(
            f"cannot write {what} to {path}: {exc.strerror or exc}",
            hint="name a file in a directory that exists and that you can write",
        ) from None
