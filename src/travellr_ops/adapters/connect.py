"""The only place that constructs adapters: the servers the settings name, each opened as a
context manager that closes it.

Only the run context (``travellr_ops.runtime.Runtime``) calls these, so every caller gets the
same URI, timeouts and log line. The SDK adapters are imported when a server is opened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from travellr_ops.adapters.http import HttpAdapter
    from travellr_ops.adapters.mongo import MongoAdapter
    from travellr_ops.adapters.platform_types import ServicePlatform
    from travellr_ops.adapters.redis import RedisAdapter
    from travellr_ops.settings import Settings

log = logging.getLogger("travellr_ops")


def _timeout(configured: float, override: float | None) -> float:
    return configured if override is None else min(configured, override)


@contextmanager
def redis(
    settings: Settings, url: str | None = None, timeout_s: float | None = None
) -> Iterator[RedisAdapter]:
    """The Redis of ``redis.url`` (or ``url``); ``timeout_s`` can only shorten the setting."""
    from travellr_ops.adapters.redis import RedisAdapter

    adapter = RedisAdapter(url or settings.redis.url, _timeout(settings.redis.timeout_s, timeout_s))
    log.info("redis: %s", adapter.display_url)
    try:
        yield adapter
    finally:
        adapter.close()


@contextmanager
def mongo(
    settings: Settings,
    uri: str | None = None,
    timeout_s: float | None = None,
    read_timeout_s: float | None = None,
) -> Iterator[MongoAdapter]:
    """The MongoDB of ``mongo.uri`` (or ``uri``) / ``mongo.database``; a new connection.
    ``read_timeout_s``: how long one operation may take (backups), when not the default."""
    from travellr_ops.adapters.mongo import MongoAdapter

    s = settings.mongo
    adapter = MongoAdapter(
        uri or s.uri,
        s.database,
        _timeout(s.timeout_s, timeout_s),
        read_timeout_s=read_timeout_s,
    )
    try:
        yield adapter
    finally:
        adapter.close()


@contextmanager
def http(
    settings: Settings, connections: int = 1, timeout_s: float | None = None
) -> Iterator[HttpAdapter]:
    """An HTTP client for ``api.url`` and its probes, pooled for ``connections`` at once."""
    from travellr_ops.adapters.http import HttpAdapter

    adapter = HttpAdapter(
        _timeout(settings.api.timeout_s, timeout_s), max_connections=max(1, connections)
    )
    try:
        yield adapter
    finally:
        adapter.close()


@contextmanager
def platform(settings: Settings) -> Iterator[ServicePlatform]:
    """The service platform the settings name (compose or Kubernetes). With platform =
    "none" this raises the configuration error (exit 2) before anything is asked or changed."""
    from travellr_ops.adapters.platform import get_platform

    adapter = get_platform(settings)
    try:
        yield adapter
    finally:
        adapter.close()


def platform_factory(settings: Settings) -> Callable[[], ServicePlatform] | None:
    """A maker of the platform for code that opens it itself (None with platform = "none")."""
    if settings.platform == "none":
        return None
    from travellr_ops.adapters.platform import get_platform

    return lambda: get_platform(settings)
