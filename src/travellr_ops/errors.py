"""The error hierarchy and the exit codes of the whole tool.

Every failure the tool can foresee is a ``TravellrError`` carrying its exit code and a hint;
``cli.app.main`` is the one place that turns them into a one-line message and an exit status.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: a check ran and found problems: unhealthy, threshold breached, verify failed, findings
    CHECK_FAILED = 1
    #: bad command line, bad input or bad configuration
    USAGE = 2
    #: a server was unreachable or an operation against it failed
    UNAVAILABLE = 3
    #: refused for safety: no --yes without a terminal, lock held, read-only mode
    REFUSED = 4
    #: a bug in travellr-ops itself (an exception nobody foresaw); run with --debug
    INTERNAL = 70
    #: interrupted with Ctrl-C
    INTERRUPTED = 130
    #: stopped by SIGTERM (a cancelled CI job), after cleaning up (deploy: rolled back)
    TERMINATED = 143


class TravellrError(Exception):
    """An error with a one-line message, a hint, and an exit code."""

    exit_code: ExitCode = ExitCode.UNAVAILABLE
    #: what went wrong, in one stable word: the ``error.kind`` of the ``--json`` error document
    kind: str = "error"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(TravellrError):
    """Bad command-line input (a malformed pattern, filter, name...)."""

    exit_code = ExitCode.USAGE
    kind = "usage"


class ConfigError(TravellrError):
    """The configuration is invalid or incomplete."""

    exit_code = ExitCode.USAGE
    kind = "config"


class ServiceError(TravellrError):
    """A server could not be reached, or an operation against it failed."""

    exit_code = ExitCode.UNAVAILABLE
    kind = "service"


class Unreachable(ServiceError):
    """Nothing answered: connection refused, DNS failure, timeout."""

    kind = "unreachable"


class AuthError(ServiceError):
    """The server refused our credentials or our rights."""

    kind = "auth"


class OperationFailed(ServiceError):
    """The server answered, but the operation did not succeed."""

    kind = "operation_failed"


class Refused(TravellrError):
    """travellr-ops refused to act for safety."""

    exit_code = ExitCode.REFUSED
    kind = "refused"


class LockHeld(Refused):
    """Another live process holds the named lock."""

    kind = "lock_held"


class CheckFailed(TravellrError):
    """A check ran to the end and found problems (unhealthy, mismatch, threshold breached)."""

    exit_code = ExitCode.CHECK_FAILED
    kind = "check_failed"
