"""What a report holds: one entry per scenario, and the certification around them.

Responsibility: plain, JSON-serialisable values that the renderers (JSON, HTML, JUnit) read.
Nothing here runs anything.

Example:
    >>> s = ScenarioReport(name="worker_child_kill", valid="true", verdicts={}, schedule=[], elapsed_s=3.2)
    >>> CertificationReport(profile="quick", scenarios=[s]).valid
    'true'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from harness.audit import STATUSES, Risk
from harness.checkers.verdict import Validity, Verdict, merge_valid

#: A scenario's outcome: a checker `Validity`'s value, or "skipped" (not applicable to this
#: system or stack: it ran nothing, so it proves nothing either way).
ScenarioValidity = Literal["true", "false", "unknown", "skipped"]
_OF_VALIDITY: dict[Validity, ScenarioValidity] = {Validity.TRUE: "true", Validity.FALSE: "false",
                                                  Validity.UNKNOWN: "unknown"}


def scenario_validity(valid: Validity) -> ScenarioValidity:
    """The scenario outcome for a run's overall `Validity`.

    >>> scenario_validity(Validity.UNKNOWN)
    'unknown'
    """
    return _OF_VALIDITY[valid]


#: How an anomaly allowed by a weaker claim reads to a person ("2 tasks lost").
_ALLOWED_WORDS = {"lost": "tasks lost", "stuck": "units stuck", "missing_effect": "effects missing",
                  "duplicate_effect": "effects duplicated"}


def allowed_by_claim(verdicts: dict[str, Verdict]) -> dict[str, int]:
    """Anomalies a weaker claim allowed, per anomaly kind (the largest count any checker saw).

    Several checkers see one loss (lost_tasks, liveness): the largest count is the number of
    distinct anomalies of that kind, not their sum.

    >>> allowed_by_claim({"lost_tasks": Verdict("lost_tasks", Validity.TRUE, counts={"lost_allowed_by_claim": 2})})
    {'lost': 2}
    """
    out: dict[str, int] = {}
    for v in verdicts.values():
        for name, n in v.counts.items():
            if name.endswith("_allowed_by_claim") and n:
                kind = name[: -len("_allowed_by_claim")]
                out[kind] = max(out.get(kind, 0), int(n))
    return out


def allowed_words(allowed: dict[str, int]) -> str:
    """``{"lost": 2}`` -> ``"2 tasks lost"``.

    >>> allowed_words({"lost": 2, "duplicate_effect": 1})
    '1 effects duplicated, 2 tasks lost'
    """
    return ", ".join(f"{n} {_ALLOWED_WORDS.get(k, k.replace('_', ' '))}" for k, n in sorted(allowed.items()))


@dataclass(frozen=True, slots=True)
class TimelinePoint:
    """One time bucket of a scenario (t in seconds from the scenario's first op)."""

    t: float
    completed: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """When a fault was in force, in seconds from the scenario's first op."""

    label: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class ScenarioReport:
    """One scenario's outcome: its verdicts, the schedule as it ran, and a timeline for the chart."""

    name: str
    valid: ScenarioValidity
    verdicts: dict[str, Verdict]
    schedule: list[dict[str, Any]]
    elapsed_s: float
    timeline: list[TimelinePoint] = field(default_factory=list)
    fault_windows: list[FaultWindow] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    description: str = ""
    replay: str = ""
    error: str | None = None
    #: The merged history (ops), kept so a failing scenario's evidence can be written next to the
    #: report (``histories/<name>.jsonl``) and re-checked with ``celery-chaos check``.
    history: tuple[Any, ...] = field(default=(), compare=False, repr=False)
    #: The expectations the verdicts were derived under, saved beside the history so
    #: ``celery-chaos check`` re-derives the same verdict.
    expectations: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    keep_history: bool = False
    #: The app that ran (``module:attr``), as the deployment named it.
    app: str = ""
    #: Per task name: executions, how many a kill cut mid-run, the longest run (`task_coverage`).
    task_coverage: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def allowed(self) -> dict[str, int]:
        """What the user's weaker claim allowed in this scenario (empty: nothing, or not valid)."""
        return allowed_by_claim(self.verdicts) if self.valid == "true" else {}

    @property
    def history_file(self) -> str | None:
        """Where `write_report` puts this scenario's history (relative to the report directory).

        Only scenarios that are not valid keep their history: that is the evidence to read.

        >>> ScenarioReport("s", "false", {}, [], 1.0, history=("op",)).history_file
        'histories/s.jsonl'
        """
        keep = self.valid in ("false", "unknown") or bool(self.allowed) or self.keep_history
        return f"histories/{self.name}.jsonl" if self.history and keep else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "valid": self.valid,
            "elapsed_s": round(self.elapsed_s, 3),
            "schedule": self.schedule,
            "verdicts": {k: v.to_dict() for k, v in self.verdicts.items()},
            "metrics": self.metrics,
            "fault_windows": [{"label": w.label, "start": round(w.start, 3), "end": round(w.end, 3)}
                              for w in self.fault_windows],
            "timeline": [{"t": p.t, "completed": p.completed, "errors": p.errors,
                          "p50_ms": p.p50_ms, "p99_ms": p.p99_ms} for p in self.timeline],
            "replay": self.replay,
            **({"allowed_by_claim": self.allowed, "allowed_words": allowed_words(self.allowed)}
               if self.allowed else {}),
            **({"task_coverage": self.task_coverage} if self.task_coverage else {}),
            **({"error": self.error} if self.error else {}),
            **({"history_file": self.history_file} if self.history_file else {}),
        }


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One risk of the static audit and what the certification made of it.

    status: ``confirmed`` | ``refuted`` | ``not exercised`` (see `harness.audit.confirm`);
    scenarios: the scenarios that decided it (those that confirmed it, else those that refuted it).

    Example:
        >>> r = Risk("early_acks", 3, "t", "task_acks_late=False", ("lost",), "f", "loss")
        >>> e = AuditEntry(r, "confirmed", ("worker_child_sigkill",))
        >>> AuditEntry.from_dict(e.to_dict()) == e
        True
    """

    risk: Risk
    status: str
    scenarios: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"an audit status is one of {', '.join(STATUSES)}, not {self.status!r}")
        object.__setattr__(self, "scenarios", tuple(self.scenarios))

    def to_dict(self) -> dict[str, Any]:
        return {"risk": self.risk.to_dict(), "status": self.status, "scenarios": list(self.scenarios)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AuditEntry:
        return cls(Risk.from_dict(d["risk"]), str(d["status"]), tuple(d.get("scenarios") or ()))


@dataclass(frozen=True, slots=True)
class CertificationReport:
    """A certification run: profile, the scenarios, and the overall verdict."""

    profile: str
    scenarios: list[ScenarioReport]
    app: str = ""
    workload: str = ""
    seed: int | None = None
    elapsed_s: float = 0.0
    environment: dict[str, str] = field(default_factory=dict)
    #: The signal that stopped the run ("SIGINT", "SIGTERM"): a partial report, never a pass.
    interrupted: str | None = None
    #: The guarantee judged (``Claim.to_dict()``); it heads every report.
    claim: dict[str, str] = field(default_factory=lambda: {"delivery": "at-least-once", "effects": "exactly-once"})
    #: What the stack provided in place of what the app's configuration names (role -> sentence).
    substitutions: dict[str, str] = field(default_factory=dict)

    #: The static audit of the app with each risk's status (`harness.report.audit.audit_statuses`);
    #: None when no audit was run (the report then has no audit section).
    audit: list[AuditEntry] | None = None

    @property
    def coverage(self) -> dict[str, dict[str, Any]]:
        """Fault coverage per task name over the scenarios that ran (`merge_coverage`)."""
        from harness.checkers.coverage import merge_coverage

        return merge_coverage((s.name, s.task_coverage) for s in self.scenarios if s.valid != "skipped")

    @property
    def allowed(self) -> dict[str, int]:
        """Anomalies the claim allowed, summed over the scenarios."""
        out: dict[str, int] = {}
        for s in self.scenarios:
            for k, n in s.allowed.items():
                out[k] = out.get(k, 0) + n
        return out

    @property
    def valid(self) -> ScenarioValidity:
        ran = [s for s in self.scenarios if s.valid != "skipped"]
        if not ran:
            return "unknown"  # nothing ran: not a pass
        merged = merge_valid(Validity(s.valid) for s in ran)
        if self.interrupted:
            merged = merge_valid([merged, Validity.UNKNOWN])  # scenarios that never ran prove nothing
        return scenario_validity(merged)

    def to_dict(self) -> dict[str, Any]:
        return {
            "claim": dict(self.claim),
            "profile": self.profile,
            "valid": self.valid,
            **({"allowed_by_claim": self.allowed, "allowed_words": allowed_words(self.allowed)}
               if self.allowed and self.valid == "true" else {}),
            **({"substitutions": dict(self.substitutions)} if self.substitutions else {}),
            "app": self.app,
            "workload": self.workload,
            "seed": self.seed,
            "elapsed_s": round(self.elapsed_s, 2),
            "interrupted": self.interrupted,
            "environment": self.environment,
            "summary": {v: sum(1 for s in self.scenarios if s.valid == v) for v in ("true", "unknown", "false", "skipped")},
            "fault_coverage": self.coverage,
            "scenarios": [s.to_dict() for s in self.scenarios],
            **({"audit": [e.to_dict() for e in self.audit]} if self.audit is not None else {}),
        }
