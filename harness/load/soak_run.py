"""``celery-chaos soak``: a steady load with periodic faults for a given time, then a report.

Responsibility: the soak command. It starts a local stack, deploys the system under test (the
workload's ``prepare``), and runs `run_under_load` for the whole duration with a schedule of
faults every ``--fault-every`` seconds, cycling through a worker pool-child kill, a 3 s broker
outage (proxies down), connection resets on the workers' broker link and added latency. Every
``--sample-every`` seconds it samples queue depth, worker RSS and broker RSS (a progress bar on
stderr shows them); at the end it writes a report directory:

- ``report.json`` / ``report.html`` / ``junit.xml`` (`harness.report`): one scenario, ``soak``,
  whose verdicts are the checkers' plus one ``memory_leak:<series>`` per RSS series, with the
  completion timeline and the fault windows; report.json also carries the ``soak`` key below;
- ``soak.json``: the time series (throughput from the history, queue depth, worker and broker
  RSS), the leak verdicts, the run's per-fault windows and throughput figures;
- ``run/``: the run's history, logs and Locust output.

It stops by itself after the duration. Ctrl-C heals every fault, reaps every process and still
writes the report (marked interrupted). Exit codes: 0 every verdict true, 1 otherwise, 2 bad
input, 130 interrupted.

Example:
    >>> soak_main(["--duration", "30m", "--rate", "20", "--report", "out/soak"])   # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.faults import BrokerOutage, KillWorkerChild, Latency, ResetPeer, Schedule, at
from harness.faults.kinds import Fault

__all__ = ["parse_duration", "soak_main", "soak_schedule"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``30m``, ``1h``, ``1.5h`` or a bare number of seconds.

    >>> parse_duration("30m"), parse_duration("90s"), parse_duration("1h"), parse_duration("45")
    (1800.0, 90.0, 3600.0, 45.0)
    """
    m = _DURATION.match(str(text))
    if not m:
        raise ConfigError(f"{text!r} is not a duration: write a number with a unit, e.g. 90s, 30m or 1h")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


#: The faults a soak cycles through: (fault, how long it stays in force).
SOAK_FAULTS: tuple[tuple[Fault, float], ...] = (
    (KillWorkerChild(wait_s=5.0), 0.0),
    (BrokerOutage("proxy_down"), 3.0),
    (ResetPeer("worker_broker"), 2.0),
    (Latency("worker_broker", ms=200, jitter_ms=50), 5.0),
)


def soak_schedule(duration_s: float, fault_every_s: float,
                  faults: Sequence[tuple[Fault, float]] = SOAK_FAULTS) -> Schedule:
    """A fault every `fault_every_s` (first at that time), cycling through `faults`, none
    starting later than 10 s before the end (recovery must be visible).

    >>> [sf.fault.kind for sf in soak_schedule(120, 30).faults]
    ['kill_worker_child', 'broker_outage', 'reset_peer']
    """
    if fault_every_s <= 0:
        raise ConfigError(f"fault interval {fault_every_s} s must be > 0, e.g. --fault-every 60s")
    planned = []
    t = fault_every_s
    for i in range(100_000):
        fault, dur = faults[i % len(faults)]
        if t + dur + 10.0 > duration_s:
            break
        planned.append(at(t, fault, duration_s=dur))
        t += fault_every_s
    return Schedule.of(*planned)


def _parser() -> argparse.ArgumentParser:
    from harness.preflight import OneLineParser

    p = OneLineParser(prog="celery-chaos soak", description="Steady load with periodic faults, then a "
                                "report with time series, leak verdicts and the checkers' verdicts.")
    p.add_argument("--duration", required=True, help="how long to run: 90s, 30m, 1h")
    p.add_argument("--rate", type=float, default=20.0, help="unit submits per second (default 20)")
    p.add_argument("--fault-every", default="60s", help="time between faults (default 60s)")
    p.add_argument("--sample-every", default="5s", help="time between memory/queue samples (default 5s)")
    p.add_argument("--report", default=None, help="report directory (default soak-report-<time>)")
    p.add_argument("--workload", default="sample_system.workload:SampleWorkload",
                   help="the workload ('package.module:Class' or an instance), which offers prepare(stack)")
    p.add_argument("--app", default=None, help="the Celery app's import path, if not the deployment's")
    p.add_argument("--kinds", default=None, help="comma-separated workload kinds to submit")
    p.add_argument("--broker", choices=("rabbitmq", "redis"), default="rabbitmq", help="the local stack's broker")
    p.add_argument("--no-faults", action="store_true", help="load only (a baseline soak)")
    return p


def _load_workload(ref: str) -> Any:
    mod, _, attr = ref.partition(":")
    if not mod or not attr:
        raise ConfigError(f"--workload {ref!r}: write 'package.module:Class', e.g. sample_system.workload:SampleWorkload")
    try:
        obj = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"--workload {ref!r} cannot be imported ({exc}): check the path and sys.path") from exc
    obj = obj() if isinstance(obj, type) else obj
    if not hasattr(obj, "prepare"):
        raise ConfigError(f"--workload {ref!r} has no prepare(stack) to deploy it: the soak needs a Deployment")
    return obj


class _LedgerRate:
    """Submits per second from the units ledger, read incrementally (cheap enough for every tick)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.offsets: dict[Path, int] = {}
        self.total = 0
        self._last = (time.monotonic(), 0)

    def rate(self) -> float | None:
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                try:
                    with path.open("rb") as fh:
                        fh.seek(self.offsets.get(path, 0))
                        chunk = fh.read()
                except OSError:
                    continue
                cut = chunk.rfind(b"\n") + 1
                self.offsets[path] = self.offsets.get(path, 0) + cut
                self.total += chunk[:cut].count(b"\n")
        now = time.monotonic()
        t0, n0 = self._last
        if now - t0 < 4.0:
            return None
        self._last = (now, self.total)
        return (self.total - n0) / (now - t0)


def soak_main(argv: Sequence[str] | None = None, *, out: Callable[[str], None] | None = None) -> int:
    """The ``celery-chaos soak`` command (see the module docstring); returns the exit code."""
    say = out or (lambda m: print(m, file=sys.stderr, flush=True))
    parser = _parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # argparse printed the problem
        return int(exc.code or 0) and 2
    try:
        duration_s = parse_duration(args.duration)
        every_s = parse_duration(args.fault_every)
        sample_s = parse_duration(args.sample_every)
        if duration_s < 30:
            raise ConfigError(f"--duration {args.duration} is too short for a soak: use at least 30s")
        if not (args.rate > 0):
            raise ConfigError(f"--rate {args.rate} must be > 0 submits per second")
        if sample_s <= 0:
            raise ConfigError(f"--sample-every {args.sample_every} must be > 0")
        workload = _load_workload(args.workload)
        kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip()) if args.kinds else None
        schedule = Schedule() if args.no_faults else soak_schedule(duration_s, every_s)
    except ConfigError as exc:
        say(f"celery-chaos soak: error: {exc}")
        return 2
    report_dir = Path(args.report or f"soak-report-{time.strftime('%Y%m%d-%H%M%S')}")
    return _soak(args, workload, kinds, schedule, duration_s, sample_s, report_dir, say)


def _soak(args: argparse.Namespace, workload: Any, kinds: tuple[str, ...] | None, schedule: Schedule,
          duration_s: float, sample_s: float, report_dir: Path, say: Callable[[str], None]) -> int:
    from harness.load.soak import Sampler, leak_verdict, progress_line, queue_depths, total_rss
    from harness.load.under_load import DEFAULT_KINDS, LoadHooks, run_under_load
    from harness.stack.local import LocalStack, LocalStackOptions

    run_dir = report_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    state: dict[str, Any] = {"sampler": None, "result": None, "interrupted": False, "error": None}
    isatty = sys.stderr.isatty()
    say(f"soak: {duration_s:.0f} s at {args.rate}/s, {len(schedule.faults)} faults; report in {report_dir}")
    stack_name = "?"
    try:
        with LocalStack(LocalStackOptions(broker=args.broker)) as stack, workload.prepare(stack) as deployment:
            if args.app:
                deployment = dataclasses.replace(deployment, app=args.app, producer_app=None)
            stack_name = f"local {args.broker}"
            ledger = _LedgerRate(run_dir / "history" / "units")
            broker_ctl = stack.broker
            queues = list(deployment.queues)

            def on_start(group: Any, load: Any) -> None:
                def workers_rss() -> float | None:
                    return total_rss([w.pid for w in group if w.is_running()])

                def broker_rss() -> float | None:
                    return total_rss(list(getattr(broker_ctl, "pids", []) or []))

                def depth() -> float | None:
                    d = queue_depths(stack.urls.broker_url, queues, timeout_s=3.0)
                    return float(sum(v for v in d.values() if v))

                state["sampler"] = Sampler({"queue_depth": ("messages", depth),
                                            "worker_rss": ("bytes", workers_rss),
                                            "broker_rss": ("bytes", broker_rss)}, interval_s=sample_s).start()

            def on_tick(elapsed: float) -> None:
                s = state["sampler"].series() if state["sampler"] else {}
                rate = ledger.rate()
                if rate is not None:
                    state["rate"] = rate
                worker_rss = s.get("worker_rss")
                rss = worker_rss.last if worker_rss is not None else None
                line = progress_line(elapsed, duration_s, submitted=f"{state.get('rate', 0):.1f}/s",
                                     depth=None if not s.get("queue_depth") or s["queue_depth"].last is None
                                     else int(s["queue_depth"].last),
                                     workers_rss=None if rss is None else f"{rss / 2**20:.0f}MiB")
                if isatty:
                    sys.stderr.write("\r" + line)
                    sys.stderr.flush()
                elif int(elapsed) % 10 == 0:
                    say(line)

            def on_end() -> None:
                if state["sampler"]:
                    state["sampler"].stop()
                if isatty:
                    sys.stderr.write("\n")

            state["result"] = run_under_load(
                stack, deployment, schedule, rate_per_s=args.rate, duration_s=duration_s, out_dir=run_dir,
                kinds=kinds or DEFAULT_KINDS, hooks=LoadHooks(on_start, on_tick, on_end, tick_s=1.0),
                log=say, quiesce_timeout_s=90.0)
    except KeyboardInterrupt:
        state["interrupted"] = True
        say("\nsoak: interrupted: faults healed, processes reaped; writing the report")
    except ConfigError as exc:
        say(f"celery-chaos soak: error: {exc}")
        state["error"] = str(exc)
    finally:
        if state["sampler"]:
            state["sampler"].stop()
    series = state["sampler"].series() if state["sampler"] else {}
    leaks = {f"memory_leak:{n}": leak_verdict(series[n]) for n in ("worker_rss", "broker_rss") if n in series}
    _write_report(report_dir, run_dir, state, series, leaks, schedule, args, duration_s, sample_s,
                  time.monotonic() - t_start, stack_name, say)
    if state["interrupted"]:
        from harness import interrupt

        return interrupt.exit_code()  # 130 for SIGINT, 143 for SIGTERM
    if state["error"] is not None or state["result"] is None:
        return 2
    from harness.checkers import Validity, overall

    return 0 if overall({**state["result"].verdicts, **leaks}) is Validity.TRUE else 1


def _write_report(report_dir: Path, run_dir: Path, state: dict[str, Any], series: dict[str, Any],
                  leaks: dict[str, Any], schedule: Schedule, args: argparse.Namespace, duration_s: float,
                  sample_s: float, elapsed_s: float, stack_name: str, say: Callable[[str], None]) -> None:
    from harness.checkers import overall
    from harness.history import read_history
    from harness.load.soak import throughput_series
    from harness.report import (
        CertificationReport,
        ScenarioReport,
        build_timeline,
        fault_windows,
        scenario_validity,
        write_report,
    )

    result = state["result"]
    history = result.history if result is not None else (
        read_history(run_dir / "history") if (run_dir / "history").is_dir() else [])
    verdicts = {**(result.verdicts if result is not None else {}), **leaks}
    bucket = max(1.0, sample_s)
    thr = throughput_series(history, bucket_s=bucket, name="throughput") if history else None
    all_series = ([thr.to_dict()] if thr else []) + [s.to_dict() for s in series.values()]
    error = None
    if state["interrupted"]:
        error = "interrupted by Ctrl-C: the run was cut short, verdicts cover what ran"
    elif state["error"]:
        error = state["error"]
    metrics = {k: v for k, v in (result.throughput if result is not None else {}).items() if v is not None}
    scenario = ScenarioReport(
        name="soak", valid=scenario_validity(overall(verdicts)) if verdicts else "unknown", verdicts=verdicts,
        schedule=[a.to_dict() for a in result.schedule_as_run] if result is not None else schedule.to_dict().get(
            "faults", []),
        elapsed_s=elapsed_s, timeline=build_timeline(history, bucket_s=max(1.0, duration_s / 300)) if history else [],
        fault_windows=fault_windows(history) if history else [], metrics=metrics,
        description=f"soak: {duration_s:.0f} s at {args.rate}/s, a fault every {args.fault_every}",
        replay=schedule.to_json(indent=None), error=error)
    report = CertificationReport(profile="soak", scenarios=[scenario], app=args.app or "", workload=args.workload,
                                 elapsed_s=elapsed_s, environment={"stack": stack_name})
    paths = write_report(report, report_dir)
    soak = {
        "duration_s": duration_s, "rate_per_s": args.rate, "fault_every": args.fault_every,
        "sample_every_s": sample_s, "interrupted": state["interrupted"], "series": all_series,
        "leak_verdicts": {k: v.to_dict() for k, v in leaks.items()},
        "sampler_errors": {k: list(v) for k, v in state["sampler"].errors().items()} if state["sampler"] else {},
        "run": result.to_dict() if result is not None else None,
    }
    (report_dir / "soak.json").write_text(json.dumps(soak, indent=2, default=str))
    doc = json.loads(paths["json"].read_text())
    doc["soak"] = soak
    paths["json"].write_text(json.dumps(doc, indent=2, default=str))
    say(f"soak: {scenario.valid}; report: {paths['html']}")
