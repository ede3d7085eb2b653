"""The redelivery checker on a kill triggered by a held success (``on_success(hold_s=...)``)."""

from __future__ import annotations

from harness.checkers import Expectations
from harness.checkers.redelivery import check_redelivery
from harness.history.ops import F, Op, OpType


def _history(redelivered: bool) -> list[Op]:
    t = {"task_id": "t1", "name": "probes.work", "hostname": "w1@h"}
    ops = [Op(0, 0, "producer", OpType.OK, F.PUBLISH, t),
           Op(1, 1, "w1", OpType.OK, F.RECEIVE, {**t, "redelivered": False}),
           Op(2, 2, "w1.child-5", OpType.INVOKE, F.EXECUTE, t),
           Op(3, 3, "w1.child-5", OpType.OK, F.EXECUTE, {**t, "state": "SUCCESS"}),
           Op(4, 4, "nemesis", OpType.INVOKE, F.FAULT_START,
              {"fault_id": "f1", "kind": "kill_worker",
               "event": {"f": "execute", "type": "ok", "task_id": "t1", "held": True}}),
           Op(5, 5, "nemesis", OpType.OK, F.FAULT_START,
              {"fault_id": "f1", "kind": "kill_worker", "hostnames": ["w1@h"], "hostname": "w1@h",
               "scope": "worker", "cuts_running_tasks": True})]
    if redelivered:
        ops.append(Op(6, 6, "w1b", OpType.OK, F.RECEIVE, {**t, "redelivered": True}))
    return ops


def test_a_held_success_redelivered_and_deduplicated_is_redelivered() -> None:
    v = check_redelivery(_history(True), Expectations(acks_late=True, reject_on_worker_lost=True))
    assert v.valid.value == "true", v
    assert v.counts["reserved_at_kill"] == 1 and v.counts["reserved_redelivered"] == 1


def test_a_held_success_never_delivered_again_is_not_redelivered() -> None:
    v = check_redelivery(_history(False), Expectations(acks_late=True, reject_on_worker_lost=True))
    assert v.valid.value == "false", v
    (c,) = v.violations()
    assert c["kind"] == "not_redelivered" and c["state_at_kill"] == "succeeded_unacked" and c["task_id"] == "t1"
