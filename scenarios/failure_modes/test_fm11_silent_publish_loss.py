"""Failure mode 11: ``apply_async()`` returns normally but the message never reaches the broker.

Without publisher confirms a publish is "done" once its bytes are written to the socket. If
the connection silently drops them (a partition, a dying broker, a memory alarm followed by a
crash), the producer never learns: the task is lost and nobody knows (celery #5410, #2595;
kombu #59). With ``confirm_publish=True`` the publish waits for the broker's ack: bounded by a
confirm timeout it fails, and Celery's publish retry re-sends it on a new connection.

Fault: the producers' broker proxy blackholes every byte (no RST, no FIN) for 2 s, starting
0.5 s into the load; eight probes are submitted every 0.5 s (the last two after the heal).
Both variants publish with ``confirm_timeout=1.5`` s (a no-op without confirms); the workers'
connections are untouched. Claim: at-least-once (late acks, reject on worker lost).

- vulnerable: ``confirm_publish=False``. The publishes made during the blackhole all return
  normally (publish ``ok`` in the history) and are never executed: ``lost`` (lost_tasks) and
  ``stuck`` (liveness) for exactly those task ids.
- safe: ``confirm_publish=True``. The first publish into the blackhole waits for its confirm,
  times out, is re-sent after the heal and acknowledged; nothing is lost; valid.
"""

from __future__ import annotations

from typing import Any

import pytest
from fm_kit import AT_LEAST_ONCE, fault_window, probe_run, publishes, the_fault, violations

from harness.checkers import Validity
from harness.faults import RolePartition, Schedule, at

pytestmark = pytest.mark.chaos

BLACKHOLE = Schedule.of(at(0.5, RolePartition("producer_broker", mode="blackhole"), duration_s=2.0))


def _run(stack: Any, *, confirm: bool) -> Any:
    result, _ = probe_run(stack, variant={"confirm_publish": confirm}, n=8, seconds=0.2, confirm_timeout=1.5,
                          submit_interval_s=0.5, schedule=BLACKHOLE, expectations=AT_LEAST_ONCE)
    the_fault(result)
    return result


def test_fm11_vulnerable_no_confirms_lose_publishes_silently(chaos_stack: Any) -> None:
    result = _run(chaos_stack, confirm=False)
    assert result.valid is Validity.FALSE, result.summary()
    lost = violations(result, "lost_tasks", "lost")
    assert lost, result.summary()
    start, heal = fault_window(result)
    pubs = publishes(result)
    for example in lost:
        sent, done, how = pubs[example["task_id"]]
        assert how == "ok" and start <= sent <= heal, (example, start, heal)  # "published", into the blackhole
    stuck = {tid for v in violations(result, "liveness", "stuck") for tid in v["task_ids"]}
    assert stuck == {e["task_id"] for e in lost}
    # Every publish outside the blackhole went through.
    assert result.verdict("lost_tasks").counts["succeeded"] == 8 - len(lost)


def test_fm11_safe_publisher_confirms_lose_nothing(chaos_stack: Any) -> None:
    result = _run(chaos_stack, confirm=True)
    assert result.valid is Validity.TRUE, result.summary()
    counts = result.verdict("lost_tasks").counts
    assert counts["lost"] == 0 and counts["succeeded"] == 8
    start, heal = fault_window(result)
    # The fault bit the publish path: a publish started in the blackhole was acknowledged only after the heal.
    held = [p for p in publishes(result).values() if start <= p[0] <= heal and p[1] is not None and p[1] > heal]
    assert held, publishes(result)
