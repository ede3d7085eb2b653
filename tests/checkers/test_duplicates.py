"""duplicates: duplicate executions with their cause (tolerated) vs duplicate effects (never)."""

from __future__ import annotations

from checker_ops import H, kinds

from harness.checkers import Expectations, Validity, check_duplicates
from harness.checkers.claim import Claim


def causes(v) -> dict[str, int]:
    return {k[len("cause_"):]: n for k, n in v.counts.items() if k.startswith("cause_") and n}


def test_single_executions_and_distinct_effects_pass() -> None:
    v = check_duplicates(H().done("t1", "k1").done("t2", "k2").ops, Expectations())
    assert v.valid is Validity.TRUE and v.counts["duplicate_executions"] == 0
    assert "not exercised" in " ".join(v.notes)


def test_retry_is_a_cause_not_a_duplicate() -> None:
    h = (H().publish("t", "k").start("t", attempt=0).end("t", result="fail", state="RETRY")
         .start("t", attempt=1).effect("t", "k").end("t"))
    v = check_duplicates(h.ops, Expectations(allow_duplicate_executions=False))
    assert v.valid is Validity.TRUE and causes(v) == {"retry": 1} and v.counts["duplicate_executions"] == 0


def test_worker_lost_cause() -> None:
    h = (H().publish("t", "k").start("t", "worker-w1.child-1").effect("t", "k", proc="worker-w1.child-1")
         .worker_lost("t").end("t", "worker-w1.child-1", result="info")
         .receive("t", "w2", redelivered=True).start("t", "w2.child-1", host="w2")
         .effect("t", "k", duplicate=True, proc="w2.child-1").end("t", "w2.child-1"))
    v = check_duplicates(h.ops, Expectations())
    assert v.valid is Validity.TRUE and causes(v) == {"worker_lost": 1}
    assert v.counts["effects_deduplicated"] == 1
    (ce,) = v.counterexamples
    assert ce["allowed"] and ce["cause"] == "worker_lost" and ce["killed_by"]["source"] == "worker_lost"


def test_overlap_without_fault_is_visibility_timeout_and_with_fault_redelivery() -> None:
    base = (H().publish("t", "k").start("t", "w1.child-1", at=10)
            .receive("t", "w2", redelivered=True, at=20).start("t", "w2.child-1", host="w2", at=21)
            .end("t", "w2.child-1", at=30).end("t", "w1.child-1", at=40))
    v = check_duplicates(base.ops, Expectations())
    assert causes(v) == {"visibility_timeout": 1} and v.counts["concurrent_duplicates"] == 1
    faulted = H()
    faulted.ops = list(base.ops)
    faulted.fault("partition_broker", "f1", at=15, stop_at=50)
    assert causes(check_duplicates(faulted.ops, Expectations())) == {"redelivery": 1}


def test_sequential_redelivered_and_unattributed() -> None:
    h = (H().publish("a", "ka").run("a", at=1).receive("a", redelivered=True, at=5).run("a", at=6)
         .publish("b", "kb").run("b", at=20).run("b", at=30))
    v = check_duplicates(h.ops, Expectations())
    assert v.valid is Validity.TRUE
    assert {ce["task_id"]: ce["cause"] for ce in v.counterexamples} == {"a": "redelivery", "b": "unattributed"}


def test_exactly_once_makes_duplicate_executions_violations() -> None:
    h = H().publish("a", "ka").run("a", at=1).receive("a", redelivered=True, at=5).run("a", at=6)
    v = check_duplicates(h.ops, Expectations(allow_duplicate_executions=False))
    assert v.valid is Validity.FALSE and kinds(v) == [("duplicate_execution", "a")]


def test_duplicate_effect_is_a_violation_with_idempotent_effects() -> None:
    h = (H().publish("t", "k1").start("t").effect("t", "k1").end("t")
         .receive("t", redelivered=True).start("t").effect("t", "k1").end("t")
         .done("u", "k2"))
    v = check_duplicates(h.ops, Expectations())
    assert v.valid is Validity.FALSE
    assert [(c["kind"], c["key"], c["applied"]) for c in v.violations()] == [("duplicate_effect", "k1", 2)]
    # A non-idempotent configuration explains the duplicate; it does not excuse it.
    explained = check_duplicates(h.ops, Expectations(idempotent_effects=False))
    assert explained.valid is Validity.FALSE and "not idempotent" in explained.violations()[0]["cause"]
    relaxed = check_duplicates(h.ops, Expectations(claim=Claim(effects="at-least-once")))
    assert relaxed.valid is Validity.TRUE and relaxed.counts["duplicate_effect_allowed_by_claim"] == 1
    assert [c["allowed_by"] for c in relaxed.counterexamples if c["kind"] == "duplicate_effect"] == ["claim"]


def test_the_store_contents_leave_duplicate_effects_to_the_effects_checker() -> None:
    h = H().done("t", "k1").op("harness", "ok", "stored_effect", {"key": "k1", "kind": "write", "count": 2})
    v = check_duplicates(h.ops, Expectations())
    assert v.valid is Validity.TRUE and v.counts["duplicate_effect"] == 0


def test_no_execution_is_unknown() -> None:
    assert check_duplicates(H().publish("t", "k").ops, Expectations()).valid is Validity.UNKNOWN


def test_effects_with_distinct_idempotency_keys_are_not_duplicates() -> None:
    # One scan unit writes one row per asset: same unit key and kind, different idempotency keys.
    def effect(tid: str, idem: str) -> dict:
        return {"task_id": tid, "key": "scan-1", "kind": "scan.asset", "duplicate": False, "idempotency_key": idem}

    h = (H().publish("a", "scan-1").start("a").op("w1.child-1", "ok", "effect", effect("a", "asset-1")).end("a")
         .publish("b", "scan-1").start("b").op("w1.child-1", "ok", "effect", effect("b", "asset-2")).end("b"))
    assert check_duplicates(h.ops, Expectations()).valid is Validity.TRUE
    h = h.receive("b", redelivered=True).start("b").op("w1.child-2", "ok", "effect", effect("b", "asset-2")).end("b")
    v = check_duplicates(h.ops, Expectations())
    assert v.valid is Validity.FALSE
    assert [(c["key"], c["effect_kind"], c["idempotency_key"]) for c in v.violations()] == [
        ("scan-1", "scan.asset", "asset-2")]


def test_with_the_store_read_reported_reapplications_are_evidence_only() -> None:
    def effect(proc: str) -> tuple[str, str, str, dict]:
        return (proc, "ok", "effect", {"task_id": "a", "key": "k1", "kind": "charge", "duplicate": False,
                                       "idempotency_key": "charge:k1"})

    h = H().publish("a", "k1").start("a").op(*effect("w1.child-1")).receive("a", redelivered=True).start("a")
    h = h.op(*effect("w1.child-2")).end("a").op("harness", "ok", "stored_effect", {"key": "k1", "kind": "charge", "count": 2})
    v = check_duplicates(h.ops, Expectations())
    assert v.valid is Validity.TRUE and v.counts["effects_reapplied"] == 1 and v.counts["duplicate_effect"] == 0
