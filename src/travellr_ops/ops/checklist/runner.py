"""The step runner every checklist shares.

A checklist is a list of steps. An automatic step runs one of the other groups' operations
and turns its result into a verdict; a manual step asks the person (on a terminal), is
marked acknowledged by ``--yes`` (and recorded so), and without either is left pending.
A step that fails never stops the others; a step that names it in ``depends_on`` is
skipped instead, and says which step it waited for.

Verdicts (``vocab.verdict``): pass, fail, unknown (a server did not answer, so nothing is
known), not-available (the operation it needs has not landed in travellr-ops: not done, never
passed), skipped, pending (a person must confirm), acknowledged (``--yes``). The run's exit
code is the tool's one rule (``vocab.verdict.exit_code_of``): 1 when a step failed, else 3
when one is unknown or not available, else 4 when one is pending, else 0; the run's own word
is pass, fail, unknown or pending, the one of those with that exit code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from travellr_ops.errors import CheckFailed, Refused, ServiceError, TravellrError
from travellr_ops.vocab.verdict import Verdict, exit_code_of

#: verdicts that let the steps depending on this one run
DONE = (Verdict.PASS, Verdict.ACKNOWLEDGED)
#: the words a run ends with, one per exit code
RUN_VERDICTS = (Verdict.PASS, Verdict.FAIL, Verdict.UNKNOWN, Verdict.PENDING)

Kind = Literal["auto", "manual"]


@dataclass
class Outcome:
    """What an automatic step found."""

    verdict: Verdict
    detail: str = ""
    #: figures a later step or run compares against (stored with the run), and lines to show
    data: dict[str, Any] = field(default_factory=dict)


def passed(detail: str = "", **data: Any) -> Outcome:
    return Outcome(Verdict.PASS, detail, data)


def failed(detail: str, **data: Any) -> Outcome:
    return Outcome(Verdict.FAIL, detail, data)


def unknown(detail: str, **data: Any) -> Outcome:
    return Outcome(Verdict.UNKNOWN, detail, data)


def not_available(what: str) -> Outcome:
    return Outcome(Verdict.NOT_AVAILABLE, f"not available: {what}")


@dataclass(frozen=True)
class Step:
    name: str
    #: what the runbook asks for, in its words (the question a manual step asks)
    title: str
    kind: Kind = "auto"
    check: Callable[[], Outcome] | None = None
    depends_on: tuple[str, ...] = ()
    #: called once every step has run, with all the results (e.g. to name a failure's cause)
    after_all: Callable[[list[StepResult]], None] | None = None


@dataclass
class StepResult:
    name: str
    title: str
    kind: str
    verdict: Verdict
    detail: str
    duration_s: float
    depends_on: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Person:
    """Who answers manual steps: asked on a terminal; ``acknowledge`` is --yes."""

    who: str
    interactive: bool
    acknowledge: bool
    ask: Callable[[str], bool]


@dataclass
class RunReport:
    routine: str
    started_at: str
    finished_at: str
    by: str
    verdict: Verdict  # one of RUN_VERDICTS
    exit_code: int
    steps: list[StepResult]
    warnings: list[str] = field(default_factory=list)
    #: the run's number in the store (None when it could not be recorded)
    run_id: int | None = None

    def step(self, name: str) -> StepResult:
        return next(s for s in self.steps if s.name == name)

    @property
    def problems(self) -> list[StepResult]:
        return [s for s in self.steps if s.verdict not in DONE]


def run_steps(
    routine: str,
    steps: Sequence[Step],
    person: Person,
    *,
    on_step: Callable[[StepResult], None] = lambda result: None,
) -> RunReport:
    """Run every step in order; ``on_step`` hears of each result as it comes."""
    names = [s.name for s in steps]
    for step in steps:
        unknown_deps = [d for d in step.depends_on if d not in names[: names.index(step.name)]]
        if unknown_deps:  # a programming error in a checklist's definition
            raise ValueError(f"step {step.name} depends on later or unknown {unknown_deps}")
    started = datetime.now(UTC)
    results: dict[str, StepResult] = {}
    for step in steps:
        clock = time.perf_counter()
        blockers = [d for d in step.depends_on if results[d].verdict not in DONE]
        if blockers:
            why = ", ".join(f"{d} ({results[d].verdict})" for d in blockers)
            outcome = Outcome(Verdict.SKIPPED, f"not run: depends on {why}")
        elif step.kind == "manual":
            outcome = _ask(step, person)
        else:
            outcome = _run(step)
        result = StepResult(
            name=step.name,
            title=step.title,
            kind=step.kind,
            verdict=outcome.verdict,
            detail=outcome.detail,
            duration_s=round(time.perf_counter() - clock, 3),
            depends_on=list(step.depends_on),
            data=outcome.data,
        )
        results[step.name] = result
        on_step(result)
    for step in steps:
        if step.after_all is not None:
            step.after_all(list(results.values()))
    code = exit_code_of([r.verdict for r in results.values()])
    return RunReport(
        routine=routine,
        started_at=started.isoformat(timespec="seconds"),
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        by=person.who,
        verdict=next(v for v in RUN_VERDICTS if v.exit_code is code),
        exit_code=int(code),
        steps=list(results.values()),
    )


def _ask(step: Step, person: Person) -> Outcome:
    if person.acknowledge:
        return Outcome(
            Verdict.ACKNOWLEDGED, f"acknowledged with --yes by {person.who}, not confirmed"
        )
    if not person.interactive:
        return Outcome(
            Verdict.PENDING, "needs a person: run on a terminal, or acknowledge with --yes"
        )
    if person.ask(f"{step.title}: done?"):
        return passed(f"confirmed by {person.who}")
    return failed(f"not done (answered no by {person.who})")


def _run(step: Step) -> Outcome:
    assert step.check is not None, f"automatic step {step.name} has no check"
    try:
        return step.check()
    except Refused as exc:  # a change that needs a confirmation it did not get
        return Outcome(Verdict.PENDING, exc.message + (f" ({exc.hint})" if exc.hint else ""))
    except CheckFailed as exc:
        return failed(exc.message)
    except ServiceError as exc:
        return unknown(exc.message)
    except TravellrError as exc:  # configuration: the step could not be run as set up
        return unknown(exc.message + (f" ({exc.hint})" if exc.hint else ""))
