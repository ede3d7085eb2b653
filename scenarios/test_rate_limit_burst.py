"""Rate limits, judged from the tasks' own ``rate_limit`` under a burst above it.

The sample system's ``notifications.deliver`` declares ``rate_limit="10/s"``. The certification's
``rate_limit_burst`` publishes ten units of every kind at once; the harness reads the limit from
the workers (``inspect registered rate_limit``), so an app needs no declaration of ours.

- safe: the worker enforces the limit; the demand exceeded it (the limiter had to act) and the
  starts stayed within it: valid (``scenarios/test_matrix.py::test_scenario_on_rabbitmq[rate_limit_burst]``,
  where an unexercised limit would be ``unknown`` and fail).
- vulnerable: the same app with ``worker_disable_rate_limits=True`` (a worker-level switch
  that silently turns every task's limit off): ``rate_exceeded`` naming the task.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from harness.certification import get, run_scenario

pytestmark = pytest.mark.chaos

TASK = "notifications.deliver"


class _RateLimitsOff:
    """The sample system whose workers ignore every rate limit."""

    def __init__(self, system: Any) -> None:
        self.system = system

    @contextlib.contextmanager
    def prepare(self, stack: Any, **kw: Any) -> Iterator[Any]:
        with self.system.prepare(stack, **kw) as d:
            yield dataclasses.replace(d, settings={**d.settings, "worker_disable_rate_limits": True})


def test_rate_limits_off_exceed_the_declared_limit(chaos_stack: Any, sample_system: Any) -> None:
    rep = run_scenario(chaos_stack, _RateLimitsOff(sample_system), get("rate_limit_burst"), app="sample_system:app")
    v = rep.verdicts["rate_limits"]
    assert rep.valid == "false" and v.valid.value == "false", (rep.valid, v.counts, v.notes)
    names = {ce["name"] for ce in v.violations() if ce["kind"] == "rate_exceeded"}
    assert names == {TASK}, v.violations()

