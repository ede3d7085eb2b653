"""A certification scenario under a steady Locust load (``celery-chaos certify --load RATE``).

Responsibility: turn one catalogue scenario into a run under load (`plan_under_load`; the
certification runner's `run_scenario` runs it and builds its report entry like any other). Locust,
in its own process, holds RATE units per second of the workload (an open model: it keeps
publishing whatever the faults do) for the whole scenario; the scenario's faults land mid-load,
after a warm-up; the same checkers judge the whole history after heal, quiesce and drain
(`harness.load.under_load.run_under_load`). The report entry adds what only load shows: per
fault, the p50/p99 completion latency during and after it, the throughput before, during and
after, the time until it recovered, and how long the backlog took to drain.

How a catalogue schedule is moved under load (`shift_schedule`): a fault at ``t`` seconds runs
at ``warm-up + t``; a fault on the n-th execution waits for ``n + 3 x rate x warm-up``
executions (about the warm-up's worth of work at three tasks a unit, the sample system's mean).

The workload names its locustfile (``locustfile`` attribute: a path whose users submit its
units, reading `harness.load.target.LoadTarget` from the environment); the sample system's is
``loadtests/locustfile.py``.

Example:
    >>> from harness.faults import BrokerOutage, Schedule, at
    >>> s = shift_schedule(Schedule.of(at(0.3, BrokerOutage("proxy_down"), duration_s=3.0)), rate_per_s=10)
    >>> s.faults[0].at_s, load_duration_s(s)
    (4.3, 13.3)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.certification.catalogue import Scenario
from harness.checkers.claim import Claim
from harness.errors import ConfigError
from harness.faults.schedule import Schedule
from harness.stack.base import Stack
from harness.workload import Deployment

if TYPE_CHECKING:
    from harness.load.under_load import UnderLoadResult
    from harness.run import RunResult

__all__ = ["DEFAULT_RATE_PER_S", "ScenarioUnderLoad", "load_duration_s", "locustfile_of", "plan_under_load",
           "shift_schedule", "window_metrics"]

#: Units per second Locust holds by default: on this project's 2-core reference box the sample
#: system (about four tasks per unit) then keeps one worker of two pool processes busy without
#: building a backlog that outlasts the run.
DEFAULT_RATE_PER_S = 10.0
#: Load before the first fault, so "before" throughput and latency are measured.
WARMUP_S = 4.0
#: Load after the last heal, so recovery is measured under load.
AFTER_S = 6.0
MIN_DURATION_S = 12.0
#: Executions per unit assumed when a triggered fault is moved past the warm-up.
TASKS_PER_UNIT = 3


def shift_schedule(schedule: Schedule, *, rate_per_s: float, warmup_s: float = WARMUP_S) -> Schedule:
    """`schedule` with its faults moved after `warmup_s` of load (see the module docstring)."""
    moved = []
    for sf in schedule.faults:
        if sf.at_s is not None:
            moved.append(dataclasses.replace(sf, at_s=round(sf.at_s + warmup_s, 3)))
        elif sf.trigger is not None:
            extra = int(TASKS_PER_UNIT * rate_per_s * warmup_s)
            moved.append(dataclasses.replace(sf, trigger=dataclasses.replace(sf.trigger, nth=sf.trigger.nth + extra)))
        else:
            moved.append(sf)
    return dataclasses.replace(schedule, faults=tuple(moved))


def load_duration_s(schedule: Schedule, *, warmup_s: float = WARMUP_S, after_s: float = AFTER_S) -> float:
    """How long the load runs for a (shifted) schedule: past its last heal by `after_s`."""
    ends = [sf.at_s + sf.duration_s for sf in schedule.faults if sf.at_s is not None]
    # A triggered fault fires soon after the warm-up; give it its own duration past that.
    ends += [warmup_s + 2.0 + sf.duration_s for sf in schedule.faults if sf.at_s is None]
    return round(max([MIN_DURATION_S, *(e + after_s for e in ends)]), 3)


def locustfile_of(workload: Any) -> str:
    """The workload's locustfile; a ConfigError naming the fix when it has none."""
    path = getattr(workload, "locustfile", None)
    if not path:
        raise ConfigError(f"--load needs a locustfile for the workload {type(workload).__name__}: give it a "
                          "`locustfile` attribute (the path of a locustfile whose users submit its units; see "
                          "loadtests/locustfile.py, the sample system's), or certify without --load")
    if not Path(path).is_file():
        raise ConfigError(f"the workload's locustfile {path} does not exist: fix its `locustfile` attribute")
    return str(path)


def window_metrics(result: UnderLoadResult) -> dict[str, float]:
    """The report metrics of a run under load: per fault window and overall (``load_*`` keys)."""
    out: dict[str, float] = {}
    for w in result.windows:
        for field in ("p50_during_ms", "p99_during_ms", "p50_after_ms", "p99_after_ms",
                      "throughput_before_per_s", "throughput_during_per_s", "throughput_after_per_s",
                      "time_to_recover_s"):
            val = getattr(w, field)
            if val is not None:
                out[f"load_{field}[{w.id}:{w.kind}]"] = float(val)
    for k, v in result.throughput.items():
        if v is not None:
            out[f"load_throughput_{k}"] = float(v)
    if result.load is not None:
        out["load_units_submitted"] = float(result.load.ok)
        out["load_submit_failures"] = float(result.load.failures)
    out["load_units"] = float(result.counts.get("units", 0))
    out["load_backlog_drain_s"] = float(result.timings.get("quiesce_s", 0.0))
    return out


@dataclass(frozen=True, slots=True)
class ScenarioUnderLoad:
    """A catalogue scenario moved under a steady load (`plan_under_load`): its shifted schedule,
    how long the load runs, and how its report entry differs (description, timeline buckets,
    the ``load_*`` metrics)."""

    rate_per_s: float
    schedule: Schedule
    duration_s: float
    description: str
    bucket_s: float = 1.0

    def run(self, stack: Stack, deployment: Deployment, scenario: Scenario, *, log: Callable[[str], None] | None = None,
            claim: Claim | None = None) -> tuple[RunResult, dict[str, float]]:
        """Run it (`harness.load.under_load.run_under_load`): the run's result and the report's
        ``load_*`` metrics (per fault window, throughput, the rate and duration)."""
        from harness.load.under_load import run_under_load

        locustfile = locustfile_of(deployment.workload)
        ul = run_under_load(stack, deployment, self.schedule, rate_per_s=self.rate_per_s, duration_s=self.duration_s,
                            log=log, kinds=(), locustfile=locustfile, claim=claim, workers=scenario.workers,
                            name=scenario.name, hold_after_heal_s=AFTER_S)
        assert ul.run is not None
        metrics = window_metrics(ul)
        metrics["load_rate_per_s"] = float(self.rate_per_s)
        metrics["load_duration_s"] = float(self.duration_s)
        return ul.run, metrics


def plan_under_load(scenario: Scenario, rate_per_s: float) -> ScenarioUnderLoad:
    """`scenario` under `rate_per_s` units per second (a ConfigError for a rate that is not > 0).

    >>> from harness.certification.catalogue import get
    >>> p = plan_under_load(get("baseline"), 10)
    >>> p.duration_s, p.description.endswith("(under a load of 10 units/s for 12 s)")
    (12.0, True)
    """
    if not rate_per_s > 0:
        raise ConfigError(f"--load {rate_per_s}: the rate is units per second, a number > 0 (e.g. --load 10)")
    schedule = shift_schedule(scenario.schedule, rate_per_s=rate_per_s)
    duration = load_duration_s(schedule)
    return ScenarioUnderLoad(rate_per_s=rate_per_s, schedule=schedule, duration_s=duration,
                             description=f"{scenario.description} (under a load of {rate_per_s:g} units/s for "
                                         f"{duration:g} s)")
