"""lost_tasks: acknowledged publishes that never finished, recovered indeterminate ones, unexpected."""

from __future__ import annotations

from checker_ops import H, kinds

from harness.checkers import Expectations, Validity, check_lost_tasks
from harness.checkers.claim import Claim


def test_every_acknowledged_publish_finished() -> None:
    h = H().done("t1", "k1").done("t2", "k2")
    h.publish("t3", "k3").receive("t3").start("t3").end("t3", result="fail", state="FAILURE")  # terminal failure
    h.publish("t4", "k4").dlq("t4")
    h.publish("t5", "k5").op("worker-w1", "ok", "revoke", {"task_id": "t5"})
    v = check_lost_tasks(h.ops, Expectations())
    assert v.valid is Validity.TRUE
    assert (v.counts["acknowledged"], v.counts["succeeded"], v.counts["failed"], v.counts["dead_lettered"],
            v.counts["revoked"], v.counts["lost"]) == (5, 2, 1, 1, 1, 0)


def test_acknowledged_but_never_finished_is_lost_with_its_history() -> None:
    h = H().done("t1", "k1").publish("t2", "k2").receive("t2")
    h.publish("t3", "k3").start("t3").end("t3", result="fail", state="RETRY")   # retried, never again
    v = check_lost_tasks(h.ops, Expectations())
    assert v.valid is Validity.FALSE
    assert kinds(v) == [("lost", "t2"), ("lost", "t3")]
    ce = v.violations()[0]
    assert [op["f"] for op in ce["ops"]] == ["publish", "publish", "receive"]
    assert ce["last_op"] == "receive ok by worker-w1"


def test_early_acks_explain_a_loss_the_default_claim_does_not_allow() -> None:
    h = H().publish("t1", "k1").receive("t1").start("t1", "w1.child-1", host="w1")
    h.fault("kill_worker", "f1", hostname="w1")
    early = check_lost_tasks(h.ops, Expectations(acks_late=False))
    assert early.valid is Validity.FALSE and kinds(early) == [("lost", "t1")]
    ce = early.violations()[0]
    assert ce["killed_by"]["fault_id"] == "f1" and ce["setting"] == "task_acks_late"
    assert "task_acks_late=True" in ce["fix"] and "task_reject_on_worker_lost=True" in ce["fix"]
    weak = check_lost_tasks(h.ops, Expectations(acks_late=False, claim=Claim(delivery="at-most-once")))
    assert weak.valid is Validity.TRUE and weak.counts["lost_allowed_by_claim"] == 1
    assert weak.counterexamples[0]["allowed_by"] == "claim"
    late = check_lost_tasks(h.ops, Expectations(acks_late=True))
    assert late.valid is Validity.FALSE and kinds(late) == [("lost", "t1")] and "setting" not in late.violations()[0]


def test_a_prefetched_task_lost_on_a_kill_is_a_violation_even_with_early_acks() -> None:
    # Received (prefetched, unacked) but not started: the broker must redeliver it.
    h = H().publish("t1", "k1").receive("t1", "w1").fault("kill_worker", "f1", hostname="w1")
    assert check_lost_tasks(h.ops, Expectations()).valid is Validity.FALSE


def test_late_acks_child_kill_without_reject_is_named_as_the_cause() -> None:
    h = (H().publish("t1", "k1").start("t1", "worker-w1.child-1").worker_lost("t1")
         .end("t1", "worker-w1.child-1", result="info", state="WORKER_LOST"))
    late = check_lost_tasks(h.ops, Expectations(acks_late=True))
    assert late.valid is Validity.FALSE and late.violations()[0]["setting"] == "task_reject_on_worker_lost"
    strict = Expectations(acks_late=True, reject_on_worker_lost=True)
    assert kinds(check_lost_tasks(h.ops, strict)) == [("lost", "t1")]


def test_indeterminate_publish_is_never_lost_and_recovered_when_it_ran() -> None:
    h = H().publish("t1", "k1", result="info").publish("t2", "k2", result="info").run("t2")
    h.publish("t3", "k3", result="none")  # the producer died before the confirm
    v = check_lost_tasks(h.ops, Expectations())
    assert v.valid is Validity.TRUE
    assert (v.counts["maybe_published"], v.counts["recovered_allowed"], v.counts["lost"]) == (3, 1, 0)


def test_unexpected_tasks() -> None:
    h = H(run_id="r1").done("t1", "k1")
    h.receive("ghost").run("ghost")                          # never published
    h.publish("nope", "k2", result="fail").run("nope")       # known not sent, yet ran
    h.run_id = "r0"
    h.run("leftover")                                        # another run's message
    v = check_lost_tasks(h.ops, Expectations(run_id="r1"))
    assert v.valid is Validity.FALSE
    assert kinds(v) == [("unexpected", "ghost"), ("unexpected", "leftover"), ("unexpected", "nope")]
    assert v.counts["foreign_ops"] == 2


def test_failed_publish_that_never_ran_is_fine() -> None:
    h = H().done("t1", "k1").publish("t2", "k2", result="fail")
    v = check_lost_tasks(h.ops, Expectations())
    assert v.valid is Validity.TRUE and v.counts["publish_failed"] == 1


def test_nothing_published_is_unknown_not_a_pass() -> None:
    v = check_lost_tasks(H().fault("kill_worker", "f").ops, Expectations())
    assert v.valid is Validity.UNKNOWN and "no publish" in v.notes[0]
    assert check_lost_tasks([], Expectations(require_fault_bite=False)).valid is Validity.TRUE
