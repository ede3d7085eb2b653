"""Failure mode 16: ``celery.chord_unlock`` on a quorum queue; the chord's callback never runs.

The report (celery Discussion #9742, the xfail smoke test ``test_chord_unlock_stress_routing``):
on a quorum (or topic) queue the unlock is intermittently not consumed under load. That did not
reproduce here: six chords of two 1.5 s headers each, on quorum queues and the SQLite backend,
all completed (their unlocks queued behind their headers). What does break the unlock on a
quorum queue, every time, is its retry: on quorum queues Celery sends a countdown through
RabbitMQ's native delayed delivery, whose routing key holds whole seconds, and kombu 5.7 refuses
a countdown below one second (``ValueError: countdown must be a positive number``). The unlock
retries with ``countdown=result_chord_retry_interval``; a team lowering that interval to cut
chord latency makes the first poll that finds the header not ready fail to publish its retry.
Celery 5.7 then records the chord's error ("chord_unlock could not be retried") instead of
leaving it pending: the callback never runs although every header succeeded.

One chord of two 3 s headers, concurrency 4 (the unlock polls while the headers run), quorum
queues (``Settings(queue_type="quorum")``), SQLite result backend. Claim: a chord whose headers
all succeed runs its callback once.

- vulnerable: ``result_chord_retry_interval=0.5``: liveness ``wrong_outcome`` (expected complete,
  actual dlq: the unlock's failure is dead-lettered), ``missing_effect`` for the callback's
  ``probe.collected``; the history shows the unlock's retry publish failing with the ValueError
  and the chord's error recorded with it.
- safe: Celery's default interval, 1 s: the unlock retries through the delayed-delivery queues
  and publishes the callback; valid.
"""

from __future__ import annotations

from typing import Any

import pytest
from fm_kit import probe_run, violations

from harness.checkers import Validity
from harness.history import F

pytestmark = [pytest.mark.chaos, pytest.mark.full]

QUORUM = {"queue_type": "quorum"}
UNLOCK = "celery.chord_unlock"


def _run(stack: Any, **worker_settings: Any) -> tuple[Any, str]:
    result, workload = probe_run(stack, variant=QUORUM, chord_parts=2, seconds=3.0, n=1, concurrency=4,
                                 expectations={"chords": True}, worker_settings=worker_settings,
                                 quiesce_timeout_s=15.0)
    (key,) = workload.submitted
    return result, key


def _ops(result: Any, f: str, type_: str | None = None) -> list[Any]:
    return [op for op in result.history or () if op.f == f and (type_ is None or op.type.value == type_)
            and isinstance(op.value, dict)]


def test_fm16_vulnerable_sub_second_unlock_interval_fails_the_chord_on_quorum_queues(
        sqlite_backend_stack: Any) -> None:
    result, key = _run(sqlite_backend_stack, result_chord_retry_interval=0.5)
    assert result.valid is Validity.FALSE, result.summary()
    (wrong,) = violations(result, "liveness", "wrong_outcome")
    assert (wrong["key"], wrong["expected"], wrong["actual"]) == (key, "complete", "dlq"), result.summary()
    (missing,) = violations(result, "effects", "missing_effect")
    assert (missing["key"], missing["effect_kind"]) == (key, "probe.collected"), missing
    failed = _ops(result, F.PUBLISH, "fail")
    assert [op.value.get("name") for op in failed] == [UNLOCK], result.summary()
    assert "countdown must be a positive number" in str(failed[0].error)
    (err,) = _ops(result, F.CHORD_ERROR, "ok")
    assert err.value["by"] == UNLOCK and "could not be retried" in err.value["reason"], err.value
    # Both headers succeeded: the chord was failed by its unlock's retry, not by a header.
    assert {op.value.get("name") for op in _ops(result, F.EXECUTE, "fail")} == {UNLOCK}, result.summary()
    assert result.verdict("chords").counts["chords_failed"] == 1


def test_fm16_safe_whole_second_unlock_interval_completes_the_chord(sqlite_backend_stack: Any) -> None:
    result, key = _run(sqlite_backend_stack)
    assert result.valid is Validity.TRUE, result.summary()
    chords = result.verdict("chords").counts
    assert chords["chords_completed"] == 1, chords
    polls = [op for op in _ops(result, F.EXECUTE, "invoke") if op.value.get("name") == UNLOCK]
    assert len(polls) >= 2, result.summary()  # it did retry (through native delayed delivery)
