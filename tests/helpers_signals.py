"""Children that a test interrupts with Ctrl-C (SIGINT).

A shell starts a background job (`cmd &`, `nohup ... &`) with SIGINT ignored, and an ignored
signal stays ignored across fork and exec: a suite launched that way would hand its children a
SIGINT they never receive, and Python would not even install its KeyboardInterrupt handler in
them. `subprocess.Popen(restore_signals=True)` does not help: it restores SIGPIPE, SIGXFZ and
SIGXFSZ only. So every child that a test interrupts puts SIGINT back to its default itself,
whatever the suite inherited.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Sequence
from typing import Any


def sigint_at_default() -> None:
    """In a forked child before it execs: SIGINT at its default disposition."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn_interruptible(argv: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
    """`subprocess.Popen(argv, **popen)` whose child starts with SIGINT at its default."""
    return subprocess.Popen(argv, preexec_fn=sigint_at_default, **popen)
