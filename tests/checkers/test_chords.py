"""chords: the callback runs exactly once, and only after every header completed."""

from __future__ import annotations

from checker_ops import H, kinds

from harness.checkers import Expectations, Validity, check_chords

EXP = Expectations(chords=True)


def headers(h: H, cb: str = "cb", n: int = 2, explicit: bool = False) -> H:
    """n headers running concurrently on distinct children, ending at 10, 20, ... ms."""
    for j in range(n):
        extra = {"chord_id": "c1", "role": "header"} if explicit else {"chord_id": cb}
        h.publish(f"h{j}", "k", at=1 + j * 0.1, **({"chord_id": "c1", "role": "header"} if explicit else {}))
        h.start(f"h{j}", f"w1.child-{j}", at=2 + j * 0.1, **extra)
    for j in range(n):
        h.end(f"h{j}", f"w1.child-{j}", at=10 * (j + 1))
    return h


def callback(h: H, tid: str = "cb", at: float = 50, publisher: str = "w1.child-1", pub_at: float | None = None,
             explicit: bool = False) -> H:
    extra = {"chord_id": "c1", "role": "callback"} if explicit else {}
    h.publish(tid, "k", process=publisher, at=pub_at if pub_at is not None else at - 5, **extra)
    return h.start(tid, "w2.child-1", host="w2", at=at, **extra).end(tid, "w2.child-1", at=at + 1)


def test_celery_convention_chord_completes() -> None:
    v = check_chords(callback(headers(H())).ops, EXP)
    assert v.valid is Validity.TRUE and (v.counts["chords"], v.counts["chords_completed"]) == (1, 1)


def test_explicit_roles_work_too() -> None:
    v = check_chords(callback(headers(H(), explicit=True), explicit=True).ops, EXP)
    assert v.valid is Validity.TRUE and v.counts["chords_completed"] == 1


def test_callback_run_twice() -> None:
    h = callback(headers(H()))
    h.receive("cb", "w3", at=70).start("cb", "w3.child-1", host="w3", at=71).end("cb", "w3.child-1", at=72)
    assert kinds(check_chords(h.ops, EXP)) == [("callback_duplicated", "cb")]


def test_two_callback_task_ids_for_one_chord() -> None:
    h = callback(callback(headers(H(), explicit=True), "cb1", explicit=True), "cb2", at=60, explicit=True)
    assert kinds(check_chords(h.ops, EXP)) == [("callback_duplicated", "c1")]


def test_callback_missing_after_all_headers_succeeded() -> None:
    v = check_chords(headers(H()).publish("cb", "k").ops, EXP)
    assert kinds(v) == [("callback_missing", "cb")]


def test_no_callback_when_a_header_failed_is_correct() -> None:
    h = H().publish("h0", "k").start("h0", chord_id="cb").end("h0", result="fail", state="FAILURE")
    assert check_chords(h.ops, EXP).valid is Validity.TRUE


def test_callback_before_a_header_completed_is_premature() -> None:
    # Published by header 0's process while header 1 (ends at 20 ms) was still running.
    h = callback(headers(H()), at=15, publisher="w1.child-0", pub_at=9)
    v = check_chords(h.ops, EXP)
    assert kinds(v) == [("premature_callback", "cb")] and v.violations()[0]["headers_pending"] == ["h1"]


def test_callback_after_a_failed_header_is_premature() -> None:
    h = (H().publish("h0", "k").start("h0", chord_id="cb").end("h0", result="fail", state="FAILURE")
         .publish("cb", "k").run("cb", "w2.child-1"))
    assert kinds(check_chords(h.ops, EXP)) == [("premature_callback", "cb")]


def test_last_header_publishing_the_callback_may_be_recorded_after_the_callback_starts() -> None:
    # on_chord_part_return publishes the callback before the last header's task_success.
    h = headers(H())
    h.ops = [op for op in h.ops if not (op.f == "execute" and op.type.value == "ok" and op.value["task_id"] == "h1")]
    callback(h, at=20, publisher="w1.child-1", pub_at=19.5)
    h.end("h1", "w1.child-1", at=20.5)
    h.ops.sort(key=lambda op: op.time)
    assert check_chords(h.ops, EXP).valid is Validity.TRUE


def test_chord_size_reveals_a_header_never_seen() -> None:
    h = H().publish("h0", "k", chord_id="c1", role="header", chord_size=2).run("h0")
    callback(h, "cb", at=30, explicit=True)
    assert kinds(check_chords(h.ops, EXP)) == [("premature_callback", "c1")]


def test_no_chord_is_unknown() -> None:
    assert check_chords(H().done("t", "k").ops, EXP).valid is Validity.UNKNOWN


def test_callback_delivered_again_after_a_lost_ack_is_at_least_once_not_a_second_firing() -> None:
    h = callback(headers(H()))
    h.receive("cb", "w3", redelivered=True, at=70).start("cb", "w3.child-1", host="w3", at=71)
    h.end("cb", "w3.child-1", at=72)
    v = check_chords(h.ops, EXP)
    assert v.valid is Validity.TRUE and v.counts["callback_redelivered_allowed"] == 1


def unlock(h: H, tid: str = "u", cb: str = "cb", polls: int = 3, resolve: str | None = None, at: float = 30) -> H:
    """A celery.chord_unlock polling chord `cb`: `polls` retries, then ok (`resolve="ok"`) or nothing."""
    h.publish(tid, "k", name="celery.chord_unlock", at=at)
    for i in range(polls):
        h.start(tid, "w1.child-3", name="celery.chord_unlock", attempt=i, chord_id=cb, role="unlock", at=at + 1 + i)
        h.retry(tid, 1.0, attempt=i, proc="w1.child-3").end(tid, "w1.child-3", result="fail", state="RETRY")
    if resolve is not None:
        h.start(tid, "w1.child-3", name="celery.chord_unlock", attempt=polls, chord_id=cb, role="unlock")
        h.end(tid, "w1.child-3")
    return h


def test_chord_unlock_still_polling_at_the_end_is_a_chord_never_terminal() -> None:
    # The header chain's first step failed without reaching the tail the unlock waits on (mode 13).
    h = unlock(headers(H(), n=1), polls=4)
    v = check_chords(h.ops, EXP)
    assert kinds(v) == [("chord_not_terminal", "cb")]
    ce = v.violations()[0]
    assert ce["unlock_task_ids"] == ["u"] and ce["unlock_polls"] == 4 and ce["unlock_retries"] == 4
    assert v.counts["chords_completed"] == 0


def test_chord_unlock_that_recorded_the_chord_error_ended_the_chord() -> None:
    h = unlock(headers(H(), n=1), polls=2, resolve="ok").chord_error("cb", "k", proc="w1.child-3")
    v = check_chords(h.ops, EXP)
    assert v.valid is Validity.TRUE, v.violations()
    assert (v.counts["chords_failed"], v.counts["chords_completed"], v.counts["chord_not_terminal"]) == (1, 0, 0)


def test_chord_unlock_that_published_the_callback_completes_the_chord() -> None:
    h = unlock(headers(H()), polls=1, resolve="ok")
    callback(h, at=60, publisher="w1.child-3", pub_at=55)
    v = check_chords(h.ops, EXP)
    assert v.valid is Validity.TRUE and v.counts["chords_completed"] == 1


def test_chord_error_from_a_header_chain_is_a_terminal_failure_not_a_missing_callback() -> None:
    # Native join (Redis): the chain in the header failed at its first step, which carries no
    # chord id; the known header succeeded; Celery recorded the chord's error from that process.
    h = headers(H(), n=1).publish("c0", "k").start("c0", "w1.child-2").end("c0", "w1.child-2", result="fail",
                                                                         state="FAILURE")
    h.chord_error("cb", "k", by="tasks.t", proc="w1.child-2")
    v = check_chords(h.ops, EXP)
    assert v.valid is Validity.TRUE and v.counts["chords_failed"] == 1


def test_without_a_recorded_chord_error_the_missing_callback_is_still_reported() -> None:
    h = headers(H(), n=1).publish("c0", "k").start("c0", "w1.child-2").end("c0", "w1.child-2", result="fail",
                                                                         state="FAILURE")
    assert kinds(check_chords(h.ops, EXP)) == [("callback_missing", "cb")]
