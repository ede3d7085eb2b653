"""Results a client waited for: did it get the result of each task that finished?

Responsibility: one verdict on the clients' ``result`` ops (a client asked for a task's result,
``AsyncResult.get(timeout=...)``, and got it: ok with the state, or did not: fail), one anomaly:

- ``result_not_delivered``: a client asked for the result of a task whose execution finished
  (ok: its result was written or sent by the worker) and never got it: every ask failed or
  never completed (a timeout, a connection error). The task ran, the client that needs its
  answer does not have it (celery #6912: the ``rpc://`` backend after a RabbitMQ restart; a
  result written to a store that lost it). Always a violation: no claim allows a client to
  lose a result the worker produced.

A task that never finished is the liveness checkers' business (``lost``, ``stuck``): its ask
failing is counted (``not_ready``), not reported twice. A task whose ask got a state other than
``SUCCESS`` though an execution succeeded is counted (``stale_state``) with a note: the state
the client saw is not the one the task ended in.

Counts: ``asked`` (tasks whose result was asked), ``delivered``, ``not_ready``, ``stale_state``.
Without any ``result`` op the verdict passes with a note: no client waited for a result.

Example:
    >>> from harness.history.ops import F, Op, OpType
    >>> t = {"task_id": "t1", "key": "k1"}
    >>> h = [Op(0, 1, "producer", OpType.OK, F.PUBLISH, t),
    ...      Op(1, 2, "w1.child-1", OpType.INVOKE, F.EXECUTE, t),
    ...      Op(2, 3, "w1.child-1", OpType.OK, F.EXECUTE, t),
    ...      Op(3, 4, "client-1", OpType.INVOKE, F.RESULT, {**t, "timeout_s": 3.0}),
    ...      Op(4, 5, "client-1", OpType.FAIL, F.RESULT, {**t, "timeout_s": 3.0}, error="TimeoutError")]
    >>> v = check_results(h, Expectations())
    >>> v.valid.value, v.violations()[0]["kind"], v.violations()[0]["task_id"]
    ('false', 'result_not_delivered', 't1')
"""

from __future__ import annotations

from typing import Any

from harness.checkers._base import Findings, History, as_index
from harness.checkers.expectations import Expectations
from harness.checkers.index import OK
from harness.checkers.verdict import Verdict
from harness.history.ops import F, OpType

__all__ = ["check_results", "has_results"]


def has_results(history: Any) -> bool:
    """Whether `history` (ops or an index) holds a ``result`` op: a client waited for results."""
    ops = getattr(history, "history", history)
    return any(op.f == F.RESULT for op in ops)


def check_results(history: History, exp: Expectations | None = None) -> Verdict:
    """The clients' results of `history` under `exp` (see the module docstring).

    Example:
        >>> check_results([], Expectations()).valid.value
        'true'
    """
    exp = exp or Expectations()
    ix = as_index(history, exp)
    fx = Findings("results", exp, ix, kinds=("result_not_delivered",))
    fx.counts.update(asked=0, delivered=0, not_ready=0, stale_state=0)
    asks: dict[str, list[int]] = {}
    for pos, op in enumerate(ix.history):
        if op.f != F.RESULT or not isinstance(op.value, dict):
            continue
        tid = op.value.get("task_id")
        if not isinstance(tid, str):
            continue
        if ix.run_id is not None and op.value.get("run_id") not in (None, ix.run_id):
            continue  # a leftover of an earlier run
        asks.setdefault(tid, []).append(pos)
    if not asks:
        fx.notes.append("no client waited for a result: nothing to check")
        return fx.verdict()
    for tid, positions in asks.items():
        fx.add("asked")
        ops = [ix.history[p] for p in positions]
        got = [op for op in ops if op.type == OpType.OK]
        rec = ix.tasks.get(tid)
        succeeded = [ex for ex in (rec.executions if rec is not None else None) or () if ex.outcome == OK]
        if got:
            fx.add("delivered")
            states = [str((op.value or {}).get("state")) for op in got]
            if succeeded and "SUCCESS" not in states:
                fx.add("stale_state")
                fx.notes.append(f"task {tid}: the client got {states[-1]}, the task succeeded")
            continue
        finished = [ex for ex in (rec.executions if rec is not None else None) or () if ex.completed]
        if not finished:
            fx.add("not_ready")  # never finished: the liveness checkers report it
            continue
        errors = [op.error for op in ops if op.type != OpType.INVOKE and op.error]
        last = ops[-1].value or {}
        related = sorted(set(positions) | set(rec.positions if rec is not None else ()))
        fx.anomaly("result_not_delivered", task_id=tid, key=last.get("key"), name=last.get("name"),
                   asks=sum(1 for op in ops if op.type == OpType.INVOKE), timeout_s=last.get("timeout_s"),
                   error=errors[-1] if errors else "the ask never completed",
                   finished=finished[-1].outcome, positions=related,
                   cause="the task finished and its result was sent, but the client that waited for it never "
                         "received it",
                   setting="result_backend / result_persistent",
                   fix="with rpc:// set result_persistent=True (results are transient messages by default: a "
                       "broker restart drops them from the durable reply queue), or use a result backend that "
                       "stores results (Redis with persistence, a database)")
    return fx.verdict()
