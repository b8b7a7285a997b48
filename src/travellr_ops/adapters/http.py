"""A thin wrapper of httpx for the backend API: GETs with latency, errors translated."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from travellr_ops import __version__
from travellr_ops.errors import OperationFailed, Unreachable
from travellr_ops.redact import mask

if TYPE_CHECKING:
    import httpx

#: every request says what sent it, so that a backend's access log can tell travellr-ops's
#: requests from its users' (the monitor adds its role: ops.monitor.sources.MONITOR_AGENT)
USER_AGENT = f"travellr-ops/{__version__}"


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
        self._clients: dict[bool, httpx.Client] = {}
        self._lock = threading.Lock()

    def client_for(self, url: str) -> httpx.Client:
        """One client (one pool) per scheme, shared by every thread. Plain http gets one that
        loads no CA certificates (that costs ~40 ms and http never uses them; redirects are
        not followed, so it never reaches an https URL); https verifies as usual."""
        tls = url.lower().startswith("https:")
        with self._lock:
            if tls not in self._clients:
                import httpx

                limits = httpx.Limits(max_connections=self.max_connections)
                self._clients[tls] = httpx.Client(
                    timeout=self.timeout_s,
                    limits=limits,
                    verify=tls,
                    follow_redirects=False,
                    headers={"User-Agent": USER_AGENT},
                )
            return self._clients[tls]

    def prepare(self, urls: list[str]) -> None:
        """Build the clients these URLs need now (before timing or threads start)."""
        for url in urls:
            self.client_for(url)

    def get(self, url: str, headers: dict[str, str] | None = None) -> HttpResponse:
        """GET ``url``; any HTTP status is an answer, only no answer at all raises."""
        import httpx

        client = self.client_for(url)
        # The latency is the server's: from the request's first byte sent to the response's
        # last byte read, as httpcore's trace reports them. The client, the request, waiting
        # for a pooled connection and opening it (TCP, TLS: ~1-3 ms of Python here, where curl
        # spends 0.1 ms) are left out.
        marks: dict[str, float] = {}

        def trace(event: str, info: object) -> None:
            if event.endswith(("send_request_headers.started", "receive_response_body.complete")):
                marks[event.rsplit(".", 2)[-2]] = time.perf_counter()

        request = client.build_request("GET", url, headers=headers, extensions={"trace": trace})
        started = time.perf_counter()
        try:
            response = client.send(request)
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
        ended = time.perf_counter()
        if "send_request_headers" in marks and "receive_response_body" in marks:
            started, ended = marks["send_request_headers"], marks["receive_response_body"]
        latency_ms = (ended - started) * 1000
        body: Any
        if "json" in response.headers.get("content-type", ""):
            try:
                body = response.json()
            except ValueError:
                body = response.text
        else:
            body = response.text
        return HttpResponse(url, response.status_code, latency_ms, body, dict(response.headers))

    def post_json(self, url: str, document: Any) -> int:
        """POST ``document`` as JSON (a webhook); the HTTP status. No answer within the
        timeout, or none at all, is Unreachable."""
        import httpx

        try:
            return int(self.client_for(url).post(url, json=document).status_code)
        except httpx.TimeoutException:
            raise Unreachable(f"{mask(url)} did not answer within {self.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise Unreachable(f"cannot reach {mask(url)}: {_reason(exc)}") from None

    def download(self, url: str, file: BinaryIO) -> dict[str, str]:
        """Stream the body of ``url`` into ``file``; the response headers (lower-case names).
        Any status but 200 is OperationFailed; no answer, or one that stops, Unreachable."""
        import httpx

        try:
            with self.client_for(url).stream("GET", url) as response:
                if response.status_code != 200:
                    raise OperationFailed(
                        f"{mask(url)} answered HTTP {response.status_code}",
                        hint="check the URL; a redirect is not followed",
                    )
                for chunk in response.iter_bytes(1 << 20):
                    file.write(chunk)
                return {k.lower(): v for k, v in response.headers.items()}
        except httpx.TimeoutException:
            raise Unreachable(
                f"{mask(url)} sent nothing for {self.timeout_s:g} s", hint="try again later"
            ) from None
        except httpx.HTTPError as exc:
            raise Unreachable(f"cannot download {mask(url)}: {_reason(exc)}") from None

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "Connection refused" in text or "[Errno 111]" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host name"
    return text
