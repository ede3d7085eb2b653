"""Liveness: every published workload key reaches a terminal state, the one the workload expects.

Responsibility: one verdict per run on workload units (``value.key``), after heal, quiesce and
drain. A key groups every task id published with it (a chain's later steps are new task ids
published by workers with the same key).

- ``stuck``: some task of the key that was published with confirmation, or was seen by a
  worker, never reached a terminal state (succeeded, failed terminally, dead-lettered,
  revoked). Allowed only when the claim is at-most-once delivery; the counterexample names
  the kill and the setting that let the task be lost.
- ``wrong_outcome``: the key's outcome differs from ``exp.expected_outcomes[key]``. A key's
  outcome is "complete" when all its tasks succeeded, else "dlq" if one was dead-lettered, else
  "failed" or "revoked". A task the worker acked to conclude a hard time limit (its ``ack`` op
  says ``after: time_limit``) carries the cause and the fix (``task_acks_on_timeout``).

Keys whose publishes all failed are not expected to run; keys only ever published
indeterminately and never seen by a worker are counted as ``indeterminate``. Expected keys
never published at all make the verdict unknown (the history is incomplete).

Example:
    >>> from harness.history.ops import F, Op, OpType
    >>> h = [Op(0, 0, "p", OpType.OK, F.PUBLISH, {"task_id": "t", "key": "k"}),
    ...      Op(1, 1, "c", OpType.INVOKE, F.EXECUTE, {"task_id": "t"}),
    ...      Op(2, 2, "c", OpType.OK, F.EXECUTE, {"task_id": "t"})]
    >>> check_liveness(h, Expectations(expected_outcomes={"k": "dlq"})).violations()[0]["kind"]
    'wrong_outcome'
"""

from __future__ import annotations

from harness.checkers import explain
from harness.checkers._base import Findings, History, as_index, loss_fields
from harness.checkers.expectations import Expectations
from harness.checkers.index import HistoryIndex, TaskRecord
from harness.checkers.verdict import Verdict
from harness.history.ops import F, OpType

__all__ = ["check_liveness", "key_outcome"]


def _acked_on_time_limit(ix: HistoryIndex, rec: TaskRecord) -> bool:
    # The worker asked to ack the message to conclude a hard time limit (the ``ack`` op's
    # ``after``): the task was never going to run again.
    for pos in rec.positions:
        op = ix.history[pos]
        if op.f == F.ACK and op.type == OpType.INVOKE and isinstance(op.value, dict) \
                and op.value.get("after") == "time_limit":
            return True
    return False


def key_outcome(tasks: list[TaskRecord]) -> str:
    """The outcome of a terminal key from its tasks' outcomes.

    >>> key_outcome([TaskRecord("t", 0, executions=[])])
    'failed'
    """
    outcomes = [t.outcome for t in tasks]
    if outcomes and all(o == "complete" for o in outcomes):
        return "complete"
    for o in ("dlq", "failed", "revoked"):
        if o in outcomes:
            return o
    return "failed"


def check_liveness(history: History, exp: Expectations | None = None) -> Verdict:
    """Whether every published key reached its expected terminal state (see the module docstring).

    Example:
        >>> check_liveness([], Expectations()).valid.value
        'unknown'
    """
    exp = exp or Expectations()
    ix = as_index(history, exp)
    fx = Findings("liveness", exp, ix, kinds=("stuck", "wrong_outcome"))
    keys = terminal = not_sent = indeterminate = 0
    by_outcome: dict[str, int] = {}
    for key, recs in ix.keys.items():
        statuses = [r.publish_status for r in recs]
        if all(s is None for s in statuses):
            continue  # never published by this run: lost_tasks reports it as unexpected
        keys += 1
        if all(s in ("fail", None) for s in statuses) and not any(r.executions for r in recs):
            not_sent += 1
            continue
        relevant = [r for r in recs if r.publish_status == "ok" or r.executions or r.receives or r.dlq]
        if not relevant:
            indeterminate += 1
            continue
        stuck = [r for r in relevant if r.outcome is None]
        if stuck:
            why = loss_fields(stuck[0], exp)[1]
            fx.anomaly("stuck", allowed=exp.claim.allows_loss, by_claim=True, key=key,
                       task_ids=[r.task_id for r in stuck], positions=[p for r in stuck for p in r.positions], **why)
            continue
        terminal += 1
        outcome = key_outcome(relevant)
        by_outcome[outcome] = by_outcome.get(outcome, 0) + 1
        expected = exp.expected_outcomes.get(key)
        if expected is not None and outcome != expected:
            why = explain.acked_on_time_limit() if any(_acked_on_time_limit(ix, r) for r in relevant) else {}
            fx.anomaly("wrong_outcome", key=key, expected=expected, actual=outcome,
                       task_ids=[r.task_id for r in relevant], positions=[p for r in relevant for p in r.positions],
                       **why)
    missing = [k for k in exp.expected_outcomes if k not in ix.keys]
    fx.counts.update(keys=keys, terminal=terminal, not_sent=not_sent, indeterminate=indeterminate,
                     expected_never_published=len(missing))
    for outcome, n in by_outcome.items():
        fx.counts[f"outcome_{outcome}"] = n
    if missing:
        fx.indeterminate(f"{len(missing)} expected keys were never published (e.g. {missing[:3]}): "
                         "the history is incomplete or the workload did not run")
    if keys == 0:
        fx.vacuous("no workload key was published")
    return fx.verdict()
