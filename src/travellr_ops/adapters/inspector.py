"""The V8 inspector of a running Node.js process: its HTTP listing and its WebSocket protocol.

A Node.js process opens its inspector on SIGUSR1 (on 127.0.0.1, port ``--inspect-port``,
default 9229); ``/json/list`` on that port names the WebSocket to talk to. The protocol is the
Chrome DevTools Protocol: requests ``{"id", "method", "params"}``, answers with the same id,
and events (``{"method", "params"}``) in between, which ``call`` hands to ``on_event`` as they
arrive, so a heap snapshot's chunks go to disk one by one.

websocket-client (a dependency of the kubernetes client) is imported when a session opens.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from types import TracebackType
from typing import Any

from travellr_ops.errors import OperationFailed, Unreachable

Event = Callable[[str, dict[str, Any]], None]


def debugger_url(port: int, timeout_s: float = 1.0) -> str | None:
    """The WebSocket URL of the inspector listening on 127.0.0.1:``port``, or None when
    what listens there is not a Node.js inspector."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout_s) as r:
            targets = json.loads(r.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    if not isinstance(targets, list):
        return None
    for target in targets:
        if isinstance(target, dict) and str(target.get("type")) == "node":
            url = target.get("webSocketDebuggerUrl")
            if isinstance(url, str) and url.startswith("ws://127.0.0.1:"):
                return url
    return None


class InspectorSession:
    """One DevTools-protocol session over the inspector's WebSocket."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        import websocket

        self.url = url
        self._next_id = 0
        try:
            # the inspector refuses a browser Origin it does not expect; a tool sends none
            # websocket-client checks UTF-8 in pure Python (minutes for a heap snapshot's
            # chunks); json.loads of the decoded text checks it at C speed
            self._ws = websocket.create_connection(
                url, timeout=timeout_s, suppress_origin=True, skip_utf8_validation=True
            )
        except (OSError, websocket.WebSocketException) as exc:
            raise Unreachable(
                f"cannot connect to the Node.js inspector at {url}: {exc}",
                hint="is the process still running?",
            ) from exc

    def __enter__(self) -> InspectorSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        on_event: Event | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Send ``method`` and return its result; events that come first go to ``on_event``."""
        import websocket

        self._next_id += 1
        request_id = self._next_id
        try:
            if timeout_s is not None:
                self._ws.settimeout(timeout_s)
            self._ws.send(json.dumps({"id": request_id, "method": method, "params": params or {}}))
            while True:
                raw = self._ws.recv()
                if not raw:
                    raise websocket.WebSocketConnectionClosedException("closed")
                message = json.loads(raw)
                if message.get("id") == request_id:
                    break
                if on_event is not None and "method" in message:
                    on_event(str(message["method"]), dict(message.get("params") or {}))
        except (OSError, websocket.WebSocketException) as exc:
            raise Unreachable(
                f"the Node.js inspector connection ended during {method}: "
                f"{exc or type(exc).__name__}",
                hint="the process may have exited or restarted",
            ) from exc
        if "error" in message:
            error = message["error"]
            raise OperationFailed(f"{method} failed: {error.get('message', error)}")
        return dict(message.get("result") or {})

    def close_inspector(self) -> None:
        """Close the process's inspector (its port too), as it was before SIGUSR1."""
        import websocket

        self._next_id += 1
        expression = "process._debugEnd()"
        try:
            self._ws.send(
                json.dumps(
                    {
                        "id": self._next_id,
                        "method": "Runtime.evaluate",
                        "params": {"expression": expression},
                    }
                )
            )
            self._ws.recv()  # the inspector closes this connection as it goes
        except (OSError, websocket.WebSocketException):
            pass

    def close(self) -> None:
        self._ws.close()
