"""Choosing the image each container runs: an override, the official one, or the local equivalent.

Responsibility: turn (mode, overrides) into one concrete image per service that is present
in the engine before any container starts, so no container start ever waits on a registry.
In `auto` mode a failed pull falls back to the image `celery-chaos images build` made; one
unreachable registry is not asked again for the next service.

Example:
    >>> resolve_images([Service.REDIS], mode=ImageMode.LOCAL)      # doctest: +SKIP
    {<Service.REDIS: 'redis'>: ResolvedImage(service=<Service.REDIS: 'redis'>, image='chaos/redis:local', ...)}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness.errors import ConfigError
from harness.images.engine import docker_client, image_present, pull_image
from harness.images.names import ImageMode, ImageOverrides, ResolvedImage, Service

BUILD_HINT = "build them with `celery-chaos images build` (or `python -m harness.images build`), as root"


def resolve_images(
    services: Iterable[Service],
    *,
    mode: ImageMode = ImageMode.AUTO,
    overrides: ImageOverrides | None = None,
    pull_timeout: float = 60.0,
    client: Any = None,
) -> dict[Service, ResolvedImage]:
    """One present image per service, or a ConfigError that names what is missing and the fix."""
    overrides = overrides or ImageOverrides()
    own = client is None
    client = client or docker_client()
    out: dict[Service, ResolvedImage] = {}
    registry_down = ""  # after one pull failed for lack of a registry, do not wait on it again
    try:
        for service in services:
            wanted = overrides.get(service)
            if wanted:
                reason = "" if image_present(client, wanted) else (registry_down or pull_image(wanted, pull_timeout))
                if reason:
                    raise ConfigError(
                        f"{service.value} image {wanted!r} (from the {service.value}_image option or "
                        f"{service.env_var}) is not present and could not be pulled: {reason}. Load it with "
                        f"`docker load`, or unset the override to use {service.local!r} ({BUILD_HINT})")
                out[service] = ResolvedImage(service, wanted, "override")
                continue
            if mode is ImageMode.LOCAL:
                out[service] = _local(client, service, "local", "images=local")
                continue
            official = service.official
            if image_present(client, official):
                out[service] = ResolvedImage(service, official, "present")
                continue
            reason = registry_down or pull_image(official, pull_timeout)
            if not reason:
                out[service] = ResolvedImage(service, official, "pulled")
                continue
            registry_down = registry_down or f"an earlier pull failed ({reason})"
            if mode is ImageMode.OFFICIAL:
                raise ConfigError(
                    f"cannot pull {official!r}: {reason}. With no registry, use images='local' (CHAOS_IMAGES=local) "
                    f"after building the equivalents: {BUILD_HINT}")
            out[service] = _local(client, service, "local-fallback", f"pulling {official} failed: {reason}")
    finally:
        if own:
            client.close()
    return out


def _local(client: Any, service: Service, source: str, why: str) -> ResolvedImage:
    if not image_present(client, service.local):
        raise ConfigError(
            f"the {service.value} image {service.local!r} is not built ({why}); {BUILD_HINT}. "
            f"Or point {service.env_var} at an image you have.")
    return ResolvedImage(service, service.local, source, why)
