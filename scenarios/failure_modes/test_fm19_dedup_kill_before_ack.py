"""Failure mode 19: a worker killed after a task's result is stored and before its message is acked.

The report (celery #9835, fixed by PR #10159) is that with ``worker_deduplicate_successful_tasks``
the redelivered message takes the deduplication fast path (the backend already says SUCCESS)
and returns without dispatching the task's chain: the workflow stops there for good. Celery 5.7
has the fix (``celery/app/trace.py`` dispatches the chain and callbacks from the fast path
when the stored result records no children), so that loss does not reproduce: the safe half of
this pair is the regression guard.

What the same fault does show on 5.7 is why the setting exists. The fault: the first step of a
two-step chain of ``probes.work`` succeeds, the worker is held right after the result write
(``on_success(..., hold_s=5)``, before the ack) and the whole worker is SIGKILLed, then
restarted; RabbitMQ redelivers the unacked message. One worker, concurrency 1, so the second
step waits in the queue, not in a running child. Claim: exactly once.

- vulnerable: deduplication off (Celery's default): the redelivered first step runs again and
  publishes the second step again, same task id: both steps run twice
  (``duplicate_execution``, cause ``redelivery``).
- safe: ``worker_deduplicate_successful_tasks=True``: the redelivery is recognised as done (no
  second execution) and the chain still completes: every step once; valid.
"""

from __future__ import annotations

from typing import Any

import pytest
from fm_kit import EXACTLY_ONCE, executions, probe_run, receives, the_fault, violations

from harness.checkers import Validity
from harness.faults import KillWorker, Schedule, on_success, when

pytestmark = pytest.mark.chaos

KILL_BEFORE_ACK = Schedule.of(when(on_success("probes.work", hold_s=5.0), KillWorker(restart=True),
                                   duration_s=0.5))


def _run(stack: Any, dedup: bool) -> tuple[Any, str]:
    result, workload = probe_run(stack, chain_parts=2, seconds=0.3, n=2, concurrency=1,
                                 schedule=KILL_BEFORE_ACK, expectations=EXACTLY_ONCE,
                                 worker_settings={"worker_deduplicate_successful_tasks": dedup})
    the_fault(result)
    first = next(t for k, t in workload.submitted.items() if k.endswith(":chain:0"))
    # The fault landed where it must: after the first step's success, before any redelivery.
    assert [e["outcome"] for e in executions(result, first)][:1] == ["ok"], result.summary()
    assert [flag for _, flag in receives(result, first)] == [False, True], result.summary()
    return result, first


def test_fm19_vulnerable_no_dedup_reruns_a_stored_success_and_its_chain(chaos_stack: Any) -> None:
    result, first = _run(chaos_stack, dedup=False)
    assert result.valid is Validity.FALSE, result.summary()
    dups = violations(result, "duplicates", "duplicate_execution")
    ids = {d["task_id"] for d in dups}
    assert first in ids, result.summary()
    assert len(ids) == 2, dups  # the first step and the second step it published again
    assert [e["redelivered"] for e in executions(result, first)] == [False, True]


def test_fm19_safe_dedup_skips_the_redelivery_and_the_chain_completes(chaos_stack: Any) -> None:
    result, first = _run(chaos_stack, dedup=True)
    assert result.valid is Validity.TRUE, result.summary()
    assert len(executions(result, first)) == 1  # the redelivery was deduplicated, not run
    red = result.verdict("redelivery").counts  # the held success counts as unacked at the kill, and came back
    assert red["reserved_at_kill"] == 1 and red["reserved_redelivered"] == 1, red
    effects = result.verdict("effects")
    assert effects.counts["missing_effect"] == 0 and effects.counts["effects_present"] == 4  # 2 chains x 2 steps
