"""Retry conformance: attempt counts and backoff delays against the configured `RetryPolicy`.

Responsibility: one verdict on how tasks retried.

For every task with a policy (``exp.retry_policy_for(name)``):

- ``too_many_attempts``: an execution with ``attempt`` (retries so far) above ``max_retries``,
  i.e. more than ``max_retries + 1`` attempts;
- ``bad_countdown``: a retry asked for a countdown outside the policy's bounds for that attempt
  (``min(backoff_max, backoff_factor * 2**n)``, anywhere in ``[0, that]`` with jitter; or the
  fixed delay), give or take ``exp.retry_delay_tolerance_s``;
- ``retried_too_early``: the next attempt started before the countdown had elapsed (minus the
  tolerance); ``retried_too_late``: after countdown + ``exp.max_retry_lateness_s`` (when set).

A retry is a ``retry`` op (``value.countdown``) or, lacking one, an execution that failed with
state RETRY. Its attempt n is the one of the execution it happened in.
Unknown when no task retried.

Example:
    >>> from harness.history.ops import F, Op, OpType
    >>> S = 1_000_000_000
    >>> h = [Op(0, 0, "c", OpType.INVOKE, F.EXECUTE, {"task_id": "t", "name": "pay", "attempt": 0}),
    ...      Op(1, 1, "c", OpType.OK, F.RETRY, {"task_id": "t", "countdown": 1.0, "attempt": 0}),
    ...      Op(2, 2, "c", OpType.FAIL, F.EXECUTE, {"task_id": "t", "state": "RETRY"}),
    ...      Op(3, 2 * S, "c", OpType.INVOKE, F.EXECUTE, {"task_id": "t", "name": "pay", "attempt": 1}),
    ...      Op(4, 3 * S, "c", OpType.OK, F.EXECUTE, {"task_id": "t"})]
    >>> exp = Expectations(retry_policy=RetryPolicy(max_retries=3, backoff_factor=1, jitter=False))
    >>> check_retries(h, exp).valid.value
    'true'
"""

from __future__ import annotations

from harness.checkers._base import NS, Findings, History, as_index
from harness.checkers.expectations import Expectations, RetryPolicy
from harness.checkers.index import RETRY, Execution, TaskRecord
from harness.checkers.verdict import Verdict

__all__ = ["RetryPolicy", "check_retries", "retry_events"]


def retry_events(rec: TaskRecord) -> list[tuple[int, float | None, int, int]]:
    """The retries of task `rec` as ``(time ns, countdown s or None, attempt n, position)``.

    Example:
        >>> rec = TaskRecord("t", 0, executions=[Execution("t", 0, "c", "h", None, 0, 0, 5, 1, "retry")])
        >>> retry_events(rec)
        [(5, None, 0, 1)]
    """
    exs = sorted(rec.executions or (), key=lambda e: e.start)
    events: list[tuple[int, float | None, int, int]] = []
    covered: set[int] = set()
    for t, countdown, attempt, pos in rec.retries or ():
        ex = _execution_at(exs, t)
        if ex is not None:
            covered.add(id(ex))
            n = ex.attempt
        elif attempt is not None:
            n = attempt
        else:
            continue
        events.append((t, countdown, n, pos))
    for ex in exs:
        if ex.outcome == RETRY and id(ex) not in covered and ex.end is not None:
            events.append((ex.end, None, ex.attempt, ex.end_pos))
    events.sort()
    return events


def _execution_at(exs: list[Execution], t: int) -> Execution | None:
    best = None
    for ex in exs:
        if ex.start <= t and (ex.end is None or t <= ex.end):
            best = ex  # the latest one that contains t
    return best


def check_retries(history: History, exp: Expectations | None = None) -> Verdict:
    """Attempts and retry delays of every task with a retry policy (see the module docstring).

    Example:
        >>> check_retries([], Expectations(retry_policy=RetryPolicy())).valid.value
        'unknown'
    """
    exp = exp or Expectations()
    ix = as_index(history, exp)
    fx = Findings("retries", exp, ix, kinds=("too_many_attempts", "bad_countdown", "retried_too_early"))
    tol = exp.retry_delay_tolerance_s
    n_retries = retried_tasks = checked_tasks = 0
    max_attempt_seen = 0
    for rec in ix.tasks.values():
        exs = rec.executions
        if not exs and not rec.retries:
            continue
        pol = exp.retry_policy_for(rec.name)
        if pol is None:
            continue
        checked_tasks += 1
        top = max((ex.attempt for ex in exs or ()), default=0)
        max_attempt_seen = max(max_attempt_seen, top)
        if pol.max_retries is not None and top > pol.max_retries:
            fx.anomaly("too_many_attempts", task_id=rec.task_id, key=rec.key, name=rec.name, attempts=top + 1,
                       allowed_attempts=pol.max_retries + 1, positions=rec.positions)
        if rec.retries is None and top == 0 and all(ex.outcome != RETRY for ex in exs or ()):
            continue  # never retried: the common case, skipped without building events
        events = retry_events(rec)
        if events or top > 0:
            retried_tasks += 1
        n_retries += len(events)
        for t, countdown, n, _pos in events:
            bounds = pol.delay_bounds(n)
            if countdown is not None and bounds is not None:
                lo, hi = bounds
                if countdown < lo - tol or countdown > hi + tol:
                    fx.anomaly("bad_countdown", task_id=rec.task_id, key=rec.key, name=rec.name, attempt=n,
                               countdown=countdown, bounds=[lo, hi], positions=rec.positions)
            nxt = min((ex for ex in exs or () if ex.attempt > n and ex.start >= t), key=lambda e: e.start,
                      default=None)
            if nxt is None:
                continue
            delay = (nxt.start - t) / NS
            want = countdown if countdown is not None else (bounds[0] if bounds is not None else None)
            if want is not None and delay < want - tol:
                fx.anomaly("retried_too_early", task_id=rec.task_id, key=rec.key, name=rec.name, attempt=n,
                           countdown=want, observed_delay_s=round(delay, 6), positions=rec.positions)
            elif (want is not None and exp.max_retry_lateness_s is not None
                  and delay > want + exp.max_retry_lateness_s):
                fx.anomaly("retried_too_late", task_id=rec.task_id, key=rec.key, name=rec.name, attempt=n,
                           countdown=want, observed_delay_s=round(delay, 6), positions=rec.positions)
    fx.counts.update(tasks_with_policy=checked_tasks, retried_tasks=retried_tasks, retries=n_retries,
                     max_attempt=max_attempt_seen)
    if exp.retry_policy is None and not exp.retry_policies:
        fx.vacuous("no retry policy configured (Expectations.retry_policy / retry_policies)")
    elif n_retries == 0 and retried_tasks == 0:
        fx.vacuous("no task retried")
    return fx.verdict()
