"""Dead-letter queue conformance: every fatal failure there exactly once, nothing that completed.

Responsibility: one verdict on the DLQ ledger (``dlq`` ops, by ``value.task_id``).

- ``duplicated_in_dlq``: a task dead-lettered more than once;
- ``completed_and_dlq``: a task both in the DLQ and executed successfully;
- ``missing_from_dlq`` (when ``exp.dead_letter_queue``): a task that ended in a terminal
  failure (an execution failed with state FAILURE, e.g. retries exhausted, and none succeeded)
  that never reached the DLQ.

Entries for tasks that neither failed nor completed (rejected messages, a delivery limit) are
counted as ``dead_lettered_other``. Unknown when nothing failed and nothing was dead-lettered.

Example:
    >>> from harness.history.ops import F, Op, OpType
    >>> h = [Op(0, 0, "p", OpType.OK, F.PUBLISH, {"task_id": "t"}),
    ...      Op(1, 1, "c", OpType.INVOKE, F.EXECUTE, {"task_id": "t"}),
    ...      Op(2, 2, "c", OpType.FAIL, F.EXECUTE, {"task_id": "t", "state": "FAILURE"})]
    >>> v = check_dlq(h, Expectations(dead_letter_queue=True))
    >>> v.valid.value, v.violations()[0]["kind"]
    ('false', 'missing_from_dlq')
"""

from __future__ import annotations

from harness.checkers._base import Findings, History, as_index
from harness.checkers.expectations import Expectations
from harness.checkers.verdict import Verdict

__all__ = ["check_dlq"]


def check_dlq(history: History, exp: Expectations | None = None) -> Verdict:
    """The DLQ ledger of `history` against the task outcomes (see the module docstring).

    Example:
        >>> check_dlq([], Expectations(dead_letter_queue=True)).valid.value
        'unknown'
    """
    exp = exp or Expectations()
    ix = as_index(history, exp)
    fx = Findings("dlq", exp, ix, kinds=("duplicated_in_dlq", "completed_and_dlq", "missing_from_dlq"))
    failed = dead = other = exhausted = 0
    for rec in ix.tasks.values():
        n = len(rec.dlq) if rec.dlq else 0
        ok = rec.succeeded
        is_failed = not ok and rec.failed
        if n:
            dead += 1
            if n > 1:
                fx.anomaly("duplicated_in_dlq", task_id=rec.task_id, key=rec.key, entries=n, positions=rec.positions)
            if ok:
                fx.anomaly("completed_and_dlq", task_id=rec.task_id, key=rec.key, positions=rec.positions)
            elif not is_failed:
                other += 1
        if is_failed:
            failed += 1
            pol = exp.retry_policy_for(rec.name)
            top = max(ex.attempt for ex in rec.executions or ())
            if pol is not None and pol.max_retries is not None and top >= pol.max_retries:
                exhausted += 1
            if n == 0 and exp.dead_letter_queue:
                fx.anomaly("missing_from_dlq", task_id=rec.task_id, key=rec.key, name=rec.name,
                           positions=rec.positions)
    fx.counts.update(failed=failed, retries_exhausted=exhausted, dead_lettered=dead, dead_lettered_other=other)
    if not exp.dead_letter_queue:
        fx.notes.append("dead_letter_queue is False: failed tasks are not required to be in the DLQ")
    if failed == 0 and dead == 0:
        fx.vacuous("no task failed fatally and nothing reached the DLQ")
    return fx.verdict()
