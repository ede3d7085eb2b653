"""A certification scenario under a steady Locust load (``celery-chaos certify --load RATE``).

Responsibility: turn one catalogue scenario into a run under load and its report entry. Locust,
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
import time
from pathlib import Path
from typing import Any

from harness.certification.catalogue import Scenario
from harness.checkers.claim import Claim
from harness.checkers.coverage import task_coverage
from harness.checkers.index import build_index
from harness.errors import ConfigError
from harness.faults.schedule import Schedule
from harness.processes import reaper
from harness.report import ScenarioReport, build_timeline, fault_windows

__all__ = ["DEFAULT_RATE_PER_S", "load_duration_s", "locustfile_of", "run_scenario_under_load", "shift_schedule"]

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


def _window_metrics(result: Any) -> dict[str, float]:
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


def run_scenario_under_load(stack: Any, system: Any, scenario: Scenario, *, app: str, rate_per_s: float,
                            replay: str = "", log: Any = None, claim: Claim | None = None,
                            app_given: bool = False, keep_history: bool = False) -> ScenarioReport:
    """Run `scenario` while Locust holds `rate_per_s` units per second (errors become `unknown`)."""
    from harness.certification.runner import check_app_matches, deploy, missing_capabilities
    from harness.load.under_load import run_under_load
    from harness.run import _load_app
    from harness.stack.result_backend import plan_for_app

    if not rate_per_s > 0:
        raise ConfigError(f"--load {rate_per_s}: the rate is units per second, a number > 0 (e.g. --load 10)")
    schedule = shift_schedule(scenario.schedule, rate_per_s=rate_per_s)
    duration = load_duration_s(schedule)
    t0 = time.monotonic()
    out_dir = Path(reaper.make_temp_dir(f"chaos-load-{scenario.name}-"))
    try:
        with deploy(stack, system, app) as d:
            check_app_matches(app if app_given else None, d.app)
            deployed = d.app
            missing = missing_capabilities(scenario, stack, plan_for_app(_load_app(d.producer), d.settings, stack.urls.backend_url))
            if missing:
                return ScenarioReport(scenario.name, "skipped", {}, schedule.to_dict()["faults"], 0.0,
                                      description=scenario.description, error="not applicable: " + "; ".join(missing))
            locustfile = locustfile_of(d.workload)
            result = run_under_load(stack, d, schedule, rate_per_s=rate_per_s, duration_s=duration,
                                    out_dir=out_dir, log=log, kinds=(), locustfile=locustfile, claim=claim,
                                    workers=scenario.workers)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken scenario is unknown, never a pass
        return ScenarioReport(scenario.name, "unknown", {}, schedule.to_dict()["faults"], time.monotonic() - t0,
                              description=scenario.description, replay=replay, error=f"{type(exc).__name__}: {exc}")
    finally:
        reaper.remove_dir(out_dir)
    history = list(result.history or ())
    metrics: dict[str, float] = {}
    for v in result.verdicts.values():
        metrics.update({k: float(x) for k, x in v.metrics.items()})
    metrics.update({f"timing_{k}": float(x) for k, x in result.timings.items()})
    metrics.update(_window_metrics(result))
    metrics["load_rate_per_s"] = float(rate_per_s)
    metrics["load_duration_s"] = float(duration)
    notes = list(result.notes)
    if not result.quiesced:
        notes.insert(0, "the system did not quiesce before the deadline")
    exp = result.expectations
    rep = ScenarioReport(
        name=scenario.name, valid=result.valid.value, verdicts=result.verdicts,
        schedule=[a.to_dict() for a in result.schedule_as_run] or schedule.to_dict()["faults"],
        elapsed_s=time.monotonic() - t0, timeline=build_timeline(history, bucket_s=1.0),
        fault_windows=fault_windows(history), metrics=metrics,
        description=f"{scenario.description} (under a load of {rate_per_s:g} units/s for {duration:g} s)",
        replay=replay, error="; ".join(notes) if notes and result.valid.value != "true" else None,
        task_coverage=task_coverage(build_index(history, run_id=result.run_id,
                                                kill_fault_kinds=exp.kill_fault_kinds if exp else frozenset())),
        history=tuple(history),
        expectations={"expectations": exp.to_dict(), "checkers": sorted(result.verdicts)} if exp else {},
        keep_history=keep_history, app=deployed)
    if not (keep_history or rep.history_file):
        rep = dataclasses.replace(rep, history=())
    return rep

