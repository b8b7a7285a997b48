"""What doctor works with: what each check saw, the causes the rules draw from it, the verdict.

A check *observes*: its facts are the values it saw (a server that refuses connections is an
observation, not a failure of the check). A check that could not observe (it raised, or was
cut at its timeout) is ``unknown`` and names why. Causes are ranked by score; the first is the
one ``--fix`` may act on, and only when its remedy is the runbook's Level 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from travellr_ops.errors import ExitCode
from travellr_ops.vocab.verdict import Verdict

#: the runbook's symptoms (Emergency Procedures and Troubleshooting), as `doctor SYMPTOM` takes them
SYMPTOMS: dict[str, str] = {
    "down": "API not responding, 502/503 errors (Service Down)",
    "db": '"Connection refused", "Timeout" errors (Database Connection Issues)',
    "memory": "slow performance, OOM errors (High Memory Usage)",
    "cache": "stale data, inconsistent responses (Cache Issues)",
    "cpu": "high CPU usage (Troubleshooting: High CPU Usage)",
    "slow": "slow API responses (Troubleshooting: Slow API Responses)",
    "leak": "memory growing over time (Troubleshooting: Memory Leaks)",
}

#: the runbook's escalation levels
LEVELS = {
    1: "Level 1 (operations): restarts, cache clearing, log review",
    2: "Level 2 (engineering): code, database optimization, performance tuning",
    3: "Level 3 (senior engineering): architecture, major incidents, data",
}

CheckState = Literal["ok", "unknown"]


@dataclass
class Observation:
    """One check: what it saw (``facts``), or why it could not look (``state`` unknown)."""

    check: str
    #: what the check reuses, as the command a person would run
    source: str
    state: CheckState
    seconds: float
    summary: str = ""
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class Remedy:
    """The runbook's fix for a cause. ``action`` is what `doctor --fix` can apply itself
    (Level 1 only): restart a service, clear a cache pattern, turn maintenance off."""

    level: int
    command: str
    action: Literal["restart", "clear", "maintenance_off"] | None = None
    #: the service to restart, or the cache pattern to clear
    target: str = ""


@dataclass
class Cause:
    id: str
    title: str
    #: what the rules rank by (higher first); a cause the symptom names gains SYMPTOM_BONUS
    score: int
    #: the runbook's escalation level for it
    level: int
    #: the runbook section it follows ("Emergency Procedures > Service Down")
    runbook: str
    #: the values seen that point to it
    evidence: list[str]
    #: what to run next, in order (the remedy first)
    commands: list[str]
    remedy: Remedy | None = None
    #: the part of the stack it is in: platform, api, mongodb, redis, disk, maintenance, ...
    area: str = ""
    #: the symptoms it explains
    symptoms: tuple[str, ...] = ()
    #: "info": an explanation, not a fault (maintenance deliberately on): not counted
    severity: Literal["fault", "info"] = "fault"


@dataclass
class Diagnosis:
    symptom: str | None
    #: ranked, the most likely first; faults only (``notes`` holds the explanations)
    causes: list[Cause]
    #: explanations that are no fault (maintenance on within its window, an open incident)
    notes: list[Cause]
    observations: list[Observation]
    seconds: float
    #: the slowest check's own time: the total stays close to it (checks run at once)
    slowest_check_s: float
    #: checks that could not observe, with why ("mongodb: no answer within 4 s")
    unreachable: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        if self.causes:
            return Verdict.FAIL
        return Verdict.INCONCLUSIVE if self.unreachable else Verdict.HEALTHY

    @property
    def exit_code(self) -> ExitCode:
        """0 nothing wrong, 1 a cause found, 3 could not tell (something did not answer)."""
        return self.verdict.exit_code

    @property
    def top(self) -> Cause | None:
        return self.causes[0] if self.causes else None

    def facts(self, check: str) -> dict[str, Any] | None:
        """The facts of ``check`` when it observed (None: not run, or unknown)."""
        for o in self.observations:
            if o.check == check and o.state == "ok":
                return o.facts
        return None
