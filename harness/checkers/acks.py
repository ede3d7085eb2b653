"""The ack ledger: what the workers acked, against what the run needs and what the tasks claim.

Responsibility: one verdict on the worker's ``ack`` ops (recorded from inside the worker,
``harness/history/celery_signals.py``), two anomalies:

- ``unsettled_completion``: a delivery that ran to its end (the execution ok, or a terminal
  failure), whose ack did not go out (``ack`` fail: the channel was closed, e.g. by RabbitMQ's
  ``consumer_timeout`` or a missed heartbeat; or ``ack`` invoke never completed: the worker
  died before it sent it), and that no worker received again before the
  run ended. The broker still holds the message: it will run again when a consumer comes
  back. Without this, a run whose workers all lost their channels after finishing the work
  looks complete (mode 7). Allowed when the claim allows duplicate executions (at-least-once:
  the copy to come is a duplicate it tolerates), a violation under exactly-once;
- ``messages_left``: the drain found messages still in the work queues (ready or unacked)
  after the run: they will be delivered again. AMQP acks are not confirmed, so a worker may
  write its ack into a channel the broker already closed and record it ``ok``; the broker's
  queue is the evidence that does not depend on the worker. Allowed like a duplicate;
- ``acked_on_timeout``: an ack asked for to conclude a hard time limit while the task's own
  ``acks_on_timeout`` (or ``task_acks_on_failure_or_timeout``) was False (celery #9596): the
  setting says the message goes back to the queue, the worker dropped it instead. Always a
  violation: the configuration promised otherwise.

Counts: ``acks`` (ok), ``acks_failed`` (fail), per conclusion asked (``after_success``...).
Unknown-free: without any ``ack`` op the verdict passes with a note (the recorder did not see
the worker's acks; nothing to judge).

Example:
    >>> from harness.history.ops import F, Op, OpType
    >>> v = {"task_id": "t1", "key": "k1", "after": "success", "acks_late": True}
    >>> h = [Op(0, 1, "p", OpType.OK, F.PUBLISH, {"task_id": "t1", "key": "k1"}),
    ...      Op(1, 2, "w-1", OpType.OK, F.RECEIVE, {"task_id": "t1", "key": "k1"}),
    ...      Op(2, 3, "w-1.child-2", OpType.INVOKE, F.EXECUTE, {"task_id": "t1", "key": "k1"}),
    ...      Op(3, 9, "w-1.child-2", OpType.OK, F.EXECUTE, {"task_id": "t1", "key": "k1"}),
    ...      Op(4, 9, "w-1", OpType.INVOKE, F.ACK, v),
    ...      Op(5, 9, "w-1", OpType.FAIL, F.ACK, v, error="channel closed")]
    >>> verdict = check_acks(h, Expectations(allow_duplicate_executions=False))
    >>> verdict.valid.value, verdict.violations()[0]["kind"], verdict.violations()[0]["task_id"]
    ('false', 'unsettled_completion', 't1')
"""

from __future__ import annotations

from typing import Any

from harness.checkers._base import Findings, History, as_index
from harness.checkers.expectations import Expectations
from harness.checkers.verdict import Verdict
from harness.history.ops import F, OpType

__all__ = ["check_acks", "has_acks"]


def has_acks(history: Any) -> bool:
    """Whether `history` (ops or an index) holds an ``ack`` op: the ledger can be judged."""
    ops = getattr(history, "history", history)
    return any(op.f == F.ACK for op in ops)


def check_acks(history: History, exp: Expectations | None = None) -> Verdict:
    """The ack ledger of `history` under `exp` (see the module docstring).

    Example:
        >>> check_acks([], Expectations()).valid.value
        'true'
    """
    exp = exp or Expectations()
    ix = as_index(history, exp)
    fx = Findings("acks", exp, ix, kinds=("unsettled_completion", "messages_left", "acked_on_timeout"))
    fx.counts.update(acks=0, acks_failed=0)
    by_task: dict[str, list[int]] = {}
    for pos, op in enumerate(ix.history):
        if op.f != F.ACK or not isinstance(op.value, dict):
            continue
        tid = op.value.get("task_id")
        if not isinstance(tid, str):
            continue
        if ix.run_id is not None and op.value.get("run_id") not in (None, ix.run_id):
            continue  # a leftover message of an earlier run
        by_task.setdefault(tid, []).append(pos)
        if op.type == OpType.INVOKE:
            fx.add(f"after_{op.value.get('after', 'unknown')}")
        else:
            fx.add("acks" if op.type == OpType.OK else "acks_failed")
    if not by_task:
        fx.notes.append("no ack was recorded: the ack ledger was not checked")
        _messages_left(fx, ix, exp.allow_duplicate_executions)
        return fx.verdict()
    allow_dup = exp.allow_duplicate_executions
    for tid, positions in by_task.items():
        rec = ix.tasks.get(tid)
        related = sorted(set(positions) | set(rec.positions if rec is not None else ()))
        for pos in positions:
            op = ix.history[pos]
            value = op.value
            if op.type == OpType.INVOKE and value.get("after") == "time_limit" and value.get("acks_on_timeout") is False:
                fx.anomaly("acked_on_timeout", task_id=tid, key=value.get("key"), name=value.get("name"),
                           cause="the worker acked a task that hit its hard time limit although the task's "
                                 "acks_on_timeout is False (celery #9596)",
                           setting="task_acks_on_failure_or_timeout / task_acks_on_timeout",
                           positions=related)
        last = ix.history[positions[-1]]
        # An ack asked for and never completed (the worker died before its event loop sent
        # it) leaves the message in the broker just as a failed one does.
        if last.type == OpType.OK or last.value.get("after") in ("accepted", "retry"):
            continue  # an early ack lost is the lost_tasks checker's; a retry's successor carries on
        later_receive = rec is not None and any(t > last.time for t, *_ in rec.receives or ())
        if later_receive:
            fx.add("redelivered_after_failed_ack")
            continue
        fields: dict[str, Any] = {}
        if not allow_dup:
            fields.update(cause="the execution finished but its ack did not reach the broker (the channel was "
                                "closed); the broker holds the message and will deliver it again",
                          setting="RabbitMQ consumer_timeout / broker_heartbeat / the worker's connection",
                          fix="keep tasks shorter than the broker's consumer_timeout, or raise it; make the "
                              "task idempotent")
        fx.anomaly("unsettled_completion", allowed=allow_dup, by_claim=allow_dup, task_id=tid,
                   key=last.value.get("key"), name=last.value.get("name"), after=last.value.get("after"),
                   error=last.error, positions=related, **fields)
    _messages_left(fx, ix, allow_dup)
    return fx.verdict()


def _messages_left(fx: Findings, ix: Any, allow_dup: bool) -> None:
    # AMQP acks are not confirmed: an ack written into a channel the broker had already closed
    # looks sent from inside the worker. What the broker still holds after the run is the
    # evidence that does not depend on the worker's view.
    fs = ix.final_state or {}
    left = {q: d for q, d in (fs.get("queues_left") or {}).items()
            if isinstance(d, dict) and (int(d.get("ready", 0) or 0) + max(int(d.get("unacked", 0) or 0), 0)) > 0}
    if not left:
        return
    n = sum(int(d.get("ready", 0) or 0) + max(int(d.get("unacked", 0) or 0), 0) for d in left.values())
    fields: dict[str, Any] = {}
    if not allow_dup:
        fields.update(cause="the broker still holds messages of the run after it ended: each is delivered again "
                            "when a consumer comes back (a task that already ran runs twice)")
    fx.anomaly("messages_left", allowed=allow_dup, by_claim=allow_dup, queues=left, messages=n, **fields)
