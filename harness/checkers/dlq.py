"""Dead-letter queue conformance, judged on what the DLQ holds after the drain.

Responsibility: one verdict on the DLQ. When the history holds the DLQ's final contents
(``dlq_entry`` ops, read from the broker through ``workload.dlq_entries()``), those decide;
the ``dlq`` ops the system's own code records are evidence. Without a read (older histories),
the ``dlq`` ops are used.

- ``duplicated_in_dlq``: a task held (or dead-lettered) more than once;
- ``completed_and_dlq``: a task both in the DLQ and executed successfully;
- ``missing_from_dlq`` (when ``exp.dead_letter_queue``): a task that ended in a terminal
  failure (an execution failed with state FAILURE, e.g. retries exhausted, and none succeeded)
  that is not in the DLQ;
- ``dlq_claimed_not_held``: the system's code says it dead-lettered a task the DLQ does not hold;
- ``unit_not_in_dlq``: a unit expected to end in the DLQ has no entry there; ``unit_dlq_copies``:
  it has more than one;
- ``incomplete_envelope``: an entry without the task name or the final exception (it cannot be
  replayed or triaged).

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
from harness.checkers.index import HistoryIndex
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
    fs = ix.final_state
    store_read = bool(ix.dlq_store) or bool(fs and fs.get("dlq_read"))
    if fs is not None and not fs.get("dlq_read", False) and exp.dead_letter_queue:
        fx.indeterminate("the dead-letter queue could not be read after the drain: "
                         + str(fs.get("dlq_error") or "workload.dlq_entries() failed"))
    failed = dead = other = exhausted = 0
    for rec in ix.tasks.values():
        n = _copies(ix, rec.dlq_stored) if store_read else (len(rec.dlq) if rec.dlq else 0)
        if store_read and rec.dlq and not rec.dlq_stored:
            fx.anomaly("dlq_claimed_not_held", task_id=rec.task_id, key=rec.key, name=rec.name,
                       cause="the system recorded a dead letter that the dead-letter queue does not hold",
                       positions=rec.positions)
        for pos in rec.dlq_stored or ():
            v = ix.history[pos].value
            lacks = [f for f in ("name", "exception") if not (isinstance(v, dict) and v.get(f))]
            if lacks:
                fx.anomaly("incomplete_envelope", task_id=rec.task_id, key=rec.key, lacks=lacks,
                           fix="dead-letter the full envelope: task name, args, kwargs and the final exception",
                           positions=[pos])
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
    if store_read:
        _check_units(fx, ix, exp)
    fx.counts.update(failed=failed, retries_exhausted=exhausted, dead_lettered=dead, dead_lettered_other=other,
                     dlq_entries_read=len(ix.dlq_store))
    if not exp.dead_letter_queue:
        fx.notes.append("dead_letter_queue is False: failed tasks are not required to be in the DLQ")
    if failed == 0 and dead == 0:
        fx.vacuous("no task failed fatally and nothing reached the DLQ")
    return fx.verdict()


def _copies(ix: HistoryIndex, positions: list[int] | None) -> int:
    n = 0
    for pos in positions or ():
        v = ix.history[pos].value
        c = v.get("copies", 1) if isinstance(v, dict) else 1
        n += c if isinstance(c, int) and c > 0 else 1
    return n


def _check_units(fx: Findings, ix: HistoryIndex, exp: Expectations) -> None:
    """Each unit expected in the DLQ is held there exactly once (over all of its tasks)."""
    for key, outcome in exp.expected_outcomes.items():
        if outcome != "dlq":
            continue
        tasks = ix.keys.get(key, [])
        if not any(t.publish_status == "ok" or t.executions for t in tasks):
            continue  # never sent
        n = sum(_copies(ix, t.dlq_stored) for t in tasks)
        if n == 0:
            fx.anomaly("unit_not_in_dlq", key=key, task_ids=[t.task_id for t in tasks][:5],
                       positions=[p for t in tasks for p in t.positions])
        elif n > 1 and not any(_copies(ix, t.dlq_stored) > 1 for t in tasks):
            fx.anomaly("unit_dlq_copies", key=key, entries=n, positions=[p for t in tasks for p in t.positions])
