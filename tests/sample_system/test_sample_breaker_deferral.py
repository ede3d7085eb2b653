"""An open circuit breaker defers a task without spending its retry budget (real worker, real partner).

The chaos suite found this: one request the partner always answers 503 keeps a worker process's
breaker open after a partner outage, and each refused call used to count as a retry, so healthy
deliveries ran out of retries and landed in the DLQ. A refused call was never made; now the
task waits for the breaker's trial window instead (``Settings.breaker_max_deferrals``).

One pool child (concurrency 1), so every attempt meets the same breaker.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sample_testkit import Partner, prepared_workload, running_worker, stack_settings, wait_until

from harness.workload import DLQEntry
from sample_system import Settings
from sample_system.partner_api import PartnerControl
from sample_system.workload import SampleWorkload

RESET_S = 1.5


def _settings(stack: Any, partner: Partner, tmp: Path, **over: Any) -> Settings:
    # One transient failure opens the breaker for RESET_S; one retry in the budget.
    return stack_settings(stack, partner, tmp, max_retries=1, retry_backoff=0.05, retry_jitter=False,
                          breaker_failure_threshold=1, breaker_reset_timeout=RESET_S, rate_limit=None, **over)


def _deliver_after_one_503(stack: Any, partner: Partner, control: PartnerControl, tmp: Path,
                           **over: Any) -> tuple[SampleWorkload, Any, str, list[dict[str, Any]]]:
    settings = _settings(stack, partner, tmp, **over)
    workload = prepared_workload(settings)
    key = f"breaker-{uuid.uuid4().hex[:8]}"
    with running_worker(settings, tmp, concurrency=1) as (app, _worker):
        control.control(fail_next=1, status_codes=[503])
        app.send_task("notifications.deliver", args=("email", "u", "hi"), kwargs={"key": key})

        def settled() -> bool:
            return bool(workload.store.effects_by_key([key])) or any(e.key == key for e in workload.dlq_entries(app))
        wait_until(settled, timeout=30, what=f"delivery {key} to complete or be dead-lettered", interval=0.2)
        calls = [c for c in control.log() if c["idempotency_key"] == f"notification:{key}:email"]
        return workload, app, key, calls


def test_a_refused_call_waits_for_the_breaker_instead_of_spending_a_retry(
        chaos_stack: Any, partner: Partner, partner_control: PartnerControl, tmp_path: Path) -> None:
    workload, _app, key, calls = _deliver_after_one_503(chaos_stack, partner, partner_control, tmp_path)
    assert workload.store.effects_by_key([key]), "the delivery did not complete"
    assert [c["status"] for c in calls] == [503, 202], calls
    gap = (calls[1]["mono_ns"] - calls[0]["mono_ns"]) / 1e9
    # The second call is the breaker's half-open trial: not before its window ends.
    assert gap >= RESET_S * 0.9, f"the trial call came {gap:.2f}s after the failure, inside the breaker window"


def test_without_deferrals_the_refusal_spends_the_last_retry_and_the_task_is_dead_lettered(
        chaos_stack: Any, partner: Partner, partner_control: PartnerControl, tmp_path: Path) -> None:
    workload, app, key, calls = _deliver_after_one_503(chaos_stack, partner, partner_control, tmp_path,
                                                       breaker_max_deferrals=0)
    entries: list[DLQEntry] = [e for e in workload.dlq_entries(app) if e.key == key]
    assert len(entries) == 1, f"expected the delivery in the DLQ, found {entries}"
    assert entries[0].exception.startswith("CircuitOpenError"), entries[0].exception
    assert [c["status"] for c in calls] == [503], "the refused attempt must not reach the partner"
    assert workload.store.effects_by_key([key]) == {}


@pytest.mark.parametrize("bad", [-1])
def test_negative_deferrals_are_rejected(bad: int) -> None:
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="breaker_max_deferrals"):
        Settings(breaker_max_deferrals=bad)
