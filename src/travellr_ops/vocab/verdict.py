"""Every verdict the tool prints, what each means for the exit code, and its colour.

One table for every group (health, monitor, checklists, security check and audit, deploy):

=====================================================  ====  =======================================
verdicts                                               exit  meaning
=====================================================  ====  =======================================
ok, pass, healthy, acknowledged, info, idle, skipped,  0     fine, or nothing to judge (too little
maintenance, insufficient                                    traffic, no threshold, closed on purpose;
                                                             insufficient: a rate or percentile over
                                                             fewer events than its minimum)
warn, degraded, breach, fail, unhealthy                1     checked, and a problem was found
unknown, not-available, unreachable, inconclusive,     3     could not tell: a source did not answer,
down                                                         or too little data to decide
pending                                                4     waits for a person (a manual step)
=====================================================  ====  =======================================

When several verdicts make one result, the worst decides, in this order: down (nothing answers
at all) > fail, breach, unhealthy > warn, degraded > unknown, not-available, unreachable,
inconclusive > pending > the rest. So a breach beside a source that did not answer is a failure (exit 1), and
a server that is down outweighs the failures it causes elsewhere (exit 3).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from travellr_ops.errors import ExitCode


class Verdict(enum.StrEnum):
    OK = "ok"
    PASS = "pass"
    HEALTHY = "healthy"
    ACKNOWLEDGED = "acknowledged"
    INFO = "info"
    IDLE = "idle"
    INSUFFICIENT = "insufficient"
    SKIPPED = "skipped"
    MAINTENANCE = "maintenance"
    WARN = "warn"
    DEGRADED = "degraded"
    BREACH = "breach"
    FAIL = "fail"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"
    NOT_AVAILABLE = "not-available"
    UNREACHABLE = "unreachable"
    INCONCLUSIVE = "inconclusive"
    PENDING = "pending"
    DOWN = "down"

    @property
    def exit_code(self) -> ExitCode:
        return _EXIT[self]

    @property
    def rank(self) -> int:
        """How bad it is (0: fine); the worst verdict of a result decides its exit code."""
        return _RANK[self]

    @property
    def style(self) -> str:
        return _STYLE[self]

    @property
    def fine(self) -> bool:
        """Nothing to act on (exit 0)."""
        return _EXIT[self] is ExitCode.OK


_GROUPS: list[tuple[int, ExitCode, str, tuple[Verdict, ...]]] = [
    (0, ExitCode.OK, "green", (Verdict.OK, Verdict.PASS, Verdict.HEALTHY, Verdict.ACKNOWLEDGED)),
    (0, ExitCode.OK, "dim", (Verdict.INFO, Verdict.IDLE, Verdict.SKIPPED)),
    (0, ExitCode.OK, "dim yellow", (Verdict.INSUFFICIENT,)),
    (0, ExitCode.OK, "cyan", (Verdict.MAINTENANCE,)),
    (1, ExitCode.REFUSED, "cyan", (Verdict.PENDING,)),
    (2, ExitCode.UNAVAILABLE, "magenta", (Verdict.UNKNOWN, Verdict.NOT_AVAILABLE)),
    (2, ExitCode.UNAVAILABLE, "magenta", (Verdict.INCONCLUSIVE,)),
    (2, ExitCode.UNAVAILABLE, "bold red", (Verdict.UNREACHABLE,)),
    (3, ExitCode.CHECK_FAILED, "yellow", (Verdict.WARN, Verdict.DEGRADED)),
    (4, ExitCode.CHECK_FAILED, "red", (Verdict.BREACH, Verdict.FAIL, Verdict.UNHEALTHY)),
    (5, ExitCode.UNAVAILABLE, "bold red", (Verdict.DOWN,)),
]
_RANK = {v: rank for rank, _, _, members in _GROUPS for v in members}
_EXIT = {v: code for _, code, _, members in _GROUPS for v in members}
_STYLE = {v: style for _, _, style, members in _GROUPS for v in members}


def worst(verdicts: Iterable[str]) -> Verdict | None:
    """The verdict that decides a result made of these (None when there are none)."""
    found = [Verdict(v) for v in verdicts]
    return max(found, key=lambda v: v.rank, default=None)


def exit_code_of(verdicts: Iterable[str]) -> ExitCode:
    """The exit code of a result made of these verdicts (0 when there are none)."""
    decisive = worst(verdicts)
    return ExitCode.OK if decisive is None else decisive.exit_code


def styled(word: str) -> str:
    """A verdict as Rich markup in its colour (a word that is no verdict stays plain)."""
    try:
        style = Verdict(word.lower()).style
    except ValueError:
        return word
    return f"[{style}]{word}[/]"
