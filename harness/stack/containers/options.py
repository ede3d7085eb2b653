"""How to build the containers stack: `ContainerStackOptions`, from keywords and the environment.

Each option is described in `harness.stack.containers`' docstring.

Example:
    >>> ContainerStackOptions(broker="redis", images="local").broker
    'redis'
    >>> from harness.stack.rabbitmq_config import RabbitMQSettings
    >>> ContainerStackOptions(rabbitmq=RabbitMQSettings(conf={"consumer_timeout": 60000})).rabbitmq.conf_lines()
    ['consumer_timeout = 60000']
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from harness.errors import ConfigError
from harness.images.names import ImageMode, ImageOverrides, Service
from harness.stack.rabbitmq_config import RabbitMQSettings

__all__ = ["ContainerStackOptions"]


@dataclass(frozen=True, slots=True)
class ContainerStackOptions:
    """How to build the containers stack (see `harness.stack.containers` for each option)."""

    images: str = "auto"
    rabbitmq_image: str | None = None
    redis_image: str | None = None
    toxiproxy_image: str | None = None
    python_image: str | None = None
    broker: Literal["rabbitmq", "redis"] = "rabbitmq"
    redis_aof: bool = False
    rabbitmq_management: bool = True
    proxy_network: Literal["bridge", "host"] = "host"
    workers: Literal["host", "containers"] = "host"
    startup_timeout: float = 120.0
    pull_timeout: float = 30.0
    spare_proxies: int = 6
    labels: dict[str, str] = field(default_factory=dict)
    rabbitmq: RabbitMQSettings = field(default_factory=RabbitMQSettings)

    def __post_init__(self) -> None:
        ImageMode.parse(self.images)
        if self.broker not in ("rabbitmq", "redis"):
            raise ConfigError(f"broker must be 'rabbitmq' or 'redis', not {self.broker!r}")
        if not isinstance(self.rabbitmq, RabbitMQSettings):
            raise ConfigError(f"rabbitmq must be a RabbitMQSettings, not {type(self.rabbitmq).__name__}: build one "
                              "with harness.stack.rabbitmq_config.RabbitMQSettings(conf=..., policies=...)")
        if self.rabbitmq and self.broker != "rabbitmq":
            raise ConfigError(f"rabbitmq settings need broker='rabbitmq', not {self.broker!r}: drop them or use "
                              "RabbitMQ")
        if self.proxy_network not in ("bridge", "host"):
            raise ConfigError(f"proxy_network must be 'bridge' or 'host', not {self.proxy_network!r} "
                              "(CHAOS_PROXY_NETWORK)")
        if self.workers not in ("host", "containers"):
            raise ConfigError(f"workers must be 'host' or 'containers', not {self.workers!r} (CHAOS_WORKERS)")
        if self.startup_timeout <= 0 or self.pull_timeout <= 0:
            raise ConfigError("startup_timeout and pull_timeout must be positive seconds")
        if not 0 <= self.spare_proxies <= 64:
            raise ConfigError(f"spare_proxies must be 0..64, not {self.spare_proxies}")

    @property
    def image_mode(self) -> ImageMode:
        return ImageMode.parse(self.images)

    @property
    def overrides(self) -> ImageOverrides:
        return ImageOverrides(self.rabbitmq_image, self.redis_image, self.toxiproxy_image, self.python_image)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **given: Any) -> ContainerStackOptions:
        """Options from keyword arguments, with the environment filling what was not given.

        Example:
            >>> ContainerStackOptions.from_env({"CHAOS_IMAGES": "local"}).images
            'local'
            >>> ContainerStackOptions.from_env({}, image="redis")
            Traceback (most recent call last):
            ...
            harness.errors.ConfigError: unknown containers stack option(s) ['image']; known: ...
        """
        env = os.environ if environ is None else environ
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ConfigError(f"unknown containers stack option(s) {unknown}; known: {sorted(known)}")
        kw = {k: v for k, v in given.items() if v is not None}
        from_env = {"images": env.get("CHAOS_IMAGES"), "proxy_network": env.get("CHAOS_PROXY_NETWORK"),
                    "workers": env.get("CHAOS_WORKERS"),
                    **{f"{s.value}_image": env.get(s.env_var) for s in Service}}
        for k, v in from_env.items():
            if v and k not in kw:
                kw[k] = v
        return cls(**kw)

