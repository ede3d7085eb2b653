"""check_all: composition by name, shared index, crash isolation, JSON-ready verdicts."""

from __future__ import annotations

import json

import pytest
from checker_ops import H

from harness.checkers import (
    CHECKERS,
    Expectations,
    RetryPolicy,
    Validity,
    Verdict,
    check_all,
    default_checkers,
    overall,
)
from harness.checkers.claim import Claim
from harness.checkers.index import HistoryIndex
from harness.errors import ConfigError


def test_default_checkers_follow_the_expectations() -> None:
    assert sorted(default_checkers(Expectations())) == ["duplicates", "latency", "liveness", "lost_tasks", "recovery",
                                                        "redelivery"]
    weak = Expectations(claim=Claim(delivery="at-most-once"))
    assert "redelivery" not in default_checkers(weak)
    assert "effects" in default_checkers(Expectations(declared_effects={"k": ("a:k",)}))
    full = Expectations(acks_late=True, retry_policy=RetryPolicy(), dead_letter_queue=True, chords=True,
                        rate_limits={"t": 1.0}, declared_effects={"k": ()})
    # acks and results need the workers' ack ops / a client's result ops in the history (the
    # index), not only expectations
    assert sorted(default_checkers(full)) == sorted(set(CHECKERS) - {"acks", "results"})


def test_crashing_or_misbehaving_checker_yields_unknown_and_the_rest_still_run() -> None:
    def boom(history, exp):
        raise ZeroDivisionError("checker bug")

    def not_a_verdict(history, exp):
        return {"valid": True}

    vs = check_all(H().done("t", "k").ops, Expectations(),
                   {"boom": boom, "odd": not_a_verdict, "lost_tasks": CHECKERS["lost_tasks"]})
    assert vs["boom"].valid is Validity.UNKNOWN and "ZeroDivisionError" in vs["boom"].error
    assert vs["odd"].valid is Validity.UNKNOWN and "expected a Verdict" in vs["odd"].error
    assert vs["lost_tasks"].valid is Validity.TRUE
    assert overall(vs) is Validity.UNKNOWN


def test_a_history_that_cannot_be_indexed_makes_every_verdict_unknown() -> None:
    vs = check_all([object()], Expectations(), ["lost_tasks", "liveness"])  # type: ignore[list-item]
    assert {n: v.valid for n, v in vs.items()} == {"lost_tasks": Validity.UNKNOWN, "liveness": Validity.UNKNOWN}
    assert all("indexing" in v.notes[0] for v in vs.values())


def test_checkers_share_one_index() -> None:
    seen: list[object] = []

    def spy(history, exp):
        seen.append(history)
        return Verdict("spy", Validity.TRUE)

    check_all(H().done("t", "k").ops, Expectations(), {"a": spy, "b": spy})
    assert len(seen) == 2 and seen[0] is seen[1] and isinstance(seen[0], HistoryIndex)


def test_bad_checker_selection_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown checker 'lost'"):
        check_all([], Expectations(), ["lost"])
    with pytest.raises(ConfigError, match="not one string"):
        check_all([], Expectations(), "lost_tasks")
    with pytest.raises(ConfigError, match="not a callable"):
        check_all([], Expectations(), {"x": 3})  # type: ignore[dict-item]


def test_a_generator_is_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match="read_history"):
        CHECKERS["lost_tasks"]((op for op in []), Expectations())  # type: ignore[arg-type]


def test_verdicts_of_a_violating_history_are_json_ready() -> None:
    h = H().publish("t1", "k1").done("t2", "k2").effect("t2", "k2")
    h.fault("kill_worker", "f1", stop_at=100, hostname="w1")
    exp = Expectations(acks_late=True, retry_policy=RetryPolicy(), dead_letter_queue=True, chords=True,
                       rate_limits={"tasks.t": 1.0})
    vs = check_all(h.ops, exp, list(CHECKERS))
    for v in vs.values():
        assert v.error is None, v.error
        assert Verdict.from_dict(json.loads(json.dumps(v.to_dict()))) == v
    assert vs["lost_tasks"].valid is Validity.FALSE and vs["duplicates"].valid is Validity.FALSE
