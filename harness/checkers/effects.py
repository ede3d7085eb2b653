"""Effects in the final state: every declared effect of every unit stored exactly once.

Responsibility: one verdict on what the effect store holds after heal, quiesce and drain
(``stored_effect`` ops, one per record read through ``workload.effects()``), against what each
unit declared (``exp.declared_effects``: unit key -> ``Unit.effects``). What the system's code
reported doing (``effect`` ops, a task's SUCCESS) is the evidence, never the verdict.

A declared effect is written ``"<effect kind>:<identity>"`` (``"payment.charged:r1:order:0"``).
A record matches it by idempotency key first; failing that, by the unit's key and the effect
kind, whatever idempotency key or task id the system wrote it under. Counted per unit and
declared effect:

- ``missing_effect``: a declared effect is not in the store. The counterexample names the tasks
  of the unit that reported success (a task that "succeeded" without its effect), or the lost
  task and the setting that lost it. Allowed only by an at-most-once claim, and only for a unit
  whose work was lost (a success without its effect is never allowed);
- ``duplicate_effect``: a declared effect stored more than once, also when the system wrote the
  copies under different keys. Allowed only by an at-least-once effects claim.

Units the producer was told were not sent (publish failed) are not expected to leave effects.
Unknown when no unit declares an effect, or when the store was never read.

Example:
    >>> from harness.history.ops import F, Op, OpType
    >>> h = [Op(0, 0, "p", OpType.OK, F.PUBLISH, {"task_id": "t", "key": "k"}),
    ...      Op(1, 1, "c", OpType.INVOKE, F.EXECUTE, {"task_id": "t", "name": "shop.charge"}),
    ...      Op(2, 2, "c", OpType.OK, F.EXECUTE, {"task_id": "t"}),
    ...      Op(3, 3, "harness", OpType.OK, F.PHASE, {"phase": "final_state", "effects_read": True})]
    >>> v = check_effects(h, Expectations(declared_effects={"k": ("payment:k",)}))
    >>> v.valid.value, v.violations()[0]["kind"], v.violations()[0]["reported_success"][0]["name"]
    ('false', 'missing_effect', 'shop.charge')
"""

from __future__ import annotations

from typing import Any

from harness.checkers import explain
from harness.checkers._base import Findings, History, as_index, loss_fields
from harness.checkers.expectations import Expectations
from harness.checkers.index import HistoryIndex
from harness.checkers.verdict import Verdict

__all__ = ["check_effects", "effect_kind"]


def effect_kind(declared: str) -> str:
    """The kind part of a declared effect ``"<kind>:<identity>"``.

    >>> effect_kind("payment.charged:r1:order:0"), effect_kind("welcome")
    ('payment.charged', 'welcome')
    """
    return declared.split(":", 1)[0]


class _Record:
    __slots__ = ("pos", "key", "kind", "idem", "task_id", "count")

    def __init__(self, pos: int, v: dict[str, Any]) -> None:
        self.pos = pos
        self.key = str(v.get("key"))
        self.kind = str(v.get("kind"))
        self.idem = str(v.get("idempotency_key") or "")
        self.task_id = v.get("task_id")
        c = v.get("count", 1)
        self.count = c if isinstance(c, int) and c >= 0 else 1


def check_effects(history: History, exp: Expectations | None = None) -> Verdict:
    """Declared effects against the effect store's final contents (see the module docstring).

    Example:
        >>> check_effects([], Expectations()).valid.value
        'unknown'
    """
    exp = exp or Expectations()
    ix = as_index(history, exp)
    fx = Findings("effects", exp, ix, kinds=("missing_effect", "duplicate_effect"))
    declared = {k: v for k, v in exp.declared_effects.items() if v}
    records = [_Record(pos, ix.history[pos].value) for pos in ix.stored_records
               if isinstance(ix.history[pos].value, dict)]
    fs = ix.final_state
    readable = True
    if not declared:
        fx.vacuous("the workload declares no effects for its units (Unit.effects): nothing says what the store "
                   "must hold, so effect presence was not checked")
    elif fs is not None and not fs.get("effects_read", False):
        readable = False
        fx.indeterminate("the effect store could not be read after the drain: "
                         + str(fs.get("effects_error") or "workload.effects() failed"))
    elif fs is None and not records:
        readable = False
        fx.indeterminate("the history holds no read of the effect store (no final_state): effects were not judged")
    by_idem: dict[str, list[_Record]] = {}
    by_key_kind: dict[tuple[str, str], list[_Record]] = {}
    for r in records:
        if r.idem:
            by_idem.setdefault(r.idem, []).append(r)
        by_key_kind.setdefault((r.key, r.kind), []).append(r)
    used: set[int] = set()
    units = present = not_sent = 0
    for key, effects in declared.items() if readable else ():
        tasks = ix.keys.get(key, [])
        if not any(t.publish_status == "ok" or t.executions for t in tasks):
            not_sent += 1  # never confirmed sent and never ran: the producer was told, or never tried
            continue
        units += 1
        found = _match(key, effects, by_idem, by_key_kind, used)
        for d, recs in found.items():
            n = sum(r.count for r in recs)
            if n == 0:
                _missing(fx, ix, exp, key, d)
            elif n > 1:
                present += 1
                fx.anomaly("duplicate_effect", allowed=exp.claim.allows_duplicate_effects, by_claim=True,
                           key=key, effect=d, effect_kind=effect_kind(d), stored=n,
                           written_under=sorted({r.idem for r in recs}),
                           task_ids=sorted({str(r.task_id) for r in recs if r.task_id}),
                           **explain.duplicate_effect(exp), positions=[r.pos for r in recs] + _unit_ops(ix, key))
            else:
                present += 1
    undeclared = sum(1 for r in records if r.pos not in used)
    fx.counts.update(units_checked=units, units_not_sent=not_sent, effects_declared=sum(map(len, declared.values())),
                     effects_present=present, records_read=len(records), records_undeclared=undeclared)
    if undeclared:
        fx.notes.append(f"{undeclared} stored records match no declared effect of this run's units "
                        "(effects the workload does not declare, or another run's)")
    if declared and units == 0 and fs is not None:
        fx.vacuous("no unit that declares effects was sent")
    if fx.counts.get("missing_effect_allowed"):
        fx.notes.append("your claim is at-most-once delivery: effects of lost units are counted, not violations")
    return fx.verdict()


def _match(key: str, effects: tuple[str, ...], by_idem: dict[str, list[_Record]],
           by_key_kind: dict[tuple[str, str], list[_Record]], used: set[int]) -> dict[str, list[_Record]]:
    """The store's records of each declared effect of unit `key` (see the module docstring)."""
    found: dict[str, list[_Record]] = {}
    for d in effects:
        recs = [r for r in by_idem.get(d, ()) if r.pos not in used]
        used.update(r.pos for r in recs)
        found[d] = recs
    for d in effects:
        if not found[d]:
            # Written under another idempotency key: the unit's record of the same kind.
            spare = [r for r in by_key_kind.get((key, effect_kind(d)), ()) if r.pos not in used]
            if spare:
                used.add(spare[0].pos)
                found[d] = [spare[0]]
    # Copies left over of a declared kind are further copies of that kind's effect, when the
    # unit declares exactly one effect of that kind (else they cannot be told apart: undeclared).
    for kind in {effect_kind(d) for d in effects}:
        mine = [d for d in effects if effect_kind(d) == kind]
        if len(mine) != 1:
            continue
        extra = [r for r in by_key_kind.get((key, kind), ()) if r.pos not in used]
        used.update(r.pos for r in extra)
        found[mine[0]] = found[mine[0]] + extra
    return found


def _missing(fx: Findings, ix: HistoryIndex, exp: Expectations, key: str, declared: str) -> None:
    tasks = ix.keys.get(key, [])
    ok = [t for t in tasks if t.succeeded]
    unfinished = [t for t in tasks if t.outcome is None and (t.publish_status == "ok" or t.executions)]
    fields: dict[str, Any] = {
        "key": key, "effect": declared, "effect_kind": effect_kind(declared),
        "reported_success": [{"task_id": t.task_id, "name": t.name} for t in ok[:5]],
    }
    if unfinished:
        fields["lost_tasks"] = [{"task_id": t.task_id, "name": t.name} for t in unfinished[:5]]
        fields.update(loss_fields(unfinished[0], exp)[1])
    else:
        fields["cause"] = ("the unit's tasks ended without storing this effect"
                           + (" although they reported success: the write was lost, rolled back, or never made"
                              if ok else ""))
    # A unit whose work was lost may lack its effects under at-most-once; a task that reported
    # success without its effect is a violation under any claim.
    allowed = exp.claim.allows_loss and bool(unfinished)
    fx.anomaly("missing_effect", allowed=allowed, by_claim=True, positions=_unit_ops(ix, key), **fields)


def _unit_ops(ix: HistoryIndex, key: str) -> list[int]:
    return [p for t in ix.keys.get(key, ()) for p in t.positions]
