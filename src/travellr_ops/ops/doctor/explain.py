"""The cause of a failed checklist step, as doctor names it.

A morning checklist step that fails (or cannot tell) says what it saw; doctor, run once for
the whole checklist and only when a step went wrong, adds the likely cause among those of the
step's part of the stack: "cause (doctor): MongoDB is not running ... [Level 1: ...]".
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence

from travellr_ops.errors import TravellrError
from travellr_ops.ops.checklist.runner import Outcome, Step
from travellr_ops.ops.doctor.model import Cause, Diagnosis
from travellr_ops.ops.doctor.run import diagnose
from travellr_ops.runtime import Runtime
from travellr_ops.vocab.verdict import Verdict

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
    """The steps, each automatic one adding doctor's cause to a failed or unknown outcome."""
    taken: list[Diagnosis | None] = []
    lock = threading.Lock()

    def diagnosis() -> Diagnosis | None:
        with lock:
            if not taken:
                try:
                    taken.append(diagnose(rt))
                except TravellrError:  # doctor is a help here, never a new failure
                    taken.append(None)
            return taken[0]

    def explained(step: Step) -> Step:
        check = step.check
        areas = STEP_AREAS.get(step.name)
        if check is None or areas is None:
            return step

        def with_cause() -> Outcome:
            outcome = check()
            if outcome.verdict in (Verdict.FAIL, Verdict.UNKNOWN):
                d = diagnosis()
                cause = _first(d.causes, areas) if d is not None else None
                if cause is not None:
                    outcome.detail += (
                        f"; cause (doctor): {cause.title} [Level {cause.level}:"
                        f" {cause.commands[0]}]"
                    )
                    outcome.data["cause"] = {
                        "id": cause.id,
                        "title": cause.title,
                        "level": cause.level,
                        "runbook": cause.runbook,
                        "next": cause.commands,
                    }
            return outcome

        return dataclasses.replace(step, check=with_cause)

    return [explained(s) for s in steps]


def _first(causes: list[Cause], areas: tuple[str, ...]) -> Cause | None:
    return next((c for c in causes if c.area in areas), None)
