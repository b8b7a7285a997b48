"""Run a routine's steps and record the run (the store failing is a warning, never fatal)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from travellr_ops.ops.checklist import record
from travellr_ops.ops.checklist.runner import Person, RunReport, Step, StepResult, run_steps
from travellr_ops.runtime import Runtime
from travellr_ops.store import StoreError


def execute(
    routine: str,
    steps: Sequence[Step],
    rt: Runtime,
    person: Person,
    *,
    warnings: Sequence[str] = (),
    on_step: Callable[[StepResult], None] = lambda result: None,
) -> RunReport:
    report = run_steps(routine, steps, person, on_step=on_step)
    report.warnings = list(warnings)
    try:
        with rt.store() as store:
            report.run_id = record.record(record.open_store(store), report, rt.guard.command)
    except StoreError as exc:
        report.warnings.append(f"this run was not recorded: {exc.message}")
    return report


def previous(rt: Runtime, routine: str) -> record.PastRun | None:
    """The last recorded run of ``routine`` (None when none, or the store cannot be read)."""
    try:
        with rt.store() as store:
            return record.last(record.open_store(store), routine)
    except StoreError:
        return None


def last_runs(rt: Runtime, routines: Sequence[str]) -> dict[str, record.PastRun | None]:
    """`checklist last`: the newest run of each routine (None: it never ran here)."""
    with rt.store() as store:
        record.open_store(store)
        return {name: record.last(store, name) for name in routines}


def overdue(rt: Runtime) -> list[str]:
    """Warnings for the weekly and monthly routines when they are due."""
    s = rt.settings.checklist
    warnings = []
    for routine, days in (("weekly", s.weekly_overdue_days), ("monthly", s.monthly_overdue_days)):
        try:
            with rt.store() as store:
                run = record.last(record.open_store(store), routine)
        except StoreError as exc:
            return [f"cannot tell whether the weekly/monthly checklists are due: {exc.message}"]
        if run is None:
            warnings.append(
                f"the {routine} checklist has never run here: `travellr-ops checklist {routine}`"
            )
        elif run.age_days > days:
            warnings.append(
                f"the {routine} checklist is overdue: last run {run.age_days:.0f} days ago"
                f" ({run.started_at} by {run.by}, {run.verdict}); due every {days:g} days"
            )
    return warnings
