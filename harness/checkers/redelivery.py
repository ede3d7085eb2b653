"""Redelivery after a worker kill under late acks: the killed task came back and finished.

Responsibility: one verdict on "a task executing when its worker died was delivered again".

For every execution cut by a kill (a kill fault, or ``worker_lost``), when the claim is
at-least-once delivery (a cut task must come back, whatever the configuration; early acks or a
child kill without reject-on-worker-lost explain why it did not, in the counterexample):

- ``not_redelivered``: the task never executed again and never reached the DLQ;
- ``redelivered_not_completed``: it executed again but no later execution completed;
- a later completion counts as redelivered; when no ``receive`` with ``redelivered`` true was
  seen before it, ``redelivered_flag_missing`` is counted (a note, not a violation: brokers
  differ in setting the flag on restored messages).

A whole worker's kill also takes the messages it had received and not started yet (prefetched,
or waiting for their ETA): unacked, they must come back too. Each such task must execute to
completion after the kill (or reach the DLQ), else ``not_redelivered`` with
``state_at_kill: "reserved"``; they count as ``reserved_at_kill``. So does a task whose
success was stored while the worker was held before the ack by the kill's trigger
(``on_success(hold_s=...)``): its message must be delivered again (a receive with
``redelivered`` true is enough: a deduplicated redelivery executes nothing), else
``not_redelivered`` with ``state_at_kill: "succeeded_unacked"``.

Also ``redelivery_loop``: more than ``exp.max_deliveries`` executions of one attempt of a task
(the poison-message loop), when that bound is set.

Unknown when nothing was executing or reserved at any kill, no worker was killed, or the claim is
at-most-once (redelivery is not expected; a vacuous pass is not a pass).

Example:
    >>> from harness.history.ops import F, Op, OpType
    >>> t = {"task_id": "t1", "hostname": "w1"}
    >>> h = [Op(0, 0, "p", OpType.OK, F.PUBLISH, t),
    ...      Op(1, 1, "w1.child-5", OpType.INVOKE, F.EXECUTE, t),
    ...      Op(2, 2, "nemesis", OpType.OK, F.FAULT_START, {"kind": "kill_worker", "hostname": "w1",
    ...                                                "cuts_running_tasks": True}),
    ...      Op(3, 3, "w2", OpType.OK, F.RECEIVE, {"task_id": "t1", "redelivered": True}),
    ...      Op(4, 4, "w2.child-9", OpType.INVOKE, F.EXECUTE, {"task_id": "t1"}),
    ...      Op(5, 5, "w2.child-9", OpType.OK, F.EXECUTE, {"task_id": "t1"})]
    >>> v = check_redelivery(h, Expectations(acks_late=True))
    >>> v.valid.value, v.counts["redelivered"]
    ('true', 1)
"""

from __future__ import annotations

from typing import Any

from harness.checkers import explain
from harness.checkers._base import Findings, History, as_index, kill_summary
from harness.checkers.expectations import Expectations
from harness.checkers.index import FAILURE, OK
from harness.checkers.verdict import Verdict

__all__ = ["check_redelivery"]


def check_redelivery(history: History, exp: Expectations | None = None) -> Verdict:
    """Whether tasks cut by worker kills were redelivered and completed (see the module docstring).

    Example:
        >>> check_redelivery([], Expectations(acks_late=True)).valid.value
        'unknown'
    """
    exp = exp or Expectations()
    ix = as_index(history, exp)
    fx = Findings("redelivery", exp, ix, kinds=("not_redelivered", "redelivered_not_completed"))
    in_flight = redelivered = flag_missing = loss_allowed_cuts = 0
    for rec in ix.tasks.values():
        exs = rec.executions
        if not exs:
            continue
        if exp.max_deliveries is not None and len(exs) > exp.max_deliveries:
            per_attempt: dict[int, int] = {}
            for ex in exs:
                per_attempt[ex.attempt] = per_attempt.get(ex.attempt, 0) + 1
            worst = max(per_attempt.values())
            if worst > exp.max_deliveries:
                fx.anomaly("redelivery_loop", task_id=rec.task_id, key=rec.key, executions=worst,
                           max_deliveries=exp.max_deliveries, positions=rec.positions)
        cuts = [ex for ex in exs if ex.killed_by is not None]
        if not cuts:
            continue
        expected = [ex for ex in cuts if exp.redelivery_expected_on_kill(scope=ex.killed_by.scope)]  # type: ignore[union-attr]
        loss_allowed_cuts += len(cuts) - len(expected)
        if not expected:
            continue
        in_flight += 1
        last_cut = max(expected, key=lambda e: e.start)
        kill = last_cut.killed_by
        assert kill is not None
        later = [ex for ex in exs if ex.start > last_cut.start]
        done = [ex for ex in later if ex.outcome == OK or ex.outcome == FAILURE]
        fields: dict[str, Any] = {"task_id": rec.task_id, "key": rec.key, "killed_by": kill_summary(kill),
                  "positions": [*rec.positions, kill.pos]}
        if done:
            redelivered += 1
            first_done = min(done, key=lambda e: e.start)
            if not any(red and kill.time_lo <= t <= first_done.start for t, red, _h, _p in rec.receives or ()):
                flag_missing += 1
            continue
        if rec.dlq and any(ix.history[p].time >= kill.time_lo for p in rec.dlq):
            redelivered += 1  # redelivered until the delivery limit dead-lettered it
            continue
        if later:
            fx.anomaly("redelivered_not_completed", executions_after_kill=len(later), **fields)
        else:
            fx.anomaly("not_redelivered", **fields, **explain.loss_on_kill(exp, scope=kill.scope))
    reserved, reserved_back = _reserved_at_kills(ix, exp, fx)
    fx.counts.update(reserved_at_kill=reserved, reserved_redelivered=reserved_back)
    fx.counts.update(kills=len(ix.kills), kill_faults=sum(1 for k in ix.kills if k.source == "fault"),
                     worker_lost=sum(1 for k in ix.kills if k.source == "worker_lost"),
                     in_flight_at_kill=in_flight, redelivered=redelivered,
                     redelivered_flag_missing=flag_missing, cut_loss_allowed=loss_allowed_cuts)
    if flag_missing:
        fx.notes.append(f"{flag_missing} redelivered tasks had no receive with redelivered=True before "
                        "their re-execution")
    if exp.claim.allows_loss:
        fx.vacuous("your claim is at-most-once delivery: a task cut by a kill is not expected back")
    elif not ix.kills:
        fx.vacuous("no worker was killed")
    elif in_flight == 0 and reserved == 0:
        fx.vacuous("no task was executing or reserved when a worker was killed"
                   + (" (only kills whose losses the configuration allows)" if loss_allowed_cuts else ""))
    return fx.verdict()


def _reserved_at_kills(ix: Any, exp: Expectations, fx: Findings) -> tuple[int, int]:
    """Tasks a killed worker had received and not started: (how many, how many came back)."""
    kills = [k for k in ix.kills if k.scope == "worker" and k.hostnames
             and exp.redelivery_expected_on_kill(scope="worker")]
    if not kills or exp.claim.allows_loss:
        return 0, 0
    held = back = 0
    for rec in ix.tasks.values():
        got = rec.receives
        if not got:
            continue
        exs = rec.executions or ()
        for kill in kills:
            before = [t for t, _red, host, _p in got if host in kill.hostnames and t < kill.time_lo]
            if not before:
                continue
            last = max(before)
            unacked = kill.held_success_of == rec.task_id
            if not unacked and any(ex.start >= last and ex.start < kill.time_lo for ex in exs):
                continue  # it started before the kill: the executing case above judges it
            if not unacked and any(ex.end is not None and ex.end < kill.time_lo and ex.outcome in (OK, FAILURE)
                                   for ex in exs):
                continue  # it had already finished elsewhere
            if unacked:
                # Its success was stored and the worker held before the ack: the message must come
                # back; a redelivery may be deduplicated (no execution), so its receive is enough.
                held += 1
                if any(red and t >= kill.time_lo for t, red, _h, _p in got) or \
                        any(ex.start >= kill.time_lo and ex.outcome in (OK, FAILURE) for ex in exs):
                    back += 1
                else:
                    fx.anomaly("not_redelivered", task_id=rec.task_id, key=rec.key, killed_by=kill_summary(kill),
                               state_at_kill="succeeded_unacked", positions=[*rec.positions, kill.pos],
                               **explain.loss_on_kill(exp, scope=kill.scope))
                break
            held += 1
            if any(ex.start >= kill.time_lo and ex.outcome in (OK, FAILURE) for ex in exs) or \
                    (rec.dlq and any(ix.history[p].time >= kill.time_lo for p in rec.dlq)) or rec.dlq_stored:
                back += 1
            else:
                fx.anomaly("not_redelivered", task_id=rec.task_id, key=rec.key, killed_by=kill_summary(kill),
                           state_at_kill="reserved", positions=[*rec.positions, kill.pos],
                           **explain.loss_on_kill(exp, scope=kill.scope))
            break
    return held, back
