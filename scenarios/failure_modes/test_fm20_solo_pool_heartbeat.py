"""Failure mode 20: the solo pool blocks the broker heartbeat during a long task.

With ``-P solo`` a task runs in the worker's main thread, the one that also answers AMQP
heartbeats. A task longer than about two heartbeat intervals makes RabbitMQ close the
connection ("missed heartbeats from client"); the task's ack then has nowhere to go and the
message is requeued (celery #3430: "Connection reset by peer", "Couldn't ack", redelivered
in a loop). The prefork pool runs tasks in children, so the main process keeps heartbeating.

No injected fault: the long task and a short heartbeat are the fault (time compressed: an
4 s task and a 1 s heartbeat stand for a 3 min task and the default 60 s). Two probes are
queued at once. Claim: at-least-once.

- vulnerable: ``pool="solo"``. The first probe completes, but RabbitMQ has already closed the
  worker's connections for missed heartbeats. Observed on Celery 5.7 / kombu 5.7: the worker
  never consumes again (in 15 s, where a healthy one runs the second probe in 4 s; its main
  thread was found re-establishing the event dispatcher's connection in a loop, and RabbitMQ
  logged hundreds of short-lived connections), so the second probe is never executed:
  ``lost`` (lost_tasks) and ``stuck`` (liveness) for its task id; the run does not quiesce.
- safe: ``pool="prefork"``, same heartbeat and tasks: both complete once; valid.
"""

from __future__ import annotations

from typing import Any

import pytest
from fm_kit import AT_LEAST_ONCE, executions, probe_run, violations

from harness.checkers import Validity

pytestmark = pytest.mark.chaos

HEARTBEAT_S = 1.0
TASK_S = 4.0  # > 2 heartbeat intervals plus RabbitMQ's slack
#: How long the run waits for the queue to drain: a healthy worker runs both probes in 2 x TASK_S.
DRAIN_S = 15.0


def _run(stack: Any, pool: str, **options: Any) -> tuple[Any, dict[str, str]]:
    result, workload = probe_run(stack, variant={"broker_heartbeat": HEARTBEAT_S}, n=2, seconds=TASK_S, pool=pool,
                                 concurrency=1, expectations=AT_LEAST_ONCE, quiesce_timeout_s=DRAIN_S, **options)
    return result, workload.submitted


def test_fm20_vulnerable_solo_pool_long_task_loses_the_connection_and_stops_consuming(chaos_stack: Any) -> None:
    result, submitted = _run(chaos_stack, "solo")
    assert result.valid is Validity.FALSE, result.summary()
    first, second = submitted[result.run_id + ":probe:0"], submitted[result.run_id + ":probe:1"]
    assert [e["outcome"] for e in executions(result, first)] == ["ok"]  # it ran to the end...
    assert executions(result, second) == []  # ... and nothing ran after it
    (lost,) = violations(result, "lost_tasks", "lost")
    assert lost["task_id"] == second
    (stuck,) = violations(result, "liveness", "stuck")
    assert stuck["task_ids"] == [second]
    assert not result.quiesced


def test_fm20_safe_prefork_pool_keeps_heartbeating_through_long_tasks(chaos_stack: Any) -> None:
    result, submitted = _run(chaos_stack, "prefork")
    assert result.valid is Validity.TRUE, result.summary()
    for task_id in submitted.values():
        assert [e["outcome"] for e in executions(result, task_id)] == ["ok"]
