"""Failure mode 8: a broker connection blip under late acks runs a task twice, concurrently.

When the worker's broker connection drops, RabbitMQ requeues every unacked message. A task
still running in a pool child cannot ack any more ("Couldn't ack ... connection already
closed"), and the reconnected worker gets the requeued copy and runs it beside the original
(celery #6951, #4671; OasisPlatform #1369). PR #6654 added
``worker_cancel_long_running_tasks_on_connection_loss``: the worker then cancels such tasks
itself, so only the redelivered copy runs to completion (the default from Celery 6.0).

Fault: the worker-to-broker proxy goes down for 1.5 s, 0.5 s into a 4 s ``probes.work``
whose effect comes at its end; every open worker connection is closed and reconnects are
refused until the heal. The effects are *not* idempotent in both variants (a random
dedup token per write), so each complete execution writes a row.

- vulnerable: ``cancel_long_running_tasks_on_connection_loss=False``. The original and the
  redelivered copy both finish: two concurrent executions and the effect applied twice. The
  duplicates checker reports ``duplicate_effect`` for the unit.
- safe: ``cancel_long_running_tasks_on_connection_loss=True``. The original is cancelled before
  its effect; the redelivered copy runs alone; one effect, valid verdict.

The redelivery checker is left out: it judges kills, and a connection loss is not one (it
would say "unknown: nothing in flight at a kill"); the duplicates checker still attributes
the second execution to the fault (cause ``redelivery``).
"""

from __future__ import annotations

from typing import Any

import pytest
from fm_kit import executions, probe_run, the_fault, violations

from harness.checkers import Validity
from harness.faults import RolePartition, Schedule, on_execute, when

pytestmark = pytest.mark.chaos

BLIP = Schedule.of(when(on_execute("probes.work", delay_s=0.5), RolePartition("worker_broker", mode="proxy_down"),
                        duration_s=1.5))
CHECKERS = ("lost_tasks", "effects", "duplicates", "liveness", "recovery")


def _run(stack: Any, *, cancel: bool) -> tuple[Any, str]:
    result, workload = probe_run(stack, variant={"cancel_long_running_tasks_on_connection_loss": cancel,
                                                 "idempotent_effects": False},
                                 seconds=4.0, n=2, schedule=BLIP, checkers=CHECKERS)
    the_fault(result)
    first = result.run_id + ":probe:0"  # the unit running when the connection dropped
    return result, workload.submitted[first]


def test_fm08_vulnerable_running_task_and_its_redelivery_both_apply_the_effect(chaos_stack: Any) -> None:
    result, task_id = _run(chaos_stack, cancel=False)
    assert result.valid is Validity.FALSE, result.summary()
    dup = result.verdict("duplicates")
    assert dup.counts["concurrent_duplicates"] == 1 and dup.counts["cause_redelivery"] == 1, result.summary()
    # Judged on the store: the effect of the unit running at the blip is there twice.
    examples = violations(result, "effects", "duplicate_effect")
    assert examples and {e["key"] for e in examples} == {result.run_id + ":probe:0"}
    assert all(e["stored"] == 2 for e in examples)
    runs = executions(result, task_id)
    assert [e["outcome"] for e in runs] == ["ok", "ok"]
    assert runs[1]["start_s"] < runs[0]["end_s"]  # the copy started while the original still ran


def test_fm08_safe_cancel_on_connection_loss_leaves_one_effect(chaos_stack: Any) -> None:
    result, task_id = _run(chaos_stack, cancel=True)
    assert result.valid is Validity.TRUE, result.summary()
    dup = result.verdict("duplicates")
    # The fault bit: the task did run twice, but never at the same time, and wrote once.
    assert dup.counts["duplicate_executions"] == 1 and dup.counts["concurrent_duplicates"] == 0, result.summary()
    assert result.verdict("effects").counts["duplicate_effect"] == 0
    runs = executions(result, task_id)
    assert len(runs) == 2 and runs[1]["outcome"] == "ok" and runs[0]["outcome"] != "ok"
