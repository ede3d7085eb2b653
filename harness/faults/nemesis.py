"""The nemesis: applies the faults of a schedule to a running stack and its workers, and always heals them.

Responsibility: with its drivers, the only part of harness/faults that touches the stack, the
workers and the fault proxy. It checks a schedule against what the stack can do before anything starts
(`preflight`), applies each fault when its time comes or its trigger fires, heals it after its
duration, and heals everything still active in a ``finally`` (exception, interrupt, stop).
Every step is recorded in the run's history by process ``nemesis``:

- ``fault_start`` invoke ``{fault_id, kind, fault, planned}`` then ok with what it actually did
  (``proxies``, ``hostnames``, ``killed_pids``, ``task_id``, ``scope`` ...), or fail with the
  error (nothing was left applied), or fail with ``never_bit`` (a trigger that never fired,
  a kill that found no task to cut);
- ``fault_stop`` invoke then ok with what the heal did, or fail when the heal failed (the
  fault may still be in place: the run's verdicts are then about a broken system); a fault
  that leaves something behind on purpose (`BrokerVanish`: connections left half-open) names
  it in ``left_until_release``, undone by `Nemesis.release` once the run has been observed.

How each kind is checked, applied and healed is its driver's business
(`harness.faults.drivers`, one registry keyed by fault class, drivers grouped by family): the
nemesis looks the driver up, calls its ``preflight`` before anything starts and its ``apply``
when the fault is due, and runs the undo steps the driver registered at heal. The observed
effect the driver returns goes into the ``fault_start`` ok op, with ``cuts_running_tasks`` when
the driver declares that the fault can cut tasks mid-execution (what the checkers read).

Example:
    >>> nemesis = Nemesis(stack, history_dir=run_dir / "history", workers=group)   # doctest: +SKIP
    >>> with nemesis:                                                               # doctest: +SKIP
    ...     applied = nemesis.run(Schedule.of(at(1, BrokerOutage("blackhole"), duration_s=5)))
    >>> with nemesis.fault(Latency("worker_broker", ms=300)):                       # doctest: +SKIP
    ...     ...   # healed when the block exits, whatever happens in it
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, HarnessError
from harness.faults.drivers import Application, FaultContext, NeverBit, driver_for
from harness.faults.kinds import Fault
from harness.faults.schedule import Schedule, ScheduledFault, Trigger
from harness.history import holds
from harness.history.ops import F, OpType
from harness.history.recorder import HistoryRecorder
from harness.stack.base import Stack

__all__ = ["AppliedFault", "Nemesis"]


@dataclass(frozen=True, slots=True)
class AppliedFault:
    """One fault of the schedule as it actually ran (times in seconds after the schedule started).

    outcome: ``healed``; ``never_bit`` (trigger never fired, nothing to cut); ``failed`` (apply
    failed, nothing left applied); ``unhealed`` (the heal failed); ``interrupted`` (the run
    stopped before it was due).
    """

    id: str
    kind: str
    fault: dict[str, Any]
    planned: str
    duration_s: float
    outcome: str
    started_s: float | None = None
    healed_s: float | None = None
    effect: dict[str, Any] = field(default_factory=dict)
    heal: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def bit(self) -> bool:
        """Whether the fault was actually applied."""
        return self.outcome in ("healed", "unhealed")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "fault": dict(self.fault), "planned": self.planned,
                "duration_s": self.duration_s, "outcome": self.outcome, "started_s": self.started_s,
                "healed_s": self.healed_s, "effect": dict(self.effect), "heal": dict(self.heal),
                "error": self.error}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AppliedFault:
        return cls(**d)


@dataclass(slots=True)
class _Active:
    sf: ScheduledFault
    started: float
    heal_at: float
    app: Application
    effect: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Waiting:
    sf: ScheduledFault
    trigger: Trigger
    seen: int = 0


def _value(op: dict[str, Any]) -> dict[str, Any]:
    v = op.get("value")
    return v if isinstance(v, dict) else {}


def _planned(sf: ScheduledFault) -> str:
    if sf.at_s is not None:
        return f"at {sf.at_s:g} s"
    return sf.trigger.describe() if sf.trigger is not None else ""


class Nemesis:
    """Applies and heals faults on `stack` (and `workers`), recording into the run's history.

    Args:
        stack: a started stack (LocalStack, ExternalStack, ...).
        history_dir: the run's history directory; the nemesis records there as process
            ``nemesis`` and follows it for event triggers. Or pass `recorder`.
        workers: the run's `WorkerGroup`, for worker faults.
        poll_s: how often the schedule loop looks at the clock and the history (seconds).
    """

    def __init__(self, stack: Stack, *, history_dir: Path | str | None = None,
                 recorder: HistoryRecorder | None = None, workers: Any = None, poll_s: float = 0.005) -> None:
        self.stack = stack
        self.workers = workers
        self.poll_s = poll_s
        self._own_recorder = recorder is None and history_dir is not None
        self.recorder = recorder if recorder is not None else (
            HistoryRecorder(history_dir, "nemesis") if history_dir is not None else None)
        self.history_dir = Path(history_dir) if history_dir is not None else (
            self.recorder.directory if self.recorder is not None else None)
        self._lock = threading.RLock()
        self._active: dict[str, _Active] = {}
        self._applied: dict[str, AppliedFault] = {}
        self._order: list[str] = []
        self._t0: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_error: BaseException | None = None
        self._adhoc = 0
        #: Release steps of healed faults (fault id, what, step), run by `release`.
        self._lingering: list[tuple[str, str, Any]] = []
        #: What the drivers act on; one per nemesis, so a run's kills remember what they cut.
        self.ctx = FaultContext(stack, workers, self.history_dir)

    # ------------------------------------------------------------------ recording
    def _record(self, f: str, type_: OpType, value: dict[str, Any], error: str | None = None) -> None:
        if self.recorder is not None and not self.recorder.closed:
            self.recorder.record(f, type_, value, error=error)

    def _rel(self, t: float) -> float:
        return round(t - (self._t0 if self._t0 is not None else t), 4)

    @property
    def applied(self) -> list[AppliedFault]:
        """The schedule as it ran so far, in the order faults were decided."""
        with self._lock:
            return [self._applied[i] for i in self._order if i in self._applied]

    @property
    def active_ids(self) -> list[str]:
        with self._lock:
            return list(self._active)

    # ------------------------------------------------------------------ preflight
    def preflight(self, schedule: Schedule | ScheduledFault | Fault) -> None:
        """Check that every fault can be applied here; raise ConfigError / UnsupportedFault naming the fix.

        Called by `run` before the first fault, so an impossible schedule fails before any harm.
        """
        items: list[ScheduledFault]
        if isinstance(schedule, Schedule):
            items = list(schedule)
        elif isinstance(schedule, ScheduledFault):
            items = [schedule]
        else:
            items = [ScheduledFault(schedule, at_s=0)]
        for sf in items:
            f = sf.fault
            what = f"{sf.id or f.kind} ({f.describe()})"
            if sf.trigger is not None and self.history_dir is None:
                raise ConfigError(f"{what} has an event trigger, which follows the run's history: give the "
                                  "Nemesis a history_dir (the workers must record there)")
            driver_for(f).preflight(self.ctx, f, what)

    # ------------------------------------------------------------------ apply / heal
    def apply(self, sf: ScheduledFault, *, event: dict[str, Any] | None = None) -> AppliedFault:
        """Apply one scheduled fault now (recording it); it is healed by `heal`, `heal_all` or the loop."""
        with self._lock:
            if self._t0 is None:
                self._t0 = time.monotonic()
            if sf.id in self._active or sf.id in self._applied:
                raise ConfigError(f"fault {sf.id!r} was already applied in this run: give each fault its own id")
            self._order.append(sf.id)
            base = {"fault_id": sf.id, "kind": sf.fault.kind}
            invoke = {**base, "fault": sf.fault.to_dict(), "planned": _planned(sf)}
            if event is not None:
                ev = _value(event)
                trigger_op: dict[str, Any] = {"f": event.get("f"), "type": event.get("type"),
                                              "process": event.get("process"), "task_id": ev.get("task_id"),
                                              "name": ev.get("name")}
                if sf.trigger is not None and sf.trigger.hold_s:
                    # The worker waits at that op until this fault is applied: a success it
                    # recorded is stored and not acked when the fault lands (the checkers read it).
                    trigger_op["held"] = True
                invoke["event"] = trigger_op
            self._record(F.FAULT_START, OpType.INVOKE, invoke)
            now = time.monotonic()
            act = _Active(sf, now, now + sf.duration_s, Application(sf.id, event))
            try:
                driver = driver_for(sf.fault)
                act.effect = driver.observed(driver.apply(self.ctx, sf.fault, act.app))
            except NeverBit as exc:
                self._undo(act, failed=True)  # nothing should be registered, but never leave anything behind
                self._record(F.FAULT_START, OpType.FAIL, {**base, "never_bit": True}, error=str(exc))
                self._applied[sf.id] = AppliedFault(sf.id, sf.fault.kind, sf.fault.to_dict(), _planned(sf),
                                                    sf.duration_s, "never_bit", self._rel(now), None,
                                                    error=str(exc))
                return self._applied[sf.id]
            except BaseException as exc:
                errors = self._undo(act, failed=True)
                msg = f"{type(exc).__name__}: {exc}"[:500]
                if errors:
                    msg += f"; undoing the partial apply also failed: {'; '.join(errors)}"
                self._record(F.FAULT_START, OpType.FAIL, {**base}, error=msg)
                self._applied[sf.id] = AppliedFault(sf.id, sf.fault.kind, sf.fault.to_dict(), _planned(sf),
                                                    sf.duration_s, "failed" if not errors else "unhealed",
                                                    self._rel(now), None, error=msg)
                raise
            # The fault is in force from now on: it stays for its whole duration, however long
            # applying it took (a broker restart or a rabbitmqctl call takes seconds).
            act.heal_at = time.monotonic() + sf.duration_s
            self._record(F.FAULT_START, OpType.OK, {**base, **act.effect})
            self._active[sf.id] = act
            result = AppliedFault(sf.id, sf.fault.kind, sf.fault.to_dict(), _planned(sf), sf.duration_s,
                                  "active", self._rel(now), None, effect=dict(act.effect))
            self._applied[sf.id] = result
            return result

    def _undo(self, act: _Active, *, failed: bool = False) -> list[str]:
        """Run the undo steps newest first; every step runs even when an earlier one fails.

        A fault that `failed` to apply also runs its release steps now (nothing it left behind
        is wanted); a healed one hands them to `release`, naming them in its heal.
        """
        errors: list[str] = []
        heal: dict[str, Any] = {}
        if failed:
            act.app.undo[:0] = act.app.release  # released after (older than) every undo step
            act.app.release = []
        elif act.app.release:
            with self._lock:
                self._lingering.extend((act.sf.id, what, fn) for what, fn in act.app.release)
            heal["left_until_release"] = [what for what, _ in act.app.release]
            act.app.release = []
        while act.app.undo:
            what, fn = act.app.undo.pop()
            try:
                out = fn()
                for k, v in (out or {}).items():
                    if isinstance(v, list) and isinstance(heal.get(k), list):
                        heal[k] = [*heal[k], *v]
                    else:
                        heal[k] = v
            except BaseException as exc:  # noqa: BLE001 - keep healing the rest
                errors.append(f"{what}: {type(exc).__name__}: {exc}"[:300])
        act.effect.setdefault("_heal", {}).update(heal)
        return errors

    def heal(self, fault_id: str) -> AppliedFault:
        """Heal one active fault now (recording fault_stop). Healing twice is a no-op."""
        with self._lock:
            act = self._active.pop(fault_id, None)
            if act is None:
                if fault_id in self._applied:
                    return self._applied[fault_id]
                raise KeyError(f"no fault {fault_id!r} was applied: active are {list(self._active)}")
            sf = act.sf
            base = {"fault_id": sf.id, "kind": sf.fault.kind}
            self._record(F.FAULT_STOP, OpType.INVOKE, base)
            errors = self._undo(act)
            heal = act.effect.pop("_heal", {})
            now = time.monotonic()
            prev = self._applied[sf.id]
            if errors:
                msg = "; ".join(errors)
                self._record(F.FAULT_STOP, OpType.FAIL, {**base, **heal}, error=msg)
                result = AppliedFault(sf.id, prev.kind, prev.fault, prev.planned, prev.duration_s, "unhealed",
                                      prev.started_s, self._rel(now), prev.effect, heal, msg)
            else:
                self._record(F.FAULT_STOP, OpType.OK, {**base, **heal})
                result = AppliedFault(sf.id, prev.kind, prev.fault, prev.planned, prev.duration_s, "healed",
                                      prev.started_s, self._rel(now), prev.effect, heal)
            self._applied[sf.id] = result
            return result

    def heal_all(self) -> list[AppliedFault]:
        """Heal every active fault, newest first; never raises (failures are recorded as unhealed)."""
        out = []
        with self._lock:
            for fid in reversed(list(self._active)):
                try:
                    out.append(self.heal(fid))
                except BaseException:  # noqa: BLE001 - the others must still be healed
                    traceback.print_exc()
        return out

    def _never_bit(self, sf: ScheduledFault, reason: str, outcome: str = "never_bit") -> None:
        with self._lock:
            if sf.id in self._applied:
                return
            self._order.append(sf.id)
            base = {"fault_id": sf.id, "kind": sf.fault.kind}
            self._record(F.FAULT_START, OpType.INVOKE, {**base, "fault": sf.fault.to_dict(), "planned": _planned(sf)})
            self._record(F.FAULT_START, OpType.FAIL, {**base, "never_bit": True}, error=reason)
            self._applied[sf.id] = AppliedFault(sf.id, sf.fault.kind, sf.fault.to_dict(), _planned(sf),
                                                sf.duration_s, outcome, error=reason)

    @contextlib.contextmanager
    def fault(self, fault: Fault, *, event: dict[str, Any] | None = None, id: str | None = None
              ) -> Iterator[AppliedFault]:
        """Apply `fault` now and heal it when the block exits (whatever happens in the block).

        Example: ``with nemesis.fault(RolePartition("worker_broker")) as applied: ...``
        """
        self._adhoc += 1
        sf = ScheduledFault(fault, at_s=0.0, id=id or f"adhoc-{self._adhoc}")
        self.preflight(sf)
        applied = self.apply(sf, event=event)
        try:
            yield applied
        finally:
            if sf.id in self._active:
                self.heal(sf.id)

    # ------------------------------------------------------------------ the schedule loop
    def run(self, schedule: Schedule, *, stop: threading.Event | None = None,
            max_s: float | None = None) -> list[AppliedFault]:
        """Run `schedule` to the end (blocking), healing everything at the end, always.

        Time offsets count from this call. Stops early when `stop` is set or after `max_s`
        (default: the schedule's horizon + 60 s); faults not yet due are recorded as never bit.
        """
        self.preflight(schedule)
        stop = stop or self._stop
        t0 = time.monotonic()
        with self._lock:
            self._t0 = t0
        limit = t0 + (max_s if max_s is not None else schedule.horizon_s + 60.0)
        ours = {sf.id for sf in schedule}
        timed = sorted((sf for sf in schedule if sf.at_s is not None), key=lambda sf: sf.at_s or 0.0)
        waiting = [_Waiting(sf, sf.trigger) for sf in schedule if sf.trigger is not None]
        fired: list[tuple[float, ScheduledFault, dict[str, Any]]] = []
        if waiting and self.history_dir is not None:
            self.ctx.history_tail()
        held = [w.sf.id for w in waiting if w.trigger.hold_s and self.history_dir is not None]
        for w in waiting:
            if w.sf.id in held:
                assert self.history_dir is not None
                holds.request_hold(self.history_dir, w.sf.id, w.trigger.event, w.trigger.task_name, w.trigger.hold_s)
        try:
            for _ in range(100_000_000):  # bounded by `limit` in practice
                now = time.monotonic()
                for fid, act in list(self._active.items()):
                    if fid in ours and act.heal_at <= now:
                        self.heal(fid)
                if waiting and self.ctx.tail is not None:
                    for op in self.ctx.tail.poll():
                        for w in list(waiting):
                            if w.trigger.matches(op):
                                w.seen += 1
                                if w.seen >= w.trigger.nth:
                                    waiting.remove(w)
                                    fired.append((time.monotonic() + w.trigger.delay_s, w.sf, op.to_dict()))
                                elif w.sf.id in held:  # not the nth: let that worker go on at once
                                    self._release(w.sf.id, str(_value(op.to_dict()).get("task_id")))
                while timed and t0 + (timed[0].at_s or 0.0) <= now:
                    self._apply_quietly(timed.pop(0), None)
                for item in [x for x in fired if x[0] <= now]:
                    fired.remove(item)
                    self._apply_quietly(item[1], item[2])
                    if item[1].id in held:  # applied (or failed): the held worker goes on
                        self._release(item[1].id)
                for w in list(waiting):
                    if now - t0 > w.trigger.timeout_s:
                        waiting.remove(w)
                        if w.sf.id in held:
                            self._release(w.sf.id)
                        self._never_bit(w.sf, f"trigger {w.trigger.describe()} did not fire within "
                                              f"{w.trigger.timeout_s:g} s")
                if not (timed or waiting or fired or ours & set(self._active)):
                    break
                if stop.is_set() or now >= limit:
                    for sf in [*timed, *(w.sf for w in waiting), *(x[1] for x in fired)]:
                        self._never_bit(sf, "the run stopped before this fault was due", "interrupted")
                    break
                stop.wait(self.poll_s)
        finally:
            for fid in held:
                self._release(fid)
            self.heal_all()
        return self.applied

    def _release(self, fault_id: str, task_id: str | None = None) -> None:
        assert self.history_dir is not None
        try:
            holds.release(self.history_dir, fault_id, task_id)
        except OSError:  # noqa: S110 - a held worker lets itself go after hold_s anyway
            pass

    def _apply_quietly(self, sf: ScheduledFault, event: dict[str, Any] | None) -> None:
        # A fault that fails to apply is recorded (fault_start fail) and the schedule goes on.
        try:
            self.apply(sf, event=event)
        except HarnessError:
            pass
        except Exception:  # noqa: BLE001 - recorded by apply; the loop must keep healing
            pass

    def start(self, schedule: Schedule) -> Nemesis:
        """Run `schedule` in a background thread (see `run`); `wait` or `stop` it."""
        self.preflight(schedule)
        if self._thread is not None:
            raise ConfigError("this Nemesis is already running a schedule: one schedule per Nemesis")
        self._stop.clear()

        def body() -> None:
            try:
                self.run(schedule, stop=self._stop)
            except BaseException as exc:  # noqa: BLE001 - reported by wait()
                self._thread_error = exc

        self._thread = threading.Thread(target=body, name="chaos-nemesis", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the background schedule to finish; True when it did."""
        if self._thread is None:
            return True
        # Short slices: a Ctrl-C (SIGINT) is handled between them, never blocked by a long join.
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            self._thread.join(min(0.1, max(0.0, deadline - time.monotonic())))
        if self._thread_error is not None:
            err, self._thread_error = self._thread_error, None
            raise err
        return not self._thread.is_alive()

    def stop(self, timeout: float = 60.0) -> list[AppliedFault]:
        """Stop the schedule (faults not yet due are skipped) and heal everything. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            deadline = time.monotonic() + timeout
            while self._thread.is_alive() and time.monotonic() < deadline:
                self._thread.join(0.1)
        self.heal_all()
        return self.applied

    def release(self) -> dict[str, Any]:
        """Undo what healed faults left behind on purpose (their release steps, newest first):
        call it once the run has been observed. Never raises; returns what each step did and
        the errors. Idempotent.
        """
        with self._lock:
            steps, self._lingering = self._lingering, []
        done: dict[str, Any] = {}
        errors: list[str] = []
        for fault_id, what, fn in reversed(steps):
            try:
                done.setdefault(fault_id, []).append(fn() or {"done": what})
            except BaseException as exc:  # noqa: BLE001 - release the rest
                errors.append(f"{fault_id}: {what}: {type(exc).__name__}: {exc}"[:300])
        return {"released": done, "errors": errors}

    def close(self) -> None:
        """Stop, heal, release, and close the nemesis's own recorder."""
        try:
            self.stop()
        finally:
            try:
                self.release()
            finally:
                if self._own_recorder and self.recorder is not None:
                    self.recorder.close()

    def __enter__(self) -> Nemesis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
