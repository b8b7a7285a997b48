"""A thin wrapper of redis-py: connection from settings, errors translated to ours.

redis-py is imported only when a connection is first needed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from travellr_ops.errors import AuthError, OperationFailed, Unreachable, UsageError
from travellr_ops.redact import mask

if TYPE_CHECKING:
    import redis


def validate_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix") or (
        parts.scheme != "unix" and not parts.hostname
    ):
        raise UsageError(
            f"not a Redis URL: {mask(url)!r}",
            hint="use redis://[:password@]host:port/db (or rediss:// for TLS)",
        )


class RedisAdapter:
    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        validate_url(url)
        self.url = url
        self.timeout_s = timeout_s
        self._client: redis.Redis | None = None

    @property
    def display_url(self) -> str:
        return mask(self.url)

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout_s,
                socket_connect_timeout=self.timeout_s,
                decode_responses=False,
            )
        return self._client

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Translate redis-py's exceptions raised while ``doing`` into ours."""
        import redis

        try:
            yield
        except redis.AuthenticationError as exc:
            raise AuthError(
                f"Redis at {self.display_url} refused our credentials while {doing}: {exc}",
                hint="check the password in redis.url (TRAVELLR_REDIS__URL)",
            ) from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise Unreachable(
                f"cannot reach Redis at {self.display_url} while {doing}: {_reason(exc)}",
                hint="is redis-server running? check redis.url (TRAVELLR_REDIS__URL)",
            ) from None
        except redis.ResponseError as exc:
            text = str(exc)
            if text.startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
                raise AuthError(
                    f"Redis at {self.display_url} refused {doing}: {text}",
                    hint="check the user/password in redis.url (TRAVELLR_REDIS__URL)",
                ) from None
            raise OperationFailed(f"Redis error while {doing}: {text}") from None
        except redis.RedisError as exc:
            raise OperationFailed(f"Redis error while {doing}: {exc}") from None

    def ping(self) -> float:
        """Round-trip time of a PING, in milliseconds."""
        with self.errors("pinging"):
            started = time.perf_counter()
            self.client.ping()
            return (time.perf_counter() - started) * 1000

    def info(self, section: str | None = None) -> dict[str, Any]:
        with self.errors("reading INFO"):
            return dict(self.client.info(section) if section else self.client.info())

    def get(self, key: str) -> bytes | None:
        with self.errors(f"reading {key}"):
            value = self.client.get(key)
            if value is None or isinstance(value, bytes):
                return value
            return str(value).encode()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "Connection refused" in text or "111" in text:
        return "connection refused"
    if "Timeout" in type(exc).__name__ or "timed out" in text:
        return "timed out"
    return mask(text) or type(exc).__name__
