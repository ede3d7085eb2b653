"""Container images for the containers stack: which one each service runs, and registry-free builds.

Responsibility: name the official images and their locally built equivalents (`names`), pick a
present image for each service without ever hanging on a registry (`resolve`), build the
equivalents from Debian packages with no registry (`rootfs`, `build`), and reach the Docker
engine with timeouts and exact, label-based cleanup (`engine`).

Example:
    >>> from harness.images import Service
    >>> Service.REDIS.local
    'chaos/redis:local'
"""

from harness.images.names import ImageMode, ImageOverrides, ResolvedImage, Service

__all__ = ["ImageMode", "ImageOverrides", "ResolvedImage", "Service"]
