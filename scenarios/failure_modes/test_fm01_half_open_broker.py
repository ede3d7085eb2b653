"""Failure mode 1: the worker hangs for good after its broker vanished behind a half-open socket.

A broker host that dies silently (power loss, a VM gone, a firewall or load balancer between
the workers and the broker that never passes the teardown on) leaves the workers' connections
open and silent: no FIN, no RST. Behind a TCP proxy even the kernel's keepalives are answered
(by the proxy). A new broker comes up at the same address and takes publishes; a worker that
does not notice by itself waits on the dead sockets for ever (celery #9705, #2312, #3201,
#4453: "Connection to broker lost", then no reconnect and no consumption).

Fault: `BrokerVanish("worker_broker")`, 0.6 s after the first probe started (it has run and
been acked by then): the broker is SIGKILLed while the
fault proxy withholds the end of the workers' connections; it is started again at heal (the
producers hear the reset and reconnect). The workers' old connections stay half-open until
the run has been observed. Four 0.2 s probes: two under the fault, 2 s apart (the first
runs before the crash, the second is published while the broker is down: the producer's publish
retry waits for the new one), two after the heal. One worker, concurrency 1, claim
at-least-once. Time is compressed: a 2 s AMQP heartbeat stands for RabbitMQ's 60 s, a 3 s
socket read timeout for a minute.

- vulnerable: ``broker_heartbeat=0`` (heartbeats off, as advised for some load balancers and
  for eventlet/gevent pools). Nothing ever tells the worker: the last three probes are never
  executed: ``stuck`` (liveness) and ``lost`` (lost_tasks) for each, ``not_recovered``
  (recovery) for the two published after the heal; the run does not quiesce.
- vulnerable too, Celery 5.7: ``broker_heartbeat=2`` alone (Celery's default confirms, off).
  The worker notices ("Too many heartbeats missed") and reconnects its consumer, but the
  consumer's restart (``Events.start``) first closes the event dispatcher's old connection,
  which is half-open as well: py-amqp's ``Channel.close`` waits for ``CloseOk`` with no
  timeout, and the main thread never comes back (the sockets 5.7 bounds on a reconnect,
  ``bound_open_broker_sockets``, are the consumer connection's only). Same verdict.
- safe: ``broker_heartbeat=2`` and ``broker_transport_options={"confirm_publish": True,
  "read_timeout": 3}`` (SO_RCVTIMEO on every broker socket): the heartbeat notices, the close
  of the dead event connection gives up after 3 s, the worker consumes from the new broker:
  every probe runs (once, in every run so far); valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fm_kit import AT_LEAST_ONCE, executions, probe_run, the_fault, violations

from harness.checkers import Validity
from harness.faults import BrokerVanish, Schedule, on_execute, when

pytestmark = [pytest.mark.chaos, pytest.mark.full]

#: 0.6 s after the first probe started: it has run and been acked, the second is not published yet.
VANISH = Schedule.of(when(on_execute("probes.work", delay_s=0.6), BrokerVanish("worker_broker"), duration_s=0.5))
HEARTBEAT_S = 2.0
#: Bounds every blocking read on a broker socket: the close of a dead connection gives up.
READ_TIMEOUT = {"broker_transport_options": {"confirm_publish": True, "read_timeout": 3}}
#: How long the run waits for the queues to drain: a worker that reconnected runs the probes in ~6 s.
DRAIN_S = 12.0


def _run(stack: Any, directory: Path, heartbeat: float, *, confirm: bool = True,
         worker_settings: dict[str, Any] | None = None) -> tuple[Any, list[str]]:
    result, workload = probe_run(stack, variant={"broker_heartbeat": heartbeat, "confirm_publish": confirm},
                                 worker_settings=worker_settings, n=4, seconds=0.2, submit_interval_s=2.0,
                                 after_heal=0.5, concurrency=1, schedule=VANISH, expectations=AT_LEAST_ONCE,
                                 quiesce_timeout_s=DRAIN_S, directory=directory)
    the_fault(result)
    ids = [workload.submitted[f"{result.run_id}:probe:{i}"] for i in range(4)]
    assert [e["outcome"] for e in executions(result, ids[0])][:1] == ["ok"], result.summary()  # before the crash
    return result, ids


def _assert_never_consumed_again(result: Any, ids: list[str]) -> None:
    assert result.valid is Validity.FALSE, result.summary()
    assert [e["outcome"] for e in executions(result, ids[0])] == ["ok"]
    for tid in ids[1:]:
        assert executions(result, tid) == [], result.summary()
    stuck = {t for v in violations(result, "liveness", "stuck") for t in v["task_ids"]}
    assert stuck == set(ids[1:])
    assert {v["task_id"] for v in violations(result, "lost_tasks", "lost")} == set(ids[1:])
    (not_recovered,) = violations(result, "recovery", "not_recovered")
    # The two probes published to the new broker, after the heal.
    assert len(not_recovered["task_ids"]) == 2 and set(not_recovered["task_ids"]) <= set(ids[1:])
    assert not result.quiesced


def test_fm01_vulnerable_no_heartbeat_waits_for_ever_on_a_vanished_broker(chaos_stack: Any, tmp_path: Path) -> None:
    result, ids = _run(chaos_stack, tmp_path, 0.0, worker_settings=READ_TIMEOUT)
    _assert_never_consumed_again(result, ids)


def test_fm01_vulnerable_heartbeat_alone_hangs_closing_the_dead_event_connection(chaos_stack: Any,
                                                                                 tmp_path: Path) -> None:
    result, ids = _run(chaos_stack, tmp_path, HEARTBEAT_S, confirm=False)
    _assert_never_consumed_again(result, ids)
    log = (tmp_path / "logs" / "w1-1.log").read_text()
    assert "Too many heartbeats missed" in log  # it noticed, and still never consumed again


def test_fm01_safe_heartbeat_and_a_read_timeout_get_the_worker_back(chaos_stack: Any, tmp_path: Path) -> None:
    result, ids = _run(chaos_stack, tmp_path, HEARTBEAT_S, worker_settings=READ_TIMEOUT)
    assert result.valid is Validity.TRUE, result.summary()
    for tid in ids:
        assert "ok" in [e["outcome"] for e in executions(result, tid)], result.summary()
    assert result.verdict("recovery").metrics["time_to_recover_s"] < DRAIN_S
