"""Fault coverage per task name: which tasks a kill cut mid-run, which it never did, and why.

Responsibility: from one history, per task name: how many executions ran, how many were cut by
a kill (``Execution.killed_by``), and how long the completed ones took. A bug hides in the one
task that was never cut; the certification sums this over its scenarios and lists every task
name with "cut" or "not cut" and the reason.

Example:
    >>> from harness.history.ops import F, Op, OpType
    >>> h = [Op(0, 0, "w1.child-1", OpType.INVOKE, F.EXECUTE, {"task_id": "t", "name": "shop.charge",
    ...                                                         "hostname": "w1"}),
    ...      Op(1, 5, "nemesis", OpType.OK, F.FAULT_START, {"kind": "kill_worker", "hostnames": ["w1"],
    ...                                                  "cuts_running_tasks": True})]
    >>> task_coverage(h)["shop.charge"]["cut"]
    1
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harness.checkers.index import HistoryIndex, build_index
from harness.history.ops import Op

__all__ = ["merge_coverage", "task_coverage"]


def task_coverage(history: Sequence[Op] | HistoryIndex) -> dict[str, dict[str, int]]:
    """Per task name: ``executed``, ``cut`` (executions a kill cut), ``max_ms`` (longest completed run)."""
    ix = history if isinstance(history, HistoryIndex) else build_index(history)
    out: dict[str, dict[str, int]] = {}
    for rec in ix.tasks.values():
        if not rec.executions:
            continue
        row = out.setdefault(rec.name or "?", {"executed": 0, "cut": 0, "max_ms": 0})
        for ex in rec.executions:
            row["executed"] += 1
            if ex.killed_by is not None:
                row["cut"] += 1
            elif ex.end is not None:
                row["max_ms"] = max(row["max_ms"], (ex.end - ex.start) // 1_000_000)
    return out


def merge_coverage(per_scenario: Iterable[tuple[str, Mapping[str, Mapping[str, int]]]]) -> dict[str, dict[str, Any]]:
    """Sum scenarios' `task_coverage` into one row per task name with the scenarios that cut it
    and, for a task never cut, why (in words).

    >>> merge_coverage([("a", {"t": {"executed": 2, "cut": 0, "max_ms": 3}})])["t"]["why_not"]
    'never running when a kill landed (2 executions, the longest 3 ms)'
    """
    out: dict[str, dict[str, Any]] = {}
    for scenario, cov in per_scenario:
        for name, row in cov.items():
            agg = out.setdefault(name, {"executed": 0, "cut": 0, "max_ms": 0, "cut_in": []})
            agg["executed"] += int(row.get("executed", 0))
            agg["cut"] += int(row.get("cut", 0))
            agg["max_ms"] = max(agg["max_ms"], int(row.get("max_ms", 0)))
            if row.get("cut") and scenario not in agg["cut_in"]:
                agg["cut_in"].append(scenario)
    for agg in out.values():
        if not agg["cut"]:
            agg["why_not"] = (f"never running when a kill landed ({agg['executed']} executions, "
                              f"the longest {agg['max_ms']} ms)")
    return dict(sorted(out.items()))
