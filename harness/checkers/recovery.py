"""Recovery after heal: every fault healed, new work completes again, throughput comes back.

Responsibility: one verdict on the system's return to service after the last fault.

- ``unhealed_fault``: a fault that was applied and never healed (no ``fault_stop`` completed):
  the rest of the verdicts are then about a system still under fault;
- time to recover (metric ``time_to_recover_s``): from the last heal (``fault_stop`` completed)
  to the first successful execution of a task *published after it* (or its dead-lettering,
  when the workload expects that unit in the DLQ); ``not_recovered`` when such tasks exist
  and none got there; ``slow_recovery`` above ``exp.recovery_slo_s``;
- throughput recovery: the baseline is the rate of successful executions from the first
  publish to the first fault; ``time_to_recover_throughput_s`` is when the rate over a sliding
  ``exp.throughput_window_s`` after the heal first reaches ``exp.throughput_recovery_fraction``
  of it; ``slow_throughput_recovery`` when above ``exp.throughput_recovery_slo_s`` (or never).

Unknown when no fault was applied, or nothing was published after the last heal.

Example:
    >>> from harness.history.ops import F, Op, OpType
    >>> S = 1_000_000_000
    >>> h = [Op(0, 0, "nemesis", OpType.OK, F.FAULT_START, {"kind": "partition_broker", "fault_id": "f1"}),
    ...      Op(1, 1 * S, "nemesis", OpType.OK, F.FAULT_STOP, {"kind": "partition_broker", "fault_id": "f1"}),
    ...      Op(2, 2 * S, "p", OpType.OK, F.PUBLISH, {"task_id": "t"}),
    ...      Op(3, 2 * S, "c", OpType.INVOKE, F.EXECUTE, {"task_id": "t"}),
    ...      Op(4, 4 * S, "c", OpType.OK, F.EXECUTE, {"task_id": "t"})]
    >>> v = check_recovery(h, Expectations(recovery_slo_s=5))
    >>> v.valid.value, v.metrics["time_to_recover_s"]
    ('true', 3.0)
"""

from __future__ import annotations

from bisect import bisect_left

from harness.checkers._base import NS, Findings, History, as_index
from harness.checkers.expectations import Expectations
from harness.checkers.verdict import Verdict

__all__ = ["check_recovery"]


def check_recovery(history: History, exp: Expectations | None = None) -> Verdict:
    """Heal, time to recover and throughput recovery of `history` (see the module docstring).

    Example:
        >>> check_recovery([], Expectations()).valid.value
        'unknown'
    """
    exp = exp or Expectations()
    ix = as_index(history, exp)
    fx = Findings("recovery", exp, ix, kinds=("unhealed_fault", "not_recovered"))
    faults = [f for f in ix.faults if f.applied]
    fx.counts["faults"] = len(faults)
    if not faults:
        fx.vacuous("no fault was applied")
        return fx.verdict()
    for f in faults:
        if not f.healed:
            fx.anomaly("unhealed_fault", fault_id=f.fault_id, fault_kind=f.kind,
                       positions=[f.start_pos] + ([f.stop_pos] if f.stop_pos >= 0 else []))
    healed = [f for f in faults if f.healed]
    fx.counts["healed"] = len(healed)
    if not healed:
        return fx.verdict()
    last_heal: int = max(f.stop_hi for f in healed)  # type: ignore[type-var, assignment]
    first_fault = min(f.start_lo for f in faults)
    fx.metrics["fault_time_s"] = (last_heal - first_fault) / NS

    after = [rec for rec in ix.tasks.values() if rec.publish_first is not None and rec.publish_first >= last_heal
             and rec.publish_status in ("ok", "info")]
    fx.counts["published_after_heal"] = len(after)
    done: list[int] = []
    dead_lettered = 0
    for rec in after:
        ok = rec.first_ok()
        if ok is not None:
            done.append(ok.end)  # type: ignore[arg-type]  # an ok execution has ended
        elif rec.dlq and exp.expected_outcomes.get(rec.key or "") == "dlq":
            # A unit the workload expects in the DLQ (a poison message, a declined card) shows
            # recovery by getting there: the system processed it to its expected end.
            done.append(min(ix.history[p].time for p in rec.dlq))
            dead_lettered += 1
    fx.counts["completed_after_heal"] = len(done) - dead_lettered
    fx.counts["dead_lettered_after_heal_as_expected"] = dead_lettered
    if not after:
        fx.vacuous("nothing was published after the last heal: recovery cannot be observed")
    elif not done:
        fx.anomaly("not_recovered", published_after_heal=len(after), last_heal=last_heal,
                   task_ids=[r.task_id for r in after[:20]], positions=[p for r in after[:5] for p in r.positions])
    else:
        ttr = (min(done) - last_heal) / NS  # type: ignore[type-var, operator]
        fx.metrics["time_to_recover_s"] = ttr
        if exp.recovery_slo_s is not None and ttr > exp.recovery_slo_s:
            fx.anomaly("slow_recovery", time_to_recover_s=ttr, slo_s=exp.recovery_slo_s, last_heal=last_heal)
    _throughput(fx, exp, last_heal, first_fault)
    return fx.verdict()


def _throughput(fx: Findings, exp: Expectations, last_heal: int, first_fault: int) -> None:
    ix = fx.ix
    oks = sorted(ix.ok_times)
    first_publish = min((r.publish_first for r in ix.tasks.values() if r.publish_first is not None), default=None)
    window = int(exp.throughput_window_s * NS)
    baseline = None
    if first_publish is not None and first_fault - first_publish >= window:
        n = bisect_left(oks, first_fault) - bisect_left(oks, first_publish)
        baseline = n / ((first_fault - first_publish) / NS)
        fx.metrics["throughput_baseline_per_s"] = baseline
    after = oks[bisect_left(oks, last_heal):]
    if after:
        span = max(after[-1] - last_heal, window)
        fx.metrics["throughput_after_heal_per_s"] = len(after) / (span / NS)
    if baseline is None or baseline <= 0:
        fx.notes.append("no pre-fault baseline of at least one throughput window: throughput recovery not measured")
        return
    need = exp.throughput_recovery_fraction * baseline * exp.throughput_window_s
    recovered_at = None
    j = 0
    for i, t in enumerate(after):
        while after[j] <= t - window:
            j += 1
        if i - j + 1 >= need:
            recovered_at = t
            break
    if recovered_at is not None:
        fx.metrics["time_to_recover_throughput_s"] = (recovered_at - last_heal) / NS
    else:
        fx.notes.append(f"throughput never reached {exp.throughput_recovery_fraction:.0%} of the pre-fault "
                        f"{baseline:.1f}/s after the last heal")
    slo = exp.throughput_recovery_slo_s
    if slo is not None and (recovered_at is None or (recovered_at - last_heal) / NS > slo):
        fx.anomaly("slow_throughput_recovery", baseline_per_s=baseline, slo_s=slo,
                   time_to_recover_throughput_s=None if recovered_at is None else (recovered_at - last_heal) / NS)
