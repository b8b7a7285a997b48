"""What a checklist's steps work with: the settings, the servers, the guard.

Each server is opened for the step that needs it and closed after it, so that a server that
is down costs only the steps that use it. The health report is taken once per run and
shared by the steps that read it (services, disks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from travellr_ops.adapters import connect
from travellr_ops.adapters.http import HttpAdapter
from travellr_ops.adapters.mongo import MongoAdapter
from travellr_ops.adapters.mongo_dump import MongoDump
from travellr_ops.adapters.platform_types import ServicePlatform
from travellr_ops.adapters.redis import RedisAdapter
from travellr_ops.ops.backup.create import ProgressFactory
from travellr_ops.ops.health import HealthReport
from travellr_ops.safety import Guard
from travellr_ops.settings import Settings
from travellr_ops.store import Store, store_path


@dataclass
class Servers:
    settings: Settings
    guard: Guard
    progress: ProgressFactory
    #: messages for the person (stderr), e.g. a backup's notes
    notify: Callable[[str], None] = field(default=lambda message: None)
    config_file: Path | None = None
    _health: HealthReport | None = None

    def redis(self) -> AbstractContextManager[RedisAdapter]:
        return connect.redis(self.settings)

    def mongo(self) -> AbstractContextManager[MongoAdapter]:
        return connect.mongo(self.settings)

    @contextmanager
    def dump(self) -> Iterator[MongoDump]:
        with self.mongo() as mongo:
            yield MongoDump(mongo)

    @contextmanager
    def http(self, connections: int = 1) -> Iterator[HttpAdapter]:
        http = HttpAdapter(self.settings.api.timeout_s, max_connections=connections)
        try:
            yield http
        finally:
            http.close()

    @property
    def has_platform(self) -> bool:
        return self.settings.platform != "none"

    def platform_factory(self) -> Callable[[], ServicePlatform] | None:
        return connect.platform_factory(self.settings)

    def platform(self) -> AbstractContextManager[ServicePlatform]:
        return connect.platform(self.settings)

    @contextmanager
    def store(self) -> Iterator[Store]:
        store = Store(store_path(self.settings.state_dir), self.settings.monitor.store_timeout_s)
        try:
            yield store
        finally:
            store.close()

    def health(self, fresh: bool = False) -> HealthReport:
        """`health` once per run (``fresh``: again, e.g. after maintenance ends)."""
        if self._health is None or fresh:
            from travellr_ops.ops.health import check_all

            s = self.settings
            with (
                self.http(len(s.api.extra_health_urls) + 1) as http,
                self.mongo() as mongo,
                self.redis() as redis,
            ):
                self._health = check_all(s, http, mongo, redis, self.platform_factory())
        return self._health
