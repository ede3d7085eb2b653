"""Failure mode 7: RabbitMQ's ``consumer_timeout`` closes the channel of a long ``acks_late`` task.

RabbitMQ (3.8.15 and later; 30 min by default) closes a channel that holds an unacked delivery
longer than ``consumer_timeout``: ``PRECONDITION_FAILED - delivery acknowledgement on channel 1
timed out``. The task goes on running in its pool child and finishes, but its ack has no
channel to go out on; the broker has already put the message back in the queue, so it runs
again when a consumer takes it (celery #6760, ServiceX #893). On Celery 5.7 the worker then
stops (the consumer's channel error is not one it recovers from) and nothing else is consumed.

Time compressed: a 2 s ``consumer_timeout`` (checked every 0.5 s, see `fm_kit.rabbitmq_stack`)
with a 5 s task stands for the default 30 min with a task of a few hours. No injected fault:
the broker's own timeout is the fault. Two probes, one worker of concurrency 1, claim
exactly-once.

- vulnerable: ``consumer_timeout = 2000``. The first probe runs to the end once, but its
  channel is gone: the ``acks`` checker reports ``messages_left`` (both messages back in the
  queue, to run again) and, when the worker saw the channel close before acking,
  ``unsettled_completion`` for its task id; the second probe is never executed: ``lost`` and
  ``stuck``. The run does not quiesce.
- safe: ``consumer_timeout = 30000`` (longer than the task): both probes run once and are
  acked; valid.
"""

from __future__ import annotations

from typing import Any

import pytest
from fm_kit import EXACTLY_ONCE, executions, probe_run, rabbitmq_stack, violations

from harness.checkers import Validity
from harness.history import F

pytestmark = [pytest.mark.chaos, pytest.mark.full]

TASK_S = 5.0


def _run(consumer_timeout_ms: int) -> tuple[Any, dict[str, str]]:
    with rabbitmq_stack(consumer_timeout=consumer_timeout_ms) as stack:
        result, workload = probe_run(stack, seconds=TASK_S, n=2, concurrency=1, expectations=EXACTLY_ONCE,
                                     quiesce_timeout_s=12.0)
    return result, workload.submitted


def _acks(result: Any, task_id: str) -> list[str]:
    return [op.type.value for op in result.history or () if op.type.value != "invoke"
            and op.f == F.ACK and isinstance(op.value, dict) and op.value.get("task_id") == task_id]


def test_fm07_vulnerable_consumer_timeout_shorter_than_the_task_leaves_it_unacked(chaos_stack: Any) -> None:
    result, submitted = _run(2000)
    assert result.valid is Validity.FALSE, result.summary()
    first, second = submitted[result.run_id + ":probe:0"], submitted[result.run_id + ":probe:1"]
    assert [e["outcome"] for e in executions(result, first)] == ["ok"]  # it ran to its end, once...
    # ... and its ack went nowhere. From inside the worker the ack fails when the worker had
    # already read the broker's channel.close, and looks sent when it had not (AMQP acks are not
    # confirmed): the broker's queue is what decides, both messages are back in it.
    acks = _acks(result, first)
    assert acks in (["ok"], ["fail"]), acks
    if acks == ["fail"]:
        (unsettled,) = violations(result, "acks", "unsettled_completion")
        assert unsettled["task_id"] == first and unsettled["after"] == "success"
    (left,) = violations(result, "acks", "messages_left")
    assert left["messages"] == 2 and left["queues"]["default"]["ready"] == 2, left
    assert executions(result, second) == []
    (lost,) = violations(result, "lost_tasks", "lost")
    assert lost["task_id"] == second
    assert not result.quiesced


def test_fm07_safe_consumer_timeout_longer_than_the_task_acks_every_probe(chaos_stack: Any) -> None:
    result, submitted = _run(30000)
    assert result.valid is Validity.TRUE, result.summary()
    for task_id in submitted.values():
        assert [e["outcome"] for e in executions(result, task_id)] == ["ok"]
        assert _acks(result, task_id) == ["ok"]
    assert result.verdict("acks").counts["acks"] == 2
