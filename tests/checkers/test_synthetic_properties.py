"""Checkers on generated histories: a correct at-least-once system with known injected anomalies.

Hypothesis draws the workload (units of every kind), the ack configuration, the faults and a
set of injections; the checkers must report exactly the injected violations: no misses, no
false alarms (harness.checkers.synthetic documents what each injection must produce).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.checkers import CHECKERS, Validity, check_all
from harness.checkers.synthetic import (
    CONFIGS,
    GLOBAL_INJECTIONS,
    INJECTIONS,
    MAX_RETRIES,
    Injection,
    UnitPlan,
    reported_violations,
    synthesize,
)

unit_plans = st.builds(
    UnitPlan,
    kind=st.sampled_from(["simple", "simple", "retry", "dlq", "chain", "chord", "killed", "overlap",
                          "maybe_published", "limited"]),
    retries=st.integers(0, MAX_RETRIES),
    steps=st.integers(1, 4),
    headers=st.integers(1, 5),
    kill_scope=st.sampled_from(["child", "worker"]),
    effect_before_kill=st.booleans(),
    executed=st.booleans(),
)
injections = st.builds(Injection, kind=st.sampled_from(sorted(INJECTIONS) + list(GLOBAL_INJECTIONS)),
                       target=st.integers(0, 50))

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_checkers(plans, injs, config, partitions, seed):
    run = synthesize(plans, injs, config=config, partitions=partitions, seed=seed)
    verdicts = check_all(run.ops, run.exp, list(CHECKERS))
    crashed = {n: v.error for n, v in verdicts.items() if v.error}
    assert not crashed, crashed
    return run, verdicts


@SETTINGS
@given(plans=st.lists(unit_plans, min_size=1, max_size=25), injs=st.lists(injections, max_size=4),
       config=st.sampled_from(sorted(CONFIGS)), partitions=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_checkers_report_exactly_the_injected_anomalies(plans, injs, config, partitions, seed) -> None:
    run, verdicts = run_checkers(plans, injs, config, partitions, seed)
    assert reported_violations(verdicts) == run.expected, run.applied
    # A checker is false exactly when one of its anomalies was injected.
    for name, v in verdicts.items():
        assert (v.valid is Validity.FALSE) == any(c == name for c, _, _ in run.expected), (name, v.notes)


@SETTINGS
@given(plans=st.lists(unit_plans, min_size=1, max_size=25), config=st.sampled_from(sorted(CONFIGS)),
       partitions=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_a_correct_history_has_no_false_alarm(plans, config, partitions, seed) -> None:
    run, verdicts = run_checkers(plans, [], config, partitions, seed)
    # Without injections the only violations are the losses the configuration permits (each a
    # violation of the default at-least-once claim); with late acks and reject, none.
    assert reported_violations(verdicts) == run.expected
    assert all(kind in ("lost", "stuck", "not_redelivered") for _, kind, _ in run.expected)
    if config == "late_reject":
        assert {n: v.violations() for n, v in verdicts.items() if v.violations()} == {}


# Every injection, deterministically, on a workload that has a unit it can target.
WORKLOAD = [UnitPlan("simple"), UnitPlan("simple"), UnitPlan("retry", retries=2), UnitPlan("dlq"),
            UnitPlan("chain", steps=3), UnitPlan("chord", headers=3), UnitPlan("killed", kill_scope="child"),
            UnitPlan("killed", kill_scope="worker", effect_before_kill=True), UnitPlan("overlap"),
            UnitPlan("maybe_published", executed=True), UnitPlan("maybe_published", executed=False)]
WORKLOAD += [UnitPlan("limited")] * 6


@pytest.mark.parametrize("kind", sorted(INJECTIONS) + list(GLOBAL_INJECTIONS))
def test_each_injection_is_reported(kind: str) -> None:
    run, verdicts = run_checkers(WORKLOAD, [Injection(kind, 1)], "late_reject", 2, 7)
    assert run.expected, f"{kind} produced no expected anomaly"
    assert reported_violations(verdicts) == run.expected


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_kills_are_judged_by_the_claim_and_explained_by_the_configuration(config: str) -> None:
    import dataclasses

    from harness.checkers import Claim, check_all

    run, verdicts = run_checkers(WORKLOAD, [], config, 1, 3)
    # early acks lose both killed units, late acks only the child-killed one, reject none:
    # each loss violates the default at-least-once claim and names the setting to change.
    lost = verdicts["lost_tasks"].violations()
    assert reported_violations(verdicts) == run.expected
    assert len(lost) == {"early": 2, "late": 1, "late_reject": 0}[config]
    assert {ce["setting"] for ce in lost} == {"early": {"task_acks_late"}, "late": {"task_reject_on_worker_lost"},
                                              "late_reject": set()}[config]
    # The same history under an at-most-once claim: the losses are allowed, marked as such.
    weak = check_all(run.ops, dataclasses.replace(run.exp, claim=Claim(delivery="at-most-once")))
    assert weak["lost_tasks"].violations() == []
    assert weak["lost_tasks"].counts.get("lost_allowed_by_claim", 0) == len(lost)

