"""Rate limits per worker over a sliding window.

Responsibility: one verdict on ``exp.rate_limits`` (task name -> executions per second).

Celery's ``rate_limit`` is enforced per worker instance by a token bucket of capacity 1, so
for each (worker hostname, task name) the execution starts (``execute`` invokes, retries and
redeliveries included) in any window of ``exp.rate_limit_window_s`` may number at most
``floor(rate * window) + exp.rate_limit_burst``. Starts are taken at task_prerun, after the pool
may have queued a released task: raise the burst to the pool's concurrency for long tasks.

- ``rate_exceeded``: one counterexample per (hostname, task name), for its busiest window.

Unknown when no rate-limited task ran, or no worker ever reached ``floor(rate * window)`` starts
in a window (the limiter never had to act).

Example:
    >>> from harness.history.ops import F, Op, OpType
    >>> h = [Op(i, i * 1_000_000, "w1.child-1", OpType.INVOKE, F.EXECUTE,
    ...         {"task_id": f"t{i}", "name": "send", "hostname": "w1"}) for i in range(5)]
    >>> v = check_rate_limits(h, Expectations(rate_limits={"send": 2.0}))
    >>> v.valid.value, v.violations()[0]["peak"]
    ('false', 5)
"""

from __future__ import annotations

import math

from harness.checkers._base import NS, Findings, History, as_index
from harness.checkers.expectations import Expectations
from harness.checkers.verdict import Verdict

__all__ = ["check_rate_limits"]


def check_rate_limits(history: History, exp: Expectations | None = None) -> Verdict:
    """Sliding-window execution rates per worker against ``exp.rate_limits``.

    Example:
        >>> check_rate_limits([], Expectations()).valid.value
        'unknown'
    """
    exp = exp or Expectations()
    ix = as_index(history, exp)
    fx = Findings("rate_limits", exp, ix, kinds=("rate_exceeded",))
    limits = exp.rate_limits
    window = int(exp.rate_limit_window_s * NS)
    starts: dict[tuple[str, str], list[tuple[int, str, int]]] = {}
    if limits:
        for rec in ix.tasks.values():
            name = rec.name
            if name is None or name not in limits or not rec.executions:
                continue
            for ex in rec.executions:
                if ex.orphan:
                    continue
                starts.setdefault((ex.hostname, name), []).append((ex.start, rec.task_id, ex.start_pos))
    saturated = checked = violating_windows = 0
    for (host, name), lst in sorted(starts.items()):
        lst.sort()
        rate = limits[name]
        floor_allow = math.floor(rate * exp.rate_limit_window_s + 1e-9)
        allowed = floor_allow + exp.rate_limit_burst
        checked += len(lst)
        j = 0
        peak = 0
        peak_at = (0, 0)
        for i in range(len(lst)):
            ti = lst[i][0]
            while lst[j][0] <= ti - window:
                j += 1
            count = i - j + 1
            if count > allowed:
                violating_windows += 1
            if count > peak:
                peak = count
                peak_at = (j, i)
        fx.metrics[f"peak_per_window[{host}/{name}]"] = float(peak)
        if peak >= max(1, floor_allow):
            saturated += 1
        if peak > allowed:
            j, i = peak_at
            in_window = lst[j:i + 1]
            fx.anomaly("rate_exceeded", hostname=host, name=name, peak=peak, allowed_per_window=allowed,
                       window_s=exp.rate_limit_window_s, window_start=in_window[0][0],
                       task_ids=[tid for _, tid, _ in in_window[:50]],
                       positions=[pos for _, _, pos in in_window])
    fx.counts.update(executions_checked=checked, worker_task_pairs=len(starts),
                     saturated_pairs=saturated, violating_windows=violating_windows)
    if not limits:
        fx.vacuous("no rate limit configured (Expectations.rate_limits)")
    elif not starts:
        fx.vacuous("no rate-limited task was executed")
    elif saturated == 0:
        fx.vacuous("no worker ever reached its rate limit: the limiter never had to act")
    return fx.verdict()
