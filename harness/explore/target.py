"""What a failure is, and when a run fails "the same way" as the first failure (`Target`).

A failure is a checker whose verdict is false, or unknown with violations (a fault that never
bit is unknown without violations: not a failure). The first failing run sets the target: its
worst checker and that checker's violation kinds.

Example:
    >>> Target("duplicates", ("duplicate_effect",)).describe()
    'duplicates (duplicate_effect)'
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from harness.checkers import Validity, Verdict
from harness.run import RunResult

__all__ = ["Target", "failing_verdicts"]


def failing_verdicts(result: RunResult, checkers: Collection[str] | None = None) -> dict[str, Verdict]:
    """The verdicts of `result` that are failures: false, or unknown with violations.

    `checkers` limits the search to those names (None: all).

    >>> from harness.checkers import Expectations
    >>> from harness.faults.schedule import Schedule
    >>> r = RunResult("r1", Validity.FALSE, {"duplicates": Verdict("duplicates", Validity.FALSE,
    ...               counterexamples=({"kind": "duplicate_effect", "allowed": False},)),
    ...               "redelivery": Verdict("redelivery", Validity.UNKNOWN)}, Schedule(), (), Expectations(),
    ...               {}, {}, True, None)
    >>> sorted(failing_verdicts(r))
    ['duplicates']
    """
    out: dict[str, Verdict] = {}
    for name, v in result.verdicts.items():
        if checkers is not None and name not in checkers:
            continue
        if v.valid is Validity.FALSE or (v.valid is Validity.UNKNOWN and v.violations()):
            out[name] = v
    return out


def _violation_kinds(v: Verdict) -> tuple[str, ...]:
    return tuple(sorted({str(c.get("kind")) for c in v.violations() if c.get("kind")}))


@dataclass(frozen=True, slots=True)
class Target:
    """The way the first failing run failed: a checker and the kinds of its violations.

    A run fails the same way when that checker fails and, if kinds were seen, shows one of them.

    >>> t = Target("duplicates", ("duplicate_effect",))
    >>> t.matches({"duplicates": Verdict("duplicates", Validity.FALSE,
    ...            counterexamples=({"kind": "duplicate_effect", "allowed": False},))})
    True
    >>> t.matches({"lost_tasks": Verdict("lost_tasks", Validity.FALSE)})
    False
    """

    checker: str
    violations: tuple[str, ...] = ()

    @classmethod
    def of(cls, failing: Mapping[str, Verdict]) -> Target:
        """The target for a run's failing verdicts: false before unknown, then in checker order."""
        name = min(failing, key=lambda n: (0 if failing[n].valid is Validity.FALSE else 1, list(failing).index(n)))
        return cls(name, _violation_kinds(failing[name]))

    def matches(self, failing: Mapping[str, Verdict]) -> bool:
        v = failing.get(self.checker)
        if v is None:
            return False
        return not self.violations or bool(set(self.violations) & set(_violation_kinds(v)))

    def describe(self) -> str:
        return self.checker + (f" ({', '.join(self.violations)})" if self.violations else "")

    def to_dict(self) -> dict[str, Any]:
        return {"checker": self.checker, "violations": list(self.violations)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Target:
        return cls(str(d["checker"]), tuple(d.get("violations") or ()))

