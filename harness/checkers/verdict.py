"""Verdicts: what a checker concludes about a history, as JSON-ready data.

Responsibility: the `Validity` scale (true < unknown < false, Jepsen's ``merge-valid``) and the
`Verdict` value every checker returns.

A verdict is ``valid`` true when the property held *and was exercised*, false when the history
holds a violation, unknown when the run never exercised the property (the fault never bit) or
the checker crashed. ``counts`` are exact; ``counterexamples`` are concrete anomalies, capped
per kind; each is a dict with at least ``kind`` (the anomaly's name) and ``allowed`` (False: a
violation; True: an anomaly the configuration tolerates, such as a duplicate execution under
at-least-once), the ids it concerns (``task_id``, ``key``, ``chord_id`` ...) and ``ops``, the
relevant slice of the history as op dicts.

Example:
    >>> v = Verdict("lost_tasks", Validity.TRUE, counts={"lost": 0})
    >>> Verdict.from_dict(v.to_dict()) == v
    True
    >>> merge_valid([Validity.TRUE, Validity.UNKNOWN])
    <Validity.UNKNOWN: 'unknown'>
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Validity", "Verdict", "merge_valid"]


class Validity(str, enum.Enum):  # noqa: UP042 - a str mixin keeps json.dumps working
    """Whether a property held: TRUE < UNKNOWN < FALSE when verdicts are combined.

    Example:
        >>> Validity.TRUE.merge(Validity.FALSE)
        <Validity.FALSE: 'false'>
    """

    TRUE = "true"
    UNKNOWN = "unknown"
    FALSE = "false"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def merge(self, *others: Validity) -> Validity:
        """The worst of `self` and `others` (false beats unknown beats true)."""
        return merge_valid((self, *others))

    def to_json(self) -> bool | str:
        """Jepsen's encoding: JSON true / false, or the string "unknown"."""
        if self is Validity.TRUE:
            return True
        if self is Validity.FALSE:
            return False
        return "unknown"

    @classmethod
    def from_json(cls, raw: Any) -> Validity:
        """Read `to_json`'s encoding (also accepts "true"/"false" strings and Validity values).

        >>> Validity.from_json("unknown"), Validity.from_json(False)
        (<Validity.UNKNOWN: 'unknown'>, <Validity.FALSE: 'false'>)
        """
        if isinstance(raw, Validity):
            return raw
        if raw is True:
            return cls.TRUE
        if raw is False:
            return cls.FALSE
        if isinstance(raw, str) and raw.lower() in ("true", "false", "unknown"):
            return cls(raw.lower())
        raise ValueError(f"a verdict's valid must be true, false or \"unknown\", got {raw!r}")


_RANK = {Validity.TRUE: 0, Validity.UNKNOWN: 1, Validity.FALSE: 2}


def merge_valid(values: Iterable[Validity]) -> Validity:
    """Combine validities: false if any is false, else unknown if any is unknown, else true.

    An empty input is true (nothing was claimed), as in Jepsen.

    >>> merge_valid([Validity.TRUE, Validity.FALSE, Validity.UNKNOWN])
    <Validity.FALSE: 'false'>
    """
    worst = Validity.TRUE
    for v in values:
        v = Validity(v)
        if _RANK[v] > _RANK[worst]:
            worst = v
    return worst


@dataclass(frozen=True, slots=True)
class Verdict:
    """One checker's conclusion about one history.

    Attributes:
        checker: the name the checker ran under (``"lost_tasks"``).
        valid: true / unknown / false.
        counts: exact numbers (``{"published": 10, "lost": 1}``); never capped.
        counterexamples: concrete anomalies (see the module docstring), capped per kind.
        notes: sentences for the report (why unknown, what was tolerated and why).
        metrics: measured numbers in seconds or per second (latency quantiles, time to recover).
        error: the traceback when the checker crashed (then valid is unknown).

    Example:
        >>> v = Verdict("duplicates", Validity.FALSE, counts={"duplicate_effects": 1},
        ...             counterexamples=({"kind": "duplicate_effect", "allowed": False, "key": "k1"},))
        >>> v.violations()[0]["key"]
        'k1'
    """

    checker: str
    valid: Validity
    counts: Mapping[str, int] = field(default_factory=dict)
    counterexamples: tuple[dict[str, Any], ...] = ()
    notes: tuple[str, ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None

    def __post_init__(self) -> None:
        # Accept lists and plain strings from callers, store immutable-ish canonical forms.
        object.__setattr__(self, "valid", Validity.from_json(self.valid) if not isinstance(self.valid, Validity)
                           else self.valid)
        object.__setattr__(self, "counts", dict(self.counts))
        object.__setattr__(self, "metrics", dict(self.metrics))
        object.__setattr__(self, "counterexamples", tuple(self.counterexamples))
        object.__setattr__(self, "notes", tuple(self.notes))

    def violations(self) -> list[dict[str, Any]]:
        """The counterexamples that are not tolerated by the configuration."""
        return [c for c in self.counterexamples if not c.get("allowed", False)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``valid`` is encoded the Jepsen way (true / false / "unknown")."""
        d: dict[str, Any] = {
            "checker": self.checker,
            "valid": self.valid.to_json(),
            "counts": dict(self.counts),
            "counterexamples": [dict(c) for c in self.counterexamples],
            "notes": list(self.notes),
            "metrics": dict(self.metrics),
        }
        if self.error is not None:
            d["error"] = self.error
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verdict:
        """Read `to_dict`'s output back (e.g. from a report's JSON file)."""
        try:
            return cls(
                checker=str(d["checker"]),
                valid=Validity.from_json(d["valid"]),
                counts={str(k): int(v) for k, v in (d.get("counts") or {}).items()},
                counterexamples=tuple(dict(c) for c in d.get("counterexamples") or ()),
                notes=tuple(str(n) for n in d.get("notes") or ()),
                metrics={str(k): float(v) for k, v in (d.get("metrics") or {}).items()},
                error=d.get("error"),
            )
        except KeyError as exc:
            raise ValueError(f"a verdict dict needs the key {exc.args[0]!r}; got keys {sorted(d)}") from None
