"""The servers a deploy works with, as one bundle the procedures take."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from travellr_ops.adapters.http import HttpAdapter
from travellr_ops.adapters.platform_types import ServicePlatform
from travellr_ops.ops.health import HealthReport
from travellr_ops.settings import Settings


@dataclass
class Tools:
    settings: Settings
    platform: ServicePlatform
    http: HttpAdapter
    #: the whole `health` check (every server, the platform)
    health: Callable[[], HealthReport]
    #: `backup create`; returns the backup's name
    backup: Callable[[], str]
    #: the database's size in bytes (for the backup's disk estimate), None when unknown
    database_size: Callable[[], int | None]
