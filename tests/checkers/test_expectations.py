"""Expectations: validation when built, what each ack configuration allows, retry delay bounds."""

from __future__ import annotations

import json

import pytest

from harness.checkers import Expectations, RetryPolicy
from harness.checkers.claim import Claim
from harness.errors import ConfigError


@pytest.mark.parametrize(("acks_late", "reject", "worker_loss", "child_loss"), [
    (False, False, True, True),     # early acks: the message was acked before the kill
    (True, False, False, True),     # late acks: a child kill is acked as failed (WorkerLostError)
    (True, True, False, False),     # late acks + reject on worker lost: always redelivered
])
def test_the_configuration_explains_losses_and_the_claim_decides(acks_late: bool, reject: bool, worker_loss: bool,
                                                                  child_loss: bool) -> None:
    exp = Expectations(acks_late=acks_late, reject_on_worker_lost=reject)
    assert exp.config_loses_on_kill(scope="worker") is worker_loss
    assert exp.config_loses_on_kill(scope="child") is child_loss
    # Under the default claim (at-least-once) no loss is allowed, whatever the configuration.
    assert not exp.loss_allowed_on_kill(scope="worker") and not exp.loss_allowed_on_kill(scope="child")
    assert exp.redelivery_expected_on_kill(scope="child")
    weak = Expectations(acks_late=acks_late, reject_on_worker_lost=reject, claim=Claim(delivery="at-most-once"))
    assert weak.loss_allowed_on_kill(scope="child") and not weak.redelivery_expected_on_kill(scope="child")


def test_claims_parse_and_round_trip_with_the_expectations() -> None:
    assert Claim.parse("at-most-once") == Claim(delivery="at-most-once")
    assert Claim.parse("delivery=at-least-once, effects=at-least-once") == Claim(effects="at-least-once")
    for bad in ("", "sometimes", "effects=twice", "at-most-once,delivery=at-least-once"):
        with pytest.raises(ConfigError, match="--claim"):
            Claim.parse(bad)
    exp = Expectations(claim=Claim(effects="at-least-once"), declared_effects={"k": ("a:k", "b:k")})
    assert Expectations.from_dict(exp.to_dict()) == exp


def test_reject_without_late_acks_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="needs acks_late=True"):
        Expectations(reject_on_worker_lost=True)
    # ... while reading a Celery config ignores it, as Celery does.
    exp = Expectations.from_celery_config({"task_reject_on_worker_lost": True})
    assert (exp.acks_late, exp.reject_on_worker_lost) == (False, False)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"expected_outcomes": {"k": "done"}}, "'complete' or 'dlq'"),
    ({"rate_limits": {"t": 0}}, "executions per second > 0"),
    ({"rate_limit_window_s": -1}, "rate_limit_window_s"),
    ({"max_late_fraction": 2}, "max_late_fraction"),
    ({"retry_policy": {"max_retries": 3}}, "must be a RetryPolicy"),
    ({"max_deliveries": 0}, "max_deliveries"),
    ({"latency_slo_s": float("nan")}, "latency_slo_s"),
])
def test_bad_options_raise_config_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Expectations(**kwargs)


def test_retry_policy_bounds_follow_celery_backoff() -> None:
    jit = RetryPolicy(max_retries=5, backoff_factor=2, backoff_max=20, jitter=True)
    assert [jit.delay_bounds(n) for n in range(5)] == [(0, 2), (0, 4), (0, 8), (0, 16), (0, 20)]
    exact = RetryPolicy(backoff_factor=True, jitter=False)
    assert exact.backoff_factor == 1.0 and exact.delay_bounds(3) == (8.0, 8.0)
    assert RetryPolicy(fixed_delay=3).delay_bounds(7) == (3.0, 3.0)
    assert RetryPolicy().delay_bounds(0) is None
    with pytest.raises(ConfigError, match="not both"):
        RetryPolicy(backoff_factor=1, fixed_delay=2)
    with pytest.raises(ConfigError, match="max_retries"):
        RetryPolicy(max_retries=-1)


def test_policy_lookup_exempts_celery_internal_tasks() -> None:
    default = RetryPolicy(max_retries=1)
    special = RetryPolicy(max_retries=9)
    exp = Expectations(retry_policy=default, retry_policies={"tasks.pay": special})
    assert exp.retry_policy_for("tasks.pay") is special
    assert exp.retry_policy_for("tasks.other") is default
    assert exp.retry_policy_for("celery.chord_unlock") is None


def test_json_round_trip_and_unknown_option() -> None:
    exp = Expectations(run_id="r", acks_late=True, retry_policy=RetryPolicy(backoff_factor=1),
                       retry_policies={"a": RetryPolicy(max_retries=None)}, rate_limits={"b": 2.5},
                       expected_outcomes={"k": "dlq"}, kill_fault_kinds=frozenset({"oom"}))
    assert Expectations.from_dict(json.loads(json.dumps(exp.to_dict()))) == exp
    with pytest.raises(ConfigError, match="no option"):
        Expectations.from_dict({"acks_lat": True})
