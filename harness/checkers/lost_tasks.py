"""Lost, recovered and unexpected tasks: the producer's ledger against what the workers did.

Responsibility: one verdict per run on task ids (Jepsen's set checker, for messages).

- **lost**: a publish was acknowledged (``publish`` ok, from any process) and the task never
  reached a terminal state: no execution ended ok or with a terminal failure, it was never
  dead-lettered nor revoked (a rejected execution, ``Reject``, is not an end: a message
  rejected without requeue and not dead-lettered is lost). A loss is *allowed* (reported, not a
  violation) only when the user's claim is at-most-once delivery. The configuration explains a
  loss: the counterexample names the kill that cut the task, the setting that let it be lost
  (early acks; late acks without reject-on-worker-lost on a pool-child kill) and the fix.
- **recovered**: the publish was indeterminate (``info``, or an invoke never completed) and the
  task was executed anyway. Never a violation; an indeterminate publish that never ran is not
  lost either.
- **unexpected**: a worker saw a task that this run never published (no publish op at all), a
  task whose publish failed (known not sent), or any op carrying another ``run_id``.

Example:
    >>> from harness.history.ops import F, Op, OpType
    >>> h = [Op(0, 1, "producer-1", OpType.INVOKE, F.PUBLISH, {"task_id": "t1", "key": "k1"}),
    ...      Op(1, 2, "producer-1", OpType.OK, F.PUBLISH, {"task_id": "t1", "key": "k1"})]
    >>> v = check_lost_tasks(h, Expectations())
    >>> v.valid.value, v.counts["lost"], v.counterexamples[0]["task_id"]
    ('false', 1, 't1')
"""

from __future__ import annotations

from typing import Any

from harness.checkers._base import Findings, History, as_index, loss_fields
from harness.checkers.expectations import Expectations
from harness.checkers.verdict import Verdict

__all__ = ["check_lost_tasks"]


def check_lost_tasks(history: History, exp: Expectations | None = None) -> Verdict:
    """Lost / recovered / unexpected tasks of `history` under `exp` (see the module docstring).

    Example:
        >>> check_lost_tasks([], Expectations(require_fault_bite=False)).valid.value
        'true'
    """
    exp = exp or Expectations()
    ix = as_index(history, exp)
    fx = Findings("lost_tasks", exp, ix, kinds=("lost", "lost_allowed", "recovered_allowed", "unexpected"))
    published = acknowledged = maybe = not_sent = 0
    succeeded = failed = dead = revoked = 0
    for rec in ix.tasks.values():
        status = rec.publish_status
        seen = bool(rec.executions or rec.receives or rec.dlq or rec.dlq_stored)
        if status is None:
            if seen:
                fx.anomaly("unexpected", reason="never published by this run", task_id=rec.task_id, key=rec.key,
                           positions=rec.positions)
            continue
        published += 1
        if status == "fail":
            not_sent += 1
            if rec.executions:
                fx.anomaly("unexpected", reason="publish failed (known not sent) yet the task executed",
                           task_id=rec.task_id, key=rec.key, positions=rec.positions)
            continue
        outcome = rec.outcome
        if outcome == "complete":
            succeeded += 1
        elif outcome == "dlq":
            dead += 1
        elif outcome == "failed":
            failed += 1
        elif outcome == "revoked":
            revoked += 1
        if status == "info":
            maybe += 1
            if rec.executions:
                fx.anomaly("recovered", allowed=True, task_id=rec.task_id, key=rec.key, positions=rec.positions)
            continue
        acknowledged += 1
        if outcome is not None:
            continue
        kill, why = loss_fields(rec, exp)
        last = ix.history[rec.positions[-1]] if rec.positions else None
        fields: dict[str, Any] = {"task_id": rec.task_id, "key": rec.key, "name": rec.name,
                  "last_op": None if last is None else f"{last.f} {last.type.value} by {last.process}", **why}
        positions = [*rec.positions, kill.pos] if kill is not None else rec.positions
        fx.anomaly("lost", allowed=exp.claim.allows_loss, by_claim=True, positions=positions, **fields)
    for fk, pos in ix.foreign.items():
        op = ix.history[pos]
        rid = op.value.get("run_id") if isinstance(op.value, dict) else None
        fx.anomaly("unexpected", reason=f"op of another run (run_id {rid!r}, expected {exp.run_id!r})",
                   task_id=None if fk.startswith("op@") else fk, positions=[pos])
    fx.counts.update(published=published, acknowledged=acknowledged, maybe_published=maybe,
                     publish_failed=not_sent, succeeded=succeeded, failed=failed, dead_lettered=dead,
                     revoked=revoked, foreign_ops=ix.foreign_ops)
    if acknowledged == 0 and maybe == 0:
        fx.vacuous("no publish was acknowledged")
    if ix.orphan_completions:
        fx.notes.append(f"{ix.orphan_completions} execute completions had no open invoke on their process "
                        "(history truncated or process names inconsistent)")
    return fx.verdict()
