"""The exploration: Hypothesis draws schedules, each runs for real, a failure shrinks to a reproducer.

Responsibility: `explore` (budget, target, shrinking, confirmation, writing the reproducer as
it shrinks) over a runner: by default `_DeploymentRunner`, one `harness.run.run_deployment`
per schedule on a fresh deployment. See `harness.explore` for what a failure is and the time
budget.

Example::

    result = explore("sample_system.deploy:prepare", stack, variant={"idempotent_effects": False},
                     space=FaultSpace(kinds=("kill_worker", "reset_peer")), out_dir="out/explore")
    print(result.summary())
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.checkers import Claim, Validity, Verdict
from harness.errors import ConfigError, HarnessError, UnsupportedFault
from harness.explore.reproducer import (
    REPRODUCER,
    DeploymentFactory,
    Reproducer,
    factory_path,
    load_factory,
)
from harness.explore.target import Target, failing_verdicts
from harness.faults.generate import FaultSpace, find_failing_schedule
from harness.faults.schedule import Schedule
from harness.run import RunConfig, RunResult, run_deployment
from harness.stack.base import Stack

__all__ = ["ExploreResult", "Runner", "explore"]

Runner = Callable[[Schedule], RunResult]
Log = Callable[[str], None]

#: Candidates tried by the confirmation step, smallest first.
_CONFIRM_CANDIDATES = 3
#: Runs in a row that may raise before the exploration stops.
_MAX_ERRORS_IN_A_ROW = 2


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
    factory_name = factory_path(deployment_factory)
    claim = Claim.from_any(claim) if claim is not None else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    repro_path = out / REPRODUCER
    for stale in (repro_path, out / "runs.jsonl"):
        stale.unlink(missing_ok=True)
    if runner is None:
        factory = load_factory(deployment_factory)
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

