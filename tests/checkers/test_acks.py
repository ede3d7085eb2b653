"""The ack ledger checker on literal histories."""

from __future__ import annotations

from harness.checkers import Expectations, check_acks, check_all, default_checkers
from harness.checkers.index import build_index
from harness.history.ops import F, Op, OpType

EXACTLY_ONCE = Expectations(allow_duplicate_executions=False)


def _task(tid: str, *, ack: str | None, after: str = "success", start: int = 0, **flags: object) -> list[Op]:
    v = {"task_id": tid, "key": f"k-{tid}", "name": "probes.work"}
    ack_v = {**v, "after": after, "acks_late": True, **flags}
    ops = [Op(0, start + 1, "p", OpType.INVOKE, F.PUBLISH, v), Op(0, start + 2, "p", OpType.OK, F.PUBLISH, v),
           Op(0, start + 3, "w-1", OpType.OK, F.RECEIVE, v),
           Op(0, start + 4, "w-1.child-2", OpType.INVOKE, F.EXECUTE, v),
           Op(0, start + 5, "w-1.child-2", OpType.OK if after != "time_limit" else OpType.INFO, F.EXECUTE, v),
           Op(0, start + 6, "w-1", OpType.INVOKE, F.ACK, ack_v)]
    if ack is not None:
        ops.append(Op(0, start + 7, "w-1", OpType(ack), F.ACK, ack_v, error=None if ack == "ok" else "closed"))
    return ops


def _final(**queues: tuple[int, int]) -> Op:
    left = {q: {"ready": r, "unacked": u} for q, (r, u) in queues.items()}
    return Op(0, 10**6, "harness", OpType.OK, F.PHASE, {"phase": "final_state", "queues_left": left})


def test_a_completion_whose_ack_failed_is_unsettled_under_exactly_once_and_allowed_under_at_least_once():
    h = _task("t1", ack="fail")
    v = check_acks(h, EXACTLY_ONCE)
    (ce,) = v.violations()
    assert (ce["kind"], ce["task_id"], ce["after"]) == ("unsettled_completion", "t1", "success")
    assert "consumer_timeout" in ce["setting"]
    allowed = check_acks(h, Expectations())
    assert allowed.valid.value == "true" and allowed.counts["unsettled_completion_allowed"] == 1


def test_an_ack_asked_for_and_never_sent_is_unsettled_too():
    (ce,) = check_acks(_task("t1", ack=None), EXACTLY_ONCE).violations()
    assert ce["kind"] == "unsettled_completion" and ce["task_id"] == "t1"


def test_a_failed_ack_followed_by_a_redelivery_is_the_duplicates_checkers_business():
    h = _task("t1", ack="fail") + [Op(0, 50, "w-3", OpType.OK, F.RECEIVE, {"task_id": "t1", "redelivered": True})]
    v = check_acks(h, EXACTLY_ONCE)
    assert v.valid.value == "true" and v.counts["redelivered_after_failed_ack"] == 1


def test_acks_that_went_out_are_valid_and_counted():
    v = check_acks(_task("t1", ack="ok") + _task("t2", ack="ok", start=10) + [_final(default=(0, 0))], EXACTLY_ONCE)
    assert v.valid.value == "true" and v.counts["acks"] == 2 and v.counts["after_success"] == 2


def test_messages_left_in_a_work_queue_are_reported_even_when_every_ack_looked_sent():
    # AMQP acks are not confirmed: the queue after the run is the broker's word.
    h = _task("t1", ack="ok") + [_final(default=(2, -1))]
    (ce,) = check_acks(h, EXACTLY_ONCE).violations()
    assert ce["kind"] == "messages_left" and ce["messages"] == 2 and ce["queues"] == {"default": {"ready": 2,
                                                                                                 "unacked": -1}}


def test_an_ack_on_hard_time_limit_against_acks_on_timeout_false_is_a_violation():
    h = _task("t1", ack="ok", after="time_limit", acks_on_timeout=False)
    (ce,) = check_acks(h, Expectations()).violations()
    assert ce["kind"] == "acked_on_timeout" and ce["task_id"] == "t1" and "9596" in ce["cause"]
    ok = check_acks(_task("t1", ack="ok", after="time_limit", acks_on_timeout=True), Expectations())
    assert ok.valid.value == "true"


def test_the_acks_checker_runs_by_default_only_when_the_history_holds_acks():
    assert "acks" in default_checkers(Expectations(), build_index(_task("t1", ack="ok")))
    assert "acks" not in default_checkers(Expectations(), build_index(_task("t1", ack="ok")[:5]))
    assert "acks" in check_all(_task("t1", ack="ok"), Expectations(require_fault_bite=False))
