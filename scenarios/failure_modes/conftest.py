"""Fixtures of the failure-mode scenarios.

Both shared stacks come from outside this folder and are started once per session:
``chaos_stack`` (RabbitMQ broker, the harness's pytest plugin) and ``redis_broker_stack`` (Redis
as broker, ``scenarios/conftest.py``), for the modes only a Redis broker shows. The third,
``sqlite_backend_stack`` (RabbitMQ broker, SQLite result backend: chords take
``celery.chord_unlock``), is started here on first use, once per session, for modes 13 and 16.
The probe workload and the one-call runner live in ``fm_kit.py`` next to the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fm_kit import sqlite_stack


@pytest.fixture(scope="session")
def sqlite_backend_stack() -> Iterator[Any]:
    """A stack whose result backend is ``db+sqlite://`` (see `fm_kit.sqlite_stack`)."""
    with sqlite_stack() as stack:
        yield stack
