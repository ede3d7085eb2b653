"""Fixtures of the failure-mode scenarios: the session stack (RabbitMQ broker, from the plugin)
and a second local stack with Redis as the broker, for the modes that only Redis shows.

Both are real servers on loopback with their fault proxies; each is started once for the
whole session and torn down at its end (processes, ports and temp dirs).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.stack.local import LocalStack, LocalStackOptions


@pytest.fixture(scope="session")
def redis_broker_stack() -> Iterator[Any]:
    """A local stack whose broker is Redis (visibility timeout, no dead-lettering, no AMQP redelivery)."""
    with LocalStack(LocalStackOptions(broker="redis")) as stack:
        yield stack
