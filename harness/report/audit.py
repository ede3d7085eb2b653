"""The audit section of a certification report: each static risk, confirmed or refuted by the scenarios.

Responsibility: read what each `ScenarioReport` observed (the anomaly kinds of its verdicts'
counterexamples and counts) and which faults bit (its schedule as run), let
`harness.audit.confirm` judge every risk per scenario, and merge: a risk is confirmed if any
scenario confirmed it, else refuted if any refuted it, else not exercised.

Example:
    >>> from harness.audit import Risk
    >>> from harness.checkers.verdict import Validity, Verdict
    >>> from harness.report.model import ScenarioReport
    >>> kill = {"kind": "kill_worker_child", "fault": {"kind": "kill_worker_child"}, "outcome": "healed"}
    >>> lost = Verdict("lost_tasks", Validity.TRUE, counts={"lost_allowed": 1},
    ...                counterexamples=({"kind": "lost", "allowed": True, "task_id": "t1"},))
    >>> sc = ScenarioReport("worker_child_sigkill", "true", {"lost_tasks": lost}, [kill], 3.0)
    >>> r = Risk("early_acks", 3, "t", "task_acks_late=False", ("lost",), "f", "loss", ("kill_worker_child",))
    >>> [(e.risk.id, e.status, e.scenarios) for e in audit_statuses([r], [sc])]
    [('early_acks', 'confirmed', ('worker_child_sigkill',))]
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.audit import CONFIRMED, NOT_EXERCISED, REFUTED, Risk, confirm
from harness.report.model import AuditEntry, ScenarioReport

__all__ = ["audit_statuses", "scenario_observation"]

#: A fault in the schedule as run with one of these outcomes was applied (it bit).
_APPLIED = ("healed", "unhealed")


def scenario_observation(sc: ScenarioReport) -> tuple[dict[str, int], dict[str, float]]:
    """What `sc` observed (anomaly kind -> count, allowed or not) and the faults that bit
    (token -> the longest time in seconds such a fault was in force).

    Duplicate executions also count as ``duplicate_execution/<cause>`` and, when the copies
    overlapped, ``duplicate_execution/concurrent``. Fault tokens: ``kind``, ``kind:mode``,
    ``kind:role``. A skipped scenario observed nothing.

    >>> sc = ScenarioReport("s", "true", {}, [{"kind": "broker_outage", "outcome": "healed",
    ...                                        "fault": {"kind": "broker_outage", "mode": "blackhole"}}], 1.0)
    >>> scenario_observation(sc)[1]
    {'broker_outage': 0.0, 'broker_outage:blackhole': 0.0}
    """
    if sc.valid == "skipped":
        return {}, {}
    observed: dict[str, int] = {}
    for v in sc.verdicts.values():
        listed: dict[str, int] = {}
        for c in v.counterexamples:
            kind = str(c.get("kind") or "")
            if not kind:
                continue
            listed[kind] = listed.get(kind, 0) + 1
            if kind == "duplicate_execution":
                for sub in (f"{kind}/{c.get('cause')}" if c.get("cause") else "",
                            f"{kind}/concurrent" if c.get("concurrent") else ""):
                    if sub:
                        observed[sub] = observed.get(sub, 0) + 1
        for kind, n in listed.items():
            # Counterexamples are capped per kind; the counts are exact.
            exact = int(v.counts.get(kind, 0)) + int(v.counts.get(f"{kind}_allowed", 0))
            observed[kind] = observed.get(kind, 0) + max(n, exact)
    tokens: dict[str, float] = {}
    for f in sc.schedule:
        if f.get("outcome") not in _APPLIED:
            continue  # the plan, or a fault that never bit: nothing was exercised
        raw = f.get("fault")
        fault: dict[str, object] = raw if isinstance(raw, dict) else {}
        kind = str(f.get("kind") or fault.get("kind") or "")
        if not kind:
            continue
        lasted = _lasted(f)
        for token in (kind, *(f"{kind}:{fault[k]}" for k in ("mode", "role") if fault.get(k))):
            tokens[token] = max(tokens.get(token, 0.0), lasted)
    return observed, tokens


def _lasted(applied: dict[str, object]) -> float:
    """How long an applied fault was in force: heal minus start as run, else its planned duration."""
    start, healed = applied.get("started_s"), applied.get("healed_s")
    if isinstance(start, int | float) and isinstance(healed, int | float):
        return max(0.0, float(healed) - float(start))
    planned = applied.get("duration_s")
    return float(planned) if isinstance(planned, int | float) else 0.0


def audit_statuses(risks: Sequence[Risk], scenarios: Sequence[ScenarioReport]) -> list[AuditEntry]:
    """Each risk with its status over the certification's `scenarios` (in the order of `risks`).

    Judged per scenario, so an anomaly is attributed only to the risks its scenario could
    provoke (a loss in a kill scenario confirms early acks, not missing publisher confirms).

    >>> from harness.audit import Risk
    >>> r = Risk("no_publisher_confirms", 11, "t", "s", ("lost",), "f", "loss", ("broker_outage:blackhole",))
    >>> [e.status for e in audit_statuses([r], [])]
    ['not exercised']
    """
    by_status: list[dict[str, list[str]]] = [{CONFIRMED: [], REFUTED: []} for _ in risks]
    for sc in scenarios:
        if sc.valid == "skipped" or not sc.verdicts:
            continue  # nothing was checked: a fault that bit there proves nothing either way
        observed, exercised = scenario_observation(sc)
        for i, (_risk, status) in enumerate(confirm(risks, observed, exercised)):
            if status != NOT_EXERCISED:
                by_status[i][status].append(sc.name)
    out = []
    for risk, seen in zip(risks, by_status, strict=True):
        if seen[CONFIRMED]:
            out.append(AuditEntry(risk, CONFIRMED, tuple(seen[CONFIRMED])))
        elif seen[REFUTED]:
            out.append(AuditEntry(risk, REFUTED, tuple(seen[REFUTED])))
        else:
            out.append(AuditEntry(risk, NOT_EXERCISED))
    return out
