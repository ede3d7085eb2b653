"""Verdict values: the true < unknown < false order and the JSON round trip."""

from __future__ import annotations

import json

import pytest

from harness.checkers import Validity, Verdict, merge_valid, overall


def test_merge_ranks_false_above_unknown_above_true() -> None:
    T, U, F = Validity.TRUE, Validity.UNKNOWN, Validity.FALSE
    assert merge_valid([]) is T
    assert merge_valid([T, T]) is T
    assert merge_valid([T, U, T]) is U
    assert merge_valid([U, F, T]) is F
    assert T.merge(U) is U and U.merge(F) is F and F.merge(T) is F


def test_validity_json_is_jepsen_encoding() -> None:
    assert [v.to_json() for v in Validity] == [True, "unknown", False]
    for v in Validity:
        assert Validity.from_json(json.loads(json.dumps(v.to_json()))) is v
    assert Validity.from_json("TRUE") is Validity.TRUE


def test_validity_from_bad_value_names_the_choices() -> None:
    with pytest.raises(ValueError, match="true, false or \"unknown\""):
        Validity.from_json("maybe")


def test_verdict_round_trips_through_json() -> None:
    v = Verdict("lost_tasks", Validity.FALSE, counts={"lost": 2},
                counterexamples=({"kind": "lost", "allowed": False, "task_id": "t1", "ops": [{"f": "publish"}]},
                                 {"kind": "lost", "allowed": True, "task_id": "t2", "ops": []}),
                notes=("n",), metrics={"latency_p50_s": 0.5}, error=None)
    back = Verdict.from_dict(json.loads(json.dumps(v.to_dict())))
    assert back == v
    assert [c["task_id"] for c in back.violations()] == ["t1"]


def test_verdict_from_dict_missing_key_says_which() -> None:
    with pytest.raises(ValueError, match="'valid'"):
        Verdict.from_dict({"checker": "x"})


def test_overall_of_mapping_and_list() -> None:
    vs = {"a": Verdict("a", Validity.TRUE), "b": Verdict("b", Validity.FALSE)}
    assert overall(vs) is Validity.FALSE
    assert overall([Verdict("a", Validity.TRUE)]) is Validity.TRUE
    assert overall({}) is Validity.TRUE
