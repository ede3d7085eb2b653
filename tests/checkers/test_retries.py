"""retries: attempts <= max_retries + 1, countdowns within the backoff bounds, delays honoured."""

from __future__ import annotations

from checker_ops import H, kinds

from harness.checkers import Expectations, RetryPolicy, Validity, check_retries

EXP = Expectations(retry_policy=RetryPolicy(max_retries=2, backoff_factor=1, backoff_max=3, jitter=True))


def retried(countdowns: list[float], delays: list[float] | None = None, name: str = "tasks.t") -> H:
    """A task retried once per countdown; attempt n+1 starts `delay` s after the retry op."""
    h = H().publish("t", "k", name=name)
    t = 1.0
    delays = delays if delays is not None else [c + 0.01 for c in countdowns]
    for n, (cd, delay) in enumerate(zip(countdowns, delays, strict=True)):
        h.start("t", attempt=n, at=t, name=name).retry("t", cd, attempt=n, at=t + 1)
        h.end("t", result="fail", state="RETRY", at=t + 2)
        t = t + 1 + delay * 1000
    return h.start("t", attempt=len(countdowns), at=t, name=name).end("t", at=t + 1)


def test_conforming_retries() -> None:
    v = check_retries(retried([0.7, 1.9]).ops, EXP)
    assert v.valid is Validity.TRUE
    assert (v.counts["retries"], v.counts["retried_tasks"], v.counts["max_attempt"]) == (2, 1, 2)


def test_too_many_attempts() -> None:
    v = check_retries(retried([0.5, 1.0, 2.0]).ops, EXP)
    assert kinds(v) == [("too_many_attempts", "t")]
    assert (v.violations()[0]["attempts"], v.violations()[0]["allowed_attempts"]) == (4, 3)


def test_countdown_outside_backoff_bounds() -> None:
    v = check_retries(retried([1.5]).ops, EXP)   # cap for the first retry is 1 s (+0.25 tolerance)
    assert kinds(v) == [("bad_countdown", "t")] and v.violations()[0]["bounds"] == [0.0, 1.0]
    exact = Expectations(retry_policy=RetryPolicy(backoff_factor=1, jitter=False))
    assert kinds(check_retries(retried([0.2]).ops, exact)) == [("bad_countdown", "t")]


def test_next_attempt_before_the_countdown() -> None:
    v = check_retries(retried([1.0], delays=[0.5]).ops, EXP)
    assert kinds(v) == [("retried_too_early", "t")]


def test_next_attempt_too_late_only_when_bounded() -> None:
    h = retried([1.0], delays=[9.0])
    assert check_retries(h.ops, EXP).valid is Validity.TRUE
    bounded = Expectations(retry_policy=EXP.retry_policy, max_retry_lateness_s=2.0)
    assert kinds(check_retries(h.ops, bounded)) == [("retried_too_late", "t")]


def test_retry_seen_only_as_a_failed_execution_uses_the_policy_lower_bound() -> None:
    fixed = Expectations(retry_policy=RetryPolicy(fixed_delay=2.0))
    h = (H().publish("t", "k").start("t", attempt=0, at=1).end("t", result="fail", state="RETRY", at=2)
         .start("t", attempt=1, at=500).end("t", at=501))
    assert kinds(check_retries(h.ops, fixed)) == [("retried_too_early", "t")]


def test_celery_internal_tasks_are_not_held_to_the_default_policy() -> None:
    v = check_retries(retried([0.5, 1.0, 2.0, 3.0], name="celery.chord_unlock").ops, EXP)
    assert v.valid is Validity.UNKNOWN and v.counts["tasks_with_policy"] == 0


def test_no_retry_is_unknown() -> None:
    v = check_retries(H().done("t", "k").ops, EXP)
    assert v.valid is Validity.UNKNOWN and "no task retried" in v.notes[0]
    assert "no retry policy" in check_retries(H().done("t", "k").ops, Expectations()).notes[0]
