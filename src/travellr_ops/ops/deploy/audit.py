"""Every step of a deploy or a rollback in the audit log, its start and its end."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from travellr_ops.ops.deploy.report import DeployReport
from travellr_ops.safety import Guard, _user


class StepAudit:
    def __init__(self, guard: Guard, report: DeployReport) -> None:
        self.guard, self.report = guard, report

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        base = {
            "action": f"{self.report.kind} {name}",
            "deploy_id": self.report.id,
            "target": self.report.service,
            "image": self.report.image,
            "user": _user(),
            "command": self.guard.command,
        }
        self.guard.audit.record(**base, phase="start")
        started = time.monotonic()
        outcome = "ok"
        try:
            yield
        except BaseException as exc:
            outcome = "failed" if isinstance(exc, Exception) else "interrupted"
            raise
        finally:
            self.guard.audit.record(
                **base,
                phase="end",
                outcome=outcome,
                duration_s=round(time.monotonic() - started, 3),
            )
