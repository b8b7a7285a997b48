"""`doctor`: every check of the symptom at once, the causes ranked, and the Level-1 fix.

Checks run in daemon threads against one deadline (``doctor.check_timeout_s``): a check still
running then is cut and reported unknown, and never holds the verdict up (nor, being a daemon
thread, the process's exit). Inside, every server is asked with ``doctor.client_timeout_s`` at
most, so that a hung server is classified ("timeout") by its own check before the cut.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from travellr_ops.errors import Refused, TravellrError, UsageError
from travellr_ops.ops.doctor.checks import CHECKS, FOR_SYMPTOM, CheckDef
from travellr_ops.ops.doctor.model import SYMPTOMS, Cause, CheckState, Diagnosis, Observation
from travellr_ops.ops.doctor.rules import rank
from travellr_ops.runtime import Runtime
from travellr_ops.vocab.verdict import Verdict


def check_symptom(symptom: str | None) -> None:
    """UsageError (exit 2) naming the valid symptoms, unless ``symptom`` is one (or None)."""
    if symptom is not None and symptom not in SYMPTOMS:
        raise UsageError(
            f"unknown symptom {symptom!r}: valid symptoms are {', '.join(SYMPTOMS)}",
            hint="; ".join(f"{k}: {v}" for k, v in SYMPTOMS.items()) + "; or none for every check",
        )


def _doctor_runtime(rt: Runtime) -> Runtime:
    """The run context with every server's timeout cut to doctor.client_timeout_s, and the
    error rate taken over doctor.error_window_s (what answers 5xx now, not this morning)."""
    s = rt.settings
    t = s.doctor.client_timeout_s
    settings = s.model_copy(
        update={
            "mongo": s.mongo.model_copy(update={"timeout_s": min(s.mongo.timeout_s, t)}),
            "redis": s.redis.model_copy(update={"timeout_s": min(s.redis.timeout_s, t)}),
            "api": s.api.model_copy(update={"timeout_s": min(s.api.timeout_s, t)}),
            "monitor": s.monitor.model_copy(
                update={"error_window_s": min(s.monitor.error_window_s, s.doctor.error_window_s)}
            ),
        }
    )
    return dataclasses.replace(rt, settings=settings, _health=None)


def checks_for(
    rt: Runtime, symptom: str | None, only: Sequence[str] | None = None
) -> list[CheckDef]:
    names = FOR_SYMPTOM[symptom] if symptom else tuple(CHECKS)
    if only is not None:
        names = tuple(n for n in names if n in only)
    return [CHECKS[n] for n in names if rt.has_platform or not CHECKS[n].needs_platform]


def diagnose(
    rt: Runtime, symptom: str | None = None, only: Sequence[str] | None = None
) -> Diagnosis:
    """Run the symptom's checks (every check without one; of those, ``only`` these when
    given) at once and rank the causes."""
    from travellr_ops.ops.incident.evidence import preload

    check_symptom(symptom)
    timeout = rt.settings.doctor.check_timeout_s
    drt = _doctor_runtime(rt)
    wanted = checks_for(rt, symptom, only)
    preload(rt.settings)
    results: dict[str, Observation] = {}
    lock = threading.Lock()
    started = time.perf_counter()

    def run(check: CheckDef) -> None:
        t0 = time.perf_counter()
        state: CheckState
        try:
            summary, facts = check.fn(drt)
            state, why = "ok", summary
        except TravellrError as exc:
            state, why, facts = "unknown", exc.message, {}
        except Exception as exc:  # one broken check never stops the diagnosis
            state, why, facts = "unknown", f"{type(exc).__name__}: {exc}", {}
        took = round(time.perf_counter() - t0, 3)
        with lock:
            results[check.name] = Observation(
                check.name,
                check.source,
                state,
                took,
                why,
                facts,
            )

    threads = [
        threading.Thread(target=run, args=(c,), name=f"doctor-{c.name}", daemon=True)
        for c in wanted
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, started + timeout - time.perf_counter()))
    with lock:
        observations = [
            results.get(c.name)
            or Observation(c.name, c.source, "unknown", timeout, f"no answer within {timeout:g} s")
            for c in wanted
        ]
    causes, notes = rank(observations, rt.settings, symptom)
    unreachable = [f"{o.check}: {o.summary}" for o in observations if o.state == "unknown"]
    return Diagnosis(
        symptom=symptom,
        causes=causes,
        notes=notes,
        observations=observations,
        seconds=round(time.perf_counter() - started, 3),
        slowest_check_s=max((o.seconds for o in observations), default=0.0),
        unreachable=unreachable,
    )


def document(d: Diagnosis) -> dict[str, Any]:
    """The diagnosis as the stable --json document (and incident evidence)."""
    from travellr_ops.output import to_jsonable

    return {
        "symptom": d.symptom,
        "verdict": str(d.verdict),
        "exit_code": int(d.exit_code),
        "top": to_jsonable(d.top),
        "causes": to_jsonable(d.causes),
        "notes": to_jsonable(d.notes),
        "unreachable": d.unreachable,
        "seconds": d.seconds,
        "slowest_check_s": d.slowest_check_s,
        "checks": to_jsonable(d.observations),
    }


def evidence(rt: Runtime) -> tuple[dict[str, Any], str]:
    """doctor as a source of `incident open`'s evidence: the causes, and what each check saw
    in one line (the values behind them stay in the causes' evidence)."""
    d = diagnose(rt)
    doc = document(d)
    doc["checks"] = [
        {"check": o.check, "state": o.state, "seconds": o.seconds, "saw": o.summary}
        for o in d.observations
    ]
    return doc, headline(d)


def headline(d: Diagnosis) -> str:
    """One line: the top cause, or why there is none."""
    if d.top is not None:
        more = f" (+{len(d.causes) - 1} more)" if len(d.causes) > 1 else ""
        return f"{d.top.title} [Level {d.top.level}; {d.top.runbook}]{more}"
    if d.verdict == Verdict.INCONCLUSIVE:
        return "could not tell: " + "; ".join(d.unreachable)
    return "nothing wrong found"


# -- --fix ---------------------------------------------------------------------------------------
@dataclass
class FixReport:
    #: the cause acted on (the top one), if any
    cause: Cause | None
    #: what was done, or would be on --dry-run, or why nothing was
    action: str
    applied: bool = False
    dry_run: bool = False
    #: the remedy ran but failed (e.g. the service did not come back healthy)
    error: str | None = None
    #: the diagnosis taken again after the remedy
    after: Diagnosis | None = None

    @property
    def gone(self) -> bool | None:
        """Whether the cause is gone after the remedy (None: nothing was applied)."""
        if self.after is None or self.cause is None:
            return None
        return all(c.id != self.cause.id for c in self.after.causes)


def fix(rt: Runtime, diagnosis: Diagnosis) -> FixReport:
    """Apply the Level-1 remedy of the top cause through ``rt``'s Guard, then diagnose again.

    Nothing is done on an inconclusive diagnosis, nor for a cause whose remedy is Level 2/3
    (only suggested, with its command), nor for one travellr-ops cannot apply itself.
    """
    top = diagnosis.top
    if top is None:
        if diagnosis.verdict == Verdict.INCONCLUSIVE:
            return FixReport(
                None,
                "nothing done: the diagnosis is inconclusive ("
                + "; ".join(diagnosis.unreachable)
                + ")",
            )
        return FixReport(None, "nothing to fix: no cause found")
    remedy = top.remedy
    if remedy is None or remedy.action is None:
        how = remedy.command if remedy else (top.commands[0] if top.commands else "see the runbook")
        return FixReport(
            top,
            f"nothing done: travellr-ops cannot apply this remedy itself; Level {top.level}: {how}",
        )
    if remedy.level != 1:
        return FixReport(
            top,
            f"nothing done: the remedy is Level {remedy.level}, suggested only: {remedy.command}",
        )
    try:
        dry_run = _apply(rt, remedy.action, remedy.target)
    except Refused:
        raise
    except TravellrError as exc:
        report = FixReport(top, remedy.command, applied=True, error=exc.message)
    else:
        if dry_run:
            return FixReport(top, remedy.command, dry_run=True)
        report = FixReport(top, remedy.command, applied=True)
    report.after = diagnose(rt, diagnosis.symptom)
    return report


def _apply(rt: Runtime, action: str, target: str) -> bool:
    """Run one Level-1 remedy through the Guard; whether it was a dry run."""
    if action == "restart":
        from travellr_ops.ops.service import restart_service

        return restart_service(rt, target).dry_run
    if action == "clear":
        from travellr_ops.ops.cache import clear_keys

        return clear_keys(rt, target).report.dry_run
    if action == "maintenance_off":
        from travellr_ops.ops.maintenance import switch_off

        return not switch_off(rt).applied
    raise ValueError(f"unknown remedy {action!r}")
