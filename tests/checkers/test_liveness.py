"""liveness: every published workload key reaches a terminal state, the expected one."""

from __future__ import annotations

from checker_ops import H, kinds

from harness.checkers import Expectations, Validity, check_liveness
from harness.checkers.claim import Claim


def test_chain_key_complete_when_every_step_is() -> None:
    h = H().publish("s1", "k").run("s1").publish("s2", "k", process="w1.child-1").run("s2")
    v = check_liveness(h.ops, Expectations(expected_outcomes={"k": "complete"}))
    assert v.valid is Validity.TRUE and v.counts["outcome_complete"] == 1


def test_a_stuck_step_makes_the_key_stuck() -> None:
    h = H().publish("s1", "k").run("s1").publish("s2", "k", process="w1.child-1")
    v = check_liveness(h.ops, Expectations())
    assert kinds(v) == [("stuck", "k")] and v.violations()[0]["task_ids"] == ["s2"]


def test_wrong_outcome() -> None:
    h = (H().done("a", "ka").publish("b", "kb").start("b").end("b", result="fail", state="FAILURE").dlq("b", "kb")
         .publish("c", "kc").start("c").end("c", result="fail", state="FAILURE"))
    exp = Expectations(expected_outcomes={"ka": "dlq", "kb": "dlq", "kc": "dlq"})
    v = check_liveness(h.ops, exp)
    assert [(c["key"], c["actual"]) for c in v.violations()] == [("ka", "complete"), ("kc", "failed")]


def test_a_loss_is_stuck_work_unless_the_claim_allows_it() -> None:
    h = H().publish("t", "k").start("t", "w1.child-1", host="w1").fault("kill_worker", "f", hostname="w1")
    early = check_liveness(h.ops, Expectations())
    assert early.valid is Validity.FALSE and early.violations()[0]["setting"] == "task_acks_late"
    assert check_liveness(h.ops, Expectations(acks_late=True)).valid is Validity.FALSE
    weak = check_liveness(h.ops, Expectations(claim=Claim(delivery="at-most-once")))
    assert weak.valid is Validity.TRUE and weak.counts["stuck_allowed_by_claim"] == 1


def test_indeterminate_and_failed_publishes_are_not_stuck() -> None:
    h = H().done("a", "ka").publish("b", "kb", result="info").publish("c", "kc", result="fail")
    v = check_liveness(h.ops, Expectations())
    assert v.valid is Validity.TRUE and (v.counts["indeterminate"], v.counts["not_sent"]) == (1, 1)


def test_expected_key_never_published_is_unknown() -> None:
    v = check_liveness(H().done("a", "ka").ops, Expectations(expected_outcomes={"ka": "complete", "kz": "complete"}))
    assert v.valid is Validity.UNKNOWN and "never published" in v.notes[0]


def test_a_task_acked_on_its_hard_time_limit_explains_its_wrong_outcome() -> None:
    from harness.history.ops import F

    h = H().publish("t", "k").receive("t").start("t").end("t", result="info", state="TIME_LIMIT")
    h.op("worker-w1", "invoke", F.ACK, h._v("t", after="time_limit", acks_late=True, acks_on_timeout=True))
    h.publish("u", "ku").receive("u").start("u").end("u", result="fail", state="FAILURE")
    v = check_liveness(h.ops, Expectations(expected_outcomes={"k": "complete", "ku": "complete"}))
    timed_out, failed = v.violations()
    assert (timed_out["key"], timed_out["actual"]) == ("k", "failed")
    assert "task_acks_on_timeout" in timed_out["setting"] and "hard time limit" in timed_out["cause"]
    assert "task_acks_on_timeout=False" in timed_out["fix"]
    assert failed["key"] == "ku" and "setting" not in failed  # a plain failure is not explained so
