"""latency: publish -> success quantiles, lateness against the countdown, the latency SLO."""

from __future__ import annotations

import pytest
from checker_ops import H

from harness.checkers import Expectations, Validity, check_latency


def tasks(latencies_ms: list[float]) -> H:
    h = H()
    for i, lat in enumerate(latencies_ms):
        t0 = 1000.0 * i
        h.publish(f"t{i}", f"k{i}", at=t0).start(f"t{i}", at=t0 + 1).end(f"t{i}", at=t0 + lat)
    return h


def test_quantiles_in_seconds() -> None:
    v = check_latency(tasks([float(i) for i in range(1, 101)]).ops, Expectations())
    assert v.valid is Validity.TRUE and v.counts["completed"] == 100
    # publish ok is recorded 1 ms after the invoke: latency = end - (t0 + 1 ms)
    assert v.metrics["latency_p50_s"] == pytest.approx(0.049)
    assert v.metrics["latency_p99_s"] == pytest.approx(0.098)
    assert v.metrics["latency_max_s"] == pytest.approx(0.099)


def test_lateness_is_measured_from_the_countdown() -> None:
    h = H().publish("t", "k", at=0, countdown=2.0).start("t", at=2500).end("t", at=2501)
    v = check_latency(h.ops, Expectations())
    assert v.metrics["lateness_max_s"] == pytest.approx(0.499)


def test_slo_with_a_tolerated_fraction() -> None:
    h = tasks([10, 10, 10, 500])
    strict = check_latency(h.ops, Expectations(latency_slo_s=0.1))
    assert strict.valid is Validity.FALSE and strict.counts["late"] == 1
    assert strict.violations()[0]["task_id"] == "t3"
    tolerant = check_latency(h.ops, Expectations(latency_slo_s=0.1, max_late_fraction=0.25))
    assert tolerant.valid is Validity.TRUE and tolerant.counts["late"] == 1
    assert tolerant.metrics["late_fraction"] == 0.25


def test_nothing_completed_is_unknown() -> None:
    assert check_latency(H().publish("t", "k").ops, Expectations()).valid is Validity.UNKNOWN
