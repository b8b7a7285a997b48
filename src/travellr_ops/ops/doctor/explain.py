"""The cause of a failed checklist step, as doctor names it.

Once every step of the morning checklist has run (so that doctor's own probes disturb none of
the steps' measurements), and only when a step failed or could not tell, doctor runs once and
each such step gains the likely cause among those of its part of the stack: "cause (doctor):
Redis does not answer [Level 1: ...]".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from travellr_ops.errors import TravellrError
from travellr_ops.ops.checklist.runner import Step, StepResult
from travellr_ops.ops.doctor.model import Cause
from travellr_ops.ops.doctor.run import diagnose
from travellr_ops.runtime import Runtime
from travellr_ops.vocab.verdict import Verdict

#: the looks taken here: not the metrics sample nor the cache measurement (the steps took
#: theirs, and another would add to the counters a later run reads: an observer effect)
CHECKS = ("health", "platform", "mongodb", "indexes", "deploy", "maintenance", "incident")
_EVERYWHERE = ("platform", "api", "mongodb", "redis", "maintenance", "deploy", "disk")
#: the parts of the stack whose causes may explain each morning step's failure
STEP_AREAS: dict[str, tuple[str, ...]] = {
    "services": _EVERYWHERE,
    "backend-errors": ("deploy", "platform", "api", "mongodb", "redis"),
    "metrics": _EVERYWHERE,
    "cache": ("redis", "maintenance"),
    "backup": ("disk",),
    "disk": ("disk",),
}


def name_causes(rt: Runtime, steps: Sequence[Step]) -> list[Step]:
    """The steps, the last one naming doctor's causes of the failed ones when all have run."""

    def annotate(results: list[StepResult]) -> None:
        wrong = [
            r
            for r in results
            if r.verdict in (Verdict.FAIL, Verdict.UNKNOWN) and r.name in STEP_AREAS
        ]
        if not wrong:
            return
        try:
            causes = diagnose(rt, only=CHECKS).causes
        except TravellrError:  # doctor is a help here, never a new failure
            return
        for result in wrong:
            cause = _first(causes, STEP_AREAS[result.name])
            if cause is None:
                continue
            result.detail += (
                f"; cause (doctor): {cause.title} [Level {cause.level}: {cause.commands[0]}]"
            )
            result.data["cause"] = {
                "id": cause.id,
                "title": cause.title,
                "level": cause.level,
                "runbook": cause.runbook,
                "next": cause.commands,
            }

    if not steps:
        return list(steps)
    return [*steps[:-1], dataclasses.replace(steps[-1], after_all=annotate)]


def _first(causes: list[Cause], areas: tuple[str, ...]) -> Cause | None:
    return next((c for c in causes if c.area in areas), None)
