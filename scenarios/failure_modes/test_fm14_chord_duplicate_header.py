"""Failure mode 14 (not reproduced, kept as a guard): a duplicated chord header must not run the
chord body twice, early, or never.

The reports (celery #3332, #3536, #5947; django-celery-results PR #397) involve a header task
executed twice, so the chord counter is advanced twice. Here the duplicate comes from mode 8:
the worker-to-broker proxy goes down for 1.5 s while both headers of a two-part chord of
``probes.work`` run (3 s each) and ``cancel_long_running_tasks_on_connection_loss=False``, so
each running header finishes *and* runs again from its redelivered message.

On Celery 5.7 with the Redis result backend the chord join counts each header task id once
(a Lua script keyed by task id), and the callback ran exactly once, after the headers, in
every run: there is no vulnerable configuration to pair, so this is a single guard test.
Claim: chords (exactly one callback, never before its headers); effects idempotent.
"""

from __future__ import annotations

from typing import Any

import pytest
from fm_kit import executions, probe_run, the_fault

from harness.checkers import Validity
from harness.faults import RolePartition, Schedule, on_execute, when

pytestmark = pytest.mark.chaos

BLIP = Schedule.of(when(on_execute("probes.work", delay_s=0.5), RolePartition("worker_broker", mode="proxy_down"),
                        duration_s=1.5))


def test_fm14_guard_duplicated_headers_still_run_the_chord_callback_once(chaos_stack: Any) -> None:
    result, workload = probe_run(chaos_stack, variant={"cancel_long_running_tasks_on_connection_loss": False},
                                 chord_parts=2, seconds=3.0, n=1, schedule=BLIP, expectations={"chords": True})
    the_fault(result)
    assert result.valid is Validity.TRUE, result.summary()
    chords = result.verdict("chords")
    assert chords.counts["chords_completed"] == 1 and chords.counts["callback_duplicated"] == 0
    (callback_id,) = workload.submitted.values()
    assert [e["outcome"] for e in executions(result, callback_id)] == ["ok"]
    # The fault bit: at least one header ran twice (the original and its redelivered copy).
    assert result.verdict("duplicates").counts["cause_redelivery"] >= 1, result.summary()
