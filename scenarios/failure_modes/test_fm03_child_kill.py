"""Failure mode 3: a task is lost when its pool child is SIGKILLed (OOM killer) under late acks.

Celery acks (here: rejects without requeue) the message of a task whose child died with
``WorkerLostError`` unless ``task_reject_on_worker_lost`` is on (celery #1628, PR #2840, PR #6103).
The claim a user cares about is at-least-once: no task is ever dropped because a process died.

Fault: SIGKILL of exactly the pool child running ``probes.work``, 0.3 s after it started
(before its effect, which comes after 2 s of work).

- vulnerable: ``acks_late=True, reject_on_worker_lost=False``. The message is rejected without
  requeue; the sample system's queues dead-letter it, so the task ends in the DLQ instead of
  completing: the liveness checker reports ``wrong_outcome`` (expected complete, got dlq) for
  the killed task's unit, with its task id. (Without a DLQ the message is simply gone.)
- safe: ``acks_late=True, reject_on_worker_lost=True``. The message is requeued, runs again in a
  new child and completes; the verdict is valid and the redelivery checker saw it.
"""

from __future__ import annotations

from typing import Any

import pytest
from fm_kit import AT_LEAST_ONCE, executions, probe_run, the_fault, violations

from harness.checkers import Validity
from harness.faults import KillWorkerChild, Schedule, on_execute, when

pytestmark = pytest.mark.chaos

KILL_MID_TASK = Schedule.of(when(on_execute("probes.work", delay_s=0.3), KillWorkerChild()))


def _run(stack: Any, **variant: Any) -> Any:
    result, _ = probe_run(stack, variant=variant, seconds=2.0, n=3, schedule=KILL_MID_TASK,
                          expectations=AT_LEAST_ONCE)
    killed = the_fault(result).effect
    assert killed["scope"] == "child" and len(killed["killed_pids"]) == 1, result.summary()
    return result, killed["task_id"]


def test_fm03_vulnerable_no_reject_on_worker_lost_drops_the_killed_task(chaos_stack: Any) -> None:
    result, task_id = _run(chaos_stack, acks_late=True, reject_on_worker_lost=False)
    assert result.valid is Validity.FALSE, result.summary()
    (wrong,) = violations(result, "liveness", "wrong_outcome")
    assert wrong["task_ids"] == [task_id] and (wrong["expected"], wrong["actual"]) == ("complete", "dlq")
    # It ran once, was cut, and never ran again: the WorkerLostError was final.
    assert [e["outcome"] for e in executions(result, task_id)] == ["info"]
    assert result.verdict("lost_tasks").counts["dead_lettered"] == 1
    assert result.verdict("lost_tasks").counts["succeeded"] == 2  # the other units were fine


def test_fm03_safe_reject_on_worker_lost_redelivers_the_killed_task(chaos_stack: Any) -> None:
    result, task_id = _run(chaos_stack, acks_late=True, reject_on_worker_lost=True)
    assert result.valid is Validity.TRUE, result.summary()
    red = result.verdict("redelivery")
    assert red.counts["in_flight_at_kill"] == 1 and red.counts["redelivered"] == 1
    runs = executions(result, task_id)
    assert [e["outcome"] for e in runs] == ["info", "ok"] and runs[1]["redelivered"] is True
    assert runs[0]["process"] != runs[1]["process"]  # the second run is in a new pool child
    assert result.verdict("duplicates").counts["duplicate_effect"] == 0
