"""Fixtures for the containers tier: a usable Docker engine and images, or a clear skip/fail.

Outside CI, no Docker (or no images and no registry) skips the tier with the reason. With
CI=true it fails instead: the containers tier must run in CI, never skip silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from harness.errors import ConfigError
from harness.images.engine import docker_status
from harness.images.names import ImageMode, Service
from harness.stack.rabbitmq_config import RabbitMQPolicy, RabbitMQSettings

#: The scenario configuration the module stack's broker runs with (`ContainerStackOptions.rabbitmq`):
#: harmless to the other tests (a longer consumer timeout than any test needs, a TTL policy on queues
#: only `test_rabbitmq_settings_are_in_effect_in_the_broker_container` uses), and proof that a
#: container gets them (that test), at no extra stack start.
STACK_RABBITMQ = RabbitMQSettings(conf={"consumer_timeout": 1234000}, app_env={"channel_tick_interval": 30000},
                                  policies=(RabbitMQPolicy("chaos-ct-ttl", "^chaos-ct-ttl\\.", {"message-ttl": 300}),))


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"CI=true but the containers tier cannot run: {reason}. CI must install docker.io, start "
                    "dockerd and run `celery-chaos images build` before the tests (see scripts/ci-docker.sh).",
                    pytrace=False)
    pytest.skip(f"containers tier skipped (not CI): {reason}")


@pytest.fixture(scope="session")
def docker_ready() -> None:
    """Docker answers; else skip (dev machine) or fail (CI=true)."""
    status = docker_status(timeout=10)
    if not status.usable:
        _unavailable(status.reason)


@pytest.fixture(scope="session")
def image_mode(docker_ready: None) -> str:
    """The image mode the tier uses: CHAOS_IMAGES, else auto; the images must be present or pullable."""
    from harness.images.resolve import resolve_images

    mode = os.environ.get("CHAOS_IMAGES", "auto")
    try:
        resolve_images(list(Service), mode=ImageMode.parse(mode), pull_timeout=20)
    except ConfigError as exc:
        _unavailable(str(exc))
    return mode


@pytest.fixture(scope="module")
def container_stack(image_mode: str) -> Iterator[object]:
    """One containers stack per test module (RabbitMQ broker with `STACK_RABBITMQ`, Redis backend with
    AOF, Toxiproxy)."""
    from harness.stack.containers import ContainerStack

    with ContainerStack(images=image_mode, redis_aof=True, rabbitmq=STACK_RABBITMQ) as stack:
        yield stack
