"""rate_limits: per worker, sliding window over execution starts of the rate-limited task."""

from __future__ import annotations

from checker_ops import H

from harness.checkers import Expectations, Validity, check_rate_limits

EXP = Expectations(rate_limits={"tasks.send": 5.0}, rate_limit_window_s=1.0, rate_limit_burst=1)


def starts(times_ms: list[float], host: str = "w1", name: str = "tasks.send", h: H | None = None) -> H:
    h = h or H()
    for i, t in enumerate(times_ms):
        tid = f"{host}-{name}-{i}"
        h.start(tid, f"{host}.child-1", host=host, at=t, name=name).end(tid, f"{host}.child-1", at=t + 1)
    return h


def test_at_the_limit_passes() -> None:
    v = check_rate_limits(starts([i * 200.0 for i in range(20)]).ops, EXP)
    assert v.valid is Validity.TRUE and v.counts["saturated_pairs"] == 1


def test_burst_over_the_limit_on_one_worker() -> None:
    h = starts([i * 200.0 for i in range(10)] + [2000 + i * 10.0 for i in range(6)])
    v = check_rate_limits(h.ops, EXP)
    assert v.valid is Validity.FALSE
    (ce,) = v.violations()
    assert (ce["hostname"], ce["name"], ce["allowed_per_window"]) == ("w1", "tasks.send", 6)
    assert ce["peak"] > 6 and v.counts["violating_windows"] >= 1


def test_limit_is_per_worker_and_per_task_name() -> None:
    fast = [i * 100.0 for i in range(10)]      # 10/s
    h = starts(fast, host="w1", name="tasks.send", h=None)
    h = starts([t + 50 for t in fast], host="w2", name="tasks.other", h=h)   # other task: unlimited
    assert check_rate_limits(h.ops, EXP).valid is Validity.FALSE
    split = starts([i * 200.0 for i in range(10)], host="w1")
    split = starts([i * 200.0 + 100 for i in range(10)], host="w2", h=split)   # 10/s in total, 5/s each
    assert check_rate_limits(split.ops, EXP).valid is Validity.TRUE


def test_limiter_never_reached_is_unknown() -> None:
    v = check_rate_limits(starts([i * 1000.0 for i in range(5)]).ops, EXP)
    assert v.valid is Validity.UNKNOWN and "ever reached its rate limit" in v.notes[0]
    assert check_rate_limits(starts([1.0]).ops, Expectations()).valid is Validity.UNKNOWN


def received_then_started(received_ms: list[float], started_ms: list[float], name: str = "tasks.send") -> H:
    h = H()
    for i, (r, s) in enumerate(zip(received_ms, started_ms, strict=True)):
        tid = f"w1-{name}-{i}"
        h.receive(tid, at=r, name=name)
        h.start(tid, "w1.child-1", host="w1", at=s, name=name).end(tid, "w1.child-1", at=s + 1)
    return h


def test_a_burst_above_the_limit_that_the_limiter_spread_is_valid() -> None:
    # 12 tasks arrive within 50 ms; the worker starts them 200 ms apart (5/s).
    h = received_then_started([i * 4.0 for i in range(12)], [i * 200.0 for i in range(12)])
    v = check_rate_limits(h.ops, EXP)
    assert v.valid is Validity.TRUE and v.counts["saturated_pairs"] == 1


def test_demand_below_the_limit_is_unknown_with_the_figures() -> None:
    # 6 tasks arriving at the limit's pace never make the limiter act, even when starts bunch up.
    h = received_then_started([i * 400.0 for i in range(6)], [i * 400.0 + 1 for i in range(6)])
    v = check_rate_limits(h.ops, EXP)
    assert v.valid is Validity.UNKNOWN and "never with work held back" in v.notes[0]
    assert "the limit is 5" in v.notes[0]


def test_slow_rates_are_judged_over_a_window_holding_two_tokens() -> None:
    slow = Expectations(rate_limits={"tasks.send": 10 / 60}, rate_limit_window_s=1.0, rate_limit_burst=1)
    # three starts in 2 s against 10/m: a window of 12 s allows 2 + 1.
    h = received_then_started([0.0, 1.0, 2.0, 3.0], [0.0, 1000.0, 2000.0, 2500.0])
    v = check_rate_limits(h.ops, slow)
    assert v.valid is Validity.FALSE and v.violations()[0]["window_s"] == 12.0
