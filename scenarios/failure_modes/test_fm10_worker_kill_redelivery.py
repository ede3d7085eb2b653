"""Failure mode 10: after an abrupt kill of a whole worker, how soon is its unacked work redelivered?

On RabbitMQ the broker requeues a consumer's unacked messages the moment its connection
closes, so a SIGKILLed worker's task runs again as soon as a worker consumes. On Redis nothing
notices the dead consumer: its messages stay in the ``unacked`` set until the visibility
timeout (1 h by default) has passed and a sweep restores them (celery #4984, #7924, #3501).

Fault: SIGKILL of the worker's process group (main process and children) 0.5 s into a 2 s
``probes.work``; the worker is started again 0.5 s later. Claim: late acks, no task lost to a
worker kill (``acks_late=True``; a worker kill under late acks must be redelivered).

- vulnerable: Redis broker, default visibility timeout (1 h). The task is never redelivered
  within the run: ``lost`` (lost_tasks) and ``not_redelivered`` (redelivery) for its task id,
  and the run does not quiesce (the message still sits in ``unacked``).
- safe (Redis): a visibility timeout of 4 s with a 1 s sweep. The task is redelivered no
  sooner than the timeout after its first delivery, and completes; valid.
- reference (RabbitMQ): the task is redelivered as soon as the restarted worker consumes;
  valid. The time from the kill to the second execution is printed for both brokers.

The trade-off is mode 6: a visibility timeout short enough for prompt recovery duplicates any
task that runs (or waits for its ETA) longer than it.
"""

from __future__ import annotations

from typing import Any

import pytest
from fm_kit import (
    executions,
    fault_times,
    probe_run,
    receives,
    redis_transport_options,
    the_fault,
    violations,
)

from harness.checkers import Validity
from harness.faults import KillWorker, Schedule, on_execute, when

pytestmark = pytest.mark.chaos

KILL_WORKER = Schedule.of(when(on_execute("probes.work", delay_s=0.5), KillWorker("w1"), duration_s=0.5))
SHORT_VT = 4


def _run(stack: Any, vt: int | None, **options: Any) -> tuple[Any, str]:
    redis = {} if vt is None else {"variant": {"visibility_timeout": vt},
                                   "worker_settings": {"broker_transport_options": redis_transport_options(vt)}}
    result, workload = probe_run(stack, seconds=2.0, n=2, schedule=KILL_WORKER, **redis, **options)
    assert the_fault(result).effect["scope"] == "worker", result.summary()
    return result, workload.submitted[result.run_id + ":probe:0"]


def _time_to_redelivery(result: Any, task_id: str) -> float:
    (killed_at,) = fault_times(result)
    runs = executions(result, task_id)
    # The killed execution has no end: the whole process group died with it.
    assert len(runs) == 2 and runs[0]["outcome"] is None and runs[1]["outcome"] == "ok", runs
    assert runs[1]["redelivered"] is True
    took = runs[1]["start_s"] - killed_at
    print(f"time from the worker kill to the redelivered execution: {took:.2f} s")
    return took


def test_fm10_vulnerable_redis_default_visibility_timeout_never_redelivers(redis_broker_stack: Any) -> None:
    result, task_id = _run(redis_broker_stack, 3600, quiesce_timeout_s=5.0)
    assert result.valid is Validity.FALSE, result.summary()
    (lost,) = violations(result, "lost_tasks", "lost")
    assert lost["task_id"] == task_id
    (missing,) = violations(result, "redelivery", "not_redelivered")
    assert missing["task_id"] == task_id and missing["killed_by"]["scope"] == "worker"
    assert len(executions(result, task_id)) == 1
    assert not result.quiesced  # the message is still parked in the transport's unacked set


def test_fm10_safe_redis_short_visibility_timeout_redelivers_after_the_timeout(redis_broker_stack: Any) -> None:
    result, task_id = _run(redis_broker_stack, SHORT_VT)
    assert result.valid is Validity.TRUE, result.summary()
    _time_to_redelivery(result, task_id)
    (first, _), (again, flag) = receives(result, task_id)
    assert flag and again - first >= SHORT_VT - 0.05  # restored by the sweep, not by noticing the death


def test_fm10_reference_rabbitmq_redelivers_when_the_connection_dies(chaos_stack: Any) -> None:
    result, task_id = _run(chaos_stack, None)
    assert result.valid is Validity.TRUE, result.summary()
    _time_to_redelivery(result, task_id)
    assert result.verdict("redelivery").counts["redelivered"] >= 1
