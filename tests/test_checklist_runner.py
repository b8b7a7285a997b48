"""The checklist step runner: verdicts, dependencies, manual steps, one exit code (pure logic:
the steps here are plain functions, no server is involved)."""

from __future__ import annotations

import pytest

from travellr_ops.errors import CheckFailed, Refused, Unreachable
from travellr_ops.ops.checklist.runner import (
    Outcome,
    Person,
    Step,
    failed,
    not_available,
    passed,
    run_steps,
)
from travellr_ops.vocab.verdict import exit_code_of


def person(interactive: bool = False, acknowledge: bool = False, answer: bool = True) -> Person:
    asked: list[str] = []

    def ask(question: str) -> bool:
        asked.append(question)
        return answer

    p = Person("ops@host", interactive, acknowledge, ask)
    p.asked = asked  # type: ignore[attr-defined]
    return p


def raises(exc: Exception) -> Outcome:
    raise exc


def verdicts(report: object) -> dict[str, str]:
    return {s.name: s.verdict for s in report.steps}  # type: ignore[attr-defined]


def test_a_failing_step_does_not_stop_the_others_but_skips_its_dependants() -> None:
    ran: list[str] = []

    def check(name: str, outcome: Outcome) -> Step:
        def run() -> Outcome:
            ran.append(name)
            return outcome

        return Step(name, name, check=run)

    steps = [
        check("backup", failed("no backup")),
        check("cache", passed("ok")),
        Step("maintenance-on", "on", check=lambda: passed(), depends_on=("backup",)),
        check("disk", passed("ok")),
    ]
    report = run_steps("test", steps, person())
    assert verdicts(report) == {
        "backup": "fail",
        "cache": "pass",
        "maintenance-on": "skipped",
        "disk": "pass",
    }
    assert ran == ["backup", "cache", "disk"]
    assert report.step("maintenance-on").detail == "not run: depends on backup (fail)"
    assert report.exit_code == 1 and report.verdict == "fail"


@pytest.mark.parametrize(
    ("error", "verdict", "code"),
    [
        (CheckFailed("mismatch"), "fail", 1),
        (Unreachable("redis refused the connection"), "unknown", 3),
        (Refused("no terminal", hint="pass --yes"), "pending", 4),
    ],
)
def test_errors_of_a_step_become_its_verdict(error: Exception, verdict: str, code: int) -> None:
    report = run_steps("test", [Step("x", "x", check=lambda: raises(error))], person())
    assert verdicts(report) == {"x": verdict}
    assert error.args[0] in report.step("x").detail
    assert report.exit_code == code


def test_manual_steps_pending_without_a_terminal_acknowledged_with_yes_asked_on_one() -> None:
    steps = [Step("incidents", "read the week's incidents", kind="manual")]
    pending = run_steps("weekly", steps, person())
    assert verdicts(pending) == {"incidents": "pending"} and pending.exit_code == 4

    acked = run_steps("weekly", steps, person(acknowledge=True))
    assert verdicts(acked) == {"incidents": "acknowledged"} and acked.exit_code == 0
    assert "acknowledged with --yes by ops@host" in acked.step("incidents").detail

    yes = person(interactive=True)
    confirmed = run_steps("weekly", steps, yes)
    assert yes.asked == ["read the week's incidents: done?"]  # type: ignore[attr-defined]
    assert verdicts(confirmed) == {"incidents": "pass"} and confirmed.exit_code == 0
    declined = run_steps("weekly", steps, person(interactive=True, answer=False))
    assert verdicts(declined) == {"incidents": "fail"} and declined.exit_code == 1


def test_exit_code_order_fail_then_unknown_then_pending() -> None:
    assert exit_code_of(["pass", "acknowledged"]) == 0
    assert exit_code_of(["pass", "pending", "unknown", "fail"]) == 1
    assert exit_code_of(["pending", "unknown"]) == 3
    assert exit_code_of(["pending", "not-available"]) == 3
    assert exit_code_of(["pass", "pending", "skipped"]) == 4


def test_not_available_is_never_a_pass() -> None:
    steps = [Step("incidents", "incidents", check=lambda: not_available("incident group"))]
    report = run_steps("weekly", steps, person(acknowledge=True))
    assert verdicts(report) == {"incidents": "not-available"}
    assert report.exit_code == 3 and report.verdict == "unknown"


def test_a_dependency_on_a_later_step_is_a_definition_error() -> None:
    steps = [Step("a", "a", check=passed, depends_on=("b",)), Step("b", "b", check=passed)]
    with pytest.raises(ValueError, match="depends on later or unknown"):
        run_steps("test", steps, person())
