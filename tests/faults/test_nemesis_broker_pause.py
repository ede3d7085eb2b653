"""broker_pause against the real local stack: the broker frozen (connections open, no answer), then thawed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from broker_probes import amqp_ok

from harness.faults import BrokerPause
from harness.faults.drivers import driver_for
from harness.faults.nemesis import Nemesis
from harness.history import F, OpType, read_history
from harness.stack.base import Role

pytestmark = pytest.mark.chaos



def _state(pid: int) -> str:
    # /proc/<pid>/stat: "pid (comm) S ...": the state follows the last ")".
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_broker_pause_freezes_the_broker_and_thaws_it_at_heal(chaos_stack: Any, tmp_path: Path) -> None:
    if chaos_stack.provider != "local":
        pytest.skip("the SIGSTOP path is the local provider's (containers: docker pause)")
    url = chaos_stack.urls.url_for(Role.WORKER_BROKER)
    pids = list(chaos_stack.broker.pids)
    n = Nemesis(chaos_stack, history_dir=tmp_path / "history")
    try:
        with n.fault(BrokerPause()) as applied:
            assert applied.effect["signal"] == "SIGSTOP" and applied.effect["process_groups"] == pids
            assert {_state(p) for p in pids} == {"T"}, "every broker process is stopped"
            t = time.monotonic()
            assert not amqp_ok(url, timeout=1.0), "a frozen broker answers no handshake"
            assert time.monotonic() - t >= 0.9, "the connection hangs (accepted, never answered), not refused"
        assert "T" not in {_state(p) for p in pids}
        assert amqp_ok(url, timeout=5.0)
    finally:
        n.close()
    ops = [op for op in read_history(tmp_path / "history") if op.process == "nemesis"]
    start = next(op for op in ops if op.f == F.FAULT_START and op.type is OpType.OK)
    assert start.value["kind"] == "broker_pause" and "cuts_running_tasks" not in start.value
    assert any(op.f == F.FAULT_STOP and op.type is OpType.OK for op in ops)
    assert not driver_for(BrokerPause()).cuts_running_tasks  # frozen tasks are late, not cut
