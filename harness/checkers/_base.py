"""What every checker module shares: the index it reads and the way it reports findings.

Responsibility: `as_index` (accept a history or a prebuilt `HistoryIndex`), `Findings` (counts,
capped counterexamples, notes, the true / unknown / false decision), and the loss allowance
the lost-task and liveness checkers agree on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from harness.checkers.expectations import Expectations
from harness.checkers.index import INFO, HistoryIndex, Kill, TaskRecord, build_index
from harness.checkers.verdict import Validity, Verdict
from harness.history.ops import Op

History = Sequence[Op] | HistoryIndex

NS = 1_000_000_000


def as_index(history: History, exp: Expectations) -> HistoryIndex:
    """The index of `history` read under `exp` (reused when it was built with the same options)."""
    if isinstance(history, HistoryIndex):
        if history.run_id == exp.run_id and history.kill_fault_kinds == exp.kill_fault_kinds:
            return history
        history = history.history
    if isinstance(history, str | bytes) or not isinstance(history, Sequence):
        raise TypeError(f"a checker takes a sequence of Op (a list or a harness.history.History), got "
                        f"{type(history).__name__}: read a JSONL file with harness.history.read_history first")
    return build_index(history, run_id=exp.run_id, kill_fault_kinds=exp.kill_fault_kinds)


def cut_by_kill(rec: TaskRecord) -> Kill | None:
    """The kill that cut an unfinished execution of `rec`, if any (the likely cause of its loss)."""
    for ex in rec.executions or ():
        k = ex.killed_by
        if k is not None and (ex.outcome is None or ex.outcome == INFO):
            return k
    return None


def loss_fields(rec: TaskRecord, exp: Expectations) -> tuple[Kill | None, dict[str, Any]]:
    """The kill that cut `rec` (or None) and the fields explaining its loss: cause, setting, fix.

    The configuration explains; whether the loss is allowed is `exp.claim`'s to say.
    """
    from harness.checkers import explain

    kill = cut_by_kill(rec)
    fields: dict[str, Any] = {}
    if kill is not None:
        fields["killed_by"] = kill_summary(kill)
        fields.update(explain.loss_on_kill(exp, scope=kill.scope))
    else:
        fields.update(explain.lost_without_kill(exp, reached_a_worker=bool(rec.receives or rec.executions)))
    return kill, fields


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of an ascending, non-empty sequence (q in [0, 1])."""
    n = len(sorted_values)
    i = min(n - 1, max(0, int(q * n + 0.999999999) - 1))
    return float(sorted_values[i])


def kill_summary(k: Kill) -> dict[str, Any]:
    d: dict[str, Any] = {"source": k.source, "scope": k.scope, "kind": k.kind, "time": k.time_lo}
    if k.fault_id is not None:
        d["fault_id"] = k.fault_id
    if k.task_id is not None:
        d["task_id"] = k.task_id
    if k.hostnames:
        d["hostnames"] = sorted(k.hostnames)
    return d


class Findings:
    """Accumulates one checker's results and turns them into a `Verdict`.

    ``anomaly(kind, allowed=...)`` counts ``kind`` (or ``kind_allowed``) exactly and keeps at
    most ``exp.max_counterexamples`` concrete examples of each; any non-allowed anomaly makes
    the verdict false. ``vacuous(reason)``: the property was not exercised (unknown, or a pass
    with a note when ``exp.require_fault_bite`` is False). ``indeterminate(reason)``: the
    history cannot decide (unknown whatever the options).
    """

    __slots__ = ("checker", "exp", "ix", "counts", "metrics", "notes", "_cex", "_per_kind", "_violated",
                 "_vacuous", "_indeterminate")

    def __init__(self, checker: str, exp: Expectations, ix: HistoryIndex, kinds: Iterable[str] = ()) -> None:
        self.checker = checker
        self.exp = exp
        self.ix = ix
        self.counts: dict[str, int] = {k: 0 for k in kinds}
        self.metrics: dict[str, float] = {}
        self.notes: list[str] = []
        self._cex: list[dict[str, Any]] = []
        self._per_kind: dict[str, int] = {}
        self._violated = False
        self._vacuous: str | None = None
        self._indeterminate: str | None = None

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def anomaly(self, kind: str, *, allowed: bool = False, by_claim: bool = False, positions: Iterable[int] = (),
                **fields: Any) -> None:
        """Count one `kind` anomaly and keep it as a counterexample (up to the cap).

        ``by_claim``: allowed only because the user's claim is weaker than the default; counted
        also as ``<kind>_allowed_by_claim`` so reports say "allowed by your claim", never "valid".
        """
        name = f"{kind}_allowed" if allowed else kind
        self.counts[name] = self.counts.get(name, 0) + 1
        if allowed and by_claim:
            self.counts[f"{kind}_allowed_by_claim"] = self.counts.get(f"{kind}_allowed_by_claim", 0) + 1
            fields["allowed_by"] = "claim"
        if not allowed:
            self._violated = True
        n = self._per_kind.get(name, 0)
        if n < self.exp.max_counterexamples:
            self._per_kind[name] = n + 1
            ce: dict[str, Any] = {"kind": kind, "allowed": allowed}
            ce.update(fields)
            ce["ops"] = self.ix.ops_at(positions, self.exp.max_ops_per_counterexample)
            self._cex.append(ce)

    def vacuous(self, reason: str) -> None:
        if self._vacuous is None:
            self._vacuous = reason

    def indeterminate(self, reason: str) -> None:
        if self._indeterminate is None:
            self._indeterminate = reason

    def verdict(self) -> Verdict:
        notes = list(self.notes)
        if self._violated:
            valid = Validity.FALSE
        elif self._indeterminate is not None:
            valid = Validity.UNKNOWN
            notes.insert(0, self._indeterminate)
        elif self._vacuous is not None:
            if self.exp.require_fault_bite:
                valid = Validity.UNKNOWN
                notes.insert(0, f"not exercised: {self._vacuous}")
            else:
                valid = Validity.TRUE
                notes.insert(0, f"vacuous pass (require_fault_bite=False): {self._vacuous}")
        else:
            valid = Validity.TRUE
        for name, n in self.counts.items():
            kept = self._per_kind.get(name, 0)
            if n > kept and kept:
                notes.append(f"{n} {name}: only the first {kept} are listed as counterexamples")
        return Verdict(checker=self.checker, valid=valid, counts=self.counts, counterexamples=tuple(self._cex),
                       notes=tuple(notes), metrics=self.metrics)
