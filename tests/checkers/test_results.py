"""The results checker on literal histories: a client's ``result`` ops against what the tasks did."""

from __future__ import annotations

from typing import Any

from checker_ops import H

from harness.checkers import Expectations, check_all, check_results, default_checkers
from harness.checkers.index import build_index
from harness.history.ops import F


def _ask(h: H, tid: str, outcome: str, *, key: str | None = None, state: str | None = None,
         error: str | None = None, process: str = "client-1") -> H:
    v: dict[str, Any] = h._v(tid, key=key, timeout_s=3.0)
    h.op(process, "invoke", F.RESULT, v)
    if outcome != "none":
        h.op(process, outcome, F.RESULT, {**v, **({"state": state} if state else {})}, error=error)
    return h


def test_a_finished_task_whose_result_never_came_is_not_delivered():
    h = H().done("t1", "k1")
    _ask(h, "t1", "fail", key="k1", error="TimeoutError: The operation timed out.")
    v = check_results(h.ops, Expectations())
    (ce,) = v.violations()
    assert (ce["kind"], ce["task_id"], ce["key"], ce["finished"]) == ("result_not_delivered", "t1", "k1", "ok")
    assert ce["error"].startswith("TimeoutError") and ce["asks"] == 1 and ce["timeout_s"] == 3.0
    assert any(op["f"] == F.EXECUTE for op in ce["ops"])  # the counterexample shows the execution
    assert v.counts["asked"] == 1 and v.counts["delivered"] == 0


def test_an_ask_that_never_completed_counts_as_not_delivered():
    h = H().done("t1", "k1")
    (ce,) = check_results(_ask(h, "t1", "none", key="k1").ops, Expectations()).violations()
    assert ce["kind"] == "result_not_delivered" and ce["error"] == "the ask never completed"


def test_a_later_ask_that_got_the_result_is_delivered():
    h = H().done("t1", "k1")
    _ask(h, "t1", "fail", key="k1", error="TimeoutError")
    _ask(h, "t1", "ok", key="k1", state="SUCCESS")
    v = check_results(h.ops, Expectations())
    assert v.valid.value == "true" and v.counts["delivered"] == 1 and v.counts["asked"] == 1


def test_a_task_that_never_finished_is_not_ready_not_undelivered():
    h = H().publish("t1", "k1").receive("t1").start("t1")  # cut, never completed
    _ask(h, "t1", "fail", key="k1", error="TimeoutError")
    v = check_results(h.ops, Expectations())
    assert v.valid.value == "true" and v.counts["not_ready"] == 1


def test_a_stale_state_is_counted_with_a_note():
    h = H().done("t1", "k1")
    _ask(h, "t1", "ok", key="k1", state="PENDING")
    v = check_results(h.ops, Expectations())
    assert v.valid.value == "true" and v.counts["stale_state"] == 1
    assert any("PENDING" in n for n in v.notes)


def test_another_runs_asks_are_ignored():
    h = H(run_id="r1").done("t1", "k1")
    h.run_id = "r0"
    _ask(h, "t1", "fail", key="k1", error="TimeoutError")
    v = check_results(h.ops, Expectations(run_id="r1"))
    assert v.valid.value == "true" and v.counts["asked"] == 0


def test_no_ask_passes_with_a_note_and_the_checker_runs_only_when_a_client_asked():
    h = H().done("t1", "k1")
    v = check_results(h.ops, Expectations())
    assert v.valid.value == "true" and v.notes
    exp = Expectations(require_fault_bite=False)
    assert "results" not in default_checkers(exp, build_index(h.ops))
    _ask(h, "t1", "fail", key="k1", error="TimeoutError")
    assert "results" in default_checkers(exp, build_index(h.ops))
    verdicts = check_all(h.ops, exp)
    assert verdicts["results"].valid.value == "false"
