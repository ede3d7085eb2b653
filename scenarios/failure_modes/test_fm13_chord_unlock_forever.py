"""Failure mode 13: a chord never completes because ``celery.chord_unlock`` polls for ever.

On a result backend without native chord joins (every SQL backend; here ``db+sqlite://``) a
chord's callback is published by ``celery.chord_unlock``, which polls the header's results and
retries, by default without limit (``max_retries=None``), until all of them are ready. When a
chain in the header fails at its first step, Celery marks the chain's later steps failed
(``Backend._fail_chain``) so the unlock sees the failure and records the chord's error; the
reported hang (celery #9674, #6029) was a chain whose later step is ``group | task``, fixed on
Celery 5.7 by PR #10323 (``_fail_chain`` now descends into that chord's body). Two header
chains still leave a result the unlock waits on PENDING for good on 5.7:

- the failing first step has ``ignore_result=True`` (a step whose return value nobody reads):
  its failure is not stored (``store_errors_even_if_ignored`` is off by default), and
  ``_fail_chain`` stores the chain's later steps only when it stores;
- the chain ends in a group (``chain(fetch, group(parse_a, parse_b))``): ``_fail_chain`` skips a
  chained element with no task id of its own, so the group's tasks are never marked.

Each unit is one chord ``chord([chain(c0s0 fails, ...), chain(c1s0, c1s1)], collect)`` with an
error callback on it (``sample_system.services.chaos_probes.canvas``). The claim: every chord
reaches a terminal state within the run: its callback runs, or Celery records its error (the
``chord_error`` op) and the errback runs once.

- vulnerable: Celery's defaults, SQLite backend: the two chords above are ``chord_not_terminal``
  (their unlock still retrying every second when the run ends), liveness ``stuck`` on the unlock,
  and their errback ``missing_effect``. The two shapes 5.7 fixed end in failure in the same run.
- safe: ``task_store_errors_even_if_ignored=True``: the ignored step's failure is stored, the
  unlock sees it, every chord ends and every errback runs once; valid.

Two findings on the chain that ends in a group, which no setting of the failing step fixes:
``chord(...).apply_async(max_retries=3)`` bounds the unlock, which then records the chord's error
(Celery 5.7) but, as a failed task under ``task_acks_on_failure=False``, is dead-lettered itself
(a second DLQ entry for the unit, whose replay would fire the errback again); and on the Redis
backend (native join, no unlock) the same chord hangs silently: no callback, no error, no
errback, nothing left polling.
"""

from __future__ import annotations

from typing import Any

import pytest
from fm_kit import errback_calls, probe_run, violations

from harness.checkers import Validity
from harness.history import F

pytestmark = [pytest.mark.chaos, pytest.mark.full]

#: Shapes Celery 5.7 ends (PR #10323 and the older chain propagation): the regression guard.
FIXED = ("chord_chain_head_fails", "chord_chain_group_step")
#: Shapes whose chord_unlock polls for ever on Celery 5.7.
HANGING = ("chord_chain_head_ignores_result", "chord_chain_ends_in_group")
CHORDS = {"chords": True}
#: T of the claim: the run ends this long after the units were submitted (the unlock polls each second).
QUIESCE_S = 8.0


def _keys(workload: Any, shape: str) -> list[str]:
    return [k for k in workload.submitted if f":{shape}:" in k]


def test_fm13_vulnerable_chord_unlock_polls_for_ever_after_a_header_chain_fails(sqlite_backend_stack: Any) -> None:
    result, workload = probe_run(sqlite_backend_stack, canvases=HANGING + FIXED, n=1, seconds=0.2, expectations=CHORDS,
                                 quiesce_timeout_s=QUIESCE_S)
    assert result.valid is Validity.FALSE, result.summary()
    hanging = {k: workload.submitted[k] for s in HANGING for k in _keys(workload, s)}  # key -> callback id
    stuck_chords = violations(result, "chords", "chord_not_terminal")
    assert sorted(c["chord_id"] for c in stuck_chords) == sorted(hanging.values()), result.summary()
    for c in stuck_chords:
        assert c["unlock_polls"] >= 3 and c["unlock_retries"] == c["unlock_polls"], c  # every poll retried
    stuck = violations(result, "liveness", "stuck")
    assert sorted(s["key"] for s in stuck) == sorted(hanging), result.summary()
    names = {op.value.get("task_id"): op.value.get("name") for op in result.history or ()
             if op.f == F.EXECUTE and isinstance(op.value, dict) and op.value.get("name")}
    assert {names[t] for s in stuck for t in s["task_ids"]} == {"celery.chord_unlock"}
    missing = violations(result, "effects", "missing_effect")
    assert sorted(m["key"] for m in missing) == sorted(hanging), result.summary()
    assert {m["effect_kind"] for m in missing} == {"probe.errback"}  # the errback never ran
    # The shapes Celery 5.7 fixed ended in the same run: their errors recorded, their errback once.
    assert result.verdict("chords").counts["chords_failed"] == len(FIXED)
    for shape in FIXED:
        (key,) = _keys(workload, shape)
        assert len(errback_calls(result, key)) == 1, (shape, result.summary())


def test_fm13_safe_storing_ignored_errors_ends_every_chord(sqlite_backend_stack: Any) -> None:
    shapes = ("chord_chain_head_ignores_result", *FIXED)
    result, workload = probe_run(sqlite_backend_stack, canvases=shapes, n=1, seconds=0.2, expectations=CHORDS,
                                 quiesce_timeout_s=QUIESCE_S,
                                 worker_settings={"task_store_errors_even_if_ignored": True})
    assert result.valid is Validity.TRUE, result.summary()
    chords = result.verdict("chords").counts
    assert (chords["chords_failed"], chords["chord_not_terminal"]) == (len(shapes), 0), chords
    for key in workload.submitted:
        assert len(errback_calls(result, key)) == 1, (key, result.summary())


def test_fm13_finding_a_bounded_chord_unlock_ends_the_chord_and_is_dead_lettered(sqlite_backend_stack: Any) -> None:
    result, workload = probe_run(sqlite_backend_stack, canvases=("chord_chain_ends_in_group",), n=1, seconds=0.2,
                                 expectations=CHORDS, quiesce_timeout_s=QUIESCE_S, unlock_max_retries=3)
    (key,) = workload.submitted
    chords = result.verdict("chords")
    assert chords.valid is Validity.TRUE and chords.counts["chords_failed"] == 1, result.summary()
    assert len(errback_calls(result, key)) == 1
    # The unlock gave up after 3 polls and raised: the worker rejects a failed task into the DLQ.
    (copies,) = violations(result, "dlq", "unit_dlq_copies")
    assert copies["key"] == key and copies["entries"] == 2, result.summary()
    held = sorted(str(op.value.get("name")) for op in result.history or () if op.f == F.DLQ_ENTRY)
    assert held == ["celery.chord_unlock", "probes.work"], held


def test_fm13_finding_a_header_chain_ending_in_a_group_hangs_silently_on_redis(chaos_stack: Any) -> None:
    result, workload = probe_run(chaos_stack, canvases=("chord_chain_ends_in_group",), n=1, seconds=0.2,
                                 expectations=CHORDS)
    assert result.valid is Validity.FALSE, result.summary()
    (key,) = workload.submitted
    (missing_cb,) = violations(result, "chords", "callback_missing")
    assert missing_cb["chord_id"] == workload.submitted[key]
    (missing,) = violations(result, "effects", "missing_effect")
    assert (missing["key"], missing["effect_kind"]) == (key, "probe.errback") and errback_calls(result, key) == []
    # Nothing polls, nothing recorded the chord's error: the run quiesced with the chord open.
    assert result.quiesced
    assert not [op for op in result.history or () if op.f == F.CHORD_ERROR]
    assert not [op for op in result.history or () if isinstance(op.value, dict)
                and op.value.get("name") == "celery.chord_unlock"]
