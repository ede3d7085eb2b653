"""Failure mode 4: a task that hits its hard time limit is acked, so its message is gone.

With late acks a user expects a task that did not finish to come back. A hard time limit
(``task_time_limit``) kills the pool child, and Celery then concludes the message with
``task_acks_on_timeout``, which falls back to ``task_acks_on_failure_or_timeout``: ``True`` by
default, so the timed-out message is **acked**: never redelivered, and never dead-lettered
unless the task publishes it somewhere itself. celery #9596 was the opposite bug (acked even
with the setting ``False``), fixed by PR #9626; Celery 5.7 splits the setting in two (PR
#10150) and ``Request.on_timeout`` / ``Request.on_failure`` reject with ``requeue=True`` when
``acks_on_timeout`` is False. The safe half of this pair is the regression guard of #9596
(the ``acks`` checker's ``acked_on_timeout``).

No fault: the probe (``probes.work``) runs under a 1 s hard time limit (``task_time_limit=1``,
no soft limit; it stands for 300 s) and works 3 s on its first delivery only
(``first_seconds``: it hung once, on a slow dependency), 0.2 s when redelivered. Claim: at
least once (late acks, reject on worker lost): each probe must complete.

The limit is the app's, not the message's: on the prefork pool a per-call ``time_limit`` below
the task's soft limit is not enforced until the soft limit fires (``AsynPool.on_timeout_set``
arms only the soft timer when there is one, and the hard one from it), so
``send_task(..., time_limit=1)`` with the sample system's ``task_soft_time_limit=240`` ran 3 s
to success.

- vulnerable: Celery's defaults around late acks and no dead-letter queue
  (``Settings(dlq=False)``: ``task_acks_on_failure`` and ``task_acks_on_timeout`` True, which
  is what ``task_acks_on_failure_or_timeout=True``, the default, resolves to): each probe is
  acked after its time limit, never runs again: liveness ``wrong_outcome`` (expected complete,
  actual failed, explained by ``task_acks_on_timeout``) and effects ``missing_effect``.
- safe: ``task_acks_on_timeout=False`` (``Settings(acks_on_timeout=False)``) on quorum queues
  with a dead-letter exchange and ``x-delivery-limit: 2``: the timed-out probe is rejected
  with requeue, redelivered and completes; a poison probe that hangs on every delivery
  (``hanging``) is requeued twice and then dead-lettered by RabbitMQ, not looped for ever
  (3 deliveries); valid.
"""

from __future__ import annotations

from typing import Any

import pytest
from fm_kit import AT_LEAST_ONCE, executions, probe_run, violations

from harness.checkers import Validity
from harness.history import F

pytestmark = [pytest.mark.chaos, pytest.mark.full]

TIME_LIMIT_S = 1.0  # stands for a production task_time_limit (300 s)
FIRST_DELIVERY_S = 3.0  # the first delivery hangs past the limit
QUICK_S = 0.2  # what the task takes when it comes back
DELIVERY_LIMIT = 2  # a poison message is returned twice, then dead-lettered: 3 deliveries in all
LIMITS = {"time_limit": TIME_LIMIT_S, "soft_time_limit": 0}  # 0: no soft limit


def _acks_and_rejects(result: Any, task_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    acks = [dict(op.value, type=op.type.value) for op in result.history or ()
            if op.f == F.ACK and isinstance(op.value, dict) and op.value.get("task_id") == task_id]
    rejects = [dict(op.value) for op in result.history or ()
               if op.f == F.REJECT and isinstance(op.value, dict) and op.value.get("task_id") == task_id]
    return acks, rejects


def test_fm04_vulnerable_acks_on_timeout_drops_a_timed_out_task(chaos_stack: Any) -> None:
    result, workload = probe_run(chaos_stack, variant={"dlq": False, **LIMITS}, n=2, seconds=QUICK_S,
                                 first_seconds=FIRST_DELIVERY_S, expectations=AT_LEAST_ONCE,
                                 quiesce_timeout_s=10.0)
    assert result.valid is Validity.FALSE, result.summary()
    probes = dict(workload.submitted)
    assert len(probes) == 2
    for tid in probes.values():
        exs = executions(result, tid)
        assert [e["outcome"] for e in exs] == ["info"], exs  # one execution, cut by its time limit
        acks, rejects = _acks_and_rejects(result, tid)
        assert [(a["after"], a["acks_on_timeout"], a["type"]) for a in acks][:1] == [("time_limit", True, "invoke")]
        assert not rejects, rejects
    wrong = {v["key"]: v for v in violations(result, "liveness", "wrong_outcome")}
    assert set(wrong) == set(probes), result.summary()
    for v in wrong.values():
        assert (v["expected"], v["actual"]) == ("complete", "failed")
        assert v["setting"].startswith("task_acks_on_timeout")  # explained: acked on its time limit
    missing = {v["key"] for v in violations(result, "effects", "missing_effect")}
    assert missing == set(probes), result.summary()
    assert result.verdict("acks").counts.get("after_time_limit") == 2
    assert not violations(result, "acks", "acked_on_timeout")  # acked as configured: no #9596


def test_fm04_safe_requeue_on_timeout_with_a_delivery_limit(chaos_stack: Any) -> None:
    result, workload = probe_run(chaos_stack, variant={"acks_on_timeout": False, "queue_type": "quorum",
                                                       "delivery_limit": DELIVERY_LIMIT, **LIMITS},
                                 n=1, seconds=QUICK_S, first_seconds=FIRST_DELIVERY_S,
                                 hanging_seconds=FIRST_DELIVERY_S, expectations=AT_LEAST_ONCE)
    assert result.valid is Validity.TRUE, result.summary()
    probe = next(t for k, t in workload.submitted.items() if ":probe:" in k)
    poison = next(t for k, t in workload.submitted.items() if ":hanging:" in k)
    exs = executions(result, probe)
    assert [(e["outcome"], e["redelivered"]) for e in exs] == [("info", False), ("ok", True)], exs
    acks, rejects = _acks_and_rejects(result, probe)
    assert [r["requeue"] for r in rejects] == [True], rejects  # the timeout was rejected with requeue ...
    assert [a["after"] for a in acks if a["type"] == "invoke"] == ["success"], acks  # ... and only the success acked
    # The poison message: delivered 1 + DELIVERY_LIMIT times, each cut by its time limit, then
    # dead-lettered by RabbitMQ (the dlq checker found it in the DLQ: the run is valid).
    assert [e["outcome"] for e in executions(result, poison)] == ["info"] * (DELIVERY_LIMIT + 1)
    _, poison_rejects = _acks_and_rejects(result, poison)
    assert [r["requeue"] for r in poison_rejects] == [True] * (DELIVERY_LIMIT + 1)
    assert result.verdict("acks").counts.get("after_time_limit", 0) == 0
