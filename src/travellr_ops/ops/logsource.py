"""Where the backend's access and app logs are, and the one way every group reads them.

A log is one of three sources (``logs.access_source`` / ``logs.app_source``):

- ``file``: a file on this machine (platform ``none``, or a volume mounted from the container);
- ``container``: the file inside each running container of the backend, read through the
  platform adapter, every replica's lines merged by time;
- ``service``: the backend's standard output (the container or pod logs).

Unset, each follows where the project's own stack writes it: a local file with platform
``none`` (or when a path is set); on compose the access log inside the container (the compose
file's ``LOG_DIR``) and the app log on standard output (the backend writes it to both); the
pod logs on Kubernetes.

Reading is incremental and bounded: a ``Reader`` gives, at each read, the lines written
since the previous one; its first read is the tail (at most ``logs.read_bytes`` per file) or
what came since a given time. A source that yields lines of which none is of its kind is
reported as such (``no access-log lines found in ...``), never as zero requests.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from io import BufferedReader
from pathlib import Path
from typing import Literal

from travellr_ops.adapters.platform_types import FileCursor, LogLine, ServicePlatform
from travellr_ops.errors import ConfigError, ServiceError
from travellr_ops.settings import Settings
from travellr_ops.vocab.logformat import (
    ACCESS_LINE,
    APP_LEVELS,
    APP_TIME,
    access_time,
    leading_time,
)
from travellr_ops.vocab.tail import tail_lines

Kind = Literal["access", "app"]
SourceKind = Literal["file", "container", "service"]

#: where the project's compose stack has the backend write its logs (LOG_DIR)
CONTAINER_LOG_DIR = Path("/var/log/travellr")
#: a local file's default place (the sandbox's and the backend's own default LOG_DIR)
LOCAL_LOG_DIR = Path("logs")
#: the service whose logs these are (each platform maps the logical name to its own)
SERVICE = "backend"
#: a service's output is read by lines: logs.read_bytes over this is the most lines a read
#: takes (its tail), about what a file read takes in bytes
BYTES_PER_LINE = 100

_APP_LINE = re.compile(
    rb"^" + APP_TIME + rb" (?:" + b"|".join(level.encode() for level in APP_LEVELS) + rb") "
)
_PATTERNS = {"access": ACCESS_LINE, "app": _APP_LINE}
_FORMATS = {"access": "combined format", "app": "`TIME LEVEL message` form"}


class LogUnavailable(ServiceError):
    """A log is missing, unreadable, or holds no line of its kind."""


@dataclass(frozen=True)
class LogSource:
    """One of the backend's logs, where it is."""

    kind: Kind
    source: SourceKind
    #: the file (on this machine, or inside each container); None for standard output
    path: Path | None
    platform: str
    service: str = SERVICE

    @property
    def label(self) -> str:
        """How messages name it: ``logs/access.log``, ``compose:backend:/var/log/...``,
        ``kubernetes:backend (pod logs)``."""
        if self.source == "file":
            return str(self.path)
        if self.source == "container":
            return f"{self.platform}:{self.service}:{self.path}"
        output = "pod logs" if self.platform == "kubernetes" else "standard output"
        return f"{self.platform}:{self.service} ({output})"

    @property
    def setting(self) -> str:
        return f"logs.{self.kind}_log"

    def matches(self, line: bytes) -> bool:
        """Whether ``line`` is one of this log's kind (combined format / app-log form)."""
        return _PATTERNS[self.kind].match(line) is not None

    def nothing_found(self, lines: int) -> LogUnavailable:
        """The error of a source that gave ``lines`` lines and none of its kind."""
        what = f"{lines} line(s) read, none in {_FORMATS[self.kind]}" if lines else "empty"
        return LogUnavailable(
            f"no {self.kind}-log lines found in {self.label} ({what})",
            hint=f"set logs.{self.kind}_source and {self.setting} to where the backend writes"
            f" its {self.kind} log (see `travellr-ops config show`)",
        )


def log_source(settings: Settings, kind: Kind) -> LogSource:
    """Where the settings put the backend's ``kind`` log."""
    logs = settings.logs
    path = logs.access_log if kind == "access" else logs.app_log
    chosen = logs.access_source if kind == "access" else logs.app_source
    name = f"{kind}.log"
    if chosen is None:
        if settings.platform == "none" or path is not None:
            chosen = "file"
        elif settings.platform == "compose" and kind == "access":
            chosen = "container"
        else:
            chosen = "service"
    if chosen == "file":
        return LogSource(kind, "file", path or LOCAL_LOG_DIR / name, settings.platform)
    if settings.platform == "none":
        raise ConfigError(
            f"logs.{kind}_source = {chosen!r} needs a platform, and platform is 'none'",
            hint=f"set logs.{kind}_source = 'file' and logs.{kind}_log to the file",
        )
    if chosen == "container":
        return LogSource(kind, "container", path or CONTAINER_LOG_DIR / name, settings.platform)
    return LogSource(kind, "service", None, settings.platform)


def _line_time(line: bytes) -> datetime | None:
    text = line[:64].decode("utf-8", "replace")
    return leading_time(text) or access_time(line[:200].decode("utf-8", "replace"))


# -- reading ---------------------------------------------------------------------------------
class _FileFollower:
    """A local file kept open between reads. After a rotation (the file renamed, a new one
    created) the rest of the old file is read first, then the new one from its start; a
    truncated file (copytruncate) is read again from its start."""

    def __init__(self, source: LogSource, max_bytes: int) -> None:
        assert source.path is not None
        self.source = source
        self.path = source.path
        self.max_bytes = max_bytes
        self._file: BufferedReader | None = None
        self._ino: tuple[int, int] | None = None
        self._partial = b""

    def read(self) -> list[bytes]:
        lines: list[bytes] = []
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._file is not None:  # rotated, the new file not made yet: finish the old
                self._consume(lines)
                return lines
            raise LogUnavailable(
                f"no {self.source.kind} log at {self.path}",
                hint=f"set {self.source.setting} to the backend's {self.source.kind} log",
            ) from None
        except OSError as exc:
            raise LogUnavailable(
                f"cannot read the {self.source.kind} log {self.path}: {exc}"
            ) from None
        if self._file is None:
            self._open(start_at_tail=True)
            self._consume(lines)
            return lines
        self._consume(lines)
        if (st.st_dev, st.st_ino) != self._ino:  # rotated: the path is a new file now
            self.close()
            self._open(start_at_tail=False)
            self._consume(lines)
        elif st.st_size < self._tell():  # truncated in place
            assert self._file is not None
            self._file.seek(0)
            self._partial = b""
            self._consume(lines)
        return lines

    def _tell(self) -> int:
        assert self._file is not None
        return self._file.tell()

    def _open(self, start_at_tail: bool) -> None:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 (kept open across reads)
        except OSError as exc:
            raise LogUnavailable(
                f"cannot open the {self.source.kind} log {self.path}: {exc}"
            ) from None
        st = os.fstat(handle.fileno())
        self._ino = (st.st_dev, st.st_ino)
        self._partial = b""
        if start_at_tail and st.st_size > self.max_bytes:
            handle.seek(st.st_size - self.max_bytes)
            handle.readline()  # the first line is cut
        self._file = handle

    def _consume(self, into: list[bytes]) -> None:
        assert self._file is not None
        while True:
            chunk = self._file.read(1 << 20)
            if not chunk:
                return
            lines = (self._partial + chunk).split(b"\n")
            self._partial = lines.pop()
            into.extend(lines)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _ContainerFollower:
    """The file inside each running container, read through the platform from where the
    previous read stopped (each container's inode and offset)."""

    def __init__(
        self, source: LogSource, platform: Callable[[], ServicePlatform], max_bytes: int
    ) -> None:
        assert source.path is not None
        self.source = source
        self.platform = platform
        self.max_bytes = max_bytes
        self._cursors: dict[str, FileCursor] = {}
        self._partial: dict[str, bytes] = {}

    def read(self) -> list[bytes]:
        chunks = self.platform().read_file(
            self.source.service, str(self.source.path), self._cursors, self.max_bytes
        )
        per_instance: list[list[bytes]] = []
        for chunk in chunks:
            data = chunk.data
            if chunk.restarted:
                self._partial.pop(chunk.instance, None)
            if chunk.cut:  # the read starts inside a line
                data = data[data.find(b"\n") + 1 :] if b"\n" in data else b""
                self._partial.pop(chunk.instance, None)
            lines = (self._partial.pop(chunk.instance, b"") + data).split(b"\n")
            self._partial[chunk.instance] = lines.pop()
            per_instance.append(lines)
        if len(per_instance) == 1:
            return per_instance[0]
        return _merged(per_instance)

    def close(self) -> None:
        pass


class _OutputFollower:
    """The service's standard output through the platform: each read from the newest line
    the previous one saw, each instance's lines after its newest already read, at most
    ``max_lines`` (its tail) a read."""

    def __init__(
        self,
        source: LogSource,
        platform: Callable[[], ServicePlatform],
        since: datetime | None,
        max_lines: int,
    ) -> None:
        self.source = source
        self.platform = platform
        self._since = since
        self.max_lines = max_lines
        #: the newest time read of each instance that logged in the previous read
        self._newest: dict[str, datetime] = {}

    def read(self) -> list[bytes]:
        # The engines' `since` is whole seconds: one earlier, and what was read is dropped
        # below. An instance that gave nothing since the previous start is left out of the
        # next: whatever it writes later is newer than the start anyway.
        start = min(self._newest.values()) if self._newest else self._since
        lines = self.platform().logs(
            [self.source.service],
            since=start - timedelta(seconds=1) if start is not None else None,
            tail=self.max_lines,
        )
        kept: list[bytes] = []
        newest: dict[str, datetime] = {}
        for line in lines:
            if line.time is not None:
                before = self._newest.get(line.source)
                newest[line.source] = max(line.time, newest.get(line.source, line.time))
                if before is not None and line.time <= before:
                    continue
            kept.append(line.text.encode("utf-8", "replace"))
        if newest:
            self._newest = newest
        return kept

    def close(self) -> None:
        pass


def _merged(parts: list[list[bytes]]) -> list[bytes]:
    """Several instances' lines as one list in time order (each instance's order kept)."""
    epoch = datetime.min.replace(tzinfo=UTC)
    stamped = [
        (_line_time(line) or epoch, i, n, line)
        for i, lines in enumerate(parts)
        for n, line in enumerate(lines)
    ]
    stamped.sort(key=lambda item: (item[0], item[1], item[2]))
    return [line for *_, line in stamped]


Platform = ServicePlatform | Callable[[], ServicePlatform]


@dataclass
class Reader:
    """One log read incrementally: each ``read`` gives the whole lines written since the
    previous read. The first read is the tail (``max_bytes`` of each file at most), or
    with ``since`` only what came from then on.

    ``platform`` is an open platform (the caller's to close), or a maker of one (the reader
    opens it at its first read and closes it with itself)."""

    source: LogSource
    platform: Platform | None = None
    since: datetime | None = None
    max_bytes: int = 2 << 20
    #: lines read so far, and those of the log's kind
    lines: int = 0
    matched: int = 0
    _follower: _FileFollower | _ContainerFollower | _OutputFollower | None = field(
        default=None, init=False, repr=False
    )
    _made: ServicePlatform | None = field(default=None, init=False, repr=False)

    def _platform(self) -> ServicePlatform:
        if self.platform is None:
            raise ConfigError(f"{self.source.label} is read through a platform, and none is set")
        if not callable(self.platform):
            return self.platform
        if self._made is None:
            self._made = self.platform()
        return self._made

    def _open(self) -> _FileFollower | _ContainerFollower | _OutputFollower:
        if self._follower is None:
            if self.source.source == "file":
                self._follower = _FileFollower(self.source, self.max_bytes)
            elif self.source.source == "container":
                self._follower = _ContainerFollower(self.source, self._platform, self.max_bytes)
            else:
                lines = max(1000, self.max_bytes // BYTES_PER_LINE)
                self._follower = _OutputFollower(self.source, self._platform, self.since, lines)
        return self._follower

    def read_bytes(self) -> list[bytes]:
        """The new whole lines, as bytes (without their newline)."""
        got = [line.rstrip(b"\r") for line in self._open().read() if line.strip()]
        if self.since is not None:
            got = [line for line in got if _after(line, self.since)]
        self.lines += len(got)
        self.matched += sum(1 for line in got if self.source.matches(line))
        return got

    def read(self) -> list[LogLine]:
        return [
            LogLine(_line_time(raw), self.source.label, raw.decode("utf-8", "replace"))
            for raw in self.read_bytes()
        ]

    def check(self) -> None:
        """LogUnavailable when the lines read so far hold none of the log's kind."""
        if self.lines and not self.matched:
            raise self.source.nothing_found(self.lines)

    def close(self) -> None:
        if self._follower is not None:
            self._follower.close()
        if self._made is not None:
            self._made.close()
            self._made = None


def _after(line: bytes, since: datetime) -> bool:
    """Whether a line is from ``since`` on (to the second: the access log has no finer
    stamps); a line without a readable time is kept."""
    when = _line_time(line)
    return when is None or when >= since.replace(microsecond=0)


def reader(
    settings: Settings,
    kind: Kind,
    platform: Platform | None,
    since: datetime | None = None,
) -> Reader:
    """A reader of the settings' ``kind`` log (see ``Reader``)."""
    return Reader(log_source(settings, kind), platform, since, settings.logs.read_bytes)


def last_lines(
    source: LogSource, platform: Platform | None, count: int, max_bytes: int
) -> list[LogLine]:
    """The source's last ``count`` lines (every instance's, merged by time)."""
    if count <= 0:
        return []
    if source.source == "file":
        assert source.path is not None
        try:
            texts = tail_lines(source.path, count)
        except FileNotFoundError:
            raise LogUnavailable(
                f"no {source.kind} log at {source.path}",
                hint=f"set {source.setting} to the backend's {source.kind} log",
            ) from None
        except OSError as exc:
            raise LogUnavailable(f"cannot read {source.path}: {exc.strerror or exc}") from None
        return [LogLine(leading_time(t) or access_time(t), source.label, t) for t in texts]
    # a file inside each container: its tail, with room for ``count`` long lines
    bound = max_bytes if source.source == "service" else min(max_bytes, max(64 << 10, count * 2048))
    reader = Reader(source, platform, None, bound)
    try:
        if source.source == "service":
            got = reader._platform().logs([source.service], tail=count)
            return [LogLine(ln.time, ln.source, ln.text) for ln in got]
        return reader.read()[-count:]
    finally:
        reader.close()
