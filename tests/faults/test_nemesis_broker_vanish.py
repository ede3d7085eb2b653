"""broker_vanish against the real local stack: the broker killed and started again, the end of the
workers' connections withheld (half-open) until the nemesis is released."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import amqp
import pytest
from broker_probes import amqp_ok

from harness.faults import BrokerVanish
from harness.faults.drivers import driver_for
from harness.faults.nemesis import Nemesis
from harness.history import F, OpType, read_history
from harness.stack.base import Role

pytestmark = pytest.mark.chaos


def _connect(url: str) -> amqp.Connection:
    creds, hostport = url.split("://", 1)[1].split("@", 1)
    user, password = creds.split(":", 1)
    conn = amqp.Connection(host=hostport.split("/", 1)[0], userid=user, password=password, virtual_host="/",
                           heartbeat=0, connect_timeout=5)
    conn.connect()
    return conn


def _hears(conn: amqp.Connection, within_s: float) -> str:
    """What `conn` hears within `within_s`: "nothing" (a read timeout) or "closed" (EOF, reset)."""
    try:
        conn.drain_events(timeout=within_s)
    except TimeoutError:
        return "nothing"
    except (OSError, amqp.exceptions.AMQPError):
        return "closed"
    return "a frame"


def test_broker_vanish_leaves_the_roles_connections_half_open_until_released(chaos_stack: Any,
                                                                              tmp_path: Path) -> None:
    urls = chaos_stack.urls
    worker = _connect(urls.url_for(Role.WORKER_BROKER))
    producer = _connect(urls.url_for(Role.PRODUCER_BROKER))
    n = Nemesis(chaos_stack, history_dir=tmp_path / "history")
    try:
        with n.fault(BrokerVanish("worker_broker")) as applied:
            assert not chaos_stack.broker.is_running()
            assert applied.effect["reset"] == ["producer_broker"]
            assert _hears(producer, 5.0) == "closed", "the other role hears the crash"
            assert _hears(worker, 1.0) == "nothing", "the role's connection stays open and silent"
        assert chaos_stack.broker.is_running()
        assert amqp_ok(urls.url_for(Role.WORKER_BROKER), timeout=5.0), "new connections reach the new broker"
        worker.send_heartbeat()  # writing to it still succeeds: nothing tells the client
        assert _hears(worker, 1.0) == "nothing", "healed, the old connection is still half-open"
        released = n.release()
        assert not released["errors"] and list(released["released"]) == [applied.id]
        assert _hears(worker, 5.0) == "closed", "released: the withheld end of the connection arrives"
        assert amqp_ok(urls.url_for(Role.WORKER_BROKER), timeout=5.0)
    finally:
        n.close()
        for c in (worker, producer):
            try:
                c.collect()
            except Exception:  # noqa: BLE001, S110 - already gone
                pass
    ops = [op for op in read_history(tmp_path / "history") if op.process == "nemesis"]
    stop = next(op for op in ops if op.f == F.FAULT_STOP and op.type is OpType.OK)
    assert stop.value["action"] == "started" and len(stop.value["left_until_release"]) == 1
    assert not driver_for(BrokerVanish()).cuts_running_tasks
