"""Fixtures for the Locust tests: the session stack's queues, emptied before each test.

Real components only: the plugin's session stack (RabbitMQ, Redis, fault proxy); Locust always
runs in subprocesses (it monkey-patches the standard library on import).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from load_testkit import Queues

from sample_system import Settings, make_app


@pytest.fixture()
def queues(chaos_stack: Any) -> Iterator[Queues]:
    """The sample system's queues, declared and empty (direct broker URL, not through a proxy)."""
    app = make_app(Settings(broker_url=chaos_stack.urls.broker_url, backend_url=chaos_stack.urls.backend_url))
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=3, timeout=10)
        with conn.channel() as ch:
            for q in app.conf.task_queues:
                bound = q(ch)
                bound.declare()
                bound.purge()
    app.close()
    yield Queues(chaos_stack.urls.broker_url)
