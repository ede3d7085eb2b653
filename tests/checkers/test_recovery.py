"""recovery: faults healed, time to recover after the last heal, throughput recovery."""

from __future__ import annotations

import pytest
from checker_ops import H, kinds

from harness.checkers import Expectations, Validity, check_recovery


def load(h: H, start_ms: float, end_ms: float, every_ms: float, prefix: str) -> H:
    t, i = start_ms, 0
    while t < end_ms:
        tid = f"{prefix}{i}"
        h.publish(tid, tid, at=t).start(tid, at=t + 1).end(tid, at=t + 5)
        t += every_ms
        i += 1
    return h


def faulted_run(outage_ms: float = 500) -> H:
    """100/s for 2 s, a partition from 2 s to 3 s (nothing completes), then load again."""
    h = load(H(), 0, 2000, 10, "a")
    h.fault("partition_broker", "f1", at=2000, stop_at=3000)
    # Tasks published after the heal complete only after `outage_ms` more.
    t, i = 3000.0, 0
    while t < 5000:
        tid = f"b{i}"
        h.publish(tid, tid, at=t).start(tid, at=max(t + 1, 3000 + outage_ms)).end(tid, at=max(t + 5, 3005 + outage_ms))
        t += 10
        i += 1
    h.ops.sort(key=lambda op: op.time)
    return h


def test_time_to_recover_and_throughput() -> None:
    v = check_recovery(faulted_run(500).ops, Expectations(recovery_slo_s=1.0, throughput_recovery_slo_s=2.0))
    assert v.valid is Validity.TRUE
    assert v.metrics["time_to_recover_s"] == pytest.approx(0.5047, abs=1e-3)
    assert v.metrics["throughput_baseline_per_s"] == pytest.approx(100, rel=0.02)
    assert 0.5 < v.metrics["time_to_recover_throughput_s"] < 2.0


def test_slow_recovery_against_the_slos() -> None:
    v = check_recovery(faulted_run(1500).ops, Expectations(recovery_slo_s=1.0, throughput_recovery_slo_s=1.0))
    assert v.valid is Validity.FALSE
    assert sorted(ce["kind"] for ce in v.violations()) == ["slow_recovery", "slow_throughput_recovery"]


def test_nothing_completes_after_heal() -> None:
    h = load(H(), 0, 100, 10, "a").fault("partition_broker", "f1", at=200, stop_at=300).publish("late", "late")
    assert [c["kind"] for c in check_recovery(h.ops, Expectations()).violations()] == ["not_recovered"]


def test_unhealed_fault() -> None:
    h = load(H(), 0, 100, 10, "a").fault("partition_broker", "f1", at=50)
    assert kinds(check_recovery(h.ops, Expectations())) == [("unhealed_fault", "f1")]


def test_failed_heal_leaves_the_fault_unhealed() -> None:
    h = H().fault("slow_backend", "f1", at=1).op("nemesis", "invoke", "fault_stop", {"fault_id": "f1"})
    h.op("nemesis", "fail", "fault_stop", {"fault_id": "f1"})
    assert kinds(check_recovery(h.ops, Expectations())) == [("unhealed_fault", "f1")]


def test_no_fault_or_nothing_after_heal_is_unknown() -> None:
    assert check_recovery(load(H(), 0, 100, 10, "a").ops, Expectations()).valid is Validity.UNKNOWN
    h = load(H(), 0, 100, 10, "a").fault("partition_broker", "f1", at=200, stop_at=300)
    v = check_recovery(h.ops, Expectations())
    assert v.valid is Validity.UNKNOWN and "after the last heal" in v.notes[0]


def test_a_unit_expected_in_the_dlq_recovers_by_getting_there() -> None:
    h = load(H(), 0, 500, 10, "a")
    h.fault("partition_broker", "f1", at=600, stop_at=900)
    h.publish("p", "poison-1", at=1000).start("p", at=1001).end("p", result="fail", state="FAILURE", at=1002)
    h.dlq("p", "poison-1", at=1003)
    expected_dlq = check_recovery(h.ops, Expectations(expected_outcomes={"poison-1": "dlq"}))
    assert expected_dlq.valid is Validity.TRUE
    assert expected_dlq.counts["dead_lettered_after_heal_as_expected"] == 1
    assert expected_dlq.metrics["time_to_recover_s"] == pytest.approx(0.102, abs=2e-3)
    # The same dead letter for a unit expected to complete is no recovery.
    expected_complete = check_recovery(h.ops, Expectations(expected_outcomes={"poison-1": "complete"}))
    assert [c["kind"] for c in expected_complete.violations()] == ["not_recovered"]
