"""`config show` and `config validate` (the runbook's `npm run validate:env`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from travellr_ops.errors import ExitCode, TravellrError, Unreachable
from travellr_ops.redact import mask
from travellr_ops.runtime import Runtime
from travellr_ops.settings import LoadedSettings, flatten

if TYPE_CHECKING:
    from travellr_ops.adapters.http import HttpAdapter
    from travellr_ops.adapters.mongo import MongoAdapter
    from travellr_ops.adapters.redis import RedisAdapter


@dataclass
class SettingValue:
    key: str
    value: object
    source: str


@dataclass
class ConfigView:
    config_file: str | None
    settings: list[SettingValue]
    #: the named environment in use (None: none named), what chose it, and every one known
    environment: str | None = None
    environment_source: str = "default"
    environments: list[str] = field(default_factory=list)


def show(loaded: LoadedSettings) -> ConfigView:
    from travellr_ops.ops.db.indexes import SHIPPED_INDEXES_FILE

    # settings whose default (None) means "a file chosen for you": show the file used
    used = {"mongo.indexes_file": str(SHIPPED_INDEXES_FILE)}
    rows = []
    for key, value in flatten(loaded.settings.model_dump(mode="json")):
        shown = mask(value) if isinstance(value, str) else value
        if key == "alerts.webhooks":  # a webhook's path is its secret
            from travellr_ops.ops.alerts.delivery import where

            shown = [{**hook, "url": where(hook["url"])} for hook in value]
        if shown is None and key in used:
            shown = used[key]
        rows.append(SettingValue(key, shown, loaded.sources.get(key, "default")))
    return ConfigView(
        str(loaded.config_file) if loaded.config_file else None,
        rows,
        loaded.settings.environment,
        loaded.sources.get("environment", "default"),
        loaded.environments,
    )


@dataclass
class ValidationItem:
    item: str
    ok: bool
    detail: str
    unreachable: bool = False
    #: the setting itself is wrong (exit 2), not what it names
    invalid: bool = False
    #: worth saying, but no failure (an alert webhook that does not answer now)
    warning: bool = False


@dataclass
class Validation:
    ok: bool
    findings: list[ValidationItem]

    @property
    def exit_code(self) -> ExitCode:
        if any(f.invalid for f in self.findings):
            return ExitCode.USAGE
        if any(f.unreachable for f in self.findings):
            return ExitCode.UNAVAILABLE
        return ExitCode.OK if self.ok else ExitCode.CHECK_FAILED


def validate(rt: Runtime) -> Validation:
    """The settings are valid (they loaded); check that each place and server named works."""
    with rt.http() as http, rt.mongo() as mongo, rt.redis() as redis:
        findings = _probe(rt, http, mongo, redis)
    findings += _webhooks(rt)
    s = rt.settings
    findings.append(_writable_dir("backup.dir", s.backup.dir))
    findings.append(_writable_dir("state_dir", s.state_dir))
    if s.mongo.indexes_file is not None and not s.mongo.indexes_file.is_file():
        findings.append(
            ValidationItem("mongo.indexes_file", False, f"{s.mongo.indexes_file} not found")
        )
    return Validation(all(f.ok for f in findings), findings)


def _probe(
    rt: Runtime, http: HttpAdapter, mongo: MongoAdapter, redis: RedisAdapter
) -> list[ValidationItem]:
    """Each server the settings name, probed at once."""
    s = rt.settings

    def reach(name: str, fn: Callable[[], str]) -> Callable[[], ValidationItem]:
        def probe() -> ValidationItem:
            try:
                return ValidationItem(name, True, fn())
            except TravellrError as exc:
                return ValidationItem(name, False, exc.message, isinstance(exc, Unreachable))

        return probe

    health_url = s.api.url.rstrip("/") + s.api.health_path
    probes = [
        reach("mongo.uri", lambda: f"{mongo.display_uri} answers ({mongo.ping():.1f} ms)"),
        reach("redis.url", lambda: f"{redis.display_url} answers ({redis.ping():.1f} ms)"),
        reach("api.url", lambda: f"{health_url} answers HTTP {http.get(health_url).status}"),
    ]
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        return [f.result() for f in [pool.submit(p) for p in probes]]


def _webhooks(rt: Runtime) -> list[ValidationItem]:
    """Each alert webhook: a malformed URL is a configuration error (exit 2); one that does
    not answer now is a warning (the monitor keeps its messages and retries). Asked with a
    GET, which sends no alert: any HTTP answer means it is there."""
    from travellr_ops.ops.alerts.delivery import malformed, where

    hooks = rt.settings.alerts.webhooks
    found = []
    with rt.http(len(hooks) or 1, timeout_s=rt.settings.alerts.timeout_s) as http:
        for i, hook in enumerate(hooks):
            name = f"alerts.webhooks[{i}]"
            why = malformed(hook.url)
            if why is not None:
                found.append(ValidationItem(name, False, f"{hook.url!r}: {why}", invalid=True))
                continue
            try:
                status = http.get(hook.url).status
            except TravellrError as exc:
                detail = exc.message.replace(hook.url, where(hook.url))
                found.append(ValidationItem(name, True, f"{detail} (retried)", warning=True))
                continue
            found.append(
                ValidationItem(
                    name, True, f"{where(hook.url)} answers (HTTP {status}), {hook.format}"
                )
            )
    return found


def _writable_dir(name: str, path: Path) -> ValidationItem:
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return ValidationItem(name, False, f"{path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        return ValidationItem(name, False, f"{path}: {existing} is not writable")
    note = "exists" if existing == path.absolute() else "will be created"
    return ValidationItem(name, True, f"{path} ({note}, writable)")
