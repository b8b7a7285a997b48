"""What every service platform shares: the ServicePlatform Protocol and the types it speaks.

Every `service` command speaks to this Protocol; only the adapter behind it differs
(``adapters.docker.ComposePlatform``, ``adapters.kubernetes.KubernetesPlatform``). Service names
are the logical ones the runbook uses: ``backend``, ``mongodb``, ``redis``; each adapter maps
them to its own objects (compose services, Deployments) through the settings.

This module sits below both adapters and imports neither; the factory that picks one
(``adapters.platform.get_platform``) sits above them.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO, Protocol

from travellr_ops.errors import UsageError

#: a Docker image tag (the reference grammar's tag part); Kubernetes takes the same
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass
class Instance:
    """One running copy of a service: a container (compose) or a pod (Kubernetes)."""

    name: str
    state: str  # running, exited, restarting / Pending, Running, Failed...
    ready: bool  # healthy (compose health check) / Ready condition (pod)
    health: str | None = None  # healthy, unhealthy, starting, or None when no health check
    restarts: int = 0
    started_at: datetime | None = None
    image: str = ""
    image_digest: str | None = None
    ports: list[str] = field(default_factory=list)
    node: str | None = None
    #: why it last stopped: "OOMKilled", "CrashLoopBackOff", "exit code 137"...
    last_termination: str | None = None


@dataclass
class ServiceStatus:
    """One service (compose service / Deployment) and its instances."""

    name: str
    platform: str
    available: bool  # every desired instance running and healthy/ready
    desired: int
    ready: int
    updated: int | None = None
    revision: str | None = None
    image: str | None = None
    conditions: list[str] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)
    message: str = ""
    #: stopped on purpose (`service down`: no container / 0 replicas); never available
    stopped: bool = False


@dataclass
class RestartResult:
    service: str
    healthy: bool
    seconds: float
    status: ServiceStatus | None = None
    #: when it did not come back: the reason and its last log lines
    reason: str = ""
    last_logs: list[str] = field(default_factory=list)


@dataclass
class LogLine:
    time: datetime | None
    source: str  # container or pod name
    text: str


@dataclass
class FileCursor:
    """Where the previous read of a file inside one instance stopped (``read_file``)."""

    #: the file's identity (its inode) when read; "" before the first read
    inode: str = ""
    offset: int = 0


@dataclass
class FileChunk:
    """What one instance's file held since the previous read."""

    instance: str
    data: bytes
    #: the data starts inside a line (the tail of a file larger than the bound)
    cut: bool = False
    #: read from the start of a new file (rotated or truncated): a partial line kept from
    #: the old one is no beginning of this one
    restarted: bool = False


@dataclass
class ResourceUsage:
    instance: str
    service: str
    cpu_pct: float | None
    memory_bytes: int | None
    memory_limit_bytes: int | None
    memory_pct: float | None
    net_rx_bytes: int | None = None
    net_tx_bytes: int | None = None
    block_read_bytes: int | None = None
    block_write_bytes: int | None = None
    cpu_request: str | None = None
    cpu_limit: str | None = None


@dataclass
class ProcessList:
    instance: str
    titles: list[str]
    processes: list[list[str]]


@dataclass
class Release:
    """What a service runs: the image it is set to, each instance's image ID, the revision.

    Enough to come back to exactly these bits even when the tag has been moved since.
    """

    service: str
    platform: str
    image: str  # the reference the service is set to run ("travellr-backend:v1")
    #: instance name -> the image ID (compose) or imageID/digest (Kubernetes) it runs
    image_ids: dict[str, str] = field(default_factory=dict)
    #: the Deployment's revision (Kubernetes); None on compose
    revision: str | None = None
    ready: int = 0
    desired: int = 0
    #: the one image ID every instance runs; None when they differ or there is none
    image_id: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        ids = set(self.image_ids.values())
        self.image_id = ids.pop() if len(ids) == 1 else None


def check_image_tag(tag: str) -> None:
    """UsageError, with the grammar, unless ``tag`` is a valid image tag."""
    if not _IMAGE_TAG.match(tag):
        raise UsageError(
            f"{tag!r} is not a valid image tag",
            hint="letters, digits, _ . - (at most 128, not starting with . or -)",
        )


Progress = Callable[[str], None]


@dataclass
class ExecTarget:
    """Where `service exec` runs a command: one container (compose) or one pod's container."""

    service: str
    instance: str  # container name (compose) / pod name (Kubernetes)
    container: str | None = None  # the container in the pod (Kubernetes)
    state: str = ""
    #: a throw-away copy made by --debug-copy (removed when the exec ends)
    copy_of: str | None = None


@dataclass
class ExecIO:
    """The streams of one exec: the user's stdin (None: none attached), stdout and stderr,
    and whether a terminal is attached (then one stream comes back, raw, on stdout)."""

    stdin: BinaryIO | None
    stdout: BinaryIO
    stderr: BinaryIO
    tty: bool = False
    #: the terminal's (rows, columns) now, when ``tty``
    size: Callable[[], tuple[int, int]] | None = None
    #: set when the terminal was resized (SIGWINCH): the exec passes the new size on
    resized: threading.Event = field(default_factory=threading.Event)


class ServicePlatform(Protocol):
    name: str

    def services(self) -> list[str]:
        """The logical service names this platform knows."""
        ...

    def status(self, service: str | None = None) -> list[ServiceStatus]: ...

    def restart(self, service: str, timeout_s: float, progress: Progress) -> RestartResult: ...

    def logs(
        self,
        services: Sequence[str],
        *,
        tail: int | None = None,
        since: datetime | None = None,
        follow: bool = False,
        previous: bool = False,
    ) -> Iterator[LogLine]: ...

    def stats(self, service: str | None = None) -> list[ResourceUsage]: ...

    def top(self, service: str) -> list[ProcessList]: ...

    def up(self, service: str | None = None) -> None: ...

    def down(self, service: str | None = None) -> None: ...

    def scale(self, service: str, replicas: int) -> ServiceStatus: ...

    def describe(self, instance: str) -> dict[str, Any]: ...

    # -- deploy (issue 11) ------------------------------------------------------------------
    def release(self, service: str) -> Release:
        """What the service runs now (image, each instance's image ID, revision)."""
        ...

    def image_for(self, service: str, tag: str) -> str:
        """The image reference ``tag`` means for the service ("v2" -> "travellr-backend:v2")."""
        ...

    def image_exists(self, image: str) -> bool | None:
        """Whether the image is there to run (None: this platform cannot tell beforehand)."""
        ...

    def set_image(
        self, service: str, image: str, timeout_s: float, progress: Progress
    ) -> RestartResult:
        """Roll the service out on ``image`` and wait until it is healthy (or fails)."""
        ...

    def restore(
        self, service: str, release: Release, timeout_s: float, progress: Progress
    ) -> RestartResult:
        """Roll the service back to exactly ``release`` and wait until it is healthy."""
        ...

    def read_file(
        self, service: str, path: str, cursors: dict[str, FileCursor], max_bytes: int
    ) -> list[FileChunk]:
        """What the file ``path`` inside each running instance of the service holds after
        its cursor (a new instance: its last ``max_bytes``; at most ``max_bytes`` a read),
        the cursors moved on."""
        ...

    def close(self) -> None: ...

    # -- exec (issue 20) ----------------------------------------------------------------------
    def exec_target(self, service: str, instance: int | None = None) -> ExecTarget:
        """The container `service exec` would run in: the ``instance``-th (1-based) of the
        service, else the first running one; on Kubernetes the pod's default container."""
        ...

    def exec(self, target: ExecTarget, command: Sequence[str], io: ExecIO) -> int:
        """Run ``command`` in ``target`` with ``io`` attached; its exit code. A start failure
        (no such command) is the platform's own exit code (126/127) with its message."""
        ...

    def debug_copy(self, target: ExecTarget) -> AbstractContextManager[ExecTarget]:
        """A running copy of ``target`` (same image, environment, volumes and network, a
        sleeping entrypoint) for as long as the block lasts; removed afterwards, always."""
        ...

    def rollback_revision(self, now: Release, to: str | None) -> Release | None:
        """Where `deploy rollback` goes by the platform's own revision numbers: revision
        ``to`` (`--to 3`), or without one the revision before ``now``'s. None where the
        platform numbers no revisions (compose) or ``to`` is no number (a tag)."""
        ...
