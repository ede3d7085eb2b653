"""Chaos under load: hold a steady Locust rate while a fault schedule comes and goes, then check.

Responsibility: compose the engine's parts around an open-model load (a `Run` submits a fixed
list of units itself; here Locust keeps publishing at a steady rate whatever the faults do):

1. setup: the deployment's workload declares and purges its queues and empties its effect store;
2. workers: a `WorkerGroup` on the worker-role proxies, recording into the run's history;
3. load: a `LoadRun` (Locust subprocess) through the producer-role proxies, recording its
   publishes and its units ledger into the same history directory;
4. faults: once the first unit was submitted, a `Nemesis` runs the schedule in its thread;
5. heal, quiesce, drain (effect store and DLQ into the history), check (`check_all`, with the
   expected outcomes read from the units ledger);
6. measure: per fault window, the throughput before / during / after, the time until the
   throughput is back at `recovery_fraction` of its pre-fault level, and the p99 completion
   latency (publish to successful execution) of the tasks published during and after it.

Quiesce, drain and the choice of checkers reuse `harness.run.Run`'s own helpers (one place
decides what "quiet" and "drained" mean).

Example:
    >>> from harness.faults import KillWorkerChild, Schedule, at
    >>> with prepare(stack) as d:                                         # doctest: +SKIP
    ...     r = run_under_load(stack, d, Schedule.of(at(8, KillWorkerChild())), rate_per_s=10,
    ...                        duration_s=25, out_dir="out/child-kill")
    >>> r.valid, r.windows[0].p99_during_ms, r.windows[0].time_to_recover_s   # doctest: +SKIP
    (<Validity.TRUE: 'true'>, 412.0, 1.0)
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.checkers import Expectations, Validity, Verdict, build_index, check_all, overall
from harness.errors import ConfigError
from harness.faults.drivers import kinds_cutting_running_tasks
from harness.faults.nemesis import AppliedFault, Nemesis
from harness.faults.schedule import Schedule
from harness.history import History, HistoryRecorder, read_history
from harness.history.ops import F, Op, OpType
from harness.load.runner import LoadRun, LoadSpec
from harness.load.stats import LoadResult
from harness.load.target import LoadTarget
from harness.load.units import read_units
from harness.stack.base import Role, Stack
from harness.workers.group import WorkerGroup
from harness.workers.process import WorkerSpec

__all__ = ["DEFAULT_KINDS", "FaultWindowStats", "LoadHooks", "UnderLoadResult", "completion_latencies",
           "run_under_load", "window_stats"]

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


# ------------------------------------------------------------------------------ the run


def _wait_first_unit(units_dir: Path, load: LoadRun, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if units_dir.is_dir() and any(p.stat().st_size > 0 for p in units_dir.iterdir() if p.is_file()):
            return True
        if not load.is_running():
            return False
        time.sleep(0.2)
    return False


def run_under_load(stack: Stack, deployment: Any, schedule: Schedule, *, rate_per_s: float = 10.0,
                   duration_s: float = 30.0, out_dir: str | Path, log: Callable[[str], None] | None = None,
                   users: int | None = None, kinds: Sequence[str] = DEFAULT_KINDS,
                   expectations: dict[str, Any] | None = None, recovery_slo_s: float = 15.0,
                   recovery_fraction: float = 0.8, window_s: float = 2.0, quiesce_timeout_s: float = 45.0,
                   run_id: str | None = None, hooks: LoadHooks | None = None,
                   locustfile: str | Path | None = None, claim: Any = None, workers: int = 1,
                   hold_after_heal_s: float | None = None, hold_max_extra_s: float = 20.0) -> UnderLoadResult:
    """Hold `rate_per_s` unit submits per second for `duration_s` while `schedule` runs (its time
    0 is the load's first submit), then heal, quiesce, drain and check. Everything goes to
    `out_dir` (history/, logs/, load/, result.json). `deployment` is a `harness.workload.Deployment`
    (e.g. from ``sample_system.deploy.prepare(stack)``); `expectations` overrides derived ones.
    Workers, Locust and faults are reaped and healed on every exit path, Ctrl-C included.

    `hold_after_heal_s`: keep the load on until that long after the schedule's *actual* last heal
    (at most `hold_max_extra_s` past `duration_s`). A restart that takes longer than planned (a
    broker recovering its quorum queues) would otherwise end the load before the heal, and the
    recovery after it could not be measured.
    """
    from celery.app.utils import find_app

    from harness.run import Run, delayed_delivery_queues

    if not (rate_per_s > 0 and duration_s >= 5):
        raise ConfigError(f"rate_per_s={rate_per_s} must be > 0 and duration_s={duration_s} >= 5 seconds")
    if not isinstance(schedule, Schedule):
        raise ConfigError("schedule must be a harness.faults.Schedule, e.g. Schedule.of(at(5, KillWorkerChild()))")
    timed_end = max((sf.at_s + sf.duration_s for sf in schedule.faults if sf.at_s is not None), default=0.0)
    if timed_end + 3 > duration_s:
        raise ConfigError(f"the schedule's last fault heals at {timed_end:.0f} s but the load lasts {duration_s:.0f} s: "
                          "leave at least 3 s of load after the last heal (raise duration_s) to see recovery")
    rid = run_id or f"load-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    say = (lambda m: log(f"[under-load {rid}] {m}")) if log else (lambda m: None)
    directory = Path(out_dir)
    history_dir = directory / "history"
    history_dir.mkdir(parents=True, exist_ok=True)
    (directory / "schedule.json").write_text(schedule.to_json())
    users = users or max(2, min(20, int(rate_per_s)))
    # Run's helpers for quiesce / drain / checkers (it is never executed).
    helper = Run(stack, app=deployment.app, workload=deployment.workload, schedule=schedule, run_id=rid,
                 quiesce_timeout_s=quiesce_timeout_s, claim=claim)
    timings: dict[str, float] = {}
    counts: dict[str, int] = {}
    applied: list[AppliedFault] = []
    load_result: LoadResult | None = None
    t_start = time.monotonic()
    with ExitStack() as cleanup:
        recorder = cleanup.enter_context(HistoryRecorder(history_dir, "harness"))

        def phase(name: str, **value: Any) -> None:
            recorder.record(F.PHASE, OpType.OK, {"phase": name, "run_id": rid, **value})
            say(name)

        urls = stack.urls
        settings = dict(getattr(deployment, "settings", {}) or {})
        specs = [WorkerSpec(app=deployment.app, concurrency=deployment.concurrency, hostname=f"w{i + 1}@127.0.0.1",
                            queues=tuple(deployment.queues), env=dict(deployment.env), settings=settings)
                 for i in range(workers)]
        group = WorkerGroup(specs, broker_url=urls.url_for(Role.WORKER_BROKER),
                            backend_url=urls.url_for(Role.WORKER_BACKEND), control_url=urls.broker_url,
                            history_dir=history_dir, run_id=rid, log_dir=directory / "logs")
        cleanup.callback(helper.stop_workers, group)
        nemesis = Nemesis(stack, recorder=HistoryRecorder(history_dir, "nemesis"), workers=group)
        cleanup.callback(helper.close_nemesis, nemesis)
        nemesis.preflight(schedule)

        # The producer side of this process: the app on the direct URLs (setup, DLQ reads only).
        app = find_app(deployment.app)
        with contextlib.suppress(Exception):
            app.conf.update(broker_url=urls.broker_url, result_backend=urls.backend_url, **settings)
        deployment.workload.setup(app)
        t = time.monotonic()
        group.start()
        timings["workers_ready_s"] = round(time.monotonic() - t, 3)
        try:
            conf = group.get(None).conf(timeout=2.0)
        except Exception as exc:  # noqa: BLE001 - fall back to the app's, and say so
            helper.notes.append(f"could not read the workers' configuration ({exc!r}); expectations use the app's")
            conf = {k: app.conf.get(k) for k in ("task_acks_late", "task_reject_on_worker_lost")}

        target = LoadTarget.from_urls(urls, run_id=rid, history_dir=history_dir, kinds=tuple(kinds))
        run_time_s = duration_s + (hold_max_extra_s if hold_after_heal_s is not None else 0.0)
        spec = LoadSpec(str(locustfile or LOCUSTFILE), users=users, rate_per_s=rate_per_s, run_time_s=run_time_s,
                        env=dict(deployment.env), loglevel="WARNING")
        load = LoadRun(spec, target, work_dir=directory / "load")
        cleanup.callback(load.close)
        t = time.monotonic()
        phase("load_start", rate_per_s=rate_per_s, duration_s=duration_s)
        load.start()
        if not _wait_first_unit(Path(history_dir / "units"), load, spec.startup_timeout_s):
            raise ConfigError("Locust submitted nothing within its start-up time: see the log tail:\n"
                              + load.log_tail())
        timings["load_startup_s"] = round(time.monotonic() - t, 3)
        load_start_ns = time.monotonic_ns()
        if hooks and hooks.on_load_start:
            hooks.on_load_start(group, load)
        nemesis.start(schedule)
        t_load = time.monotonic()
        deadline = t_load + spec.deadline_s
        next_tick = t_load
        healed_at: float | None = None
        while load.is_running() and time.monotonic() < deadline:
            if hooks and hooks.on_tick and time.monotonic() >= next_tick:
                hooks.on_tick(time.monotonic() - t_load)
                next_tick += hooks.tick_s
            if hold_after_heal_s is not None:
                now = time.monotonic()
                if healed_at is None and nemesis.wait(0.0):
                    healed_at = now
                if healed_at is not None and now - t_load >= duration_s and now - healed_at >= hold_after_heal_s:
                    load.stop()
                    break
            time.sleep(0.1)
        load_end_ns = time.monotonic_ns()
        load_result = load.wait(timeout=30.0)
        if hooks and hooks.on_load_end:
            hooks.on_load_end()
        timings["load_s"] = round(time.monotonic() - t_load, 3)
        if not nemesis.wait(1.0):
            helper.notes.append("the schedule had not finished when the load ended: its remaining faults were skipped")
        applied = nemesis.stop()
        phase("heal", faults=[a.id for a in applied])
        unhealed = [a.id for a in applied if a.outcome == "unhealed"]
        if unhealed:
            helper.notes.append(f"faults {unhealed} could not be healed: verdicts are about a broken system")
        t = time.monotonic()
        quiesced, state = helper.quiesce(group, list(deployment.queues) + delayed_delivery_queues(app))
        timings["quiesce_s"] = round(time.monotonic() - t, 3)
        phase("quiesce", quiesced=quiesced, state=state)
        if not quiesced:
            helper.notes.append(f"not quiescent after {quiesce_timeout_s:.0f} s: {json.dumps(state, default=str)[:400]}")
        t = time.monotonic()
        helper.stop_workers(group)
        helper.drain(recorder, app, counts, state.get("queues") if isinstance(state, dict) else None)
        phase("drain")
        timings["drain_s"] = round(time.monotonic() - t, 3)
        phase("check")
        history = read_history(history_dir)
        units = read_units(history_dir / "units")
        kill_kinds = kinds_cutting_running_tasks(schedule.kinds)
        exp_opts: dict[str, Any] = {
            "run_id": rid, "expected_outcomes": {u.key: u.expected for u in units},
            "declared_effects": {u.key: u.effects for u in units}, "claim": helper.claim,
            "require_fault_bite": bool(schedule), "kill_fault_kinds": kill_kinds,
            "throughput_recovery_fraction": recovery_fraction, "throughput_window_s": window_s,
            "throughput_recovery_slo_s": recovery_slo_s, **(expectations or {})}
        exp = Expectations.from_celery_config(conf, **exp_opts)
        index = build_index(history, run_id=exp.run_id, kill_fault_kinds=exp.kill_fault_kinds)
        verdicts = check_all(index, exp, helper.checkers_for(exp, index))
        windows, rates = window_stats(history, load_start_ns=load_start_ns, load_end_ns=load_end_ns,
                                      window_s=window_s, recovery_fraction=recovery_fraction)
        counts.update(units=len(units), ops=len(history), faults_bit=sum(1 for a in applied if a.bit))
        timings["total_s"] = round(time.monotonic() - t_start, 3)
        result = UnderLoadResult(
            run_id=rid, valid=overall(verdicts), verdicts=verdicts, schedule=schedule,
            schedule_as_run=tuple(applied), load=load_result, windows=tuple(windows), throughput=rates,
            quiesced=quiesced, timings=timings, counts=counts, directory=str(directory),
            notes=tuple(helper.notes), history=history, expectations=exp)
        (directory / "result.json").write_text(json.dumps(result.to_dict(), indent=2, default=str))
    if log:
        log(result.summary())
    return result
