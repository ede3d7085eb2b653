"""dlq: every fatal failure in the DLQ exactly once, nothing there that completed."""

from __future__ import annotations

from checker_ops import H, kinds

from harness.checkers import Expectations, RetryPolicy, Validity, check_dlq

EXP = Expectations(dead_letter_queue=True, retry_policy=RetryPolicy(max_retries=1))


def failed(tid: str, dlq_entries: int) -> H:
    h = (H().publish(tid, "k").start(tid, attempt=0).end(tid, result="fail", state="RETRY")
         .start(tid, attempt=1).end(tid, result="fail", state="FAILURE"))
    for _ in range(dlq_entries):
        h.dlq(tid, "k")
    return h


def test_failed_task_dead_lettered_once() -> None:
    v = check_dlq(failed("t", 1).ops, EXP)
    assert v.valid is Validity.TRUE
    assert (v.counts["failed"], v.counts["retries_exhausted"], v.counts["dead_lettered"]) == (1, 1, 1)


def test_missing_and_duplicated() -> None:
    assert kinds(check_dlq(failed("t", 0).ops, EXP)) == [("missing_from_dlq", "t")]
    assert kinds(check_dlq(failed("t", 2).ops, EXP)) == [("duplicated_in_dlq", "t")]


def test_without_a_dlq_failures_need_not_be_there() -> None:
    v = check_dlq(failed("t", 0).ops, Expectations())
    assert v.valid is Validity.TRUE and any("dead_letter_queue is False" in n for n in v.notes)


def test_completed_task_in_the_dlq() -> None:
    h = H().done("t", "k").dlq("t", "k")
    assert kinds(check_dlq(h.ops, EXP)) == [("completed_and_dlq", "t")]


def test_a_redelivered_success_after_a_failure_is_not_a_failure() -> None:
    h = (H().publish("t", "k").start("t").end("t", result="fail", state="FAILURE")
         .receive("t", redelivered=True).run("t"))
    v = check_dlq(h.ops, EXP)
    assert v.valid is Validity.UNKNOWN and v.counts["failed"] == 0


def test_other_dead_letters_are_counted() -> None:
    h = H().publish("t", "k").op("worker-w1", "ok", "reject", {"task_id": "t", "requeue": False}).dlq("t", "k")
    v = check_dlq(h.ops, EXP)
    assert v.valid is Validity.TRUE and v.counts["dead_lettered_other"] == 1


def test_nothing_failed_is_unknown() -> None:
    assert check_dlq(H().done("t", "k").ops, EXP).valid is Validity.UNKNOWN
