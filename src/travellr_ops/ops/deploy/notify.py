"""Slack-compatible webhooks (deploy.webhook_urls): told of start, success,
failure and rollback. A short timeout each; a failing webhook is logged, never fatal."""

from __future__ import annotations

import logging
from collections.abc import Callable

from travellr_ops.redact import mask
from travellr_ops.settings import Settings

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, settings: Settings, warn: Callable[[str], None]) -> None:
        s = settings.deploy
        self.urls = [u for u in s.webhook_urls if u]
        self.timeout_s = s.webhook_timeout_s
        self.warn = warn

    def send(self, event: str, text: str) -> None:
        if not self.urls:
            return
        import httpx

        payload = {"text": text, "event": event, "username": "travellr-ops"}
        for url in self.urls:
            try:
                answer = httpx.post(url, json=payload, timeout=self.timeout_s)
                if answer.status_code >= 400:
                    raise httpx.HTTPError(f"HTTP {answer.status_code}")
            except httpx.HTTPError as exc:
                message = f"webhook {mask(url)} failed ({event}): {exc or type(exc).__name__}"
                log.warning(message)
                self.warn(message)
