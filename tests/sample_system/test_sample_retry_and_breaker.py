"""Retry policy (backoff, jitter, cap, classification) and the circuit breaker state machine (pure)."""

from __future__ import annotations

import random

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError

from sample_system.circuit_breaker import CircuitBreaker
from sample_system.partner_client import (
    CircuitOpenError,
    FatalPartnerError,
    RetryablePartnerError,
    classify_status,
)
from sample_system.retry_policy import RetryPolicy, is_retryable


def test_backoff_doubles_per_retry_up_to_the_cap() -> None:
    p = RetryPolicy(max_retries=10, backoff=0.5, backoff_max=3.0, jitter=False)
    assert [p.countdown(n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert p.countdown(10_000) == 3.0


def test_full_jitter_stays_within_zero_and_the_backoff_and_varies() -> None:
    p = RetryPolicy(backoff=1.0, backoff_max=600.0, jitter=True)
    rng = random.Random(42)
    draws = [p.countdown(3, rng) for _ in range(200)]
    assert all(0.0 <= d <= 8.0 for d in draws)
    assert len(set(draws)) > 100, "jitter must spread retries (thundering herd)"


def test_retry_after_is_a_lower_bound_capped_by_backoff_max() -> None:
    p = RetryPolicy(backoff=0.1, backoff_max=5.0, jitter=False)
    assert p.countdown(0, retry_after=2.0) == 2.0
    assert p.countdown(0, retry_after=60.0) == 5.0


def test_exhausted_after_max_retries() -> None:
    p = RetryPolicy(max_retries=2)
    assert [p.exhausted(n) for n in range(4)] == [False, False, True, True]


@pytest.mark.parametrize(("exc", "retryable"), [
    (RetryablePartnerError("503"), True),
    (CircuitOpenError("open"), True),
    (SoftTimeLimitExceeded(), True),
    (OperationalError("stmt", {}, Exception("database is locked")), True),
    (ConnectionResetError(), True),
    (TimeoutError(), True),
    (FatalPartnerError("401"), False),
    (ValueError("validation"), False),
    (KeyError("order_id"), False),
])
def test_is_retryable(exc: BaseException, retryable: bool) -> None:
    assert is_retryable(exc) is retryable


@pytest.mark.parametrize(("status", "outcome"), [
    (200, "ok"), (201, "ok"), (202, "ok"), (408, "retryable"), (429, "retryable"), (500, "retryable"),
    (502, "retryable"), (503, "retryable"), (504, "retryable"), (400, "fatal"), (401, "fatal"),
    (402, "fatal"), (403, "fatal"), (404, "fatal"), (422, "fatal"),
])
def test_status_classification(status: int, outcome: str) -> None:
    assert classify_status(status) == outcome


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_only() -> None:
    clock = Clock()
    b = CircuitBreaker(failure_threshold=3, reset_timeout=10, clock=clock)
    b.record_failure(); b.record_failure(); b.record_success()  # noqa: E702 - a success resets the count
    b.record_failure(); b.record_failure()  # noqa: E702
    assert b.state == "closed" and b.allow()
    b.record_failure()
    assert b.state == "open" and not b.allow()
    assert b.retry_after() == pytest.approx(10.0)


def test_half_open_lets_exactly_one_trial_through() -> None:
    clock = Clock()
    b = CircuitBreaker(failure_threshold=1, reset_timeout=5, clock=clock)
    b.record_failure()
    clock.now += 4.9
    assert not b.allow()
    clock.now += 0.2
    assert b.allow() and b.state == "half_open"
    assert not b.allow(), "a second caller must wait for the trial's outcome"
    b.record_failure()
    assert b.state == "open" and not b.allow()
    clock.now += 5.1
    assert b.allow()
    b.record_success()
    assert b.state == "closed" and b.allow() and b.allow()


def test_breaker_rejects_nonsense_configuration() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0)
