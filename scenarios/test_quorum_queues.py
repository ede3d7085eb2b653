"""Quorum queues: what changes for a Celery app, found by certifying the sample system on them.

On quorum queues Celery routes every countdown through its native delayed delivery, whose
routing key holds whole seconds: Celery 5.7 raises ``ValueError: countdown must be a positive
number`` for a countdown below one second. A retry with a jittered sub-second backoff then
fails to publish, and a task that had retries left is dead-lettered.

- vulnerable: quorum queues, retry countdowns as the backoff computes them
  (``round_up_countdowns=False``), the partner API down for 1 s: invalid, a notification that
  had to complete is in the DLQ, and the history holds the failed retry publish.
- safe: the same with countdowns rounded up to whole seconds (the sample system's default):
  valid, with the retries waiting in the ``celery_delayed_*`` queues counted as in flight by
  the quiesce (``full``: the whole-second retries make it slower).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from harness.certification import get, run_scenario

pytestmark = pytest.mark.chaos


class _OnQuorumQueues:
    """The sample system deployed on quorum queues, with or without whole-second countdowns."""

    def __init__(self, system: Any, *, round_up_countdowns: bool) -> None:
        self.system = system
        self.round_up = round_up_countdowns

    @contextlib.contextmanager
    def prepare(self, stack: Any, **kw: Any) -> Iterator[Any]:
        with self.system.prepare(stack, queue_type="quorum", round_up_countdowns=self.round_up, **kw) as d:
            yield d


def test_a_sub_second_retry_countdown_on_quorum_queues_dead_letters_a_task_with_retries_left(
        chaos_stack: Any, sample_system: Any) -> None:
    rep = run_scenario(chaos_stack, _OnQuorumQueues(sample_system, round_up_countdowns=False),
                       get("partner_api_down"), app="sample_system:app")
    assert rep.valid == "false", (rep.valid, rep.error)
    failed_retries = [op for op in rep.history
                      if op.f == "publish" and op.type.value == "fail" and "countdown must be" in (op.error or "")]
    assert failed_retries, "no retry publish failed: the vulnerable path was not exercised"
    liveness = rep.verdicts["liveness"]
    wrong = [ce for ce in liveness.violations() if ce["kind"] == "wrong_outcome"]
    assert any(ce["expected"] == "complete" and ce["actual"] == "dlq" for ce in wrong), liveness.violations()


@pytest.mark.full
def test_whole_second_countdowns_on_quorum_queues_are_valid(chaos_stack: Any, sample_system: Any) -> None:
    rep = run_scenario(chaos_stack, _OnQuorumQueues(sample_system, round_up_countdowns=True),
                       get("partner_api_down"), app="sample_system:app")
    assert rep.valid == "true", (rep.valid, rep.error, {k: v.counts for k, v in rep.verdicts.items()})
