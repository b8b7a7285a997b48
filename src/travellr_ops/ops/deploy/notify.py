"""Slack-compatible webhooks (deploy.webhook_urls): told of start, success,
failure and rollback. A short timeout each; a failing webhook is logged, never fatal."""

from __future__ import annotations

import logging
from collections.abc import Callable

from travellr_ops.errors import TravellrError
from travellr_ops.redact import mask
from travellr_ops.settings import Settings

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, settings: Settings, warn: Callable[[str], None]) -> None:
        s = settings.deploy
        self.settings = settings
        self.urls = [u for u in s.webhook_urls if u]
        self.timeout_s = s.webhook_timeout_s
        self.warn = warn

    def send(self, event: str, text: str) -> None:
        if not self.urls:
            return
        from travellr_ops.runtime import Runtime

        payload = {"text": text, "event": event, "username": "travellr-ops"}
        # the one webhook sender (alerts use it too): the HTTP adapter of the run context
        with Runtime(self.settings).http(len(self.urls), timeout_s=self.timeout_s) as http:
            for url in self.urls:
                try:
                    status = http.post_json(url, payload)
                    failure = f"HTTP {status}" if status >= 400 else None
                except TravellrError as exc:
                    failure = exc.message
                if failure is not None:
                    message = f"webhook {mask(url)} failed ({event}): {failure}"
                    log.warning(message)
                    self.warn(message)
