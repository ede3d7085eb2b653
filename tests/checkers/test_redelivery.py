"""redelivery: under late acks a task executing when its worker died comes back and finishes."""

from __future__ import annotations

from checker_ops import H, kinds

from harness.checkers import Expectations, Validity, check_redelivery
from harness.checkers.claim import Claim

LATE = Expectations(acks_late=True)
LATE_REJECT = Expectations(acks_late=True, reject_on_worker_lost=True)


def killed_worker() -> H:
    """t1 executing on w1 when w1 is SIGKILLed; t2 had finished before."""
    return (H().done("t2", "k2").publish("t1", "k1").receive("t1", "w1").start("t1", "w1.child-1", host="w1", at=10)
            .fault("kill_worker", "f1", at=20, stop_at=30, hostname="w1"))


def test_killed_task_redelivered_and_completed() -> None:
    h = killed_worker().receive("t1", "w2", redelivered=True, at=40).run("t1", "w2.child-1", host="w2", at=41)
    v = check_redelivery(h.ops, LATE)
    assert v.valid is Validity.TRUE
    assert (v.counts["in_flight_at_kill"], v.counts["redelivered"], v.counts["redelivered_flag_missing"]) == (1, 1, 0)


def test_missing_redelivered_flag_is_counted_not_failed() -> None:
    h = killed_worker().receive("t1", "w2", at=40).run("t1", "w2.child-1", host="w2", at=41)
    v = check_redelivery(h.ops, LATE)
    assert v.valid is Validity.TRUE and v.counts["redelivered_flag_missing"] == 1


def test_not_redelivered() -> None:
    v = check_redelivery(killed_worker().ops, LATE)
    assert v.valid is Validity.FALSE and kinds(v) == [("not_redelivered", "t1")]
    assert v.violations()[0]["killed_by"]["kind"] == "kill_worker"


def test_redelivered_but_never_completed() -> None:
    h = killed_worker().receive("t1", "w2", redelivered=True, at=40).start("t1", "w2.child-1", host="w2", at=41)
    v = check_redelivery(h.ops, LATE)
    assert kinds(v) == [("redelivered_not_completed", "t1")]


def test_redelivered_until_dead_lettered_counts_as_redelivered() -> None:
    h = killed_worker().dlq("t1", "k1", at=50)
    assert check_redelivery(h.ops, LATE).valid is Validity.TRUE


def test_child_kill_needs_reject_on_worker_lost() -> None:
    h = (H().publish("t1", "k1").start("t1", "worker-w1.child-1", at=1).worker_lost("t1", at=2)
         .end("t1", "worker-w1.child-1", result="info", at=2.1))
    assert kinds(check_redelivery(h.ops, LATE_REJECT)) == [("not_redelivered", "t1")]
    late_only = check_redelivery(h.ops, LATE)   # Celery acks it as failed: the claim is still violated
    assert kinds(late_only) == [("not_redelivered", "t1")]
    assert late_only.violations()[0]["setting"] == "task_reject_on_worker_lost"


def test_vacuous_cases_are_unknown() -> None:
    nothing_in_flight = H().done("t2", "k2").fault("kill_worker", "f1", stop_at=9, hostname="w1")
    v = check_redelivery(nothing_in_flight.ops, LATE)
    assert v.valid is Validity.UNKNOWN and "no task was executing" in v.notes[0]
    assert "no worker was killed" in check_redelivery(H().done("t", "k").ops, LATE).notes[0]
    weak = check_redelivery(killed_worker().ops, Expectations(claim=Claim(delivery="at-most-once")))
    assert weak.valid is Validity.UNKNOWN and "at-most-once" in weak.notes[0]
    vacuous_ok = check_redelivery(nothing_in_flight.ops, Expectations(acks_late=True, require_fault_bite=False))
    assert vacuous_ok.valid is Validity.TRUE and "vacuous" in vacuous_ok.notes[0]


def test_kill_targeting_another_worker_does_not_cut() -> None:
    h = (H().publish("t1", "k1").start("t1", "w2.child-1", host="w2", at=10)
         .fault("kill_worker", "f1", at=20, hostname="w1").end("t1", "w2.child-1", at=30))
    assert check_redelivery(h.ops, LATE).valid is Validity.UNKNOWN


def test_poison_message_loop_bound() -> None:
    h = H().publish("t", "k")
    for i in range(4):
        h.receive("t", redelivered=i > 0).start("t").end("t", result="info")
    h.run("t")
    v = check_redelivery(h.ops, Expectations(acks_late=True, max_deliveries=3, require_fault_bite=False))
    assert kinds(v) == [("redelivery_loop", "t")] and v.violations()[0]["executions"] == 5


def _reserved_then_kill(back: bool) -> list:
    from harness.history.ops import F, Op, OpType

    t = {"task_id": "t1", "hostname": "w1", "key": "k1"}
    ops = [Op(0, 0, "p", OpType.OK, F.PUBLISH, t),
           Op(1, 1, "worker-w1", OpType.OK, F.RECEIVE, {**t, "redelivered": False}),
           Op(2, 5, "nemesis", OpType.OK, F.FAULT_START, {"kind": "kill_worker", "hostname": "w1",
                                                           "cuts_running_tasks": True})]
    if back:
        ops += [Op(3, 9, "worker-w1", OpType.OK, F.RECEIVE, {**t, "redelivered": True}),
                Op(4, 10, "w1.child-9", OpType.INVOKE, F.EXECUTE, t),
                Op(5, 11, "w1.child-9", OpType.OK, F.EXECUTE, t)]
    return ops


def test_a_task_the_killed_worker_held_unstarted_must_come_back() -> None:
    from harness.checkers import Expectations, Validity, check_redelivery

    exp = Expectations(acks_late=True)
    v = check_redelivery(_reserved_then_kill(back=True), exp)
    assert v.valid is Validity.TRUE and (v.counts["reserved_at_kill"], v.counts["reserved_redelivered"]) == (1, 1)
    v = check_redelivery(_reserved_then_kill(back=False), exp)
    assert v.valid is Validity.FALSE
    (ce,) = v.violations()
    assert (ce["kind"], ce["task_id"], ce["state_at_kill"]) == ("not_redelivered", "t1", "reserved")
