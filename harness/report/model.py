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
from typing import Any

from harness.checkers.verdict import Validity, Verdict, merge_valid


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
    valid: str  # "true" | "false" | "unknown" | "skipped" (not applicable to this system or stack)
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

    @property
    def history_file(self) -> str | None:
        """Where `write_report` puts this scenario's history (relative to the report directory).

        Only scenarios that are not valid keep their history: that is the evidence to read.

        >>> ScenarioReport("s", "false", {}, [], 1.0, history=("op",)).history_file
        'histories/s.jsonl'
        """
        return f"histories/{self.name}.jsonl" if self.history and self.valid in ("false", "unknown") else None

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
            **({"error": self.error} if self.error else {}),
            **({"history_file": self.history_file} if self.history_file else {}),
        }


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

    @property
    def valid(self) -> str:
        ran = [s for s in self.scenarios if s.valid != "skipped"]
        if not ran:
            return Validity.UNKNOWN.value  # nothing ran: not a pass
        merged = merge_valid(Validity(s.valid) for s in ran)
        if self.interrupted:
            merged = merge_valid([merged, Validity.UNKNOWN])  # scenarios that never ran prove nothing
        return merged.value

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "valid": self.valid,
            "app": self.app,
            "workload": self.workload,
            "seed": self.seed,
            "elapsed_s": round(self.elapsed_s, 2),
            "interrupted": self.interrupted,
            "environment": self.environment,
            "summary": {v: sum(1 for s in self.scenarios if s.valid == v) for v in ("true", "unknown", "false", "skipped")},
            "scenarios": [s.to_dict() for s in self.scenarios],
        }
