"""Turn a history into a chart's timeline: completions, errors and latency per time bucket,
and the windows when faults were in force.

Example:
    >>> from harness.history.ops import F, Op, OpType
    >>> h = [Op(0, 0, "p", OpType.OK, F.PUBLISH, {"task_id": "a"}),
    ...      Op(1, 2_000_000_000, "w", OpType.OK, F.EXECUTE, {"task_id": "a"})]
    >>> [(p.t, p.completed) for p in build_timeline(h, bucket_s=1.0)][-1]
    (2.0, 1)
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.history.ops import F, Op, OpType
from harness.report.model import FaultWindow, TimelinePoint


def _quantile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[i]


def build_timeline(history: Sequence[Op], bucket_s: float = 1.0) -> list[TimelinePoint]:
    """Buckets of `bucket_s` seconds from the first op: completed executions, errors
    (failed/unknown executions and publishes), and publish-to-completion latency quantiles."""
    if not history:
        return []
    t0 = min(op.time for op in history)
    t_end = max(op.time for op in history)
    n = int((t_end - t0) / 1e9 / bucket_s) + 1
    completed = [0] * n
    errors = [0] * n
    lat: list[list[float]] = [[] for _ in range(n)]
    published: dict[str, int] = {}
    for op in history:
        v = op.value if isinstance(op.value, dict) else {}
        tid = v.get("task_id")
        if op.f == F.PUBLISH and op.type is OpType.INVOKE and tid and tid not in published:
            published[tid] = op.time
    done: set[str] = set()
    for op in history:
        b = int((op.time - t0) / 1e9 / bucket_s)
        v = op.value if isinstance(op.value, dict) else {}
        if op.f == F.EXECUTE and op.type is OpType.OK:
            completed[b] += 1
            tid = v.get("task_id")
            if tid in published and tid not in done:
                done.add(tid)
                lat[b].append((op.time - published[tid]) / 1e6)
        elif op.f in (F.EXECUTE, F.PUBLISH) and op.type in (OpType.FAIL, OpType.INFO):
            if not (op.f == F.EXECUTE and v.get("state") == "RETRY"):
                errors[b] += 1
    out = []
    for i in range(n):
        s = sorted(lat[i])
        out.append(TimelinePoint(t=round(i * bucket_s, 3), completed=completed[i], errors=errors[i],
                                 p50_ms=_quantile(s, 0.5), p99_ms=_quantile(s, 0.99)))
    return out


def fault_windows(history: Sequence[Op]) -> list[FaultWindow]:
    """Pair each fault_start with its fault_stop (by fault_id, else by order); an unhealed
    fault runs to the end of the history."""
    if not history:
        return []
    t0 = min(op.time for op in history)
    t_end = max(op.time for op in history)
    open_: dict[str, tuple[str, int]] = {}
    out: list[FaultWindow] = []
    for op in history:
        if op.type is not OpType.OK or op.f not in (F.FAULT_START, F.FAULT_STOP):
            continue
        v = op.value if isinstance(op.value, dict) else {}
        fid = str(v.get("fault_id") or v.get("id") or v.get("kind") or len(open_))
        label = str(v.get("kind") or v.get("fault") or "fault")
        if op.f == F.FAULT_START:
            open_[fid] = (label, op.time)
        elif fid in open_:
            label, start = open_.pop(fid)
            out.append(FaultWindow(label, (start - t0) / 1e9, (op.time - t0) / 1e9))
    for label, start in open_.values():
        out.append(FaultWindow(label, (start - t0) / 1e9, (t_end - t0) / 1e9))
    return sorted(out, key=lambda w: w.start)
