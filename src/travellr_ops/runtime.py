"""The run context: everything one invocation works with, built once.

The settings, the clients (each opened for the block that needs it, with its timeout, and
closed after it, so a server that is down costs only the work that uses it), the state store,
the Guard of a command that changes things, where progress and messages go, and the health
check. Every command and every ops job gets its servers here; ``adapters.connect`` is the only
code that constructs an adapter, and only the Runtime calls it.

The CLI builds it as ``app_ctx.runtime``; tests build ``Runtime(settings)``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from travellr_ops.adapters.http import HttpAdapter
    from travellr_ops.adapters.mongo import MongoAdapter
    from travellr_ops.adapters.mongo_dump import MongoDump
    from travellr_ops.adapters.platform_types import ServicePlatform
    from travellr_ops.adapters.redis import RedisAdapter
    from travellr_ops.ops.health import HealthReport
    from travellr_ops.output import ProgressFactory
    from travellr_ops.safety import Guard
    from travellr_ops.settings import Settings
    from travellr_ops.store import Store


def _no_progress(description: str, total: float | None = None) -> AbstractContextManager[object]:
    from travellr_ops.output import no_progress

    return no_progress(description, total)


def _silent(message: str) -> None:
    pass


@dataclass
class Runtime:
    settings: Settings
    #: the Guard of a command that changes things (``with_guard``); reading commands have none
    _guard: Guard | None = None
    #: progress bars for long work (a no-op off a terminal)
    progress: ProgressFactory = field(default=_no_progress)  # type: ignore[assignment]
    #: messages for the person (stderr), e.g. a backup's notes
    notify: Callable[[str], None] = field(default=_silent)
    warn: Callable[[str], None] = field(default=_silent)
    config_file: Path | None = None
    _health: HealthReport | None = field(default=None, repr=False)

    def with_guard(self, guard: Guard) -> Runtime:
        return dataclasses.replace(self, _guard=guard)

    @property
    def guard(self) -> Guard:
        """The Guard every change goes through (dry run, confirmation, lock, audit log)."""
        if self._guard is None:
            raise RuntimeError("a change was attempted by a run context made without a Guard")
        return self._guard

    # -- servers -------------------------------------------------------------------------------
    def redis(
        self, url: str | None = None, timeout_s: float | None = None
    ) -> AbstractContextManager[RedisAdapter]:
        """The Redis of ``redis.url`` (or ``url``, e.g. the same one without credentials)."""
        from travellr_ops.adapters import connect

        return connect.redis(self.settings, url=url, timeout_s=timeout_s)

    def mongo(
        self, uri: str | None = None, timeout_s: float | None = None
    ) -> AbstractContextManager[MongoAdapter]:
        """The MongoDB of ``mongo.uri`` (or ``uri``); a new connection each call."""
        from travellr_ops.adapters import connect

        return connect.mongo(self.settings, uri=uri, timeout_s=timeout_s)

    @contextmanager
    def dump(self) -> Iterator[MongoDump]:
        """MongoDB for backups and restores: one read may take backup.read_timeout_s."""
        from travellr_ops.adapters import connect
        from travellr_ops.adapters.mongo_dump import MongoDump

        read_timeout_s = self.settings.backup.read_timeout_s
        with connect.mongo(self.settings, read_timeout_s=read_timeout_s) as mongo:
            yield MongoDump(mongo)

    def http(
        self, connections: int = 1, timeout_s: float | None = None
    ) -> AbstractContextManager[HttpAdapter]:
        """An HTTP client for ``api.url`` and its probes, pooled for ``connections`` at once."""
        from travellr_ops.adapters import connect

        return connect.http(self.settings, connections, timeout_s=timeout_s)

    @property
    def has_platform(self) -> bool:
        return self.settings.platform != "none"

    def platform(self) -> AbstractContextManager[ServicePlatform]:
        """The service platform; with platform = "none" the configuration error (exit 2)
        before anything is asked or changed."""
        from travellr_ops.adapters import connect

        return connect.platform(self.settings)

    def platform_factory(self) -> Callable[[], ServicePlatform] | None:
        """A maker of the platform for code that opens it itself (None with platform = none)."""
        from travellr_ops.adapters import connect

        return connect.platform_factory(self.settings)

    @contextmanager
    def store(self) -> Iterator[Store]:
        """The state directory's SQLite store (every history the tool keeps)."""
        from travellr_ops.store import Store, store_path

        store = Store(store_path(self.settings.state_dir), self.settings.store.timeout_s)
        try:
            yield store
        finally:
            store.close()

    # -- health --------------------------------------------------------------------------------
    def health(self, fresh: bool = False, timeout_s: float | None = None) -> HealthReport:
        """`health` on connections of its own: taken once per run and shared by the work that
        reads it; ``fresh`` takes it again (e.g. after a restart or maintenance ends)."""
        if self._health is None or fresh:
            from travellr_ops.ops.health import check_all

            s = self.settings
            with (
                self.http(len(s.api.extra_health_urls) + 1, timeout_s) as http,
                self.mongo(timeout_s=timeout_s) as mongo,
                self.redis(timeout_s=timeout_s) as redis,
            ):
                self._health = check_all(s, http, mongo, redis, self.platform_factory())
        return self._health

    def wait_healthy(
        self,
        deadline_s: float,
        interval_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> HealthReport:
        """Health taken again every ``interval_s`` until it passes or ``deadline_s`` is over;
        the last report either way."""
        deadline = time.monotonic() + deadline_s
        while True:
            report = self.health(fresh=True)
            if not report.exit_code or time.monotonic() + interval_s > deadline:
                return report
            sleep(interval_s)
