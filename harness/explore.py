"""Exploration: Hypothesis draws fault schedules, real runs judge them, a failure shrinks to a reproducer.

Responsibility: drive `harness.faults.generate.find_failing_schedule` over real `Run`s of a
deployed system, decide when a run "fails the same way" as the first failure, keep the
exploration within a time budget, and write the minimal failing schedule as a reproducer
(``reproducer.json``: the schedule, the seed, the variant, the run options, the failure and
the command that replays it). `replay` runs a reproducer again.

What a failure is: a checker whose verdict is false, or unknown with violations (a fault
that never bit is unknown without violations: not a failure). A run in which the harness
could not heal a fault is not judged at all. The first failing run sets
the target: its worst checker and that checker's violation kinds (``duplicate_effect``...).
Later runs fail the same way when that checker fails with one of those violation kinds; a
run failing in another way is logged and counts as a pass, so the shrinker keeps one bug.

Time: each real run takes 10 to 20 s. Generation and Hypothesis's shrinking stop using real
runs after ``time_budget_s`` (the smallest failing schedule so far is kept); then at most
``max_faults`` runs try deleting each remaining fault, and ``confirm`` runs replay the
result (trying at most three candidates, smallest first) to check it reproduces.

Example:
    >>> from sample_system.deploy import prepare                                     # doctest: +SKIP
    >>> result = explore(prepare, stack, variant={"idempotent_effects": False},       # doctest: +SKIP
    ...                  space=FaultSpace(kinds=("kill_worker", "reset_peer"), roles=("worker_broker",)),
    ...                  max_examples=8, seed=1, out_dir="out/explore")
    >>> print(result.summary())                                                       # doctest: +SKIP
    >>> replay("out/explore/reproducer.json", stack).valid                            # doctest: +SKIP
    <Validity.FALSE: 'false'>
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Collection, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.checkers import Claim, Validity, Verdict
from harness.errors import ConfigError, HarnessError, UnsupportedFault
from harness.faults.generate import FaultSpace, find_failing_schedule
from harness.faults.schedule import Schedule
from harness.run import RunConfig, RunResult, run_deployment
from harness.stack.base import Stack
from harness.workload import Deployment

__all__ = [
    "ExploreResult",
    "Reproducer",
    "Target",
    "add_explore_arguments",
    "add_replay_arguments",
    "explore",
    "explore_main",
    "failing_verdicts",
    "replay",
    "replay_main",
    "run_deployment",
]

DeploymentFactory = Callable[..., AbstractContextManager[Deployment]]
Runner = Callable[[Schedule], RunResult]
Log = Callable[[str], None]

REPRODUCER = "reproducer.json"
#: Candidates tried by the confirmation step, smallest first.
_CONFIRM_CANDIDATES = 3
#: Runs in a row that may raise before the exploration stops.
_MAX_ERRORS_IN_A_ROW = 2


# -- what a failure is --------------------------------------------------------------------------


def failing_verdicts(result: RunResult, checkers: Collection[str] | None = None) -> dict[str, Verdict]:
    """The verdicts of `result` that are failures: false, or unknown with violations.

    `checkers` limits the search to those names (None: all).

    >>> from harness.checkers import Expectations
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


# -- the reproducer -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reproducer:
    """A minimal failing schedule and everything needed to run it again (``reproducer.json``).

    ``failure`` maps each failing checker of the minimal run to its counts; ``reproduced`` is
    (runs that failed the same way, confirmation runs). ``deployment`` is the import path of
    the deployment factory (``sample_system.deploy:prepare``), None when it had no importable
    name (then `replay` needs ``deployment_factory=``).

    >>> r = Reproducer(schedule=Schedule(), seed=3, variant={"idempotent_effects": False}, n_per_kind=1,
    ...                failure={"duplicates": {"duplicate_effect": 2}}, command="celery-chaos replay r.json",
    ...                target=Target("duplicates", ("duplicate_effect",)))
    >>> Reproducer.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    True
    """

    schedule: Schedule
    seed: int
    variant: Mapping[str, Any]
    n_per_kind: int
    failure: Mapping[str, Mapping[str, int]]
    command: str
    target: Target
    deployment: str | None = "sample_system.deploy:prepare"
    submit_interval_s: float = 0.1
    broker: str = "rabbitmq"
    run_id: str = ""
    evidence: str | None = None
    found_schedule: Schedule | None = None
    reproduced: tuple[int, int] = (0, 0)
    explore_command: str = ""
    space: Mapping[str, Any] = field(default_factory=dict)
    #: The claim the runs were judged under (``Claim.to_dict()``); empty: the default claim.
    claim: Mapping[str, str] = field(default_factory=dict)

    def fails_same_way(self, result: RunResult) -> bool:
        """Whether `result` (a replay) fails the way this reproducer records."""
        return self.target.matches(failing_verdicts(result))

    def describe(self) -> str:
        return self.schedule.describe()

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule.to_dict(),
            "seed": self.seed,
            "variant": dict(self.variant),
            "n_per_kind": self.n_per_kind,
            "failure": {k: dict(v) for k, v in self.failure.items()},
            "command": self.command,
            "target": self.target.to_dict(),
            "deployment": self.deployment,
            "submit_interval_s": self.submit_interval_s,
            "broker": self.broker,
            "run_id": self.run_id,
            "evidence": self.evidence,
            "found_schedule": None if self.found_schedule is None else self.found_schedule.to_dict(),
            "reproduced": {"failed_same_way": self.reproduced[0], "runs": self.reproduced[1]},
            "explore_command": self.explore_command,
            "space": dict(self.space),
            "claim": dict(self.claim),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Reproducer:
        missing = [k for k in ("schedule", "seed", "variant", "n_per_kind", "failure") if k not in d]
        if missing:
            raise ConfigError(f"a reproducer needs {missing}: is this a reproducer.json written by "
                              "`celery-chaos explore`?")
        try:
            return cls._from_checked_dict(d)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"a reproducer field has the wrong type ({type(exc).__name__}: {exc}): seed and "
                              "n_per_kind are integers, variant and failure JSON objects, schedule a schedule "
                              "object; re-run `celery-chaos explore` to write a fresh one") from None

    @classmethod
    def _from_checked_dict(cls, d: Mapping[str, Any]) -> Reproducer:
        for key, kind in (("variant", dict), ("failure", dict), ("schedule", dict)):
            if not isinstance(d[key], kind):
                raise ConfigError(f"reproducer field {key!r} must be a JSON object, not {type(d[key]).__name__}: "
                                  "re-run `celery-chaos explore` to write a fresh reproducer")
        for key in ("seed", "n_per_kind"):
            if isinstance(d[key], bool) or not isinstance(d[key], int):
                raise ConfigError(f"reproducer field {key!r} must be an integer, not {d[key]!r}: "
                                  "re-run `celery-chaos explore` to write a fresh reproducer")
        failure = d["failure"]
        target = d.get("target") or {"checker": next(iter(failure), ""), "violations": []}
        rep = d.get("reproduced") or {}
        found = d.get("found_schedule")
        return cls(schedule=Schedule.from_dict(d["schedule"]), seed=int(d["seed"]), variant=dict(d["variant"]),
                   n_per_kind=int(d["n_per_kind"]), failure={k: dict(v) for k, v in failure.items()},
                   command=str(d.get("command", "")), target=Target.from_dict(target),
                   deployment=d.get("deployment"), submit_interval_s=float(d.get("submit_interval_s", 0.1)),
                   broker=str(d.get("broker", "rabbitmq")), run_id=str(d.get("run_id", "")),
                   evidence=d.get("evidence"),
                   found_schedule=None if found is None else Schedule.from_dict(found),
                   reproduced=(int(rep.get("failed_same_way", 0)), int(rep.get("runs", 0))),
                   explore_command=str(d.get("explore_command", "")), space=dict(d.get("space") or {}),
                   claim=Claim.from_any(d["claim"]).to_dict() if d.get("claim") else {})

    def write(self, path: Path | str) -> Path:
        """Write as JSON (atomically: a reader never sees half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, path: Path | str) -> Reproducer:
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"no reproducer at {path}: pass the reproducer.json an exploration wrote") from None
        except ValueError as exc:
            raise ConfigError(f"{path} is not JSON ({exc}): pass the reproducer.json an exploration wrote") from None
        except OSError as exc:
            raise ConfigError(f"cannot read {path} ({exc.strerror or exc}): pass the reproducer.json an exploration "
                              "wrote") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{path} holds {type(doc).__name__}, not a reproducer object")
        return cls.from_dict(doc)


# -- running a deployment -----------------------------------------------------------------------


def _factory_path(factory: DeploymentFactory | str) -> str | None:
    if isinstance(factory, str):
        return factory
    module, name = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or not name or "<" in name:
        return None
    try:
        from harness.workload import load_object

        return f"{module}:{name}" if load_object(f"{module}:{name}", "deployment") is factory else None
    except ConfigError:
        return None


def _load_factory(factory: DeploymentFactory | str) -> DeploymentFactory:
    if not isinstance(factory, str):
        if not callable(factory):
            raise ConfigError(f"deployment_factory must be prepare(stack, **variant) (a context manager of "
                              f"harness.workload.Deployment) or its import path, not {factory!r}")
        return factory
    from harness.workload import load_object

    obj = load_object(factory, "deployment")
    if not callable(obj):
        raise ConfigError(f"deployment {factory!r} is not callable: name a prepare(stack, **variant) function "
                          "such as sample_system.deploy:prepare")
    return obj  # type: ignore[no-any-return]


class _DeploymentRunner:
    """Deploy (fresh store, fresh partner API) and run one schedule; keep the directory of failing runs."""

    def __init__(self, stack: Stack, factory: DeploymentFactory, variant: Mapping[str, Any], n_per_kind: int,
                 submit_interval_s: float, runs_dir: Path, log: Log | None, claim: Claim | None = None) -> None:
        self.stack, self.factory, self.variant, self.claim = stack, factory, dict(variant), claim
        self.n_per_kind, self.submit_interval_s = n_per_kind, submit_interval_s
        self.runs_dir, self.log = runs_dir, log
        self.count = 0
        self.last_directory: Path | None = None

    def __call__(self, schedule: Schedule) -> RunResult:
        self.count += 1
        directory = self.runs_dir / f"{self.count:03d}"
        if directory.exists():
            shutil.rmtree(directory)
        self.last_directory = directory
        with self.factory(self.stack, **self.variant) as d:
            result = run_deployment(self.stack, d, RunConfig(schedule=schedule, n_per_kind=self.n_per_kind,
                                                             submit_interval_s=self.submit_interval_s,
                                                             directory=directory, claim=self.claim), log=self.log)
        if result.valid is Validity.TRUE:
            shutil.rmtree(directory, ignore_errors=True)  # only failing runs are evidence
            self.last_directory = None
        return result


# -- the exploration ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExploreResult:
    """What an exploration found: the reproducer (None when every run passed) and its cost.

    ``runs`` counts real runs (a schedule seen twice is run once); ``budget_exhausted`` says
    the time budget cut generation or shrinking short.
    """

    seed: int
    reproducer: Reproducer | None
    reproducer_path: str | None
    runs: int
    failing_runs: int
    elapsed_s: float
    budget_exhausted: bool
    out_dir: str
    other_failures: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        return self.reproducer is not None

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "found": self.found, "reproducer_path": self.reproducer_path,
                "reproducer": None if self.reproducer is None else self.reproducer.to_dict(), "runs": self.runs,
                "failing_runs": self.failing_runs, "elapsed_s": self.elapsed_s,
                "budget_exhausted": self.budget_exhausted, "out_dir": self.out_dir,
                "other_failures": list(self.other_failures)}

    def summary(self) -> str:
        """Lines for a terminal: the verdict, the minimal schedule and how to replay it."""
        head = (f"exploration seed={self.seed}: {self.runs} runs in {self.elapsed_s:.0f} s"
                + (" (time budget spent)" if self.budget_exhausted else ""))
        if self.reproducer is None:
            lines = [head, "  no schedule failed"]
            lines.extend(f"  other failure: {o}" for o in self.other_failures)
            return "\n".join(lines)
        r = self.reproducer
        lines = [head, f"  FAILED: {r.target.describe()}; {len(r.schedule)} fault(s) in the minimal schedule"
                 + (f" (shrunk from {len(r.found_schedule)})" if r.found_schedule is not None else ""),
                 f"  reproduced {r.reproduced[0]}/{r.reproduced[1]} confirmation runs"]
        lines.extend(f"    {line}" for line in r.schedule.describe().splitlines())
        for name, counts in r.failure.items():
            lines.append(f"  {name}: {dict((k, n) for k, n in counts.items() if n)}")
        lines.append(f"  reproducer: {self.reproducer_path}")
        lines.append(f"  replay:     {r.command}")
        lines.append(f"  in Python:  harness.explore.replay({self.reproducer_path!r}, stack)")
        if r.explore_command:
            lines.append(f"  explore again: {r.explore_command}")
        lines.extend(f"  other failure: {o}" for o in self.other_failures)
        return "\n".join(lines)


def _smallest_last(items: list[tuple[Schedule, RunResult, str | None]]) -> list[tuple[Schedule, RunResult, str | None]]:
    # Fewest faults first; among equals the latest first (the shrinker moves only to simpler schedules).
    order = sorted(range(len(items)), key=lambda i: (len(items[i][0]), -i))
    return [items[i] for i in order]


class _Explorer:
    """The state of one exploration: the memo of judged schedules, the target, the budget, the log."""

    def __init__(self, runner: Runner, *, checkers: Collection[str] | None, time_budget_s: float,
                 clock: Callable[[], float], out_dir: Path, log: Log) -> None:
        self.runner = runner
        self.checkers = None if checkers is None else frozenset(checkers)
        self.time_budget_s = time_budget_s
        self.clock = clock
        self.t0 = clock()
        self.out_dir = out_dir
        self.say = log
        self.memo: dict[str, bool] = {}
        self.skipped: set[str] = set()  # not run: the budget was spent (a later unbudgeted pass may run them)
        self.target: Target | None = None
        self.failing: list[tuple[Schedule, RunResult, str | None]] = []  # same-way failures, in order found
        self.first: Schedule | None = None
        self.runs = 0
        self.failing_runs = 0
        self.budget_exhausted = False
        self.errors_in_a_row = 0
        self.abort: BaseException | None = None
        self.other: list[str] = []
        self.phase = "generate"
        self.on_smaller: Callable[[], None] = lambda: None

    def over_budget(self) -> bool:
        return self.clock() - self.t0 >= self.time_budget_s

    def fails(self, schedule: Schedule) -> bool:
        return self._judge(schedule, budget=True)

    def fails_unbudgeted(self, schedule: Schedule) -> bool:
        self.phase = "delete"
        return self._judge(schedule, budget=False)

    def _judge(self, schedule: Schedule, *, budget: bool) -> bool:
        key = schedule.to_json()
        if key in self.memo:
            return self.memo[key]
        if self.abort is not None:
            return False
        if budget and self.over_budget():
            if not self.budget_exhausted:
                self.say(f"time budget of {self.time_budget_s:.0f} s spent: no more runs for generation or "
                         "shrinking; keeping the smallest failing schedule so far")
            self.budget_exhausted = True
            self.skipped.add(key)
            return False
        matched = self._run(schedule, self.phase)
        self.memo[key] = matched
        return matched

    def _run(self, schedule: Schedule, phase: str) -> bool:
        t = self.clock()
        self.runs += 1
        n = self.runs
        one_line = " | ".join(sf.describe() for sf in schedule) or "(no faults)"
        self.say(f"run {n} ({phase}): {one_line}")
        try:
            result = self.runner(schedule)
        except (ConfigError, UnsupportedFault) as exc:
            # The space asks for something this stack or system cannot do: every run would say so.
            self.abort = exc
            self._record(n, phase, schedule, None, error=f"{type(exc).__name__}: {exc}")
            return False
        except Exception as exc:  # noqa: BLE001 - a broken run is logged; two in a row stop the exploration
            self.errors_in_a_row += 1
            self._record(n, phase, schedule, None, error=f"{type(exc).__name__}: {exc}")
            self.say(f"run {n} raised {type(exc).__name__}: {exc}")
            if self.errors_in_a_row >= _MAX_ERRORS_IN_A_ROW:
                self.abort = HarnessError(f"exploration stopped: {self.errors_in_a_row} runs in a row raised; the "
                                          f"last, under schedule {schedule.to_json()}, raised "
                                          f"{type(exc).__name__}: {exc}")
            return False
        self.errors_in_a_row = 0
        unhealed = [a.id for a in result.schedule_as_run if a.outcome == "unhealed"]
        if unhealed:
            # The harness could not undo a fault (e.g. a worker restart refused while another
            # fault cut its broker link): the verdicts are about a broken setup, not the system.
            self._record(n, phase, schedule, result, elapsed=self.clock() - t,
                         error=f"faults {unhealed} could not be healed: run not judged")
            self.say(f"run {n}: not judged, faults {unhealed} could not be healed ({result.valid.value})")
            return False
        failing = failing_verdicts(result, self.checkers)
        if failing and self.target is None:
            self.target = Target.of(failing)
            self.first = schedule
            self.phase = "shrink"
            self.say(f"first failure: {self.target.describe()}; shrinking")
        matched = self.target is not None and self.target.matches(failing)
        if failing:
            self.failing_runs += 1
            if not matched:
                self.other.append(f"{', '.join(sorted(failing))} under {schedule.to_json()}")
        evidence = getattr(self.runner, "last_directory", None)
        self._record(n, phase, schedule, result, failing=failing, matched=matched,
                     elapsed=self.clock() - t, evidence=evidence)
        verdict = "FAILS the same way" if matched else ("fails another way" if failing else result.valid.value)
        self.say(f"run {n}: {verdict} in {self.clock() - t:.1f} s"
                 + (f" ({', '.join(f'{k}: {v.valid.value}' for k, v in failing.items())})" if failing else ""))
        if matched:
            self.failing.append((schedule, result, None if evidence is None else str(evidence)))
            if len(schedule) <= min(len(s) for s, _r, _e in self.failing):
                self.on_smaller()
        return matched

    def _record(self, n: int, phase: str, schedule: Schedule, result: RunResult | None, *,
                failing: Mapping[str, Verdict] | None = None, matched: bool = False, elapsed: float = 0.0,
                error: str | None = None, evidence: Any = None) -> None:
        line = {"run": n, "phase": phase, "schedule": schedule.to_dict(), "matched": matched,
                "valid": None if result is None else result.valid.value, "run_id": None if result is None
                else result.run_id, "failing": {k: v.valid.value for k, v in (failing or {}).items()},
                "elapsed_s": round(elapsed, 3), "error": error,
                "evidence": None if evidence is None else str(evidence)}
        with (self.out_dir / "runs.jsonl").open("a") as fh:
            fh.write(json.dumps(line, default=str) + "\n")

    def best(self) -> tuple[Schedule, RunResult, str | None] | None:
        return _smallest_last(self.failing)[0] if self.failing else None


def _variant_args(variant: Mapping[str, Any]) -> str:
    return " ".join(f"--variant {k}={json.dumps(v)}" for k, v in variant.items())


def _space_args(space: FaultSpace) -> str:
    # The CLI options that rebuild `space` (the others keep their defaults there too).
    default = FaultSpace()
    out = [f"--kinds {','.join(space.kinds)}", f"--max-faults {space.max_faults}"]
    for name in ("roles", "events", "task_names", "effect_kinds"):
        value = getattr(space, name)
        if value != getattr(default, name):
            out.append(f"--{name.replace('_', '-')} '{','.join(value)}'")
    return " ".join(out)


def explore(deployment_factory: DeploymentFactory | str, stack: Stack | None, *, max_examples: int = 10, seed: int = 0,
            out_dir: Path | str, variant: Mapping[str, Any] | None = None, space: FaultSpace | None = None,
            n_per_kind: int = 1, submit_interval_s: float = 0.1, checkers: Collection[str] | None = None,
            time_budget_s: float = 300.0, confirm: int = 1, runner: Runner | None = None,
            clock: Callable[[], float] = time.monotonic, log: Log | None = None,
            claim: Claim | str | None = None) -> ExploreResult:
    """Search for a fault schedule that makes the deployed system fail; shrink it; write a reproducer.

    Each run is judged under `claim` (default: the workload's, else at-least-once delivery and
    exactly-once effects); the reproducer keeps it, so a replay judges the same guarantee.

    Each schedule Hypothesis draws from `space` runs for real: ``deployment_factory(stack,
    **variant)`` deploys the system (a context manager of `Deployment`, e.g.
    ``sample_system.deploy.prepare``, or its import path), and `run_deployment` runs it with
    ``n_per_kind`` units per workload kind. `seed` makes the search repeatable. On a failure
    (see the module docstring), ``out_dir/reproducer.json`` is written and rewritten as the
    schedule shrinks; ``out_dir/runs.jsonl`` logs every run and ``out_dir/runs/NNN`` keeps the
    history and logs of each failing run. `checkers` limits which checkers' failures count.
    `runner` replaces the real runs (a function of a Schedule returning a `RunResult`), for
    tests of this driver; `clock` likewise.

    Example::

        result = explore("sample_system.deploy:prepare", stack, variant={"idempotent_effects": False},
                         space=FaultSpace(kinds=("kill_worker", "reset_peer")), max_examples=8, seed=1,
                         out_dir="out/explore")
        print(result.summary())          # the minimal schedule and `celery-chaos replay out/explore/reproducer.json`
    """
    if not isinstance(max_examples, int) or isinstance(max_examples, bool) or max_examples < 1:
        raise ConfigError(f"max_examples must be an int >= 1 (schedules to generate), not {max_examples!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed must be an int, not {seed!r}")
    if not isinstance(confirm, int) or isinstance(confirm, bool) or confirm < 0:
        raise ConfigError(f"confirm must be an int >= 0 (replays of the minimal schedule), not {confirm!r}")
    if not isinstance(time_budget_s, int | float) or time_budget_s <= 0:
        raise ConfigError(f"time_budget_s must be a number of seconds > 0, not {time_budget_s!r}")
    if not isinstance(n_per_kind, int) or isinstance(n_per_kind, bool) or n_per_kind < 1:
        raise ConfigError(f"n_per_kind must be an int >= 1, not {n_per_kind!r}")
    if checkers is not None and (isinstance(checkers, str) or not all(isinstance(c, str) for c in checkers)):
        raise ConfigError(f"checkers must be a collection of checker names such as ('duplicates',), not {checkers!r}")
    variant = dict(variant or {})
    space = space or FaultSpace()
    say: Log = log or (lambda _m: None)
    factory_name = _factory_path(deployment_factory)
    claim = Claim.from_any(claim) if claim is not None else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    repro_path = out / REPRODUCER
    for stale in (repro_path, out / "runs.jsonl"):
        stale.unlink(missing_ok=True)
    if runner is None:
        factory = _load_factory(deployment_factory)
        if stack is None:
            raise ConfigError("explore needs a started stack to run the deployment on (or a runner=)")
        runner = _DeploymentRunner(stack, factory, variant, n_per_kind, submit_interval_s,
                                   out / "runs", None, claim)
    broker = "redis" if stack is not None and stack.urls.broker_kind == "redis" else "rabbitmq"
    command = f"celery-chaos replay {repro_path}"
    explore_command = "" if factory_name is None else " ".join(filter(None, [
        f"celery-chaos explore --deployment {factory_name}", _variant_args(variant), f"--seed {seed}",
        f"--max-examples {max_examples}", f"--n-per-kind {n_per_kind}", _space_args(space),
        "" if claim is None or claim.is_default else f"--claim delivery={claim.delivery},effects={claim.effects}",
        f"--time-budget {time_budget_s:g} --confirm {confirm} --out {out}"]))

    ex = _Explorer(runner, checkers=checkers, time_budget_s=float(time_budget_s), clock=clock, out_dir=out, log=say)

    def reproducer(schedule: Schedule, result: RunResult, evidence: str | None,
                   reproduced: tuple[int, int]) -> Reproducer:
        assert ex.target is not None
        failing = failing_verdicts(result, ex.checkers)
        return Reproducer(schedule=schedule, seed=seed, variant=variant, n_per_kind=n_per_kind,
                          failure={k: dict(v.counts) for k, v in failing.items()}, command=command,
                          target=ex.target, deployment=factory_name, submit_interval_s=submit_interval_s,
                          broker=broker, run_id=result.run_id, evidence=evidence, found_schedule=ex.first,
                          reproduced=reproduced, explore_command=explore_command, space=space.to_dict(),
                          claim=(claim or Claim()).to_dict())

    def write_best() -> None:
        best = ex.best()
        if best is not None:
            reproducer(*best, reproduced=(0, 0)).write(repro_path)

    ex.on_smaller = write_best
    say(f"exploring with seed {seed}: up to {max_examples} schedules of {', '.join(space.kinds)}; "
        f"time budget {time_budget_s:.0f} s")
    minimal = find_failing_schedule(space, ex.fails, seed=seed, max_examples=max_examples,
                                    last_pass=ex.fails_unbudgeted)
    if ex.abort is not None:
        raise ex.abort
    best = ex.best()
    if best is None:
        result = ExploreResult(seed=seed, reproducer=None, reproducer_path=None, runs=ex.runs,
                               failing_runs=ex.failing_runs, elapsed_s=round(clock() - ex.t0, 3),
                               budget_exhausted=ex.budget_exhausted, out_dir=str(out), other_failures=tuple(ex.other))
        (out / "explore.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        return result
    if minimal is not None and len(minimal) < len(best[0]):
        say(f"the search's minimal schedule {minimal.to_json()} was not seen failing; keeping {best[0].to_json()}")

    chosen = _confirm(ex, confirm)
    repro = reproducer(*chosen)
    repro.write(repro_path)
    if ex.abort is not None:
        raise ex.abort
    result = ExploreResult(seed=seed, reproducer=repro, reproducer_path=str(repro_path), runs=ex.runs,
                           failing_runs=ex.failing_runs, elapsed_s=round(clock() - ex.t0, 3),
                           budget_exhausted=ex.budget_exhausted, out_dir=str(out), other_failures=tuple(ex.other))
    (out / "explore.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def _confirm(ex: _Explorer, confirm: int) -> tuple[Schedule, RunResult, str | None, tuple[int, int]]:
    """Replay the smallest failing schedules `confirm` times each; the first that always reproduces wins."""
    seen: set[str] = set()
    candidates: list[tuple[Schedule, RunResult, str | None]] = []
    for item in _smallest_last(ex.failing):
        key = item[0].to_json()
        if key not in seen:
            seen.add(key)
            candidates.append(item)
    if confirm == 0:
        s, r, e = candidates[0]
        return s, r, e, (0, 0)
    tried: list[tuple[int, tuple[Schedule, RunResult, str | None]]] = []
    for item in candidates[:_CONFIRM_CANDIDATES]:
        same = 0
        for _ in range(confirm):
            if ex._run(item[0], "confirm"):
                same += 1
            if ex.abort is not None:
                break
        if same == confirm:
            return (*item, (same, confirm))
        ex.say(f"{item[0].to_json()} failed the same way in {same}/{confirm} confirmation runs")
        tried.append((same, item))
        if ex.abort is not None:
            break
    same, item = max(tried, key=lambda t: t[0])  # first (smallest) among the best rates
    return (*item, (same, confirm))


# -- replay -------------------------------------------------------------------------------------


def replay(path: Path | str, stack: Stack, *, deployment_factory: DeploymentFactory | str | None = None,
           directory: Path | str | None = None, log: Log | None = None) -> RunResult:
    """Run a reproducer's schedule again, with its variant, units and submit pace, on `stack`.

    The deployment is the reproducer's ``deployment`` import path unless `deployment_factory`
    is given. Check the outcome with ``Reproducer.read(path).fails_same_way(result)``.

    Example::

        result = replay("out/explore/reproducer.json", stack)
        print(result.summary())
    """
    repro = Reproducer.read(path)
    factory_ref = deployment_factory if deployment_factory is not None else repro.deployment
    if factory_ref is None:
        raise ConfigError(f"{path} names no deployment (the exploration used an unnamed factory): pass "
                          "replay(..., deployment_factory=prepare)")
    factory = _load_factory(factory_ref)
    config = RunConfig(schedule=repro.schedule, n_per_kind=repro.n_per_kind,
                       submit_interval_s=repro.submit_interval_s, directory=directory,
                       claim=Claim.from_any(dict(repro.claim) or None))
    with factory(stack, **dict(repro.variant)) as d:
        return run_deployment(stack, d, config, log=log)


# -- command line (wired by harness.cli) --------------------------------------------------------


def _csv(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(x.strip() for x in text.split(",") if x.strip())


def parse_variant(items: list[str] | None) -> dict[str, Any]:
    """``["idempotent_effects=false", "rate_limit=null"]`` -> a dict; values are JSON, else strings.

    >>> parse_variant(["idempotent_effects=false", "max_retries=2", "broker=redis"])
    {'idempotent_effects': False, 'max_retries': 2, 'broker': 'redis'}
    """
    out: dict[str, Any] = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--variant takes NAME=VALUE (e.g. idempotent_effects=false), not {item!r}")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        out[name.strip()] = value
    return out


def _add_stack_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stack", default="local", choices=("local", "containers", "external"),
                   help="stack provider (default: local)")
    p.add_argument("--broker-url", help="external stack: broker URL")
    p.add_argument("--backend-url", help="external stack: result backend URL")
    p.add_argument("--toxiproxy-url", help="external stack: Toxiproxy API URL")


def _open_stack(args: argparse.Namespace, broker: str) -> Stack:
    from harness.stack import open_stack

    if args.stack == "local":
        return open_stack("local", broker=broker)
    if args.stack == "external":
        return open_stack("external", broker_url=args.broker_url, backend_url=args.backend_url,
                          toxiproxy_url=args.toxiproxy_url)
    return open_stack(args.stack)


def add_explore_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``celery-chaos explore``."""
    p.add_argument("--deployment", default="sample_system.deploy:prepare",
                   help="MODULE:ATTR of prepare(stack, **variant), a context manager of harness.workload.Deployment")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=VALUE",
                   help="a configuration override for prepare (repeatable; JSON values), e.g. idempotent_effects=false")
    p.add_argument("--seed", type=int, default=0, help="Hypothesis seed (same seed, same first schedules)")
    p.add_argument("--claim", default=None,
                   help="the guarantee a run must keep: at-least-once (default) | at-most-once, effects=...")
    p.add_argument("--max-examples", type=int, default=10, help="schedules to generate before giving up")
    p.add_argument("--n-per-kind", type=int, default=1, help="workload units per kind in each run")
    p.add_argument("--submit-interval", type=float, default=0.1, help="seconds between submits")
    p.add_argument("--kinds", help="comma-separated fault kinds to draw from (default: harness.faults.generate."
                                   "DEFAULT_KINDS)")
    p.add_argument("--roles", help="comma-separated network fault targets (default: the four client roles)")
    p.add_argument("--events", help="comma-separated trigger events (effect,execute,receive,publish,worker_lost); "
                                    "'' for time offsets only")
    p.add_argument("--task-names", help="comma-separated task names for triggers and kill_worker_child")
    p.add_argument("--effect-kinds", help="comma-separated effect kinds for on_effect triggers")
    p.add_argument("--max-faults", type=int, default=3, help="faults per schedule, at most")
    p.add_argument("--checkers", help="comma-separated checkers whose failures count (default: all)")
    p.add_argument("--time-budget", type=float, default=300.0,
                   help="seconds of generation and shrinking before keeping the smallest failure so far")
    p.add_argument("--confirm", type=int, default=1, help="replays of the minimal schedule to confirm it")
    p.add_argument("--out", default="chaos-explore", help="output directory (reproducer.json, runs.jsonl, runs/)")
    _add_stack_arguments(p)


def explore_main(args: argparse.Namespace) -> int:
    """``celery-chaos explore``: 0 when no schedule failed, 1 when a reproducer was written, 2 on bad input."""
    try:
        variant = parse_variant(args.variant)
        overrides: dict[str, Any] = {"max_faults": args.max_faults}
        for name, value in (("kinds", _csv(args.kinds)), ("roles", _csv(args.roles)),
                            ("events", _csv(args.events)), ("task_names", _csv(args.task_names)),
                            ("effect_kinds", _csv(args.effect_kinds))):
            if value is not None:
                overrides[name] = value
        space = FaultSpace(**overrides)
        stack = _open_stack(args, str(variant.get("broker", "rabbitmq")))
        with stack:
            result = explore(args.deployment, stack, max_examples=args.max_examples, seed=args.seed,
                             out_dir=args.out, variant=variant, space=space, n_per_kind=args.n_per_kind,
                             submit_interval_s=args.submit_interval, checkers=_csv(args.checkers),
                             time_budget_s=args.time_budget, confirm=args.confirm, log=_stderr("explore"),
                             claim=args.claim)
    except ConfigError as exc:
        print(f"celery-chaos explore: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    return 1 if result.found else 0


def add_replay_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``celery-chaos replay REPRO.json``."""
    p.add_argument("reproducer", help="reproducer.json written by celery-chaos explore")
    p.add_argument("--deployment", default=None, help="MODULE:ATTR overriding the reproducer's deployment")
    p.add_argument("--directory", default=None, help="keep the run's history and logs here")
    _add_stack_arguments(p)


def replay_main(args: argparse.Namespace) -> int:
    """``celery-chaos replay``: 1 when the run fails (reproduced or not), 0 when it is valid, 2 on bad input."""
    try:
        repro = Reproducer.read(args.reproducer)
        stack = _open_stack(args, repro.broker)
        with stack:
            result = replay(args.reproducer, stack, deployment_factory=args.deployment, directory=args.directory,
                            log=_stderr("replay"))
    except ConfigError as exc:
        print(f"celery-chaos replay: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    same = repro.fails_same_way(result)
    print(f"reproduced: {'yes' if same else 'no'} (expected {repro.target.describe()} to fail)")
    return 0 if result.valid is Validity.TRUE else 1


def _stderr(prefix: str) -> Log:
    def say(line: str) -> None:
        print(f"[{prefix}] {line}", file=sys.stderr, flush=True)

    return say

