"""The factory of service platforms: the adapter the settings name (compose or Kubernetes).

It sits above both adapters (they share only ``adapters.platform_types``), and imports the
chosen one, with its SDK, only when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from travellr_ops.errors import ConfigError

if TYPE_CHECKING:
    from travellr_ops.adapters.platform_types import ServicePlatform
    from travellr_ops.settings import Settings


def get_platform(settings: Settings) -> ServicePlatform:
    """The platform adapter the settings name; its SDK is imported only now."""
    if settings.platform == "none":
        raise ConfigError(
            'no service platform is configured (platform = "none")',
            hint='set platform = "compose" or "kubernetes" (TRAVELLR_PLATFORM) to manage services',
        )
    if settings.platform == "kubernetes":
        from travellr_ops.adapters.kubernetes import KubernetesPlatform

        return KubernetesPlatform(settings)
    from travellr_ops.adapters.docker import ComposePlatform

    return ComposePlatform(settings)
