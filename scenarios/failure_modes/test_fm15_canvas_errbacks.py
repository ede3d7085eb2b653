"""Failure mode 15: canvas error propagation; the error callback runs exactly once per failed canvas.

The error-path matrix: one small canvas per shape, each with one ``probes.work`` that fails for
good and an error callback linked the way a user links it (``.on_error(errback)``;
``sample_system.services.chaos_probes.CANVAS_SHAPES``):

- ``chain_mid_fails``: ``chain(s0, s1 fails, s2)``;
- ``group_fails``: ``group(g0, g1 fails)``;
- ``chord_header_fails``: ``chord([h0 fails, h1], collect)``;
- ``chord_in_chain``: ``chain(s0, chord([h0 fails, h1], collect), s2)``;
- ``chord_chain_head_fails``: ``chord([chain(c0s0 fails, c0s1), chain(c1s0, c1s1)], collect)``.

The errback is Celery's documented form (``errback(request, exc, traceback)``, not bound) and
sends a notification: its effect ``probe.errback`` is not idempotent (``idempotent_effects=False``,
one row per call), so the effects checker counts the calls. Claim: exactly once.

On Celery 5.7 with the Redis result backend every shape calls its errback once: the crashes of
the reports (celery #9773 "task_id must not be empty", #8786, #4834, #9107) do not reproduce.
What does call it twice:

- a setting: ``task_allow_error_cb_on_chord_header=True`` links the chord's errback to its
  header tasks too, so a failed header calls it once for itself and once more when the chord's
  error is recorded for the body (Celery documents the extra calls): ``duplicate_effect`` for the
  three chord shapes, the chain and the group still once; the default (False) is valid.
- a fault: the errback runs inline in the failed task's pool child, after the failure is stored
  and before the message is settled. A SIGKILL of that child in between (2 s into the errback's
  work) makes Celery run the errback again: with ``reject_on_worker_lost`` the message is
  redelivered, the task fails again and calls it again (without it, the worker's main process
  marks the task failed and calls the errbacks itself). Celery 5.7 skips this for a task whose
  SUCCESS was stored (``Request._success_was_stored``), not for a stored FAILURE. Vulnerable: the
  non-idempotent errback, ``duplicate_effect`` naming the killed task twice; safe: the same
  errback writing under an idempotency key (the sample system's default store): valid.
"""

from __future__ import annotations

from typing import Any

import pytest
from fm_kit import AT_LEAST_ONCE, errback_calls, executions, probe_run, the_fault, violations

from harness.checkers import Validity
from harness.faults import KillWorkerChild, Schedule, on_effect, when

pytestmark = [pytest.mark.chaos, pytest.mark.full]

MATRIX = ("chain_mid_fails", "group_fails", "chord_header_fails", "chord_in_chain", "chord_chain_head_fails")
CHORD_SHAPES = ("chord_header_fails", "chord_in_chain", "chord_chain_head_fails")
NOT_IDEMPOTENT = {"idempotent_effects": False}
ON_HEADER = {"task_allow_error_cb_on_chord_header": True}
KILL_IN_ERRBACK = Schedule.of(when(on_effect("probe.errback"), KillWorkerChild()))


def _matrix(stack: Any, **settings: Any) -> tuple[Any, dict[str, str]]:
    # The setting acts where the canvas is built (the producer) and where a chord in a chain is
    # applied (a worker): both get it.
    result, workload = probe_run(stack, canvases=MATRIX, n=1, seconds=0.2, variant=NOT_IDEMPOTENT,
                                 expectations={"chords": True}, settings=settings, worker_settings=settings)
    return result, {k.split(":")[-2]: k for k in workload.submitted}


def test_fm15_safe_default_each_canvas_calls_its_errback_once(chaos_stack: Any) -> None:
    result, keys = _matrix(chaos_stack)
    assert result.valid is Validity.TRUE, result.summary()
    for shape, key in keys.items():
        assert len(errback_calls(result, key)) == 1, (shape, result.summary())
    assert result.verdict("chords").counts["chords_failed"] == len(CHORD_SHAPES)


def test_fm15_vulnerable_errback_on_chord_header_is_called_twice(chaos_stack: Any) -> None:
    result, keys = _matrix(chaos_stack, **ON_HEADER)
    assert result.valid is Validity.FALSE, result.summary()
    dups = violations(result, "effects", "duplicate_effect")
    assert sorted(d["key"] for d in dups) == sorted(keys[s] for s in CHORD_SHAPES), result.summary()
    for shape in CHORD_SHAPES:
        calls = errback_calls(result, keys[shape])
        # once for the failed header task, once for the chord's body (the callback's task id)
        assert len(calls) == 2 and len(set(calls)) == 2, (shape, calls)
    for shape in ("chain_mid_fails", "group_fails"):
        assert len(errback_calls(result, keys[shape])) == 1, shape


def _killed_in_errback(stack: Any, **variant: Any) -> tuple[Any, str, str]:
    result, workload = probe_run(stack, canvases=("chain_mid_fails",), n=3, seconds=0.2, errback_seconds=2.0,
                                 variant=variant, schedule=KILL_IN_ERRBACK, expectations=AT_LEAST_ONCE)
    killed = the_fault(result).effect
    assert killed["scope"] == "child", result.summary()
    failed = killed["task_id"]  # the failed step whose errback was running
    key = next(k for k in workload.submitted if errback_calls(result, k) and failed in errback_calls(result, k))
    # The failed step ran twice: cut in its errback, then failed again from its redelivery.
    assert [e["outcome"] for e in executions(result, failed)] == ["info", "fail"], result.summary()
    return result, key, failed


def test_fm15_vulnerable_child_killed_in_the_errback_calls_it_again(chaos_stack: Any) -> None:
    result, key, failed = _killed_in_errback(chaos_stack, **NOT_IDEMPOTENT)
    assert result.valid is Validity.FALSE, result.summary()
    (dup,) = violations(result, "effects", "duplicate_effect")
    assert dup["key"] == key and errback_calls(result, key) == [failed, failed], result.summary()


def test_fm15_safe_idempotent_errback_absorbs_the_second_call(chaos_stack: Any) -> None:
    result, key, failed = _killed_in_errback(chaos_stack)
    assert result.valid is Validity.TRUE, result.summary()
    assert errback_calls(result, key) == [failed]
    assert result.verdict("duplicates").counts["effects_deduplicated"] == 1  # the second call was absorbed
