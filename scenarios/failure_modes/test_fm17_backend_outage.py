"""Failure mode 17: a result-backend outage mid-task turns a task that succeeded into a failure.

When a task finishes while the result backend is unreachable, Celery retries the write of its
result (``result_backend_always_retry``) up to ``result_backend_max_retries`` times with a
jittered exponential backoff; once they are exhausted the task fails with
``BackendStoreError`` *after* its body ran and its effects were applied (celery #8588: the
task executes but its stored state is wrong or lost). In the sample system a failed task is
dead-lettered, so the succeeded task also lands in the DLQ, where a replay would run it again.

Fault: the workers' result-backend proxy goes down for 8 s, 0.3 s into the first probe (1 s
of work each); the run has two probes that must complete and two that must fail into the DLQ
(so the DLQ claim is exercised in both variants).

- vulnerable: the sample system's production setting, 10 retries with the sleep capped at 2 s:
  a retry budget of at most 6.6 s, shorter than the outage. The dlq checker reports
  ``completed_and_dlq`` for the probes that finished during the outage, and the backend holds
  FAILURE for them although their effect was applied.
- safe: the same with ``result_backend_max_retries`` unbounded (10**6): the write waits for
  the backend, every probe is stored as SUCCESS; valid.
"""

from __future__ import annotations

from typing import Any

import pytest
from fm_kit import executions, probe_run, stored_states, the_fault, violations

from harness.checkers import Validity
from harness.faults import RolePartition, Schedule, on_execute, when

pytestmark = pytest.mark.chaos

OUTAGE_S = 8.0  # longer than the production retry budget (sum of the capped sleeps: 6.55 s)
BACKEND_OUTAGE = Schedule.of(when(on_execute("probes.work", delay_s=0.3),
                                  RolePartition("worker_backend", mode="proxy_down"), duration_s=OUTAGE_S))


def _run(stack: Any, **worker_settings: Any) -> tuple[Any, dict[str, str], dict[str, str]]:
    result, workload = probe_run(stack, n=2, seconds=1.0, failing=True, schedule=BACKEND_OUTAGE,
                                 worker_settings=worker_settings)
    the_fault(result)
    probes = {k: t for k, t in workload.submitted.items() if ":probe:" in k}
    return result, probes, stored_states(workload, list(probes.values()))


def test_fm17_vulnerable_bounded_backend_retries_dead_letter_a_succeeded_task(chaos_stack: Any) -> None:
    result, probes, states = _run(chaos_stack)
    assert result.valid is Validity.FALSE, result.summary()
    wrong = violations(result, "dlq", "completed_and_dlq")
    assert wrong, result.summary()
    for w in wrong:
        assert w["task_id"] in probes.values()
        assert [e["outcome"] for e in executions(result, w["task_id"])] == ["ok"]  # its body succeeded once
        assert states[w["task_id"]] == "FAILURE"  # ... and the system says it failed
    assert result.verdict("duplicates").counts["duplicate_effect"] == 0


def test_fm17_safe_unbounded_backend_retries_store_every_result(chaos_stack: Any) -> None:
    result, probes, states = _run(chaos_stack, result_backend_max_retries=10**6)
    assert result.valid is Validity.TRUE, result.summary()
    assert set(states.values()) == {"SUCCESS"}, states
    assert result.verdict("dlq").counts.get("completed_and_dlq", 0) == 0
