"""One chaos run, end to end: workers, producer, workload, faults, heal, quiesce, drain, check.

Responsibility: wire the roles together for one run (Jepsen's ``run!``), as one explicit `Run`
object: no globals. `run_deployment` (a deployed system and a frozen `RunConfig`) is the one run
path the harness's drivers use: certify, explore and replay, the pytest route
(`harness.certification.run_scenario`) and runs under a steady load (`harness.load.under_load`).
In order:

1. workers: a `WorkerGroup` on the stack's worker-role proxies, recording the history;
2. producer: the app (import path or object) on the producer-role proxies, recording its publishes;
3. load: ``workload.setup``, then the run's `Load` (default `SubmitUnits`: ``units`` /
   ``submit`` from this process) while the nemesis runs the schedule;
4. heal: every fault undone (also on error or Ctrl-C); then the recovery probes: the last
   ``after_heal`` fraction of the units is submitted after the heal;
5. quiesce (bounded): the consumed queues hold no ready or unacknowledged message and no
   worker holds an active, reserved or scheduled task, twice in a row;
6. drain: what healed faults left behind on purpose is released (`Nemesis.release`), the
   workers are stopped, the effect store and the dead-letter queue are read back into the
   history (``stored_effect`` / ``dlq`` ops);
7. check: the merged history against `Expectations` derived from the workers' actual Celery
   configuration (``inspect conf``: task_acks_late, task_reject_on_worker_lost) and the workload
   (``idempotent_effects`` / ``dead_letter_queue`` attributes when it has them), with explicit
   overrides on top.

Options (keyword arguments of `Run`):

- ``app``: the Celery app, ``"package.module:app"`` or the app object (the producer side);
- ``workload``: a `harness.workload.Workload`; ``n_per_kind``: units per kind;
- ``workers``: `WorkerSpec` list (default one prefork worker, concurrency 2, on the app's
  default queue); ``settings``: Celery settings for every worker and the producer;
- ``schedule``: a `Schedule` (default none: a fault-free baseline, vacuous passes allowed);
- ``claim``: the guarantee to judge (`harness.checkers.Claim` or its text, e.g.
  ``"at-most-once"``); default the workload's ``claim`` attribute, else at-least-once delivery
  and exactly-once effects;
- ``expectations``: an `Expectations` (used as is, run id, outcomes and declared effects filled
  in) or a dict of overrides over the derived ones; ``checkers``: names (default: what the
  expectations and the history ask for);
- ``rate_limits``: judge the tasks' rate limits: ``"app"`` reads them from the workers (each
  task's ``rate_limit``) merged with the workload's ``rate_limits`` attribute, or a mapping of
  task name -> Celery rate (``"10/s"``) or executions per second; default not judged (only a
  burst above the limit exercises a limiter, see the certification's ``rate_limit_burst``);
- ``after_heal``: fraction of units submitted after the heal (default 0.25 with faults, else 0);
- ``submit_interval_s``: pause between submits; ``quiesce_timeout_s``; ``fault_timeout_s``;
- ``directory``: where history and logs go (kept); default a temp dir removed after the run
  (the merged history stays in `RunResult.history`);
- ``load``: how the work is submitted, a `Load` (default `SubmitUnits` from ``n_per_kind``,
  ``submit_interval_s``, ``after_heal`` and ``fault_timeout_s``).

Example:
    >>> result = Run(stack, app="tests.engine.engine_app:app", workload=EngineWorkload(),   # doctest: +SKIP
    ...              workers=[WorkerSpec(app="tests.engine.engine_app:app", queues=("engine",))],
    ...              schedule=Schedule.of(when(on_effect("charge"), KillWorkerChild())),
    ...              n_per_kind=4).execute()
    >>> result.valid, result.verdicts["redelivery"].counts["redelivered"]                 # doctest: +SKIP
    (<Validity.TRUE: 'true'>, 1)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import queue
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from harness.checkers import (
    Claim,
    Expectations,
    HistoryIndex,
    Validity,
    Verdict,
    build_index,
    check_all,
    default_checkers,
    overall,
)
from harness.checkers.rate_limits import parse_rate
from harness.errors import ConfigError
from harness.faults.drivers import driver_for, kinds_cutting_running_tasks
from harness.faults.nemesis import AppliedFault, Nemesis
from harness.faults.schedule import Schedule
from harness.history import History, HistoryRecorder, read_history
from harness.history.ops import F, OpType
from harness.processes import reaper
from harness.stack.base import Role, Stack, capabilities
from harness.stack.result_backend import plan_for_app
from harness.workers.group import WorkerGroup
from harness.workers.process import WorkerSpec
from harness.workload import Deployment, Unit, Workload, validate_units

__all__ = ["AwaitResults", "Load", "LoadSession", "Run", "RunConfig", "RunContext", "RunResult", "SubmitUnits", "delayed_delivery_queues",
           "run_deployment"]


def delayed_delivery_queues(app: Any) -> list[str]:
    """The broker queues where Celery's native delayed delivery holds countdown and ETA tasks.

    An app with quorum queues on RabbitMQ publishes a countdown into ``celery_delayed_27`` and
    the message waits, hop by hop, in ``celery_delayed_<n>`` queues no worker consumes. A quiesce
    that watched only the task queues and the workers would call the run over while a retry is
    still in flight, and judge that retry lost.

    >>> from celery import Celery
    >>> delayed_delivery_queues(Celery(broker="redis://127.0.0.1:1/0"))
    []
    """
    from celery.utils.quorum_queues import detect_quorum_queues

    try:
        with app.connection_for_write() as conn:  # never dials: only the transport's kind is read
            driver = conn.transport.driver_type
        uses = detect_quorum_queues(app, driver)[0]
    except Exception:  # noqa: BLE001 - an app we cannot inspect has no delayed-delivery queues we know of
        return []
    return [f"celery_delayed_{level}" for level in range(27, -1, -1)] if uses else []


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a run did and what the checkers concluded; `to_dict` / `to_json` for reports.

    `valid` is the worst verdict. `schedule` is the plan, `schedule_as_run` what the nemesis
    actually did (real times in seconds after the schedule started, the observed effect of
    each fault). `history` is the merged history (not serialised; see `history_path`).
    """

    run_id: str
    valid: Validity
    verdicts: dict[str, Verdict]
    schedule: Schedule
    schedule_as_run: tuple[AppliedFault, ...]
    expectations: Expectations
    timings: dict[str, float]
    counts: dict[str, int]
    quiesced: bool
    history_path: str | None
    notes: tuple[str, ...] = ()
    history: History | None = field(default=None, compare=False, repr=False)
    #: What the run's `Load` measured (`harness.load.under_load.SteadyLoad`: the Locust result and
    #: the load's window); None for units submitted from this process.
    load: Any = field(default=None, compare=False, repr=False)

    def verdict(self, name: str) -> Verdict:
        """The verdict of checker `name` (KeyError naming those that ran)."""
        try:
            return self.verdicts[name]
        except KeyError:
            raise KeyError(f"no verdict {name!r} in this run: checkers that ran are {sorted(self.verdicts)}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "valid": self.valid.to_json(),
            "verdicts": {k: v.to_dict() for k, v in self.verdicts.items()},
            "schedule": self.schedule.to_dict(),
            "schedule_as_run": [a.to_dict() for a in self.schedule_as_run],
            "expectations": self.expectations.to_dict(),
            "timings": dict(self.timings),
            "counts": dict(self.counts),
            "quiesced": self.quiesced,
            "history_path": self.history_path,
            "notes": list(self.notes),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def summary(self) -> str:
        """A few lines for a terminal: validity per checker, the schedule as run, the run id."""
        lines = [f"run {self.run_id}: {self.valid.value}"]
        for name, v in self.verdicts.items():
            bad = len(v.violations())
            lines.append(f"  {name:<12} {v.valid.value:<8} {dict(v.counts)}" + (f" ({bad} violations)" if bad else ""))
        for a in self.schedule_as_run:
            lines.append(f"  fault {a.id} {a.kind} {a.planned}: {a.outcome} "
                         f"start={a.started_s} heal={a.healed_s}" + (f" ({a.error})" if a.error else ""))
        if not self.quiesced:
            lines.append("  the system did not quiesce before the deadline (see notes)")
        lines.extend(f"  note: {n}" for n in self.notes)
        lines.append(f"  schedule to replay: {self.schedule.to_json(indent=None)}")
        return "\n".join(lines)


U = TypeVar("U")


def split_after_heal(units: Sequence[U], n_after: int) -> tuple[list[U], list[U]]:
    """Split `units` into those submitted under faults and `n_after` spread evenly for after the heal.

    Spread, not the tail: workloads list units grouped by kind, and a tail of only DLQ-bound
    kinds would leave nothing after the heal that can show the system completing work again.

    >>> during, after = split_after_heal(list("aabbccdd"), 4)
    >>> "".join(during), "".join(after)
    ('abcd', 'abcd')
    """
    if n_after <= 0:
        return list(units), []
    step = len(units) / n_after
    picked = {int(i * step + step / 2) for i in range(n_after)}  # < len(units): step / 2 < step
    return ([u for i, u in enumerate(units) if i not in picked], [u for i, u in enumerate(units) if i in picked])


def _load_app(app: Any) -> Any:
    if isinstance(app, str):
        from celery.app.utils import find_app

        try:
            return find_app(app)
        except Exception as exc:
            raise ConfigError(f"cannot import the Celery app {app!r}: {type(exc).__name__}: {exc}. "
                              "Pass 'package.module:app' importable from this process (check sys.path)") from exc
    if not hasattr(app, "send_task") or not hasattr(app, "conf"):
        raise ConfigError(f"app must be a Celery app or its import path 'package.module:app', not {app!r}")
    return app


def _app_path(app: Any) -> str:
    if isinstance(app, str):
        return app
    main = getattr(app, "main", None)
    raise ConfigError(f"the workers need the app's import path ('package.module:app'); the app object {main!r} "
                      "does not say where it lives: pass app='package.module:app', or give workers=[WorkerSpec(...)]")


def _reset_clients(app: Any) -> None:
    """Forget the app's pooled broker connections and cached result backend (the URLs changed).

    Celery caches both on the app; a new URL would otherwise not be used until restart.
    """
    with contextlib.suppress(Exception):
        app.close()
    with contextlib.suppress(Exception):
        # close() drops the app from Celery's active apps; a @shared_task module imported later
        # would then never register on it (NotRegistered on the next submit). Keep it active.
        from celery import _state

        _state._register_app(app)
    with contextlib.suppress(Exception):
        app._backend_cache = None
        app._local = threading.local()
    with contextlib.suppress(Exception):
        # The producer pool holds connections to the previous URL: an app reused across runs
        # would otherwise publish to the last run's broker without an error.
        app.amqp._producer_pool = None


class _Producer:
    """The producer side of a run: the app pointed at the producer-role URLs, recording publishes."""

    def __init__(self, app: Any, broker_url: str, backend_url: str | None, settings: Mapping[str, Any],
                 history_dir: Path, run_id: str) -> None:
        self.app = app
        # backend_url None: the app keeps its own result backend (see harness.stack.result_backend).
        backend = {} if backend_url is None else {"result_backend": backend_url}
        self._overrides = {"broker_url": broker_url, **backend, **settings}
        self._saved: dict[str, Any] = {}
        self._history_dir = history_dir
        self._run_id = run_id
        self._inst: Any = None

    def __enter__(self) -> _Producer:
        from harness.history import install

        conf = self.app.conf
        self._saved = {k: conf.get(k) for k in self._overrides}
        _reset_clients(self.app)
        conf.update(self._overrides)
        try:
            self._inst = install(self.app, self._history_dir, self._run_id, process_name="producer")
        except RuntimeError as exc:
            raise ConfigError(f"{exc}. Another Run in this process still records this app: run Runs one "
                              "after the other, each to its end") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._inst is not None:
                self._inst.uninstall()
        finally:
            _reset_clients(self.app)
            self.app.conf.update(self._saved)



@dataclass
class RunContext:
    """What a `Load` sees of the run in progress (built by `Run.execute`, one per execution).

    ``notes``, ``counts`` and ``timings`` are the run's own and end up in its `RunResult`;
    ``phase(name, **value)`` records a ``phase`` op; ``cleanup`` runs on every exit path
    (register what the load starts there, so a failure or Ctrl-C reaps it).
    """

    stack: Stack
    run_id: str
    directory: Path
    history_dir: Path
    schedule: Schedule
    workload: Workload
    app: Any
    group: WorkerGroup
    nemesis: Nemesis
    cleanup: ExitStack
    phase: Callable[..., None]
    notes: list[str]
    counts: dict[str, int]
    timings: dict[str, float]


class LoadSession(Protocol):
    """One execution's load (see `Load`); the run calls its methods in this order."""

    def under_faults(self) -> None:
        """Start ``ctx.nemesis`` on the schedule once work flows; return when the load is done."""

    def after_heal(self) -> None:
        """Submit what comes after every fault is healed (the recovery probes), if anything."""

    def units(self) -> list[Unit]:
        """The units whose outcomes are judged (asked after the drain)."""

    def expectations(self) -> Mapping[str, Any]:
        """Expectation overrides this load implies (applied under the caller's own)."""

    def measurements(self) -> Any:
        """What the load measured, handed back in `RunResult.load` (None: nothing)."""


class Load(Protocol):
    """How a run's work is submitted: `SubmitUnits` (the default: the workload's units, from this
    process) or `harness.load.under_load.SteadyLoad` (Locust at a steady rate). A frozen plan;
    `start` makes the session of one execution."""

    def start(self, ctx: RunContext) -> LoadSession: ...


@dataclass(frozen=True, slots=True)
class SubmitUnits:
    """The workload's ``units(n_per_kind, run_id)``, submitted from this process in a thread
    (`submit_interval_s` apart) while the schedule runs; the fraction `after_heal` of them
    (spread over the kinds) once every fault is healed. `fault_timeout_s` bounds the wait for
    the schedule (default: its horizon + 60 s).

    >>> SubmitUnits(n_per_kind=2, after_heal=0.25).n_per_kind
    2
    """

    n_per_kind: int = 10
    submit_interval_s: float = 0.0
    after_heal: float = 0.0
    fault_timeout_s: float | None = None

    def start(self, ctx: RunContext) -> LoadSession:
        return _UnitsSession(self, ctx)


class _UnitsSession:
    """`SubmitUnits` in one execution: the units are drawn (and checked) when it starts."""

    def __init__(self, plan: SubmitUnits, ctx: RunContext) -> None:
        self.plan = plan
        self.ctx = ctx
        self.all = validate_units(ctx.workload, ctx.workload.units(plan.n_per_kind, ctx.run_id), ctx.run_id)
        n_after = int(round(len(self.all) * plan.after_heal))
        if plan.after_heal > 0 and n_after == 0 and len(self.all) > 1:
            n_after = 1
        self.during, self.after = split_after_heal(self.all, n_after)
        ctx.counts.update(units=len(self.all), units_after_heal=len(self.after))

    def under_faults(self) -> None:
        ctx, plan = self.ctx, self.plan
        t = time.monotonic()
        ctx.phase("load_start", units=len(self.during))
        ctx.nemesis.start(ctx.schedule)
        horizon = ctx.schedule.horizon_s
        load_timeout = max(60.0, 2 * horizon + 30.0 + len(self.during) * (plan.submit_interval_s + 0.5))
        self._submit(self.during, load_timeout, "load")
        ctx.timings["load_s"] = round(time.monotonic() - t, 3)
        fault_timeout = plan.fault_timeout_s if plan.fault_timeout_s is not None else horizon + 60.0
        if not ctx.nemesis.wait(max(0.0, fault_timeout - (time.monotonic() - t))):
            ctx.notes.append(f"the schedule did not finish within {fault_timeout:.0f} s: stopped early")

    def after_heal(self) -> None:
        if self.after:
            self.ctx.phase("after_heal", units=len(self.after))
            self._submit(self.after, max(60.0, len(self.after) * (self.plan.submit_interval_s + 0.5)), "after heal")

    def units(self) -> list[Unit]:
        return self.all

    def expectations(self) -> Mapping[str, Any]:
        return {}

    def measurements(self) -> Any:
        return None

    def _submit_all(self, units: list[Unit], stop: threading.Event) -> None:
        ctx, counts = self.ctx, self.ctx.counts
        for u in units:
            if stop.is_set():
                counts["not_submitted"] = counts.get("not_submitted", 0) + 1
                continue
            try:
                ctx.workload.submit(ctx.app, u)
                counts["submitted"] = counts.get("submitted", 0) + 1
            except Exception as exc:  # noqa: BLE001 - a publish failing under a fault is data, not a crash
                counts["submit_errors"] = counts.get("submit_errors", 0) + 1
                if counts["submit_errors"] <= 3:
                    ctx.notes.append(f"submit of {u.key} raised {type(exc).__name__}: {str(exc)[:200]}")
            if self.plan.submit_interval_s:
                stop.wait(self.plan.submit_interval_s)

    def _submit(self, units: list[Unit], timeout: float, what: str) -> None:
        """Submit in a thread so a publish stuck on a fault cannot hang the run (bounded by `timeout`)."""
        if not units:
            return
        if not self._in_thread(lambda stop: self._submit_all(units, stop), timeout, what):
            self.ctx.notes.append(f"{what}: submitting {len(units)} units did not finish within {timeout:.0f} s "
                                  "(a publish was stuck on a fault); the rest were not submitted")

    def _in_thread(self, job: Callable[[threading.Event], None], timeout: float, what: str) -> bool:
        """Run `job(stop)` in a new thread, at most `timeout` s (then `stop` is set); whether it finished."""
        stop = threading.Event()
        t = threading.Thread(target=job, args=(stop,), name=f"chaos-load-{what}", daemon=True)
        t.start()
        deadline = time.monotonic() + timeout
        while t.is_alive() and time.monotonic() < deadline:
            t.join(0.1)  # short slices keep Ctrl-C responsive
        if t.is_alive():
            stop.set()
            t.join(5.0)
            return False
        return True


@dataclass(frozen=True, slots=True)
class AwaitResults:
    """`SubmitUnits`, by a client that then waits for each unit's result, as an application that
    calls ``AsyncResult.get(timeout=...)`` does: once every fault is healed and the `after_heal`
    units are submitted, it asks each submitted task's result in turn, waiting at most
    `timeout_s` for each. Each ask is a ``result`` op of the process ``client-1`` (invoke; ok
    with the state; fail with the error: a timeout, a connection error), judged by the
    ``results`` checker (``result_not_delivered``).

    With ``ask="each"`` the client asks each result right after submitting its task, as a
    synchronous caller (``task.delay(...).get(timeout=...)``) does: its result consumer is then
    connected before the faults, and must come back after them.

    One thread submits and asks, for the whole run: the ``rpc://`` backend sends a result to the
    queue of the thread that published the task (Celery's ``app.thread_oid``), and only that
    thread's backend reads it. The asks are bounded: `timeout_s` each, the whole at most
    ``units x (timeout_s + 5)`` s.

    >>> AwaitResults(n_per_kind=2, timeout_s=3.0).ask
    'after_heal'
    """

    n_per_kind: int = 10
    timeout_s: float = 5.0
    submit_interval_s: float = 0.0
    after_heal: float = 0.0
    fault_timeout_s: float | None = None
    ask: str = "after_heal"

    def start(self, ctx: RunContext) -> LoadSession:
        if not (isinstance(self.timeout_s, int | float) and self.timeout_s > 0):
            raise ConfigError(f"AwaitResults timeout_s must be a number of seconds > 0, got {self.timeout_s!r}")
        if self.ask not in ("after_heal", "each"):
            raise ConfigError(f"AwaitResults ask must be 'after_heal' (every result once the faults are healed) "
                              f"or 'each' (each right after its submit), got {self.ask!r}")
        return _AwaitSession(self, ctx)


class _ClientThread:
    """One long-lived thread running the jobs it is given, one at a time (see `AwaitResults`)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, stop, done = item
            try:
                job(stop)
            except Exception as exc:  # noqa: BLE001 - a job reports its own failures; never kill the loop
                print(f"[client] job raised {exc!r}", file=sys.stderr)
            finally:
                done.set()

    def call(self, job: Callable[[threading.Event], None], timeout: float) -> bool:
        """Run `job(stop)` in the thread, at most `timeout` s (then `stop` is set); whether it finished."""
        stop, done = threading.Event(), threading.Event()
        self._jobs.put((job, stop, done))
        deadline = time.monotonic() + timeout
        while not done.is_set() and time.monotonic() < deadline:
            done.wait(0.1)  # short slices keep Ctrl-C responsive
        if not done.is_set():
            stop.set()
            done.wait(5.0)
            return False
        return True

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(5.0)


class _AwaitSession(_UnitsSession):
    """`AwaitResults` in one execution: `_UnitsSession`, every job in the one client thread."""

    def __init__(self, plan: AwaitResults, ctx: RunContext) -> None:
        super().__init__(plan, ctx)  # type: ignore[arg-type]  # the same fields as SubmitUnits
        self.timeout_s = float(plan.timeout_s)
        self.ask_each = plan.ask == "each"
        self.submitted: list[tuple[Unit, str]] = []
        self.asked: set[str] = set()
        self.client = _ClientThread("chaos-client")
        self.recorder = HistoryRecorder(ctx.history_dir, "client-1")
        ctx.cleanup.callback(self.recorder.close)
        ctx.cleanup.callback(self.client.close)
        ctx.cleanup.callback(self.client.call, self._close_backend, 10.0)

    def _submit_all(self, units: list[Unit], stop: threading.Event) -> None:
        ctx, counts = self.ctx, self.ctx.counts
        for u in units:
            if stop.is_set():
                counts["not_submitted"] = counts.get("not_submitted", 0) + 1
                continue
            try:
                self.submitted.append((u, str(ctx.workload.submit(ctx.app, u))))
                counts["submitted"] = counts.get("submitted", 0) + 1
            except Exception as exc:  # noqa: BLE001 - a publish failing under a fault is data, not a crash
                counts["submit_errors"] = counts.get("submit_errors", 0) + 1
                if counts["submit_errors"] <= 3:
                    ctx.notes.append(f"submit of {u.key} raised {type(exc).__name__}: {str(exc)[:200]}")
            else:
                if self.ask_each:
                    self._ask(*self.submitted[-1])
            if self.plan.submit_interval_s:
                stop.wait(self.plan.submit_interval_s)

    def _in_thread(self, job: Callable[[threading.Event], None], timeout: float, what: str) -> bool:
        # Each submit may wait for its result too.
        return self.client.call(job, timeout + (len(self.all) * self.timeout_s if self.ask_each else 0.0))

    def after_heal(self) -> None:
        super().after_heal()
        left = [(u, t) for u, t in self.submitted if t not in self.asked]
        if not left:
            return
        self.ctx.phase("await_results", units=len(left), timeout_s=self.timeout_s)
        budget = len(left) * (self.timeout_s + 5.0)
        if not self.client.call(lambda stop: self._ask_all(left, stop), budget):
            self.ctx.notes.append(f"waiting for {len(left)} results did not finish within {budget:.0f} s")

    def _ask_all(self, units: list[tuple[Unit, str]], stop: threading.Event) -> None:
        for unit, task_id in units:
            if stop.is_set():
                return
            self._ask(unit, task_id)

    def _ask(self, unit: Unit, task_id: str) -> None:
        from celery.result import AsyncResult

        counts = self.ctx.counts
        self.asked.add(task_id)
        value = {"task_id": task_id, "key": unit.key, "run_id": self.ctx.run_id, "timeout_s": self.timeout_s}
        self.recorder.record(F.RESULT, OpType.INVOKE, value)
        res = AsyncResult(task_id, app=self.ctx.app)
        try:
            res.get(timeout=self.timeout_s, propagate=False, disable_sync_subtasks=False)
            state = str(res.state)
        except Exception as exc:  # noqa: BLE001 - a timeout or a lost connection is the observation
            counts["results_missing"] = counts.get("results_missing", 0) + 1
            self.recorder.record(F.RESULT, OpType.FAIL, value, error=f"{type(exc).__name__}: {str(exc)[:200]}")
            return
        counts["results_received"] = counts.get("results_received", 0) + 1
        self.recorder.record(F.RESULT, OpType.OK, {**value, "state": state})

    def _close_backend(self, stop: threading.Event) -> None:
        # The backend is per thread: close this thread's result consumer (rpc:// holds a broker
        # connection open for it).
        with contextlib.suppress(Exception):
            consumer = getattr(self.ctx.app.backend, "result_consumer", None)
            if consumer is not None and getattr(consumer, "_connection", None) is not None:
                consumer.stop()


class Run:
    """One chaos run (see the module docstring for the phases and options).

    Example (on a started stack, with your workload)::

        result = Run(stack, app="pkg.tasks:app", workload=MyWorkload(), n_per_kind=20,
                     schedule=Schedule.of(at(2, BrokerOutage("blackhole"), duration_s=5))).execute()
        print(result.summary())

    Its options are checked when it is built, before anything starts:

    >>> from harness.stack.local import LocalStack
    >>> Run(LocalStack(), app="pkg.tasks:app", workload=object())
    Traceback (most recent call last):
    ...
    harness.errors.ConfigError: workload object lacks ['setup', 'units', 'submit', 'effects', 'dlq_entries'] of the harness.workload.Workload protocol (setup, units, submit, effects, dlq_entries)

    A `Run` is its options: everything one execution finds out (notes, the result backend's
    plan, counts) lives in that execution and is returned in its `RunResult`.
    """

    def __init__(self, stack: Stack, *, app: Any, workload: Workload, workers: Sequence[WorkerSpec] | None = None,
                 schedule: Schedule | None = None, expectations: Expectations | Mapping[str, Any] | None = None,
                 n_per_kind: int = 10, settings: Mapping[str, Any] | None = None,
                 checkers: Iterable[str] | Mapping[str, Any] | None = None, after_heal: float | None = None,
                 submit_interval_s: float = 0.0, quiesce_timeout_s: float = 60.0,
                 fault_timeout_s: float | None = None, run_id: str | None = None,
                 directory: Path | str | None = None, ready_timeout_s: float = 30.0,
                 log: Any = None, claim: Claim | str | None = None,
                 rate_limits: Mapping[str, float | str] | str | None = None, load: Load | None = None) -> None:
        if not isinstance(n_per_kind, int) or isinstance(n_per_kind, bool) or n_per_kind < 1:
            raise ConfigError(f"n_per_kind must be an int >= 1, got {n_per_kind!r}")
        if schedule is not None and not isinstance(schedule, Schedule):
            raise ConfigError(f"schedule must be a harness.faults.Schedule (Schedule.of(at(...), when(...))), "
                              f"got {type(schedule).__name__}")
        if after_heal is not None and not (0.0 <= after_heal < 1.0):
            raise ConfigError(f"after_heal is the fraction of units submitted after the heal, in [0, 1); got {after_heal!r}")
        if expectations is not None and not isinstance(expectations, Expectations | Mapping):
            raise ConfigError("expectations must be an Expectations or a dict of overrides such as "
                              f"{{'idempotent_effects': False}}, got {type(expectations).__name__}")
        for name in ("submit_interval_s", "quiesce_timeout_s", "ready_timeout_s"):
            val = locals()[name]
            if not isinstance(val, int | float) or val < 0:
                raise ConfigError(f"{name} must be a number of seconds >= 0, got {val!r}")
        if rate_limits is not None and not (rate_limits == "app" or isinstance(rate_limits, Mapping)):
            raise ConfigError(f"rate_limits must be 'app' or a mapping of task name -> rate such as "
                              f"{{'tasks.send': '10/s'}}, got {rate_limits!r}")
        missing = [m for m in ("setup", "units", "submit", "effects", "dlq_entries") if not hasattr(workload, m)]
        if missing:
            raise ConfigError(f"workload {type(workload).__name__} lacks {missing} of the harness.workload.Workload "
                              "protocol (setup, units, submit, effects, dlq_entries)")
        self.stack = stack
        # The user's claim: given here, else declared by the workload, else the default.
        self.claim = Claim.from_any(claim if claim is not None else getattr(workload, "claim", None))
        self.app_ref = app
        self.workload = workload
        self.settings = dict(settings or {})
        self.worker_specs = list(workers) if workers else [WorkerSpec(app=_app_path(app))]
        self.schedule = schedule or Schedule()
        self.expectations_in = expectations
        self.rate_limits_in = rate_limits
        self.checkers = checkers
        after = (0.25 if self.schedule else 0.0) if after_heal is None else after_heal
        self.load: Load = load if load is not None else SubmitUnits(
            n_per_kind=n_per_kind, submit_interval_s=float(submit_interval_s), after_heal=after,
            fault_timeout_s=fault_timeout_s)
        self.quiesce_timeout_s = float(quiesce_timeout_s)
        self.ready_timeout_s = float(ready_timeout_s)
        self.run_id = run_id or f"run-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        self._keep = directory is not None
        self.directory = Path(directory) if directory is not None else None
        self._log = log if log is not None else (lambda msg: None)
        # Held for good by the first execute(): a run id names one execution.
        self._once = threading.Lock()

    # ------------------------------------------------------------------ helpers
    def _say(self, msg: str) -> None:
        self._log(f"[run {self.run_id}] {msg}")

    def _specs(self) -> list[WorkerSpec]:
        out = []
        for s in self.worker_specs:
            merged = {**self.settings, **s.settings}
            out.append(dataclasses.replace(s, settings=merged))
        return out

    def _queues(self, app: Any) -> list[str]:
        names: list[str] = []
        for s in self.worker_specs:
            for q in s.queues or (app.conf.task_default_queue or "celery",):
                if q not in names:
                    names.append(q)
        return names + delayed_delivery_queues(app)

    def _worker_conf(self, group: WorkerGroup, app: Any, notes: list[str]) -> dict[str, Any]:
        """The workers' actual configuration (``inspect conf``); the producer's app conf as fallback."""
        try:
            return group.get(None).conf(timeout=2.0)
        except Exception as exc:  # noqa: BLE001 - fall back, and say so
            notes.append(f"could not read the workers' configuration ({exc!r}); expectations use the app's")
        merged = {k: app.conf.get(k) for k in ("task_acks_late", "task_reject_on_worker_lost")}
        merged.update({k: v for k, v in self._specs()[0].settings.items()})
        return merged

    def _rate_limits(self, group: WorkerGroup, notes: list[str]) -> dict[str, float]:
        """The rate limits to judge (task name -> executions per second), as `rate_limits` asks."""
        asked = self.rate_limits_in
        if asked is None:
            return {}
        raw: dict[str, Any] = {}
        if asked == "app":
            try:
                raw.update(group.get(None).rate_limits())
            except Exception as exc:  # noqa: BLE001 - said in the notes; the checker is then not run
                notes.append(f"could not read the workers' rate limits ({exc!r})")
            raw.update(dict(getattr(self.workload, "rate_limits", None) or {}))
        elif isinstance(asked, Mapping):
            raw.update(asked)
        out = {name: r for name, r in ((n, parse_rate(v)) for n, v in raw.items()) if r is not None}
        if not out:
            notes.append("rate limits not judged: no task of the app declares a rate_limit")
        return out

    def _expectations(self, conf: Mapping[str, Any], units: list[Unit],
                      load_overrides: Mapping[str, Any]) -> Expectations:
        outcomes = {u.key: u.expected for u in units}
        kill_kinds = kinds_cutting_running_tasks(self.schedule.kinds)
        if isinstance(self.expectations_in, Expectations):
            exp = self.expectations_in
            changes: dict[str, Any] = dict(load_overrides)
            if exp.run_id is None:
                changes["run_id"] = self.run_id
            if not exp.expected_outcomes:
                changes["expected_outcomes"] = outcomes
            if not exp.declared_effects:
                changes["declared_effects"] = {u.key: u.effects for u in units}
            if kill_kinds - exp.kill_fault_kinds:
                changes["kill_fault_kinds"] = exp.kill_fault_kinds | kill_kinds
            return dataclasses.replace(exp, **changes) if changes else exp
        derived: dict[str, Any] = {"run_id": self.run_id, "expected_outcomes": outcomes,
                                   "declared_effects": {u.key: u.effects for u in units},
                                   "claim": self.claim, "config": {"broker_kind": self.stack.urls.broker_kind},
                                   "require_fault_bite": bool(self.schedule), "kill_fault_kinds": kill_kinds}
        for attr in ("idempotent_effects", "dead_letter_queue"):
            val = getattr(self.workload, attr, None)
            if isinstance(val, bool):
                derived[attr] = val
        derived.update(load_overrides)
        derived.update(dict(self.expectations_in or {}))
        return Expectations.from_celery_config(conf, **derived)

    # ------------------------------------------------------------------ phases
    def _queue_depths(self, queues: list[str]) -> dict[str, tuple[int, int]]:
        """(ready, unacked) per queue through the direct broker URL; unacked is -1 when the
        transport cannot tell (AMQP: see `_unacked_exact`)."""
        from kombu import Connection

        urls = self.stack.urls
        out: dict[str, tuple[int, int]] = {}
        with Connection(urls.broker_url, connect_timeout=3, transport_options={"max_retries": 1}) as conn:
            ch = conn.channel()
            try:
                for q in queues:
                    try:
                        _, ready, _ = ch.queue_declare(queue=q, passive=True)
                    except Exception:  # noqa: BLE001 - a queue never declared holds nothing
                        ready = 0
                        with contextlib.suppress(Exception):
                            ch.close()
                        ch = conn.channel()
                    unacked = -1
                    client = getattr(ch, "client", None)
                    if client is not None and hasattr(ch, "unacked_key"):  # Redis transport
                        unacked = int(client.hlen(ch.unacked_key))
                    out[q] = (int(ready), unacked)
            finally:
                with contextlib.suppress(Exception):
                    ch.close()
        return out

    def _unacked_exact(self, queues: list[str]) -> dict[str, tuple[int, int]] | None:
        """(ready, unacked) from ``rabbitmqctl list_queues`` on a local RabbitMQ (None elsewhere).

        It costs seconds (an Erlang VM per call), so quiesce asks it once, to confirm.
        """
        if self.stack.urls.broker_kind != "amqp" or "rabbitmqctl" not in capabilities(self.stack):
            return None
        broker: Any = self.stack.broker  # capabilities() said it has ctl()
        text = broker.ctl("list_queues", "-q", "--no-table-headers", "name", "messages_ready",
                          "messages_unacknowledged", timeout=30.0)
        out: dict[str, tuple[int, int]] = {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[-1].isdigit() and parts[-2].isdigit():
                name = " ".join(parts[:-2])
                if name in queues:
                    out[name] = (int(parts[-2]), int(parts[-1]))
        for q in queues:
            out.setdefault(q, (0, 0))  # not declared: empty
        return out

    def quiesce(self, group: WorkerGroup, queues: list[str]) -> tuple[bool, dict[str, Any]]:
        """Wait (up to ``quiesce_timeout_s``) until `queues` are empty and `group` is idle.

        Returns whether it got there and the last state seen.
        """
        deadline = time.monotonic() + self.quiesce_timeout_s
        last: dict[str, Any] = {}
        calm = 0
        for _ in range(100_000):
            try:
                depths = self._queue_depths(queues)
                busy = group.busy(timeout=1.0)
                last = {"queues": {q: {"ready": r, "unacked": u} for q, (r, u) in depths.items()}, "workers": busy}
                empty = all(r == 0 and u <= 0 for r, u in depths.values())
                idle = all(sum(v.values()) == 0 for v in busy.values())
                if not any(w.is_running() for w in group):
                    last["note"] = "no worker is running"
                calm = calm + 1 if (empty and idle) else 0
                if calm >= 2:
                    # Calm twice by the cheap probes: confirm the unacked counts once (seconds).
                    exact = self._unacked_exact(queues)
                    if exact is not None:
                        last["queues"] = {q: {"ready": r, "unacked": u} for q, (r, u) in exact.items()}
                    if exact is None or all(r == 0 and u == 0 for r, u in exact.values()):
                        return True, last
                    calm = 0
            except Exception as exc:  # noqa: BLE001 - a broker still recovering: keep polling
                last = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
                calm = 0
            if time.monotonic() >= deadline:
                return False, last
            time.sleep(0.2)
        return False, last


    def drain(self, recorder: HistoryRecorder, app: Any, counts: dict[str, int], notes: list[str],
              queues_left: Mapping[str, Any] | None = None) -> None:
        """Read the final state into the history: one ``stored_effect`` op per record of the effect
        store, one ``dlq_entry`` op per task the dead-letter queue holds, and a ``final_state``
        phase saying what could be read (and the queues left after quiesce)."""
        state: dict[str, Any] = {"effects_read": True, "dlq_read": True, "run_id": self.run_id}
        try:
            effects = self.workload.effects() or {}
        except Exception as exc:  # noqa: BLE001 - a store that cannot be read makes the verdict unknown
            state.update(effects_read=False, effects_error=f"{type(exc).__name__}: {str(exc)[:300]}")
            notes.append(f"reading the effect store failed: {state['effects_error']}")
            effects = {}
        n_records = 0
        for key, records in sorted(effects.items()):
            for r in records:
                n_records += 1
                recorder.record(F.STORED_EFFECT, OpType.OK, {
                    "key": r.key or key, "kind": r.kind, "idempotency_key": r.idempotency_key,
                    "task_id": r.task_id, "count": 1, "duplicate_writes": r.duplicate_writes, "run_id": self.run_id})
        counts["stored_effects"] = n_records
        try:
            entries = self.workload.dlq_entries(app) or []
        except Exception as exc:  # noqa: BLE001
            state.update(dlq_read=False, dlq_error=f"{type(exc).__name__}: {str(exc)[:300]}")
            notes.append(f"reading the dead-letter queue failed: {state['dlq_error']}")
            entries = []
        for e in entries:
            recorder.record(F.DLQ_ENTRY, OpType.OK, {
                "task_id": e.task_id, "key": e.key, "name": e.name, "args": list(e.args), "kwargs": dict(e.kwargs),
                "exception": e.exception, "attempts": e.attempts, "queue": e.queue, "reason": e.reason,
                "copies": e.copies, "run_id": e.run_id or self.run_id})
        counts["dlq_entries"] = len(entries)
        state.update(stored_effects=n_records, dlq_entries=len(entries), queues_left=dict(queues_left or {}))
        recorder.record(F.PHASE, OpType.OK, {"phase": "final_state", **state})

    # ------------------------------------------------------------------ the run
    def checkers_for(self, expectations: Expectations, index: HistoryIndex | None = None) -> Any:
        """The checkers to run: the caller's, or what the expectations and the history's `index`
        ask for, less `redelivery` when the schedule kills no worker (it claims nothing about
        redelivery then; keeping it would make every outage scenario `unknown`)."""
        if self.checkers is not None:
            return self.checkers
        chosen = default_checkers(expectations, index)
        kills = any(driver_for(sf.fault).cuts_running_tasks or expectations.is_kill_fault(sf.fault.kind)
                    for sf in self.schedule.faults)
        if not kills:
            chosen.pop("redelivery", None)
        return chosen

    def execute(self) -> RunResult:
        """Run every phase and return the result; workers, faults and temp dirs are cleaned up always."""
        if not self._once.acquire(blocking=False):
            raise ConfigError("this Run was executed already: build a new Run (each run has its own run id)")
        t_start = time.monotonic()
        timings: dict[str, float] = {}
        counts: dict[str, int] = {}
        notes: list[str] = []
        applied: list[AppliedFault] = []
        quiesced = False
        with ExitStack() as cleanup:
            if self.directory is None:
                tmp = Path(reaper.make_temp_dir(f"chaos-{self.run_id}-"))
                cleanup.callback(reaper.remove_dir, tmp)
                directory = tmp
            else:
                directory = self.directory
                directory.mkdir(parents=True, exist_ok=True)
            history_dir = directory / "history"
            history_dir.mkdir(parents=True, exist_ok=True)
            (directory / "schedule.json").write_text(self.schedule.to_json())
            recorder = cleanup.enter_context(HistoryRecorder(history_dir, "harness"))

            def phase(name: str, **value: Any) -> None:
                recorder.record(F.PHASE, OpType.OK, {"phase": name, "run_id": self.run_id, **value})
                self._say(name)

            urls = self.stack.urls
            app = _load_app(self.app_ref)
            backend = plan_for_app(app, self.settings, urls.backend_url)
            if backend.note:
                notes.append(backend.note)
            keep = backend.keep_app_backend
            group = WorkerGroup(self._specs(), broker_url=urls.url_for(Role.WORKER_BROKER),
                                backend_url="" if keep else urls.url_for(Role.WORKER_BACKEND),
                                control_url=urls.broker_url,
                                history_dir=history_dir, run_id=self.run_id, log_dir=directory / "logs",
                                ready_timeout=self.ready_timeout_s)
            # Registered before start: a failed start still reaps what was spawned.
            cleanup.callback(self.stop_workers, group)
            nemesis = Nemesis(self.stack, recorder=HistoryRecorder(history_dir, "nemesis"), workers=group)
            cleanup.callback(self.close_nemesis, nemesis)
            nemesis.preflight(self.schedule)  # fail before anything runs

            producer = cleanup.enter_context(_Producer(app, urls.url_for(Role.PRODUCER_BROKER),
                                                       None if keep else urls.url_for(Role.PRODUCER_BACKEND),
                                                       self.settings, history_dir, self.run_id))
            # Set up (declare, purge) before any worker consumes: a message left over from an
            # earlier run must be purged, not executed and reported as this run's "unexpected" task.
            self.workload.setup(producer.app)
            t = time.monotonic()
            group.start()
            timings["workers_ready_s"] = round(time.monotonic() - t, 3)
            conf = self._worker_conf(group, producer.app, notes)
            ctx = RunContext(stack=self.stack, run_id=self.run_id, directory=directory, history_dir=history_dir,
                             schedule=self.schedule, workload=self.workload, app=producer.app, group=group,
                             nemesis=nemesis, cleanup=cleanup, phase=phase, notes=notes, counts=counts,
                             timings=timings)
            load = self.load.start(ctx)
            # Built now only to refuse bad overrides before any work is submitted; the real ones
            # are built at the check, from the units the load says it submitted.
            self._expectations(conf, [], load.expectations())
            limits = self._rate_limits(group, notes)

            # -- load under faults
            t_faults = time.monotonic()
            load.under_faults()
            # -- heal
            t = time.monotonic()
            applied = nemesis.stop()
            phase("heal", faults=[a.id for a in applied])
            timings["faults_s"] = round(t - t_faults, 3)
            timings["heal_s"] = round(time.monotonic() - t, 3)
            for a in applied:
                if not a.bit:  # said at once: the scenario did not exercise what it claims, and why
                    notes.append(f"fault {a.id} ({a.kind}) did not bite: {a.error or a.outcome}")
            unhealed = [a.id for a in applied if a.outcome == "unhealed"]
            if unhealed:
                notes.append(f"faults {unhealed} could not be healed: verdicts are about a broken system")
            load.after_heal()
            # -- quiesce
            t = time.monotonic()
            quiesced, state = self.quiesce(group, self._queues(producer.app))
            timings["quiesce_s"] = round(time.monotonic() - t, 3)
            phase("quiesce", quiesced=quiesced, state=state)
            if not quiesced:
                notes.append(f"not quiescent after {self.quiesce_timeout_s:.0f} s: "
                             f"{json.dumps(state, default=str)[:400]}")
            # -- drain
            t = time.monotonic()
            # The run has been observed: undo what faults left behind on purpose (connections a
            # vanished broker left half-open) before the workers stop, or their shutdown would
            # wait on those connections.
            released = nemesis.release()
            if released["released"]:
                phase("release", faults=sorted(released["released"]), errors=released["errors"])
            self.stop_workers(group)
            self.drain(recorder, producer.app, counts, notes, state.get("queues"))
            phase("drain")
            timings["drain_s"] = round(time.monotonic() - t, 3)
            # -- check
            t = time.monotonic()
            phase("check")
            units = load.units()
            counts["units"] = len(units)
            expectations = self._expectations(conf, units, load.expectations())
            if limits:
                # Starts are seen at task_prerun, after the pool: tokens granted while every child
                # was busy start together once children free up, up to one per pool process.
                pool = max((s.concurrency or 1 for s in self.worker_specs), default=1)
                expectations = dataclasses.replace(expectations, rate_limits={**expectations.rate_limits, **limits},
                                                   rate_limit_burst=max(expectations.rate_limit_burst, pool))
            history = read_history(history_dir)
            index = build_index(history, run_id=expectations.run_id, kill_fault_kinds=expectations.kill_fault_kinds)
            verdicts = check_all(index, expectations, self.checkers_for(expectations, index))
            timings["check_s"] = round(time.monotonic() - t, 3)
            counts.update(ops=len(history), skipped_lines=len(history.skipped),
                          faults_bit=sum(1 for a in applied if a.bit))
            timings["total_s"] = round(time.monotonic() - t_start, 3)
            (directory / "result.json").write_text(json.dumps({"run_id": self.run_id}))
            result = RunResult(
                run_id=self.run_id, valid=overall(verdicts), verdicts=verdicts, schedule=self.schedule,
                schedule_as_run=tuple(applied), expectations=expectations, timings=timings, counts=counts,
                quiesced=quiesced, history_path=str(history_dir) if self._keep else None,
                notes=tuple(notes), history=history, load=load.measurements())
            if self._keep:
                (directory / "result.json").write_text(result.to_json())
        return result

    def stop_workers(self, group: WorkerGroup) -> None:
        """Stop `group`; a failure to stop cleanly is reported, never raised (the group reaps anyway)."""
        try:
            group.stop(timeout=15.0)
        except Exception as exc:  # noqa: BLE001 - reaped anyway; say why it was not clean
            print(f"[run {self.run_id}] stopping workers: {exc!r}", file=sys.stderr)

    def close_nemesis(self, nemesis: Nemesis) -> None:
        """Heal and release whatever `nemesis` still holds and close its recorder."""
        try:
            nemesis.stop()
            nemesis.release()
        finally:
            if nemesis.recorder is not None:
                nemesis.recorder.close()


# -------------------------------------------------------------------------- one run path


@dataclass(frozen=True, slots=True)
class RunConfig:
    """How to run a deployed system once (`run_deployment`): the one description of a run that
    certify, explore and replay, the pytest route and the runs under load all build.

    - ``schedule``: the faults (default none);
    - ``n_per_kind`` / ``submit_interval_s``: the units submitted from this process (with
      ``after_heal``, default 0.25 of them after the heal when there are faults), unless ``load``
      says otherwise (`harness.load.under_load.SteadyLoad`: Locust at a steady rate);
    - ``workers``: how many workers, each with the deployment's queues, env and concurrency;
      ``name``: in their node names (``w1-<name>@127.0.0.1``; empty: Celery-unique random names);
    - ``claim``, ``rate_limits`` (``"app"``: judge the app's declared limits), ``expectations``
      (overrides), ``quiesce_timeout_s``, ``run_id``, ``directory`` (kept; default a temp dir):
      as the `Run` options of the same names.

    >>> RunConfig(n_per_kind=2, workers=2, name="broker_blackhole").worker_hostnames()
    ('w1-broker-blackhole@127.0.0.1', 'w2-broker-blackhole@127.0.0.1')
    >>> RunConfig(workers=0)
    Traceback (most recent call last):
    ...
    harness.errors.ConfigError: workers must be an int >= 1, got 0
    """

    schedule: Schedule = field(default_factory=Schedule)
    n_per_kind: int = 1
    submit_interval_s: float = 0.1
    after_heal: float | None = None
    workers: int = 1
    name: str = ""
    claim: Claim | str | None = None
    rate_limits: Mapping[str, float | str] | str | None = None
    expectations: Mapping[str, Any] | None = None
    quiesce_timeout_s: float = 60.0
    run_id: str | None = None
    directory: Path | str | None = None
    load: Load | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 1:
            raise ConfigError(f"workers must be an int >= 1, got {self.workers!r}")

    def worker_hostnames(self) -> tuple[str, ...] | None:
        """The workers' node names; None when unnamed (each worker gets a random one)."""
        if not self.name:
            return None
        slug = self.name.replace("_", "-")
        return tuple(f"w{i + 1}-{slug}@127.0.0.1" for i in range(self.workers))


def run_deployment(stack: Stack, deployment: Deployment, config: RunConfig, *,
                   log: Callable[[str], None] | None = None) -> RunResult:
    """Run `deployment` (a `harness.workload.Deployment`) on `stack` once, as `config` says.

    Example::

        with prepare(stack, idempotent_effects=False) as d:
            result = run_deployment(stack, d, RunConfig(Schedule.of(when(on_effect(), KillWorker()))))
    """
    names = config.worker_hostnames()
    workers = [WorkerSpec(app=deployment.app, concurrency=deployment.concurrency, queues=tuple(deployment.queues),
                          env=dict(deployment.env), hostname=names[i] if names else "")
               for i in range(config.workers)]
    return Run(stack, app=deployment.producer, workload=deployment.workload, workers=workers,
               schedule=config.schedule, settings=dict(deployment.settings) or None, n_per_kind=config.n_per_kind,
               submit_interval_s=config.submit_interval_s, after_heal=config.after_heal, claim=config.claim,
               rate_limits=config.rate_limits, expectations=config.expectations,
               quiesce_timeout_s=config.quiesce_timeout_s, run_id=config.run_id, directory=config.directory,
               log=log, load=config.load).execute()
