"""Chaos under load: hold a steady Locust rate while a fault schedule comes and goes, then check.

Responsibility: compose the engine's parts around an open-model load (a `Run` submits a fixed
list of units itself; here Locust keeps publishing at a steady rate whatever the faults do):

1. setup: the deployment's workload declares and purges its queues and empties its effect store;
2. workers: as every run's, on the worker-role proxies, recording into the run's history;
3. load: a `LoadRun` (Locust subprocess) through the producer-role proxies, recording its
   publishes and its units ledger into the same history directory (`SteadyLoad`);
4. faults: once the first unit was submitted, the nemesis runs the schedule in its thread;
5. heal, quiesce, drain (effect store and DLQ into the history), check (`check_all`, with the
   expected outcomes read from the units ledger);
6. measure: per fault window, the throughput before / during / after, the time until the
   throughput is back at `recovery_fraction` of its pre-fault level, and the p99 completion
   latency (publish to successful execution) of the tasks published during and after it.

It is one `harness.run.run_deployment` whose `RunConfig.load` is a `SteadyLoad`: the workers,
heal, quiesce, drain and check are the run's own (one place decides what "quiet" and "drained"
mean); only the load and the measurements are this module's.

Example:
    >>> from harness.faults import KillWorkerChild, Schedule, at
    >>> with prepare(stack) as d:                                         # doctest: +SKIP
    ...     r = run_under_load(stack, d, Schedule.of(at(8, KillWorkerChild())), rate_per_s=10,
    ...                        duration_s=25, out_dir="out/child-kill")
    >>> r.valid, r.windows[0].p99_during_ms, r.windows[0].time_to_recover_s   # doctest: +SKIP
    (<Validity.TRUE: 'true'>, 412.0, 1.0)
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.checkers import Claim, Expectations, Validity, Verdict
from harness.errors import ConfigError
from harness.faults.nemesis import AppliedFault
from harness.faults.schedule import Schedule
from harness.history import History
from harness.history.ops import F, Op, OpType
from harness.load.runner import LoadRun, LoadSpec
from harness.load.stats import LoadResult
from harness.load.target import LoadTarget
from harness.load.units import read_units
from harness.run import LoadSession, RunConfig, RunContext, RunResult, run_deployment
from harness.stack.base import Stack
from harness.workers.group import WorkerGroup
from harness.workload import Deployment, Unit

__all__ = ["DEFAULT_KINDS", "FaultWindowStats", "LoadHooks", "LoadWindow", "SteadyLoad", "UnderLoadResult",
           "completion_latencies", "run_under_load", "under_load_result", "window_stats"]

#: Kinds that complete quickly and always (no DLQ, no retries): a steady rate stays steady.
DEFAULT_KINDS: tuple[str, ...] = ("order", "notification", "event")
LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtests" / "locustfile.py"
NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class FaultWindowStats:
    """One fault under load: when it was in force (seconds after the load's first publish),
    throughput (successful executions per second) before / during / after it, the time from its
    heal until throughput was back at the recovery fraction of the before level (None: never),
    and the p99 completion latency of tasks published during it and after its heal."""

    id: str
    kind: str
    start_s: float
    end_s: float
    throughput_before_per_s: float | None
    throughput_during_per_s: float | None
    throughput_after_per_s: float | None
    time_to_recover_s: float | None
    p99_during_ms: float | None
    p99_after_ms: float | None
    completed_during: int
    completed_after: int
    incomplete: int
    p50_during_ms: float | None = None
    p50_after_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class UnderLoadResult:
    """What a chaos-under-load run did and what the checkers said; `to_dict` for reports.

    ``throughput`` holds ``before_per_s`` (load start to the first fault), ``during_per_s`` (any
    fault in force), ``after_per_s`` (last heal to the end of the load) and ``time_to_recover_s``
    (the slowest recovery of the windows; None when one never recovered).
    """

    run_id: str
    valid: Validity
    verdicts: dict[str, Verdict]
    schedule: Schedule
    schedule_as_run: tuple[AppliedFault, ...]
    load: LoadResult | None
    windows: tuple[FaultWindowStats, ...]
    throughput: dict[str, float | None]
    quiesced: bool
    timings: dict[str, float]
    counts: dict[str, int]
    directory: str
    notes: tuple[str, ...] = ()
    history: History | None = field(default=None, compare=False, repr=False)
    #: What the verdicts were derived under (saved beside a kept history for `celery-chaos check`).
    expectations: Expectations | None = field(default=None, compare=False, repr=False)
    #: The run itself (what `harness.certification` builds a scenario's report from).
    run: RunResult | None = field(default=None, compare=False, repr=False)

    def verdict(self, name: str) -> Verdict:
        try:
            return self.verdicts[name]
        except KeyError:
            raise KeyError(f"no verdict {name!r}: checkers that ran are {sorted(self.verdicts)}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "valid": self.valid.to_json(),
            "verdicts": {k: v.to_dict() for k, v in self.verdicts.items()},
            "schedule": self.schedule.to_dict(), "schedule_as_run": [a.to_dict() for a in self.schedule_as_run],
            "load": None if self.load is None else self.load.to_dict(),
            "windows": [w.to_dict() for w in self.windows], "throughput": dict(self.throughput),
            "quiesced": self.quiesced, "timings": dict(self.timings), "counts": dict(self.counts),
            "directory": self.directory, "notes": list(self.notes),
        }

    def summary(self) -> str:
        lines = [f"under load {self.run_id}: {self.valid.value}  throughput {self.throughput}"]
        lines += [f"  {n:<12} {v.valid.value:<8} {dict(v.counts)}" for n, v in self.verdicts.items()]
        for w in self.windows:
            lines.append(f"  fault {w.id} {w.kind} {w.start_s:.1f}-{w.end_s:.1f}s: rate before/during/after "
                         f"{w.throughput_before_per_s}/{w.throughput_during_per_s}/{w.throughput_after_per_s}, "
                         f"recovered in {w.time_to_recover_s} s, p99 during {w.p99_during_ms} ms, "
                         f"after {w.p99_after_ms} ms")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass
class LoadHooks:
    """Callbacks for a caller that watches the run (the soak command): `on_load_start(group, load)`
    once Locust runs, `on_tick(elapsed_s)` about every `tick_s` while the load runs, `on_load_end()`."""

    on_load_start: Callable[[WorkerGroup, LoadRun], None] | None = None
    on_tick: Callable[[float], None] | None = None
    on_load_end: Callable[[], None] | None = None
    tick_s: float = 1.0


# ------------------------------------------------------------------------------ pure measurements


def completion_latencies(history: Sequence[Op]) -> list[tuple[int, float | None]]:
    """``(publish time ns, completion latency ms or None)`` per published task: first publish
    invoke to its first successful execution; None when it never completed."""
    published: dict[str, int] = {}
    done: dict[str, int] = {}
    for op in history:
        v = op.value if isinstance(op.value, dict) else {}
        tid = v.get("task_id")
        if not tid:
            continue
        if op.f == F.PUBLISH and op.type is OpType.INVOKE:
            published.setdefault(tid, op.time)
        elif op.f == F.EXECUTE and op.type is OpType.OK:
            done.setdefault(tid, op.time)
    return [(t, (done[tid] - t) / 1e6 if tid in done else None) for tid, t in published.items()]


def _p99(values: list[float], q: float = 0.99) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 1)


def _rate(times: list[int], lo: int, hi: int) -> float | None:
    if hi - lo < NS // 2:
        return None
    return round(sum(1 for t in times if lo <= t < hi) / ((hi - lo) / NS), 3)


def window_stats(history: Sequence[Op], *, load_start_ns: int, load_end_ns: int, window_s: float = 2.0,
                 recovery_fraction: float = 0.8, after_s: float = 10.0
                 ) -> tuple[list[FaultWindowStats], dict[str, float | None]]:
    """Per-fault windows and overall throughput of a run under load (see `FaultWindowStats`).

    Faults come from the nemesis's ``fault_start`` / ``fault_stop`` ok ops. "Before" a fault is
    the time since the previous heal (or the load's start, skipping one `window_s` of warm-up);
    "after" is its heal to the next fault (at most `after_s`). An instant fault (a kill) counts
    as in force for `window_s`: p99 "during" is then about the tasks published in that window. Recovery: the first sliding
    `window_s` window starting at or after the heal whose rate reaches the fraction of before.
    """
    execs = sorted(op.time for op in history if op.f == F.EXECUTE and op.type is OpType.OK)
    lats = completion_latencies(history)
    starts: dict[str, tuple[str, int]] = {}
    faults: list[tuple[str, str, int, int]] = []
    for op in history:
        if op.type is not OpType.OK or op.f not in (F.FAULT_START, F.FAULT_STOP):
            continue
        v = op.value if isinstance(op.value, dict) else {}
        fid = str(v.get("fault_id") or v.get("id") or len(starts))
        if op.f == F.FAULT_START:
            starts[fid] = (str(v.get("kind") or "fault"), op.time)
        elif fid in starts:
            kind, t0 = starts.pop(fid)
            faults.append((fid, kind, t0, op.time))
    faults += [(fid, kind, t0, load_end_ns) for fid, (kind, t0) in starts.items()]
    faults.sort(key=lambda f: f[2])
    win = int(window_s * NS)
    out: list[FaultWindowStats] = []
    prev_end = load_start_ns + win
    for i, (fid, kind, t0, t1) in enumerate(faults):
        nxt = faults[i + 1][2] if i + 1 < len(faults) else load_end_ns
        after_hi = min(nxt, load_end_ns, t1 + int(after_s * NS))
        before = _rate(execs, min(prev_end, t0), t0)
        recovered: float | None = None
        if before:
            need = recovery_fraction * before * window_s
            j = 0
            for t in [t1] + [e for e in execs if t1 <= e]:  # windows starting at the heal or at an execution
                if t + win > nxt and t > t1:
                    break
                while j < len(execs) and execs[j] < t:
                    j += 1
                k = j
                while k < len(execs) and execs[k] < t + win:
                    k += 1
                if k - j >= need:
                    recovered = round(max(0.0, (t - t1) / NS), 3)
                    break
        # An instant fault (a kill) is "in force" for at least one window: its effects last that long.
        t1_eff = max(t1, min(t0 + win, nxt))
        after_hi = max(after_hi, min(nxt, load_end_ns, t1_eff + int(after_s * NS)))
        during = [ms for t, ms in lats if t0 <= t < t1_eff]
        after = [ms for t, ms in lats if t1_eff <= t < after_hi]
        out.append(FaultWindowStats(
            id=fid, kind=kind, start_s=round((t0 - load_start_ns) / NS, 3), end_s=round((t1 - load_start_ns) / NS, 3),
            throughput_before_per_s=before, throughput_during_per_s=_rate(execs, t0, t1_eff),
            throughput_after_per_s=_rate(execs, t1_eff, after_hi), time_to_recover_s=recovered,
            p99_during_ms=_p99([x for x in during if x is not None]),
            p99_after_ms=_p99([x for x in after if x is not None]),
            completed_during=sum(1 for x in during if x is not None),
            completed_after=sum(1 for x in after if x is not None),
            incomplete=sum(1 for x in during + after if x is None),
            p50_during_ms=_p99([x for x in during if x is not None], 0.5),
            p50_after_ms=_p99([x for x in after if x is not None], 0.5)))
        prev_end = t1
    first = faults[0][2] if faults else load_end_ns
    last = max((f[3] for f in faults), default=load_start_ns)
    spans = [(f[2], max(f[3], f[2] + win)) for f in faults]
    in_fault = sum(b - a for a, b in spans)
    n_during = sum(1 for e in execs if any(a <= e < b for a, b in spans))
    recov = [w.time_to_recover_s for w in out]
    overall_rates: dict[str, float | None] = {
        "before_per_s": _rate(execs, min(load_start_ns + win, first), first),
        "during_per_s": round(n_during / (in_fault / NS), 3) if in_fault >= NS // 2 else None,
        "after_per_s": _rate(execs, last, load_end_ns) if faults else None,
        "time_to_recover_s": (None if any(r is None for r in recov)
                              else max((r for r in recov if r is not None), default=0.0)),
    }
    return out, overall_rates


# ------------------------------------------------------------------------------ the load


@dataclass
class LoadWindow:
    """What a `SteadyLoad` measured in one run: when its load ran (monotonic ns, from the first
    unit submitted to Locust's end) and Locust's result."""

    start_ns: int = 0
    end_ns: int = 0
    result: LoadResult | None = None


@dataclass(frozen=True, slots=True)
class SteadyLoad:
    """A run's load held by Locust at `rate_per_s` units per second for `duration_s` (an open
    model: it keeps publishing whatever the faults do); a `harness.run.Load`.

    The schedule starts once the first unit was submitted; the judged units are those of the
    units ledger Locust's users write; `expectations` adds the throughput-recovery settings.

    >>> SteadyLoad(rate_per_s=10, duration_s=20).expectations()["throughput_window_s"]
    2.0
    """

    rate_per_s: float
    duration_s: float
    users: int | None = None
    kinds: tuple[str, ...] = DEFAULT_KINDS
    locustfile: str = str(LOCUSTFILE)
    env: Mapping[str, str] = field(default_factory=dict)
    hooks: LoadHooks | None = None
    window_s: float = 2.0
    recovery_fraction: float = 0.8
    recovery_slo_s: float = 15.0
    #: Keep the load on until this long after the schedule's *actual* last heal (at most
    #: `hold_max_extra_s` past `duration_s`); None: stop at `duration_s`.
    hold_after_heal_s: float | None = None
    hold_max_extra_s: float = 20.0

    def expectations(self) -> dict[str, Any]:
        return {"throughput_recovery_fraction": self.recovery_fraction, "throughput_window_s": self.window_s,
                "throughput_recovery_slo_s": self.recovery_slo_s}

    def start(self, ctx: RunContext) -> LoadSession:
        return _SteadySession(self, ctx)


class _SteadySession:
    def __init__(self, plan: SteadyLoad, ctx: RunContext) -> None:
        self.plan = plan
        self.ctx = ctx
        target = LoadTarget.from_urls(ctx.stack.urls, run_id=ctx.run_id, history_dir=ctx.history_dir,
                                      kinds=tuple(plan.kinds))
        run_time_s = plan.duration_s + (plan.hold_max_extra_s if plan.hold_after_heal_s is not None else 0.0)
        self.spec = LoadSpec(plan.locustfile, users=plan.users or max(2, min(20, int(plan.rate_per_s))),
                             rate_per_s=plan.rate_per_s, run_time_s=run_time_s, env=dict(plan.env),
                             loglevel="WARNING")
        self.load = LoadRun(self.spec, target, work_dir=ctx.directory / "load")
        ctx.cleanup.callback(self.load.close)
        self.window = LoadWindow()

    def under_faults(self) -> None:
        ctx, plan, load, hooks = self.ctx, self.plan, self.load, self.plan.hooks
        t = time.monotonic()
        ctx.phase("load_start", rate_per_s=plan.rate_per_s, duration_s=plan.duration_s)
        load.start()
        if not _wait_first_unit(ctx.history_dir / "units", load, self.spec.startup_timeout_s):
            raise ConfigError("Locust submitted nothing within its start-up time: see the log tail:\n"
                              + load.log_tail())
        ctx.timings["load_startup_s"] = round(time.monotonic() - t, 3)
        self.window.start_ns = time.monotonic_ns()
        if hooks and hooks.on_load_start:
            hooks.on_load_start(ctx.group, load)
        ctx.nemesis.start(ctx.schedule)
        t_load = time.monotonic()
        deadline = t_load + self.spec.deadline_s
        next_tick = t_load
        healed_at: float | None = None
        while load.is_running() and time.monotonic() < deadline:
            if hooks and hooks.on_tick and time.monotonic() >= next_tick:
                hooks.on_tick(time.monotonic() - t_load)
                next_tick += hooks.tick_s
            if plan.hold_after_heal_s is not None:
                now = time.monotonic()
                if healed_at is None and ctx.nemesis.wait(0.0):
                    healed_at = now
                if healed_at is not None and now - t_load >= plan.duration_s and now - healed_at >= plan.hold_after_heal_s:
                    load.stop()
                    break
            time.sleep(0.1)
        self.window.end_ns = time.monotonic_ns()
        self.window.result = load.wait(timeout=30.0)
        if hooks and hooks.on_load_end:
            hooks.on_load_end()
        ctx.timings["load_s"] = round(time.monotonic() - t_load, 3)
        if not ctx.nemesis.wait(1.0):
            ctx.notes.append("the schedule had not finished when the load ended: its remaining faults were skipped")

    def after_heal(self) -> None:
        """Nothing: the load ran past the last heal by itself."""

    def units(self) -> list[Unit]:
        return read_units(self.ctx.history_dir / "units")

    def expectations(self) -> Mapping[str, Any]:
        return self.plan.expectations()

    def measurements(self) -> LoadWindow:
        return self.window


def _wait_first_unit(units_dir: Path, load: LoadRun, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if units_dir.is_dir() and any(p.stat().st_size > 0 for p in units_dir.iterdir() if p.is_file()):
            return True
        if not load.is_running():
            return False
        time.sleep(0.2)
    return False


# ------------------------------------------------------------------------------ the run


def under_load_result(result: RunResult, *, directory: str = "", window_s: float = 2.0,
                      recovery_fraction: float = 0.8) -> UnderLoadResult:
    """A run under a `SteadyLoad` with its per-fault windows and throughput measured."""
    window = result.load if isinstance(result.load, LoadWindow) else LoadWindow()
    history = result.history if result.history is not None else ()
    windows, rates = window_stats(history, load_start_ns=window.start_ns, load_end_ns=window.end_ns,
                                  window_s=window_s, recovery_fraction=recovery_fraction)
    return UnderLoadResult(
        run_id=result.run_id, valid=result.valid, verdicts=result.verdicts, schedule=result.schedule,
        schedule_as_run=result.schedule_as_run, load=window.result, windows=tuple(windows), throughput=rates,
        quiesced=result.quiesced, timings=result.timings, counts=result.counts, directory=directory,
        notes=result.notes, history=result.history, expectations=result.expectations, run=result)


def run_under_load(stack: Stack, deployment: Deployment, schedule: Schedule, *, rate_per_s: float = 10.0,
                   duration_s: float = 30.0, out_dir: str | Path | None = None,
                   log: Callable[[str], None] | None = None, users: int | None = None,
                   kinds: Sequence[str] = DEFAULT_KINDS, expectations: dict[str, Any] | None = None,
                   recovery_slo_s: float = 15.0, recovery_fraction: float = 0.8, window_s: float = 2.0,
                   quiesce_timeout_s: float = 45.0, run_id: str | None = None, hooks: LoadHooks | None = None,
                   locustfile: str | Path | None = None, claim: Claim | str | None = None, workers: int = 1,
                   name: str = "", hold_after_heal_s: float | None = None,
                   hold_max_extra_s: float = 20.0) -> UnderLoadResult:
    """Hold `rate_per_s` unit submits per second for `duration_s` while `schedule` runs (its time
    0 is the load's first submit), then heal, quiesce, drain and check. Everything goes to
    `out_dir` (history/, logs/, load/, result.json; default a temp dir removed after the run).
    `deployment` is a `harness.workload.Deployment` (e.g. from
    ``sample_system.deploy.prepare(stack)``); `expectations` overrides derived ones; `workers`
    and `name` as in `harness.run.RunConfig`. Workers, Locust and faults are reaped and healed
    on every exit path, Ctrl-C included.

    `hold_after_heal_s`: keep the load on until that long after the schedule's *actual* last heal
    (at most `hold_max_extra_s` past `duration_s`). A restart that takes longer than planned (a
    broker recovering its quorum queues) would otherwise end the load before the heal, and the
    recovery after it could not be measured.
    """
    if not (rate_per_s > 0 and duration_s >= 5):
        raise ConfigError(f"rate_per_s={rate_per_s} must be > 0 and duration_s={duration_s} >= 5 seconds")
    if not isinstance(schedule, Schedule):
        raise ConfigError("schedule must be a harness.faults.Schedule, e.g. Schedule.of(at(5, KillWorkerChild()))")
    timed_end = max((sf.at_s + sf.duration_s for sf in schedule.faults if sf.at_s is not None), default=0.0)
    if timed_end + 3 > duration_s:
        raise ConfigError(f"the schedule's last fault heals at {timed_end:.0f} s but the load lasts {duration_s:.0f} s: "
                          "leave at least 3 s of load after the last heal (raise duration_s) to see recovery")
    rid = run_id or f"load-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    plan = SteadyLoad(rate_per_s=rate_per_s, duration_s=duration_s, users=users, kinds=tuple(kinds),
                      locustfile=str(locustfile or LOCUSTFILE), env=dict(deployment.env), hooks=hooks,
                      window_s=window_s, recovery_fraction=recovery_fraction, recovery_slo_s=recovery_slo_s,
                      hold_after_heal_s=hold_after_heal_s, hold_max_extra_s=hold_max_extra_s)
    config = RunConfig(schedule=schedule, workers=workers, name=name, claim=claim, expectations=expectations,
                       quiesce_timeout_s=quiesce_timeout_s, run_id=rid, directory=out_dir, load=plan)
    result = under_load_result(run_deployment(stack, deployment, config, log=log),
                               directory="" if out_dir is None else str(out_dir), window_s=window_s,
                               recovery_fraction=recovery_fraction)
    if out_dir is not None:
        (Path(out_dir) / "result.json").write_text(json.dumps(result.to_dict(), indent=2, default=str))
    if log:
        log(result.summary())
    return result
