"""`deploy status` (what runs, and whether it is what the history says should) and
`deploy history`."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from travellr_ops.adapters.platform_types import Release
from travellr_ops.errors import UsageError
from travellr_ops.ops.deploy.history import UNSETTLED, Entry, History
from travellr_ops.ops.deploy.report import short_id
from travellr_ops.runtime import Runtime
from travellr_ops.settings import Settings


@dataclass
class StatusReport:
    service: str
    platform: str
    now: Release
    last: Entry | None
    #: the platform agrees with the last recorded deploy
    in_sync: bool
    message: str


def status(rt: Runtime, service: str) -> StatusReport:
    """What runs now, and whether it is what the last recorded deploy or rollback left."""
    s = rt.settings
    with rt.platform() as platform:
        (current,) = platform.status(service)
        now = platform.release(current.name)
    history = History(s.state_dir, s.store.timeout_s)
    try:
        last = history.last(current.name)
    finally:
        history.close()

    def report(in_sync: bool, message: str) -> StatusReport:
        return StatusReport(current.name, platform.name, now, last, in_sync, message)

    if last is None:
        return report(
            True,
            f"{current.name} runs {now.image}; no deploy recorded yet",
        )
    if last.outcome == "running" and _alive(last.pid, last.host):
        return report(
            True,
            f"deploy {last.id} of {last.image_to} is running now (pid {last.pid})",
        )
    image, image_id = last.expected_image
    if last.outcome in UNSETTLED:
        return report(
            False,
            f"{last.kind} {last.id} of {last.image_to} did not finish ({last.outcome}:"
            f" {last.reason}): {current.name} runs {now.image} ({short_id(now.image_id)}),"
            f" the release before it was {last.image_from} ({short_id(last.image_id_from)});"
            " `deploy rollback` restores that, or deploy again",
        )
    if last.outcome == "running":
        return report(
            False,
            f"deploy {last.id} of {last.image_to} (pid {last.pid} on {last.host}) was killed"
            f" before it finished: {current.name} runs {now.image} ({short_id(now.image_id)}),"
            f" the release before it was {last.image_from} ({short_id(last.image_id_from)});"
            " `deploy rollback` restores that, or deploy again",
        )
    same = now.image == image and (not image_id or not now.image_id or now.image_id == image_id)
    if not same:
        return report(
            False,
            f"{current.name} runs {now.image} ({short_id(now.image_id)}), but the last recorded"
            f" {last.kind} ({last.id}, {last.outcome}) left {image} ({short_id(image_id)}):"
            " changed by hand since, or by a deploy that was killed",
        )
    return StatusReport(
        current.name,
        platform.name,
        now,
        last,
        True,
        f"{current.name} runs {now.image} as {last.kind} {last.id} ({last.outcome}) left it",
    )


def history(settings: Settings, service: str | None, limit: int | None) -> list[Entry]:
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be 1 or more, not {limit}")
    h = History(settings.state_dir, settings.store.timeout_s)
    try:
        return h.entries(service, limit)
    finally:
        h.close()


def _alive(pid: int, host: str) -> bool:
    if host != socket.gethostname():
        return True  # another machine's deploy: we cannot tell, so we do not call it dead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
