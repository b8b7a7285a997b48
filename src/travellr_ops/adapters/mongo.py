"""A thin wrapper of pymongo: connection from settings, errors translated to ours.

pymongo is imported only when a connection is first needed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from travellr_ops.errors import AuthError, ConfigError, OperationFailed, Unreachable
from travellr_ops.redact import mask

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.database import Database


class MongoAdapter:
    def __init__(self, uri: str, database: str, timeout_s: float = 5.0) -> None:
        self.uri = uri
        self.database_name = database
        self.timeout_s = timeout_s
        self._client: MongoClient[dict[str, Any]] | None = None

    @property
    def display_uri(self) -> str:
        return mask(self.uri)

    @property
    def client(self) -> MongoClient[dict[str, Any]]:
        if self._client is None:
            from pymongo import MongoClient
            from pymongo.errors import ConfigurationError, InvalidURI

            timeout_ms = int(self.timeout_s * 1000)
            try:
                self._client = MongoClient(
                    self.uri,
                    serverSelectionTimeoutMS=timeout_ms,
                    connectTimeoutMS=timeout_ms,
                    socketTimeoutMS=max(timeout_ms * 6, 30_000),
                    appname="travellr-ops",
                )
            except (InvalidURI, ConfigurationError, ValueError) as exc:
                raise ConfigError(
                    f"invalid MongoDB URI {self.display_uri}: {mask(str(exc))}",
                    hint="use mongodb://[user:password@]host:port/database",
                ) from None
        return self._client

    @property
    def db(self) -> Database[dict[str, Any]]:
        return self.client[self.database_name]

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Translate pymongo's exceptions raised while ``doing`` into ours."""
        from pymongo import errors

        try:
            yield
        except errors.OperationFailure as exc:
            if exc.code in (13, 18):  # Unauthorized, AuthenticationFailed
                raise AuthError(
                    f"MongoDB at {self.display_uri} refused {doing}: {mask(str(exc.details or exc))}",
                    hint="check the user, password and authSource in mongo.uri",
                ) from None
            raise OperationFailed(f"MongoDB error while {doing}: {mask(str(exc))}") from None
        except (errors.ServerSelectionTimeoutError, errors.AutoReconnect) as exc:
            raise Unreachable(
                f"cannot reach MongoDB at {self.display_uri} while {doing}: {diagnose(exc)}",
                hint="is the server running? check mongo.uri (TRAVELLR_MONGO__URI)",
            ) from None
        except errors.ConfigurationError as exc:
            raise ConfigError(f"MongoDB configuration error: {mask(str(exc))}") from None
        except errors.PyMongoError as exc:
            raise OperationFailed(f"MongoDB error while {doing}: {mask(str(exc))}") from None

    def ping(self) -> float:
        """Round-trip time of a ping, in milliseconds (after the connection is made)."""
        with self.errors("pinging"):
            self.client.admin.command("ping")
            started = time.perf_counter()
            self.client.admin.command("ping")
            return (time.perf_counter() - started) * 1000

    def hello(self) -> dict[str, Any]:
        with self.errors("asking hello"):
            return dict(self.client.admin.command("hello"))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def diagnose(exc: Exception) -> str:
    """What a server-selection failure most likely means, in a few words."""
    text = str(exc)
    if "Connection refused" in text or "[Errno 111]" in text:
        return "connection refused (nothing listens on that port)"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host name (DNS)"
    if "SSL" in text or "TLS" in text or "CERTIFICATE" in text.upper():
        return "TLS handshake failed"
    if "timed out" in text:
        return "timed out"
    return mask(text.split(",")[0])
