"""Rate limits per worker over a sliding window.

Responsibility: one verdict on ``exp.rate_limits`` (task name -> executions per second).

Celery's ``rate_limit`` is enforced per worker instance by a token bucket of capacity 1, so
for each (worker hostname, task name) the execution starts (``execute`` invokes, retries and
redeliveries included) in any window of ``exp.rate_limit_window_s`` may number at most
``floor(rate * window) + exp.rate_limit_burst``. Starts are taken at task_prerun, after the pool
may have queued a released task: raise the burst to the pool's concurrency for long tasks.

- ``rate_exceeded``: one counterexample per (hostname, task name), for its busiest window.

The window is ``exp.rate_limit_window_s``, widened for slow rates to hold two tokens
(``2 / rate``), so that ``10/m`` is judged over 12 s rather than a window that allows nothing.

Unknown (whatever the schedule) when no rate-limited task ran, or the limiter never had to act:
some worker must have reached ``floor(rate * window)`` starts in a window while, when the history
holds the worker's receives, work was held back: the starting task had waited at least half a
token's interval since its receive, or another received one still waited (a burst above it). Receives cannot measure the demand itself: the
worker's prefetch caps how many it takes from the broker.

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

__all__ = ["check_rate_limits", "parse_rate"]

_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(value: object) -> float | None:
    """A Celery ``rate_limit`` as executions per second; None when there is no limit.

    Celery reads a bare number as per second and ``N/s``, ``N/m``, ``N/h`` as per second,
    minute or hour; zero or empty means unlimited.

    >>> parse_rate("10/m"), parse_rate("2/s"), parse_rate(5), parse_rate(None), parse_rate("0")
    (0.16666666666666666, 2.0, 5.0, None, None)
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        rate = float(value)
    else:
        text = str(value).strip()
        if not text or text == "None":
            return None
        num, _, unit = text.partition("/")
        try:
            rate = float(num) / _PER[unit.strip()[:1] or "s"]
        except (ValueError, KeyError):
            return None
    return rate if rate > 0 else None


def _slide(times: list[int], window: int) -> tuple[int, int, int]:
    """The most events in any window of `window` ns: (count, first index, last index)."""
    j = peak = 0
    at = (0, 0)
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        if i - j + 1 > peak:
            peak, at = i - j + 1, (j, i)
    return peak, at[0], at[1]


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
    starts: dict[tuple[str, str], list[tuple[int, str, int]]] = {}
    arrivals: dict[tuple[str, str], list[int]] = {}
    waited: dict[tuple[str, str], set[int]] = {}  # starts whose task waited since its receive
    if limits:
        for rec in ix.tasks.values():
            name = rec.name
            if name is None or name not in limits:
                continue
            for ex in rec.executions or ():
                if ex.orphan:
                    continue
                starts.setdefault((ex.hostname, name), []).append((ex.start, rec.task_id, ex.start_pos))
                got = [t for t, _r, host, _p in rec.receives or () if host == ex.hostname and t <= ex.start]
                if got and ex.start - max(got) >= NS / (2 * limits[name]):
                    waited.setdefault((ex.hostname, name), set()).add(ex.start)
            for t, _redelivered, host, _pos in rec.receives or ():
                arrivals.setdefault((host, name), []).append(t)
    exercised = checked = violating_windows = 0
    demand_notes: list[str] = []
    for (host, name), lst in sorted(starts.items()):
        lst.sort()
        rate = limits[name]
        window_s = max(exp.rate_limit_window_s, 2.0 / rate)
        window = int(window_s * NS)
        floor_allow = math.floor(rate * window_s + 1e-9)
        allowed = floor_allow + exp.rate_limit_burst
        checked += len(lst)
        times = [t for t, _, _ in lst]
        peak, j, i = _slide(times, window)
        violating_windows += _windows_over(times, window, allowed)
        fx.metrics[f"peak_per_window[{host}/{name}]"] = float(peak)
        received = sorted(arrivals.get((host, name), ()))
        held = _held_back_at_limit(times, received, waited.get((host, name), set()), window, floor_allow) \
            if received else None
        if held is None:
            held = peak >= max(1, floor_allow)
        if held:
            exercised += 1
        elif received:
            demand_notes.append(f"{host}/{name}: {peak} started in {window_s:g} s at most "
                                f"(the limit is {floor_allow}), never with work held back")
        if peak > allowed:
            in_window = lst[j:i + 1]
            fx.anomaly("rate_exceeded", hostname=host, name=name, peak=peak, allowed_per_window=allowed,
                       window_s=window_s, window_start=in_window[0][0],
                       task_ids=[tid for _, tid, _ in in_window[:50]],
                       positions=[pos for _, _, pos in in_window])
    fx.counts.update(executions_checked=checked, worker_task_pairs=len(starts),
                     saturated_pairs=exercised, violating_windows=violating_windows)
    if not limits:
        fx.vacuous("no rate limit configured (Expectations.rate_limits)")
    elif not starts:
        fx.indeterminate(f"no rate-limited task was executed (limits on {sorted(limits)})")
    elif exercised == 0:
        fx.indeterminate("no worker ever reached its rate limit: the limiter never had to act"
                         + (f" ({'; '.join(demand_notes[:3])})" if demand_notes else ""))
    return fx.verdict()


def _held_back_at_limit(starts: list[int], received: list[int], waited: set[int], window: int,
                        at_limit: int) -> bool:
    """Whether some start filled a window to `at_limit` after its task had waited, or while
    another received task still waited."""
    j = k = 0
    for i, t in enumerate(starts):
        while starts[j] <= t - window:
            j += 1
        while k < len(received) and received[k] <= t:
            k += 1
        if i - j + 1 >= max(1, at_limit) and (k > i + 1 or t in waited):
            return True
    return False


def _windows_over(times: list[int], window: int, allowed: int) -> int:
    """How many starts end a window holding more than `allowed` starts."""
    j = over = 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        if i - j + 1 > allowed:
            over += 1
    return over
