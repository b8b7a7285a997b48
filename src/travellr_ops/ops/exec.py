"""`service exec`: a command inside a service's container, as `docker-compose exec` and
`kubectl exec` run it, through the Guard (a shell in production is a change like any other).

The command's own exit code is the result; what travellr-ops itself cannot do (refused, no
such service, the connection lost) is its usual error and exit code.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from travellr_ops.adapters.platform_types import ExecIO
from travellr_ops.errors import ExitCode, OperationFailed, TravellrError, UsageError
from travellr_ops.ops.deploy.signals import Signals, Terminated
from travellr_ops.runtime import Runtime
from travellr_ops.safety import Change

#: what --debug-copy runs when no command is given
DEFAULT_SHELL = ("/bin/sh",)


class ExecTerminated(TravellrError):
    """SIGTERM during an exec (its debug copy removed first)."""

    exit_code = ExitCode.TERMINATED
    kind = "terminated"


@dataclass
class ExecReport:
    """How an exec ended: ``exit_code`` is the command's (None on --dry-run)."""

    service: str
    instance: str
    command: list[str]
    exit_code: int | None
    dry_run: bool = False
    copy_of: str | None = None


def exec_command(
    rt: Runtime,
    service: str,
    command: Sequence[str],
    io: ExecIO,
    *,
    instance: int | None = None,
    reason: str = "",
    debug_copy: bool = False,
) -> ExecReport:
    """Run ``command`` in ``service`` (its ``instance``-th container) with ``io`` attached.

    ``debug_copy``: in a sleeping copy of the container, removed afterwards (for one that
    keeps crashing). A protected environment needs a ``reason``; the audit log keeps it.
    """
    argv = list(command) or (list(DEFAULT_SHELL) if debug_copy else [])
    if not argv:
        raise UsageError(
            "service exec needs a command after --",
            hint=f"e.g. travellr-ops service exec {service} -- sh",
        )
    reason = reason.strip()
    if rt.settings.protected and not reason:
        where = rt.settings.environment or "this environment"
        raise UsageError(
            f"{where} is protected: service exec needs --reason",
            hint='say why, for the audit log: --reason "INC-42: read the config"',
        )
    if instance is not None and instance < 1:
        raise UsageError(f"--instance counts from 1, not {instance}")
    with rt.platform() as platform:
        target = platform.exec_target(service, instance)  # unknown service: exit 2, unasked
        if not debug_copy and target.state.lower() not in ("", "running"):
            raise OperationFailed(
                f"{target.instance} is {target.state}: nothing to run a command in",
                hint=f"--debug-copy runs it in a sleeping copy of {target.instance}",
            )
        shown = shlex.join(argv)
        where = f"a debug copy of {target.instance}" if debug_copy else target.instance
        if target.container:
            where += f" (container {target.container})"
        change = Change(
            action=f"service exec {target.service}",
            summary=f"run `{shown}` in {where} on {platform.name}",
            details=[f"{target.instance}: {target.state}"] if target.state else [],
            target=target.instance,
            reason=reason,
        )
        with rt.guard.mutation(change) as go:
            if not go:
                return ExecReport(target.service, target.instance, argv, None, dry_run=True)
            try:
                with contextlib.ExitStack() as stack:
                    if debug_copy:
                        # SIGTERM too must reach the copy's removal (Ctrl-C does by itself)
                        stack.enter_context(Signals(rt.notify)).cancel_on_signal()
                        rt.notify(f"starting a debug copy of {target.instance}")
                        target = stack.enter_context(platform.debug_copy(target))
                        rt.notify(f"{target.instance} is running; it is removed when you leave")
                    with raw_terminal(io):
                        code = platform.exec(target, argv, io)
                    change.results["exit_code"] = code
            except Terminated:
                raise ExecTerminated(
                    f"terminated (SIGTERM) while running `{shown}` in {target.instance}"
                ) from None
    return ExecReport(target.service, target.instance, argv, code, copy_of=target.copy_of)


@contextlib.contextmanager
def raw_terminal(io: ExecIO) -> Iterator[None]:
    """With a TTY, the user's terminal in raw mode (each key goes to the remote terminal,
    Ctrl-C included) for the length of the block, then restored exactly; a resize of it
    (SIGWINCH) is passed on while it lasts."""
    if not io.tty or io.stdin is None:
        yield
        return
    import signal
    import termios
    import threading
    import tty

    try:
        fd = io.stdin.fileno()
        saved = termios.tcgetattr(fd)
    except (OSError, ValueError, termios.error):
        yield
        return
    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGWINCH, lambda *_: io.resized.set()) if main else None
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        if main:
            signal.signal(signal.SIGWINCH, old)
