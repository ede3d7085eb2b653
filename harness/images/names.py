"""Which image each service of the containers stack runs: official names, local equivalents, overrides.

Responsibility: name the services (broker, result backend, fault proxy, worker), their
official registry images, the tags `celery-chaos images build` gives their registry-free
equivalents, and the environment variables that override each one. Pure data, no I/O.

Example:
    >>> Service.RABBITMQ.official
    'rabbitmq:3-management'
    >>> Service.TOXIPROXY.local
    'chaos/toxiproxy:local'
    >>> Service.REDIS.env_var
    'CHAOS_REDIS_IMAGE'
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from harness.errors import ConfigError

#: Label put on everything the harness creates in Docker (images, containers, networks, volumes).
LABEL_PROJECT = "celery-chaos"
#: Label naming the run (one stack) a container, network or volume belongs to: cleanup is exact.
LABEL_RUN = "celery-chaos.run"
#: Label naming the role of a container inside its run (broker, backend, toxiproxy, worker).
LABEL_ROLE = "celery-chaos.role"
#: Labels naming the process that owns a run (pid and its start time, against pid reuse): a run
#: whose owner died without cleaning up (SIGKILL) is removed by the next stack that starts.
LABEL_OWNER_PID = "celery-chaos.owner-pid"
LABEL_OWNER_START = "celery-chaos.owner-start"
LABEL_OWNER_HOST = "celery-chaos.owner-host"
#: Label on built images: the key of the base root filesystem they derive from.
LABEL_BASE_KEY = "celery-chaos.base-key"


class Service(enum.Enum):
    """A service of the containers stack, with its official image and its registry-free equivalent."""

    RABBITMQ = "rabbitmq"
    REDIS = "redis"
    TOXIPROXY = "toxiproxy"
    PYTHON = "python"

    @property
    def official(self) -> str:
        """The official image (needs a registry the first time)."""
        return _OFFICIAL[self]

    @property
    def local(self) -> str:
        """The tag `celery-chaos images build` gives the equivalent built from Debian packages."""
        return f"chaos/{self.value}:local"

    @property
    def env_var(self) -> str:
        """The environment variable that overrides this service's image."""
        return f"CHAOS_{self.value.upper()}_IMAGE"


_OFFICIAL: dict[Service, str] = {
    Service.RABBITMQ: "rabbitmq:3-management",
    Service.REDIS: "redis:7",
    Service.TOXIPROXY: "ghcr.io/shopify/toxiproxy:2.12.0",
    # Workers in containers run the host's venv (mounted) on a Python of the same minor version.
    Service.PYTHON: "python:3.11-slim-bookworm",
}


class ImageMode(enum.Enum):
    """Where images come from.

    auto:     the official image when it is present or can be pulled, else the local equivalent
    official: only official images (pulled when missing); fail when pulling fails
    local:    only the images `celery-chaos images build` made; never touch a registry
    """

    AUTO = "auto"
    OFFICIAL = "official"
    LOCAL = "local"

    @classmethod
    def parse(cls, text: str) -> ImageMode:
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise ConfigError(
                f"image mode must be one of auto, official, local, not {text!r} "
                "(set by the images= option or CHAOS_IMAGES)") from None


@dataclass(frozen=True, slots=True)
class ImageOverrides:
    """Explicit image per service; a service left None follows the ImageMode.

    Example:
        >>> ImageOverrides.from_env({"CHAOS_REDIS_IMAGE": "redis:7.2"}).redis
        'redis:7.2'
    """

    rabbitmq: str | None = None
    redis: str | None = None
    toxiproxy: str | None = None
    python: str | None = None

    def get(self, service: Service) -> str | None:
        value: str | None = getattr(self, service.value)
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ImageOverrides:
        """Overrides from CHAOS_RABBITMQ_IMAGE, CHAOS_REDIS_IMAGE, CHAOS_TOXIPROXY_IMAGE, CHAOS_PYTHON_IMAGE."""
        return cls(**{s.value: (environ.get(s.env_var) or None) for s in Service})

    def merged(self, other: ImageOverrides) -> ImageOverrides:
        """These overrides, with `other`'s filling the services left None here."""
        return ImageOverrides(**{s.value: self.get(s) or other.get(s) for s in Service})


@dataclass(frozen=True, slots=True)
class ResolvedImage:
    """The image a service will run and why (shown in errors and in `stack up --json`)."""

    service: Service
    image: str
    source: str  # "override", "present", "pulled", "local", "local-fallback"
    note: str = ""
