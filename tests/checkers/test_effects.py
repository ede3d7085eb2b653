"""The effects checker on synthetic histories: declared effects against the store's final contents."""

from __future__ import annotations

from typing import Any

from checker_ops import H

from harness.checkers import Claim, Expectations, Validity, check_dlq, check_effects


def read(h: H, *records: dict[str, Any], ok: bool = True, dlq: bool = True) -> H:
    for r in records:
        h.op("harness", "ok", "stored_effect", r)
    return h.op("harness", "ok", "phase", {"phase": "final_state", "effects_read": ok, "dlq_read": dlq,
                                           **({} if ok else {"effects_error": "OperationalError: no such table"})})


def rec(key: str, kind: str, idem: str, task_id: str = "t") -> dict[str, Any]:
    return {"key": key, "kind": kind, "idempotency_key": idem, "task_id": task_id}


EXP = Expectations(declared_effects={"k1": ("payment:k1", "email:k1")})


def test_every_declared_effect_present_once_is_valid() -> None:
    h = read(H().done("t", "k1"), rec("k1", "payment", "payment:k1"), rec("k1", "email", "email:k1"))
    v = check_effects(h.ops, EXP)
    assert v.valid is Validity.TRUE and v.counts["effects_present"] == 2


def test_a_task_that_reported_success_without_its_effect_is_named() -> None:
    h = read(H().done("t", "k1", name="shop.charge"), rec("k1", "payment", "payment:k1"))
    v = check_effects(h.ops, EXP)
    assert v.valid is Validity.FALSE
    ce = v.violations()[0]
    assert (ce["kind"], ce["effect"], ce["reported_success"][0]["task_id"]) == ("missing_effect", "email:k1", "t")
    # No claim excuses a success whose effect is not there.
    assert check_effects(h.ops, Expectations(declared_effects=EXP.declared_effects,
                                             claim=Claim(delivery="at-most-once"))).valid is Validity.FALSE


def test_an_empty_store_is_a_violation_not_a_pass() -> None:
    v = check_effects(read(H().done("t", "k1")).ops, EXP)
    assert v.valid is Validity.FALSE and v.counts["missing_effect"] == 2


def test_copies_under_different_keys_are_one_duplicated_effect() -> None:
    h = read(H().done("t", "k1"), rec("k1", "payment", "payment:k1"), rec("k1", "payment", "pay-3f2a", "t2"),
             rec("k1", "email", "email:k1"))
    v = check_effects(h.ops, EXP)
    assert v.valid is Validity.FALSE
    ce = v.violations()[0]
    assert (ce["kind"], ce["effect"], ce["stored"], ce["written_under"]) == (
        "duplicate_effect", "payment:k1", 2, ["pay-3f2a", "payment:k1"])
    weak = check_effects(h.ops, Expectations(declared_effects=EXP.declared_effects,
                                             claim=Claim(effects="at-least-once")))
    assert weak.valid is Validity.TRUE and weak.counts["duplicate_effect_allowed_by_claim"] == 1


def test_an_effect_written_under_another_key_still_counts_as_present() -> None:
    h = read(H().done("t", "k1"), rec("k1", "payment", "txn-991"), rec("k1", "email", "email:k1"))
    assert check_effects(h.ops, EXP).valid is Validity.TRUE


def test_a_lost_unit_lacks_its_effects_only_by_an_at_most_once_claim() -> None:
    h = read(H().publish("t", "k1").start("t", "w1.child-1", host="w1").fault("kill_worker", "f", hostname="w1"))
    strict = check_effects(h.ops, EXP)
    assert strict.valid is Validity.FALSE and strict.violations()[0]["setting"] == "task_acks_late"
    weak = check_effects(h.ops, Expectations(declared_effects=EXP.declared_effects,
                                             claim=Claim(delivery="at-most-once")))
    assert weak.valid is Validity.TRUE and weak.counts["missing_effect_allowed_by_claim"] == 2


def test_no_declared_effects_or_no_read_is_unknown_never_valid() -> None:
    h = read(H().done("t", "k1"))
    assert check_effects(h.ops, Expectations(declared_effects={"k1": ()})).valid is Validity.UNKNOWN
    failed_read = check_effects(read(H().done("t", "k1"), ok=False).ops, EXP)
    assert failed_read.valid is Validity.UNKNOWN and "no such table" in failed_read.notes[0]
    assert check_effects(H().done("t", "k1").ops, EXP).valid is Validity.UNKNOWN


def test_a_unit_known_not_sent_leaves_no_effect() -> None:
    h = read(H().publish("t", "k1", result="fail"))
    assert check_effects(h.ops, EXP).counts["units_not_sent"] == 1


def entry(tid: str, key: str, **extra: Any) -> dict[str, Any]:
    return {"task_id": tid, "key": key, "name": "shop.charge", "exception": "ValueError('bad card')", **extra}


def failed(h: H, tid: str, key: str) -> H:
    return h.publish(tid, key).start(tid).end(tid, result="fail", state="FAILURE")


def test_the_dlq_is_judged_on_what_it_holds_after_the_drain() -> None:
    exp = Expectations(dead_letter_queue=True, expected_outcomes={"k1": "dlq"})
    held = failed(H(), "t", "k1").op("harness", "ok", "dlq_entry", entry("t", "k1"))
    assert check_dlq(read(held).ops, exp).valid is Validity.TRUE
    # The system says it dead-lettered the task; the DLQ is empty: a violation, twice over.
    claimed = failed(H(), "t", "k1").op("w1", "ok", "dlq", {"task_id": "t", "key": "k1"})
    v = check_dlq(read(claimed).ops, exp)
    assert sorted(c["kind"] for c in v.violations()) == ["dlq_claimed_not_held", "missing_from_dlq", "unit_not_in_dlq"]
    twice = failed(H(), "t", "k1").op("harness", "ok", "dlq_entry", entry("t", "k1", copies=2))
    assert [c["kind"] for c in check_dlq(read(twice).ops, exp).violations()] == ["duplicated_in_dlq"]
    bare = failed(H(), "t", "k1").op("harness", "ok", "dlq_entry", {"task_id": "t", "key": "k1"})
    assert [c["lacks"] for c in check_dlq(read(bare).ops, exp).violations()] == [["name", "exception"]]
