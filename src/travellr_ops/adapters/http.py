"""A thin wrapper of httpx for the backend API: GETs with latency, errors translated."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from travellr_ops.errors import Unreachable
from travellr_ops.redact import mask

if TYPE_CHECKING:
    import httpx


@dataclass
class HttpResponse:
    url: str
    status: int
    latency_ms: float
    body: Any  # parsed JSON when the response is JSON, else the text
    headers: dict[str, str]


class HttpAdapter:
    def __init__(self, timeout_s: float, max_connections: int = 20) -> None:
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self._client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            import httpx

            limits = httpx.Limits(max_connections=self.max_connections)
            self._client = httpx.Client(timeout=self.timeout_s, limits=limits)
        return self._client

    def get(self, url: str) -> HttpResponse:
        """GET ``url``; any HTTP status is an answer, only no answer at all raises."""
        import httpx

        client = self.client  # built outside the timing: latency is the request's alone
        started = time.perf_counter()
        try:
            response = client.get(url)
        except httpx.TimeoutException:
            raise Unreachable(
                f"{mask(url)} did not answer within {self.timeout_s:g} s",
                hint="is the backend overloaded or hung? raise api.timeout_s to wait longer",
            ) from None
        except httpx.HTTPError as exc:
            raise Unreachable(
                f"cannot reach {mask(url)}: {_reason(exc)}",
                hint="is the backend running? check api.url (TRAVELLR_API__URL)",
            ) from None
        latency_ms = (time.perf_counter() - started) * 1000
        body: Any
        if "json" in response.headers.get("content-type", ""):
            try:
                body = response.json()
            except ValueError:
                body = response.text
        else:
            body = response.text
        return HttpResponse(url, response.status_code, latency_ms, body, dict(response.headers))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "Connection refused" in text or "[Errno 111]" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host name"
    return text
