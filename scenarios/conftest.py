"""Fixtures of the chaos scenario suite: the system under test and a Redis-as-broker stack.

The RabbitMQ stack is the plugin's session fixture `chaos_stack`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.stack.local import LocalStack, LocalStackOptions


@pytest.fixture(scope="session")
def sample_system() -> Any:
    """The sample system as a certification target (it deploys itself per scenario)."""
    from sample_system.workload import SampleWorkload

    return SampleWorkload()


@pytest.fixture(scope="session")
def redis_broker_stack() -> Iterator[LocalStack]:
    """A second local stack whose broker is Redis (where visibility timeouts apply)."""
    with LocalStack(LocalStackOptions(broker="redis")) as stack:
        yield stack
