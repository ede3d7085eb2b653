"""Failure modes 5 and 6: Redis as broker re-delivers a message a worker still holds, once its
visibility timeout has passed.

kombu's Redis transport keeps each delivered message in an ``unacked`` sorted set scored by
its delivery time, and a periodic sweep (``restore_visible``) puts back into the queue every
message older than ``visibility_timeout``, whether or not a worker is still holding it.

- mode 5: a task with a countdown (ETA) longer than the visibility timeout is held, unacked,
  until its ETA; it is restored and received again, and every copy runs at the ETA
  (celery #2599, #3270, #2481, #4400; kombu #337).
- mode 6: a late-ack task that runs longer than the visibility timeout gets a concurrent
  copy (celery #5306, #5935; pretix #2058).

The claim checked is exactly-once execution (``allow_duplicate_executions=False``): the
effects are idempotent in the sample system, so the duplicates are executions, not rows.
Time is compressed: a 3 s visibility timeout stands for kombu's 1 h default, and the sweep
runs every second (``unacked_restore_interval=1``, ``unacked_restore_throttle=1``) instead
of kombu's 10 x 10 s. The safe variant keeps the same sweep with the default 1 h timeout,
so the only difference is the timeout: longer than any countdown plus task duration.
"""

from __future__ import annotations

from typing import Any

import pytest
from fm_kit import EXACTLY_ONCE, executions, probe_run, redis_transport_options, violations

from harness.checkers import Validity

pytestmark = pytest.mark.chaos

SHORT_VT = 3
LONG_VT = 3600


def _run(stack: Any, vt: int, **probe: Any) -> tuple[Any, str]:
    result, workload = probe_run(stack, variant={"visibility_timeout": vt}, n=1, expectations=EXACTLY_ONCE,
                                 worker_settings={"broker_transport_options": redis_transport_options(vt)}, **probe)
    (task_id,) = workload.submitted.values()
    return result, task_id


def _assert_visibility_duplicates(result: Any, task_id: str) -> None:
    assert result.valid is Validity.FALSE, result.summary()
    dups = violations(result, "duplicates", "duplicate_execution")
    assert dups and {d["task_id"] for d in dups} == {task_id}, result.summary()
    # At least one copy overlapped a running one, with no fault active: the sweep's doing.
    assert any(d["cause"] == "visibility_timeout" and d["concurrent"] for d in dups), dups
    assert result.verdict("duplicates").counts["duplicate_effect"] == 0  # the idempotent store absorbed them
    assert len(executions(result, task_id)) == 1 + len(dups)


def test_fm05_vulnerable_countdown_longer_than_visibility_timeout_runs_twice(redis_broker_stack: Any) -> None:
    result, task_id = _run(redis_broker_stack, SHORT_VT, countdown=2 * SHORT_VT, seconds=1.0)
    _assert_visibility_duplicates(result, task_id)


def test_fm05_safe_visibility_timeout_longer_than_countdown_runs_once(redis_broker_stack: Any) -> None:
    result, task_id = _run(redis_broker_stack, LONG_VT, countdown=2 * SHORT_VT, seconds=1.0)
    assert result.valid is Validity.TRUE, result.summary()
    (run,) = executions(result, task_id)
    assert run["outcome"] == "ok"


def test_fm06_vulnerable_task_longer_than_visibility_timeout_gets_a_concurrent_copy(redis_broker_stack: Any) -> None:
    result, task_id = _run(redis_broker_stack, SHORT_VT, seconds=SHORT_VT + 2.0)
    _assert_visibility_duplicates(result, task_id)
    assert result.verdict("duplicates").counts["concurrent_duplicates"] >= 1


def test_fm06_safe_long_visibility_timeout_runs_the_long_task_once(redis_broker_stack: Any) -> None:
    result, task_id = _run(redis_broker_stack, LONG_VT, seconds=SHORT_VT + 2.0)
    assert result.valid is Validity.TRUE, result.summary()
    (run,) = executions(result, task_id)
    assert run["outcome"] == "ok"
