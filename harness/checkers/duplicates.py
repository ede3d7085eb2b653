"""Duplicate executions (tolerated under at-least-once, each with its cause) vs duplicate effects.

Responsibility: one verdict on "ran twice" and "applied twice".

Duplicate executions: every execution of a task id after its first. Each is attributed to the
first matching cause, comparing it with the previous execution of the same task:

1. ``retry``: a higher attempt (the task asked for it; always allowed);
2. ``worker_lost``: the previous execution was cut by a kill or a ``worker_lost``;
3. ``visibility_timeout``: the previous execution was still running and no fault was active
   (the broker re-delivered a message a worker still held: Redis/SQS visibility timeout);
4. ``redelivery``: a ``receive`` with ``redelivered`` in between, or a fault was active (a
   connection loss or a lost ack);
5. ``unattributed``: none of these.

Non-retry duplicates are allowed unless ``exp.allow_duplicate_executions`` is False
(exactly-once executions).

Duplicate effects: an effect ``(value.key, value.kind)`` applied more than once (``effect`` ops
with ``duplicate`` false), as the system's own code reported it. A violation unless the claim
is at-least-once effects. When the history holds the effect store's final contents
(``stored_effect`` ops), the ``effects`` checker judges duplicates from those instead, and
this one only counts the reported applications.

Example:
    >>> from harness.history.ops import F, Op, OpType
    >>> eff = {"key": "order-1", "kind": "charge", "task_id": "t1"}
    >>> h = [Op(0, 1, "w.child-1", OpType.INVOKE, F.EXECUTE, {"task_id": "t1"}),
    ...      Op(1, 2, "w.child-1", OpType.OK, F.EFFECT, eff),
    ...      Op(2, 3, "w.child-1", OpType.OK, F.EFFECT, eff),
    ...      Op(3, 4, "w.child-1", OpType.OK, F.EXECUTE, {"task_id": "t1"})]
    >>> v = check_duplicates(h, Expectations())
    >>> v.valid.value, v.violations()[0]["key"]
    ('false', 'order-1')
"""

from __future__ import annotations

from typing import Any

from harness.checkers import explain
from harness.checkers._base import Findings, History, as_index, kill_summary
from harness.checkers.expectations import Expectations
from harness.checkers.index import Execution, HistoryIndex, TaskRecord
from harness.checkers.verdict import Verdict

__all__ = ["CAUSES", "attribute_duplicate", "check_duplicates"]

CAUSES = ("retry", "worker_lost", "visibility_timeout", "redelivery", "unattributed")


def attribute_duplicate(prev: Execution, cur: Execution, rec: TaskRecord, ix: HistoryIndex) -> str:
    """The cause of execution `cur` of task `rec`, given the execution before it, `prev`.

    Example:
        >>> from harness.checkers.index import HistoryIndex, TaskRecord
        >>> a = Execution("t", 0, "p", "w1", None, start=0, start_pos=0, end=5, outcome="retry")
        >>> b = Execution("t", 1, "p", "w1", None, start=9, start_pos=1)
        >>> attribute_duplicate(a, b, TaskRecord("t", 0), HistoryIndex([], None, frozenset()))
        'retry'
    """
    if cur.attempt > prev.attempt:
        return "retry"
    if prev.killed_by is not None:
        return "worker_lost"
    if rec.worker_lost:
        h = ix.history
        if any(prev.start <= h[p].time <= cur.start for p in rec.worker_lost):
            return "worker_lost"
    fault_active = ix.fault_active_during(prev.start, cur.start)
    if prev.running_at(cur.start):
        return "redelivery" if fault_active else "visibility_timeout"
    for t, redelivered, _host, _pos in rec.receives or ():
        if redelivered and prev.start < t <= cur.start:
            return "redelivery"
    if fault_active:
        return "redelivery"
    return "unattributed"


def check_duplicates(history: History, exp: Expectations | None = None) -> Verdict:
    """Duplicate executions (with causes) and duplicate effects of `history` under `exp`.

    Example:
        >>> check_duplicates([], Expectations()).valid.value
        'unknown'
    """
    exp = exp or Expectations()
    ix = as_index(history, exp)
    fx = Findings("duplicates", exp, ix, kinds=("duplicate_effect",))
    by_cause = dict.fromkeys(CAUSES, 0)
    executions = tasks_executed = concurrent = 0
    allow = exp.allow_duplicate_executions
    for rec in ix.tasks.values():
        exs = rec.executions
        if not exs:
            continue
        tasks_executed += 1
        executions += len(exs)
        if len(exs) < 2:
            continue
        ordered = sorted(exs, key=lambda e: e.start)
        for prev, cur in zip(ordered, ordered[1:], strict=False):
            cause = attribute_duplicate(prev, cur, rec, ix)
            by_cause[cause] += 1
            if cause == "retry":
                continue
            overlapping = prev.running_at(cur.start)
            concurrent += overlapping
            extra: dict[str, Any] = {} if allow else explain.duplicate_execution(exp, cause)
            if prev.killed_by is not None:
                extra["killed_by"] = kill_summary(prev.killed_by)
            fx.anomaly("duplicate_execution", allowed=allow, cause=cause, task_id=rec.task_id, key=rec.key,
                       attempt=cur.attempt, concurrent=overlapping,
                       hostnames=[prev.hostname, cur.hostname], positions=rec.positions, **extra)
    # The final state decides: with the store's contents in the history, the effects checker
    # judges duplicates there; reported applications are evidence and stay counted here.
    store_read = bool(ix.stored_records)
    allowed = exp.claim.allows_duplicate_effects
    for (key, kind), positions in ix.effects.items():
        if len(positions) > 1:
            base_kind, _, idem = kind.partition("#")
            if store_read:
                fx.add("effects_reapplied")
                continue
            fx.anomaly("duplicate_effect", allowed=allowed, by_claim=True, key=key, effect_kind=base_kind,
                       **({"idempotency_key": idem} if idem else {}), **explain.duplicate_effect(exp),
                       applied=len(positions), source="effect ops", positions=_effect_slice(ix, key, positions))
    fx.counts.update(executions=executions, tasks_executed=tasks_executed,
                     duplicate_executions=sum(n for c, n in by_cause.items() if c != "retry"),
                     concurrent_duplicates=concurrent, effects_applied=sum(len(p) for p in ix.effects.values()),
                     effects_deduplicated=ix.effects_deduplicated)
    for cause, n in by_cause.items():
        fx.counts[f"cause_{cause}"] = n
    if tasks_executed == 0:
        fx.vacuous("no task was executed")
    elif fx.counts["duplicate_executions"] == 0:
        fx.notes.append("no duplicate execution happened: effect idempotency was not exercised")
    else:
        fx.notes.append("duplicate executions by cause: " + ", ".join(
            f"{c} {n}" for c, n in by_cause.items() if n and c != "retry"))
    if fx.counts.get("duplicate_effect_allowed"):
        fx.notes.append("your claim is at-least-once effects: duplicate effects are counted, not violations")
    if fx.counts.get("effects_reapplied"):
        fx.notes.append(f"{fx.counts['effects_reapplied']} effects were reported applied more than once; the "
                        "effects checker judges what the store holds")
    return fx.verdict()


def _effect_slice(ix: HistoryIndex, key: str, positions: list[int] | tuple[()]) -> list[int]:
    # The effects themselves plus the ops of the tasks of that workload key (publishes,
    # executions), so the counterexample shows which executions applied it.
    out = list(positions)
    for rec in ix.keys.get(key, ()):
        out.extend(rec.positions)
    return out
