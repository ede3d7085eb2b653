"""Failure mode 18: ``rpc://`` results are not delivered after a RabbitMQ restart.

With the ``rpc://`` result backend a task's result is a message on the publishing client's
reply queue (named after ``app.thread_oid``; only that client reads it). Celery declares that
queue durable (``RPCBackend.binding``) but sends results as *transient* messages unless
``result_persistent`` is set (``delivery_mode = 2 if self.persistent else 1``): a broker
restart keeps the queue and drops every result still waiting in it. The client's
``get(timeout=...)`` then times out for tasks that ran and succeeded (celery #6912 reports
the client never getting results after a restart; Celery 5.7 added the reconnect of the
result consumer, ``ResultConsumer._reconnect``).

Stack: a local stack of its own serving ``rpc://`` (``LocalStackOptions(result_backend="rpc")``).
The client (`harness.run.AwaitResults`) submits three 0.3 s probes; 1.5 s after the third
has applied its effect (its result sent, its message acked) the broker is SIGKILLed and restarted (``BrokerOutage
("kill_restart")``); after the heal the client submits one more probe, then asks every
result with ``get(timeout=...)`` (3 s in the vulnerable run, 10 s otherwise), each ask a
``result`` op judged by the ``results`` checker.

- vulnerable: Celery's default ``result_persistent=False``: the three results sent before the
  restart are gone: ``result_not_delivered`` for each (the task succeeded once); the probe
  submitted after the restart gets its result (the reconnect of #6912 works on 5.7).
- safe: ``result_persistent=True``: the results survive the restart in the durable reply
  queue; every ask returns SUCCESS; valid.

And the report of #6912 itself, as a guard: a synchronous caller (``delay().get()`` for each
task, ``AwaitResults(ask="each")``) whose result consumer was connected before the restart
gets the results of the tasks it submits after it (Celery 5.7's consumer logs "RPC result
consumer: connection lost, attempting to reconnect" and re-subscribes); valid with the
default ``result_persistent=False``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fm_kit import AT_LEAST_ONCE, executions, fault_window, probe_run, publishes, the_fault, violations

from harness.checkers import Validity
from harness.faults import BrokerOutage, Schedule, on_effect, when
from harness.history import F
from harness.run import AwaitResults
from harness.stack.local import LocalStack, LocalStackOptions

pytestmark = [pytest.mark.chaos, pytest.mark.full]

BEFORE = 3  # probes whose results wait in the reply queue when the broker dies
# How long each ask waits. The probe submitted after the heal runs once the worker is back:
# Celery's worker reconnects on kombu's schedule (2, 4, 6 s apart), up to ~8 s after the heal
# on this box. The vulnerable run asks the after-heal probe last, after three lost results.
ASK_TIMEOUT_S = 10.0
LOST_ASK_TIMEOUT_S = 3.0
# 1.5 s after the third probe's effect: its result is sent and its message acked (killed at its
# success, the ack is lost and the probe runs again after the restart, sending a new result).
RESTART = Schedule.of(when(on_effect("probe.done", nth=BEFORE, delay_s=1.5), BrokerOutage("kill_restart"),
                           duration_s=0.5))


@pytest.fixture(scope="module")
def rpc_stack() -> Iterator[LocalStack]:
    with LocalStack(LocalStackOptions(result_backend="rpc")) as stack:
        yield stack


def _run(stack: Any, ask: str = "after_heal", timeout_s: float = ASK_TIMEOUT_S,
         **worker_settings: Any) -> tuple[Any, list[str], str, dict[str, list[Any]]]:
    load = AwaitResults(n_per_kind=BEFORE + 1, timeout_s=timeout_s, after_heal=1 / (BEFORE + 1), ask=ask)
    result, workload = probe_run(stack, n=BEFORE + 1, seconds=0.3, schedule=RESTART, load=load,
                                 expectations=AT_LEAST_ONCE, worker_settings=worker_settings)
    the_fault(result)
    healed = fault_window(result)[1]
    sent = publishes(result)
    before = [t for t in workload.submitted.values() if sent[t][0] < healed]
    after = [t for t in workload.submitted.values() if sent[t][0] > healed]
    assert len(before) == BEFORE and len(after) == 1, (sent, healed)
    asks: dict[str, list[Any]] = {}
    for op in result.history or ():
        if op.f == F.RESULT and op.type.value != "invoke":
            asks.setdefault(op.value["task_id"], []).append(op)
    return result, before, after[0], asks


def test_fm18_vulnerable_transient_rpc_results_are_lost_in_a_broker_restart(rpc_stack: Any) -> None:
    result, before, after, asks = _run(rpc_stack, timeout_s=LOST_ASK_TIMEOUT_S)
    assert result.valid is Validity.FALSE, result.summary()
    lost = {v["task_id"]: v for v in violations(result, "results", "result_not_delivered")}
    assert set(lost) == set(before), result.summary()
    for tid in before:
        assert [e["outcome"] for e in executions(result, tid)] == ["ok"]  # it ran, once, and succeeded
        assert [op.type.value for op in asks[tid]] == ["fail"] and "TimeoutError" in asks[tid][0].error
    assert [(op.type.value, op.value.get("state")) for op in asks[after]] == [("ok", "SUCCESS")]
    # Nothing else is wrong: every task ran once and left its effect.
    assert {name for name, v in result.verdicts.items() if v.valid is Validity.FALSE} == {"results"}


def test_fm18_safe_persistent_rpc_results_survive_a_broker_restart(rpc_stack: Any) -> None:
    result, before, after, asks = _run(rpc_stack, result_persistent=True)
    assert result.valid is Validity.TRUE, result.summary()
    assert {tid: [(op.type.value, op.value.get("state")) for op in ops] for tid, ops in asks.items()} == {
        tid: [("ok", "SUCCESS")] for tid in [*before, after]}
    assert result.verdict("results").counts["delivered"] == BEFORE + 1


def test_fm18_guard_a_caller_connected_before_the_restart_gets_the_results_after_it(
        rpc_stack: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="celery.backends.rpc"):
        result, before, after, asks = _run(rpc_stack, ask="each")
    assert result.valid is Validity.TRUE, result.summary()
    for tid in [*before, after]:
        assert [(op.type.value, op.value.get("state")) for op in asks[tid]] == [("ok", "SUCCESS")]
    asked_at = {tid: ops[0].time / 1e9 for tid, ops in asks.items()}
    applied, healed = fault_window(result)
    assert all(asked_at[tid] < applied for tid in before) and asked_at[after] > healed  # connected, then cut
    assert any("connection lost, attempting to reconnect" in r.getMessage() for r in caplog.records), \
        [r.getMessage() for r in caplog.records]
