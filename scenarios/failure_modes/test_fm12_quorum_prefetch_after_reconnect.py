"""Failure mode 12 (guard): the prefetch after a broker restart on quorum queues.

The report (celery #9512) is a throughput collapse after a reconnect: with tasks still running
when the connection drops, the worker reduces its prefetch count for the new consumer and
restores it with ``basic.qos`` as tasks finish. Quorum queues only take per-consumer QoS
(``apply_global=False``), which RabbitMQ applies to consumers created afterwards: the restore
never reaches the running consumer and the worker stays at the reduced prefetch for good.
Celery 5.7 has the fix (PR #10253: ``Consumer.on_connection_error_after_connected`` skips the
reduction when per-consumer QoS is in effect, logging "Skipping prefetch count reduction after
connection restart ..."), so the collapse does not reproduce, and the one vulnerable setting
left, ``worker_detect_quorum_queues=False``, fails at once instead: the worker asks for global
QoS and RabbitMQ refuses every consume (``NOT_IMPLEMENTED - queue 'default' in vhost '/' does
not support global qos``), a reconnect loop in which the worker never becomes ready.

This is the regression guard. Fault: the broker SIGKILLed 0.3 s after the fourth of a burst
of twelve 1.5 s probes started, on quorum queues (one worker, concurrency 4, prefetch multiplier 1), started again at
heal; running tasks are not cancelled on the connection loss (Celery's default), so four are
running when the consumer reconnects. Claim at-least-once (those four are redelivered: their
acks had nowhere to go). The worker skips the reduction, and runs four probes at once again as
soon as it consumes from the new broker; valid. On classic queues (global QoS) the same run
shows the reduction working as designed: one task at a time after the reconnect, then two,
then four, as the tasks received after it are acked (docs/failure-modes.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fm_kit import AT_LEAST_ONCE, executions, fault_window, probe_run, the_fault

from harness.checkers import Validity
from harness.faults import BrokerOutage, Schedule, on_execute, when

pytestmark = [pytest.mark.chaos, pytest.mark.full]

CONCURRENCY = 4
TASK_S = 1.5
#: 0.3 s after the fourth probe started: the pool is full when the broker dies.
KILL = Schedule.of(when(on_execute("probes.work", nth=4, delay_s=0.3), BrokerOutage("kill_restart"), duration_s=0.3))


def _concurrency(spans: list[tuple[float, float]], t: float) -> int:
    return sum(1 for start, end in spans if start <= t < end)


def test_fm12_guard_quorum_queues_keep_the_full_prefetch_after_a_broker_restart(chaos_stack: Any,
                                                                               tmp_path: Path) -> None:
    result, workload = probe_run(chaos_stack, variant={"queue_type": "quorum",
                                                       "cancel_long_running_tasks_on_connection_loss": False},
                                 n=12, seconds=TASK_S, concurrency=CONCURRENCY, schedule=KILL,
                                 expectations=AT_LEAST_ONCE, directory=tmp_path)
    the_fault(result)
    assert result.valid is Validity.TRUE, result.summary()
    log = (tmp_path / "logs" / "w1-1.log").read_text()
    assert "Skipping prefetch count reduction after connection restart" in log  # the #10253 path ran
    spans = [(e["start_s"], e["end_s"]) for tid in workload.submitted.values()
             for e in executions(result, tid) if e.get("end_s") is not None]
    _, healed = fault_window(result)
    before = [s for s, _ in spans if s < healed]
    assert max(_concurrency(spans, s) for s in before) == CONCURRENCY  # the pool was full when the broker died
    first = min(s for s, _ in spans if s >= healed)  # the reconnected consumer's first task
    # Within one task's length of consuming again, the worker runs a full pool at once (no
    # reduced prefetch: on classic queues this is 1 here).
    starts = sorted(s for s, _ in spans if first <= s < first + TASK_S)
    assert len(starts) >= CONCURRENCY and max(_concurrency(spans, s) for s in starts) == CONCURRENCY, spans
