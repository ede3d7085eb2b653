"""Latency and lateness of tasks: publish confirmed -> executed successfully.

Responsibility: one verdict, mostly measurements.

- latency of a task: from its first confirmed publish (the first publish op when none was
  confirmed) to the end of its first successful execution; quantiles p50 / p95 / p99 / max
  and the mean, in seconds (metrics ``latency_p50_s`` ...);
- lateness: first execution start minus the time it was due (publish + ``value.countdown``),
  quantiles as ``lateness_p50_s`` ...;
- with ``exp.latency_slo_s``: tasks slower than it are ``late``; the verdict is false when
  more than ``exp.max_late_fraction`` of the completed tasks are late (they are then listed,
  slowest first).

Unknown when no task completed.

Example:
    >>> from harness.history.ops import F, Op, OpType
    >>> S = 1_000_000_000
    >>> h = [Op(0, 0, "p", OpType.OK, F.PUBLISH, {"task_id": "t"}),
    ...      Op(1, 1 * S, "c", OpType.INVOKE, F.EXECUTE, {"task_id": "t"}),
    ...      Op(2, 3 * S, "c", OpType.OK, F.EXECUTE, {"task_id": "t"})]
    >>> v = check_latency(h, Expectations(latency_slo_s=2.5))
    >>> v.valid.value, v.metrics["latency_max_s"], v.counts["late"]
    ('false', 3.0, 1)
"""

from __future__ import annotations

from harness.checkers._base import NS, Findings, History, as_index, quantile
from harness.checkers.expectations import Expectations
from harness.checkers.verdict import Verdict

__all__ = ["check_latency"]

_QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


def check_latency(history: History, exp: Expectations | None = None) -> Verdict:
    """Latency / lateness quantiles of `history`, judged against ``exp.latency_slo_s`` when set.

    Example:
        >>> check_latency([], Expectations()).valid.value
        'unknown'
    """
    exp = exp or Expectations()
    ix = as_index(history, exp)
    fx = Findings("latency", exp, ix, kinds=("late",))
    latencies: list[tuple[int, str]] = []
    lateness: list[int] = []
    for rec in ix.tasks.values():
        published = rec.publish_ok if rec.publish_ok is not None else rec.publish_first
        if published is None or not rec.executions:
            continue
        first_ok = rec.first_ok()
        if first_ok is None or first_ok.end is None:
            continue
        latencies.append((first_ok.end - published, rec.task_id))
        due = published + int((rec.countdown or 0.0) * NS)
        lateness.append(min(ex.start for ex in rec.executions) - due)
    fx.counts["completed"] = len(latencies)
    if not latencies:
        fx.vacuous("no task completed")
        return fx.verdict()
    latencies.sort()
    lateness.sort()
    values = [lat for lat, _ in latencies]
    for label, q in _QUANTILES:
        fx.metrics[f"latency_{label}_s"] = quantile(values, q) / NS
        fx.metrics[f"lateness_{label}_s"] = quantile(lateness, q) / NS
    fx.metrics["latency_max_s"] = values[-1] / NS
    fx.metrics["latency_mean_s"] = sum(values) / len(values) / NS
    fx.metrics["lateness_max_s"] = lateness[-1] / NS
    if exp.latency_slo_s is not None:
        slo = int(exp.latency_slo_s * NS)
        late = [(lat, tid) for lat, tid in latencies if lat > slo]
        too_many = len(late) > exp.max_late_fraction * len(latencies)
        for lat, tid in reversed(late):
            rec = ix.tasks[tid]
            fx.anomaly("late", allowed=not too_many, task_id=tid, key=rec.key, latency_s=lat / NS,
                       slo_s=exp.latency_slo_s, positions=rec.positions)
        # counts["late"] is the total whatever the verdict, so reports read one number.
        fx.counts["late"] = len(late)
        fx.counts.pop("late_allowed", None)
        fx.metrics["late_fraction"] = len(late) / len(latencies)
    return fx.verdict()
