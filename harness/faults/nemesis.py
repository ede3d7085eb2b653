"""The nemesis: applies the faults of a schedule to a running stack and its workers, and always heals them.

Responsibility: the only part of harness/faults that touches the stack, the workers and the
fault proxy. It checks a schedule against what the stack can do before anything starts
(`preflight`), applies each fault when its time comes or its trigger fires, heals it after its
duration, and heals everything still active in a ``finally`` (exception, interrupt, stop).
Every step is recorded in the run's history by process ``nemesis``:

- ``fault_start`` invoke ``{fault_id, kind, fault, planned}`` then ok with what it actually did
  (``proxies``, ``hostnames``, ``killed_pids``, ``task_id``, ``scope`` ...), or fail with the
  error (nothing was left applied), or fail with ``never_bit`` (a trigger that never fired,
  a kill that found no task to cut);
- ``fault_stop`` invoke then ok with what the heal did, or fail when the heal failed (the
  fault may still be in place: the run's verdicts are then about a broken system).

How each kind is applied and healed:

===================  ==========================================================  ====================
kind                 apply                                                       heal
===================  ==========================================================  ====================
broker_outage        proxy_down: disable both broker proxies; blackhole: timeout  enable / remove the
backend_outage       toxic (0 ms: drop everything) both ways; kill_restart:       toxics / start the
                     SIGKILL the server; graceful_stop: stop it                   server again
role_partition       disable (or blackhole) the role's proxies                    enable / remove
latency, bandwidth,  a toxic per proxy and direction, named ``<fault id>-<type>-   remove those toxics
reset_peer, slicer,  <stream>``
limit_data
partner_api_fault    the same on an extra proxy (``stack.add_proxy``)             the same
memory_alarm         ``rabbitmqctl set_vm_memory_high_watermark <tiny>``           set it to ``restore``
kill_worker_child    SIGKILL the pool child that produced the trigger's op, or      nothing (the worker
                     the child found running ``task_name``                        forks a new child)
kill_worker          SIGKILL the worker's process group                           start it again
warm_shutdown        SIGTERM the main process, wait for it to exit                start it again
cold_shutdown        SIGQUIT the main process                                     start it again
pause_worker         SIGSTOP the worker's process group                           SIGCONT
scale_workers        scale to ``count`` workers                                   scale back
===================  ==========================================================  ====================

Example:
    >>> nemesis = Nemesis(stack, history_dir=run_dir / "history", workers=group)   # doctest: +SKIP
    >>> with nemesis:                                                               # doctest: +SKIP
    ...     applied = nemesis.run(Schedule.of(at(1, BrokerOutage("blackhole"), duration_s=5)))
    >>> with nemesis.fault(Latency("worker_broker", ms=300)):                       # doctest: +SKIP
    ...     ...   # healed when the block exits, whatever happens in it
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, HarnessError, UnsupportedFault
from harness.faults._tail import HistoryTail
from harness.faults.kinds import (
    BackendOutage,
    Bandwidth,
    BrokerOutage,
    ColdShutdown,
    Fault,
    KillWorker,
    KillWorkerChild,
    Latency,
    LimitData,
    MemoryAlarm,
    PartnerApiFault,
    PauseWorker,
    ResetPeer,
    RolePartition,
    ScaleWorkers,
    Slicer,
    WarmShutdown,
    role_proxies,
)
from harness.faults.schedule import Schedule, ScheduledFault, Trigger
from harness.history.ops import F, OpType
from harness.history.recorder import HistoryRecorder

__all__ = ["AppliedFault", "Nemesis"]

_STREAMS = {"both": ("upstream", "downstream"), "to_server": ("upstream",), "to_client": ("downstream",)}
_ROLES = ("producer_broker", "worker_broker", "producer_backend", "worker_backend")


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


class _NeverBit(HarnessError):
    """The fault found nothing to act on (no task running to cut)."""


@dataclass(slots=True)
class _Active:
    sf: ScheduledFault
    started: float
    heal_at: float
    effect: dict[str, Any] = field(default_factory=dict)
    undo: list[tuple[str, Callable[[], dict[str, Any] | None]]] = field(default_factory=list)


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

    def __init__(self, stack: Any, *, history_dir: Path | str | None = None,
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
        self._tail: HistoryTail | None = None
        self._cut_names: set[str] = set()  # task names a child kill of this run has cut

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
    @property
    def _toxiproxy(self) -> Any:
        tp = getattr(self.stack, "toxiproxy", None)
        if tp is None:
            raise UnsupportedFault("network faults need a fault proxy, and this stack has none: start it with a "
                                   "Toxiproxy (the local stack always has one; the external stack needs --toxiproxy-url)")
        return tp

    def proxy_names(self, role: str) -> list[str]:
        """The fault-proxy names behind a fault's ``role`` target (ConfigError when there is none)."""
        from harness.stack.base import Role

        urls = self.stack.urls
        out: list[str] = []
        for r in role_proxies(role):
            if r in _ROLES:
                ep = urls.proxied.get(Role(r))
                if ep is None:
                    raise ConfigError(f"the stack has no proxy for role {r}: network faults on it need the "
                                      "stack's per-role proxies (start the stack with a Toxiproxy)")
                out.append(ep.proxy_name)
            else:
                extra = getattr(self.stack, "extra_proxies", {}) or {}
                ep = extra.get(r)
                if ep is None:
                    raise ConfigError(f"no proxy named {r!r} in this stack (extra proxies: {sorted(extra)}): create "
                                      f"it with stack.add_proxy({r!r}, 'HOST:PORT') before the run, or use a role "
                                      f"({', '.join(_ROLES)})")
                out.append(ep.proxy_name)
        return out

    def _server(self, which: str, what: str) -> Any:
        ctl = getattr(self.stack, which, None)
        if ctl is None:
            require = getattr(self.stack, "require_process_control", None)
            if require is not None:
                require(what)
            raise UnsupportedFault(f"{what} needs control of the {which} process, which this stack does not have: "
                                   "use the local stack, or a network fault instead")
        return ctl

    def _require_workers(self, what: str) -> Any:
        if self.workers is None:
            raise UnsupportedFault(f"{what} needs the run's workers: build the Nemesis with workers=WorkerGroup(...)")
        return self.workers

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
            if isinstance(f, BrokerOutage | BackendOutage):
                which = "broker" if isinstance(f, BrokerOutage) else "backend"
                if f.mode in ("kill_restart", "graceful_stop"):
                    self._server(which, what)
                else:
                    self._toxiproxy  # noqa: B018 - raises when absent
                    self.proxy_names(which)
            elif isinstance(f, MemoryAlarm):
                broker = self._server("broker", what)
                if not hasattr(broker, "ctl"):
                    raise UnsupportedFault(f"{what} needs a RabbitMQ broker the harness runs (it calls rabbitmqctl); "
                                           f"this stack's broker is {getattr(broker, 'name', type(broker).__name__)}")
            elif isinstance(f, RolePartition | Latency | Bandwidth | ResetPeer | Slicer | LimitData):
                self._toxiproxy  # noqa: B018
                self.proxy_names(f.role)
            elif isinstance(f, PartnerApiFault):
                self._toxiproxy  # noqa: B018
                self.proxy_names(f.proxy)
            elif isinstance(f, KillWorkerChild | KillWorker | WarmShutdown | ColdShutdown | PauseWorker):
                group = self._require_workers(what)
                targets = list(group) if f.worker in (None, "*") and isinstance(f, KillWorkerChild) \
                    else group.select(f.worker)
                if isinstance(f, KillWorkerChild):
                    pre = [w for w in targets if w.pool == "prefork"]
                    if not pre:
                        raise UnsupportedFault(
                            f"{what} kills a prefork pool child, but the targeted workers run "
                            f"{sorted({w.pool for w in targets})} pools (tasks run in the main process): use "
                            "kill_worker, or start the workers with pool='prefork'")
            elif isinstance(f, ScaleWorkers):
                self._require_workers(what)
            else:  # pragma: no cover - a kind added without nemesis support
                raise UnsupportedFault(f"the nemesis does not know how to apply {f.kind!r}")

    # ------------------------------------------------------------------ network actions
    def _disable(self, act: _Active, proxies: list[str]) -> dict[str, Any]:
        tp = self._toxiproxy
        for p in proxies:
            act.undo.append((f"enable proxy {p}", functools.partial(self._enable, p)))
            tp.update_proxy(p, enabled=False)
        return {"proxies": proxies, "action": "disabled (connections closed, new ones refused)"}

    def _enable(self, proxy: str) -> dict[str, Any]:
        self._toxiproxy.update_proxy(proxy, enabled=True)
        return {"enabled": [proxy]}

    def _toxics(self, act: _Active, proxies: list[str], type_: str, attributes: dict[str, int],
                direction: str) -> dict[str, Any]:
        tp = self._toxiproxy
        added: list[str] = []
        for p in proxies:
            for stream in _STREAMS[direction]:
                name = f"{act.sf.id}-{type_}-{stream}"
                act.undo.append((f"remove toxic {name} from {p}", functools.partial(self._remove_toxic, p, name)))
                tp.add_toxic(p, type_, stream=stream, name=name, attributes=attributes)
                added.append(f"{p}/{name}")
        return {"proxies": proxies, "toxics": added, "type": type_, "attributes": dict(attributes),
                "direction": direction}

    def _remove_toxic(self, proxy: str, name: str) -> dict[str, Any]:
        from harness.toxiproxy.client import ToxiproxyError

        try:
            self._toxiproxy.remove_toxic(proxy, name)
        except ToxiproxyError as exc:
            if exc.status != 404:  # already gone (proxy re-created, reset): healed either way
                raise
        return {"removed": [f"{proxy}/{name}"]}

    def _outage_network(self, act: _Active, proxies: list[str], mode: str) -> dict[str, Any]:
        if mode == "proxy_down":
            return self._disable(act, proxies)
        eff = self._toxics(act, proxies, "timeout", {"timeout": 0}, "both")
        eff["action"] = "blackhole (every byte dropped both ways, no close)"
        return eff

    # ------------------------------------------------------------------ server actions
    def _server_outage(self, act: _Active, which: str, mode: str) -> dict[str, Any]:
        ctl = self._server(which, act.sf.fault.kind)

        def start_again() -> dict[str, Any]:
            if ctl.is_running():
                return {"server": ctl.name, "action": "already running"}
            t = time.monotonic()
            ctl.start()
            return {"server": ctl.name, "action": "started", "start_s": round(time.monotonic() - t, 3)}

        act.undo.append((f"start the {which} again", start_again))
        t = time.monotonic()
        if mode == "kill_restart":
            ctl.kill()
            action = "SIGKILL"
        else:
            ctl.stop()
            action = "graceful stop"
        return {"server": ctl.name, "role": which, "action": action, "stop_s": round(time.monotonic() - t, 3)}

    def _memory_alarm(self, act: _Active, f: MemoryAlarm) -> dict[str, Any]:
        broker = self._server("broker", f.kind)

        def fraction(x: float) -> str:
            return f"{x:.10f}".rstrip("0").rstrip(".") or "0"

        def restore() -> dict[str, Any]:
            broker.ctl("set_vm_memory_high_watermark", fraction(f.restore))
            return {"vm_memory_high_watermark": f.restore}

        act.undo.append(("restore the memory high watermark", restore))
        out = broker.ctl("set_vm_memory_high_watermark", fraction(f.watermark))
        return {"server": getattr(broker, "name", "broker"), "vm_memory_high_watermark": f.watermark,
                "rabbitmqctl": out.strip()[-200:], "action": "memory alarm: publishers blocked"}

    # ------------------------------------------------------------------ worker actions
    def _kill_child(self, act: _Active, f: KillWorkerChild, event: dict[str, Any] | None) -> dict[str, Any]:
        group = self._require_workers(f.kind)
        candidates = list(group) if f.worker in (None, "*") else group.select(f.worker)
        target: tuple[Any, int, Any, Any] | None = None
        if event is not None:
            v = _value(event)
            pid = v.get("pid")
            if isinstance(pid, int):
                owner = group.owner_of(pid)
                if owner is not None and owner in candidates and owner.is_running() and pid != owner.pid:
                    target = (owner, pid, v.get("task_id"), v.get("name"))
                elif owner is not None and pid == owner.pid:
                    raise _NeverBit(f"the triggering op came from worker {owner.hostname}'s main process "
                                    f"(pool {owner.pool}): there is no pool child to kill")
        if target is not None and self._tail is not None and not self._still_running(target[1], target[2]):
            # The triggering task finished before the kill could land (fast tasks take a few ms,
            # the trigger ~10 ms): killing that idle child would cut nothing. Cut the next task
            # that is running instead, so the fault bites whatever the task durations.
            target = self._find_running_child(candidates, f)
            if target is None:
                raise _NeverBit("the triggering task had finished and no other task started within "
                                f"{f.wait_s:g} s: nothing to cut; the app's tasks are too short to cut mid-run "
                                f"({self._tail.describe_durations()})")
        if target is None and event is None:
            target = self._find_running_child(candidates, f)
        if target is None:
            observed = f" ({self._tail.describe_durations()})" if self._tail is not None else ""
            raise _NeverBit(f"no pool child was running {f.task_name or 'a task'} to kill{observed}")
        worker, pid, task_id, name = target
        if f.task_name is not None and name is not None and name != f.task_name:
            raise _NeverBit(f"the triggering op is for task {name!r}, not {f.task_name!r}")
        worker.kill_child(pid)
        if self._tail is not None:
            self._tail.forget_pid(pid)
        if name is not None:
            self._cut_names.add(str(name))
        if f.count == 1:
            return {"hostname": worker.hostname, "killed_pids": [pid], "task_id": task_id, "task_name": name,
                    "scope": "child", "signal": "SIGKILL"}
        cut = [(worker.hostname, pid, task_id, name)]
        deadline = time.monotonic() + f.wait_s
        while len(cut) < f.count and time.monotonic() < deadline and self.history_dir is not None:
            more = self._find_running_child(candidates, f, avoid=frozenset(self._cut_names),
                                            within_s=deadline - time.monotonic())
            if more is None:
                break  # no task with an uncut name is running: every name seen is covered, or too short
            w2, pid2, tid2, name2 = more
            w2.kill_child(pid2)
            assert self._tail is not None  # _find_running_child created it
            self._tail.forget_pid(pid2)
            self._cut_names.add(str(name2))
            cut.append((w2.hostname, pid2, tid2, name2))
        # Several task ids: the checkers match the cut executions by pid.
        return {"hostnames": sorted({c[0] for c in cut}), "killed_pids": [c[1] for c in cut],
                "task_ids": [c[2] for c in cut], "task_names": [c[3] for c in cut], "scope": "child",
                "signal": "SIGKILL"}

    def _still_running(self, pid: int, task_id: Any) -> bool:
        assert self._tail is not None
        self._tail.poll()
        return any(ex.get("pid") == pid and ex.get("task_id") == task_id for ex in self._tail.open_executions())

    def _find_running_child(self, candidates: list[Any], f: KillWorkerChild, *, avoid: frozenset[str] = frozenset(),
                            within_s: float | None = None) -> tuple[Any, int, Any, Any] | None:
        """A running child (worker, pid, task id, name) of `candidates`, waiting up to `within_s`
        (default ``f.wait_s``); none whose task name is in `avoid`."""
        deadline = time.monotonic() + (f.wait_s if within_s is None else max(0.0, within_s))
        prefork = [w for w in candidates if w.pool == "prefork" and w.is_running()]
        if not prefork:
            return None
        if self.history_dir is not None:
            tail = self._tail or HistoryTail(self.history_dir)
            self._tail = tail
            while True:
                tail.poll()
                for ex in tail.open_executions():
                    if f.task_name is not None and ex.get("name") != f.task_name:
                        continue
                    if avoid and ex.get("name") in avoid:
                        continue
                    pid = ex.get("pid")
                    for w in prefork:
                        if isinstance(pid, int) and pid in w.children():
                            return (w, pid, ex.get("task_id"), ex.get("name"))
                if time.monotonic() >= deadline:
                    return None
                time.sleep(0.01)
        # No history: ask the workers (slower, but needs nothing but the broker).
        while time.monotonic() < deadline:
            for w in prefork:
                try:
                    k = w.find_child_running(task_name=f.task_name, timeout=0.3)
                    return (w, k.pid, k.task_id, k.task_name)
                except TimeoutError:
                    continue
        return None

    def _worker_process_fault(self, act: _Active, f: KillWorker | WarmShutdown | ColdShutdown) -> dict[str, Any]:
        group = self._require_workers(f.kind)
        targets = [w for w in group.select(f.worker) if w.is_running()]
        if not targets:
            raise _NeverBit(f"no running worker matches {f.worker or 'the first worker'}")
        out: dict[str, Any] = {"hostnames": [w.hostname for w in targets], "scope": "worker"}
        if f.restart:
            for w in targets:
                act.undo.append((f"start worker {w.hostname} again", functools.partial(self._restart_worker, w)))
        if isinstance(f, KillWorker):
            killed: list[int] = []
            for w in targets:
                killed.extend(w.kill())
            out.update(killed_pids=killed, signal="SIGKILL")
        elif isinstance(f, WarmShutdown):
            out.update(signal="SIGTERM", exited_cleanly={w.hostname: w.warm_shutdown(f.timeout_s) for w in targets})
        else:
            out.update(signal="SIGQUIT", exited_cleanly={w.hostname: w.cold_shutdown() for w in targets})
        return out

    @staticmethod
    def _restart_worker(w: Any) -> dict[str, Any]:
        if w.is_running():
            return {"worker": w.hostname, "action": "already running"}
        t = time.monotonic()
        w.start()
        return {"restarted": [w.hostname], "ready_s": round(time.monotonic() - t, 3)}

    def _pause(self, act: _Active, f: PauseWorker) -> dict[str, Any]:
        group = self._require_workers(f.kind)
        targets = [w for w in group.select(f.worker) if w.is_running()]
        if not targets:
            raise _NeverBit(f"no running worker matches {f.worker or 'the first worker'}")
        for w in targets:
            pgid = w.pid

            def thaw(pgid: int = pgid, host: str = w.hostname) -> dict[str, Any]:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGCONT)
                return {"thawed": [host]}

            act.undo.append((f"SIGCONT worker {w.hostname}", thaw))
            os.killpg(pgid, signal.SIGSTOP)
        return {"hostnames": [w.hostname for w in targets], "signal": "SIGSTOP"}

    def _scale(self, act: _Active, f: ScaleWorkers) -> dict[str, Any]:
        group = self._require_workers(f.kind)
        before = len(group)

        def back() -> dict[str, Any]:
            return {"scaled_to": before, "changed": group.scale(before)}

        act.undo.append((f"scale back to {before} workers", back))
        changed = group.scale(f.count)
        return {"from": before, "to": f.count, "changed": changed}

    # ------------------------------------------------------------------ dispatch
    def _do_apply(self, act: _Active, event: dict[str, Any] | None) -> dict[str, Any]:
        f = act.sf.fault
        if isinstance(f, BrokerOutage | BackendOutage):
            which = "broker" if isinstance(f, BrokerOutage) else "backend"
            if f.mode in ("kill_restart", "graceful_stop"):
                return self._server_outage(act, which, f.mode)
            return self._outage_network(act, self.proxy_names(which), f.mode)
        if isinstance(f, RolePartition):
            return self._outage_network(act, self.proxy_names(f.role), f.mode)
        if isinstance(f, Latency):
            return self._toxics(act, self.proxy_names(f.role), "latency",
                                {"latency": f.ms, "jitter": f.jitter_ms}, f.direction)
        if isinstance(f, Bandwidth):
            return self._toxics(act, self.proxy_names(f.role), "bandwidth", {"rate": f.kb_per_s}, f.direction)
        if isinstance(f, ResetPeer):
            return self._toxics(act, self.proxy_names(f.role), "reset_peer", {"timeout": f.after_ms}, f.direction)
        if isinstance(f, Slicer):
            return self._toxics(act, self.proxy_names(f.role), "slicer",
                                {"average_size": f.average_size, "size_variation": f.size_variation,
                                 "delay": f.delay_us}, f.direction)
        if isinstance(f, LimitData):
            return self._toxics(act, self.proxy_names(f.role), "limit_data", {"bytes": f.bytes}, f.direction)
        if isinstance(f, PartnerApiFault):
            proxies = self.proxy_names(f.proxy)
            if f.mode == "down":
                return self._disable(act, proxies)
            if f.mode == "blackhole":
                return self._outage_network(act, proxies, "blackhole")
            if f.mode == "latency":
                return self._toxics(act, proxies, "latency", {"latency": f.ms, "jitter": 0}, "both")
            return self._toxics(act, proxies, "reset_peer", {"timeout": 0}, "to_server")
        if isinstance(f, MemoryAlarm):
            return self._memory_alarm(act, f)
        if isinstance(f, KillWorkerChild):
            return self._kill_child(act, f, event)
        if isinstance(f, KillWorker | WarmShutdown | ColdShutdown):
            return self._worker_process_fault(act, f)
        if isinstance(f, PauseWorker):
            return self._pause(act, f)
        if isinstance(f, ScaleWorkers):
            return self._scale(act, f)
        raise UnsupportedFault(f"the nemesis does not know how to apply {f.kind!r}")

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
                invoke["event"] = {"f": event.get("f"), "process": event.get("process"),
                                   "task_id": ev.get("task_id"), "name": ev.get("name")}
            self._record(F.FAULT_START, OpType.INVOKE, invoke)
            now = time.monotonic()
            act = _Active(sf, now, now + sf.duration_s)
            try:
                act.effect = self._do_apply(act, event)
            except _NeverBit as exc:
                self._undo(act)  # nothing should be registered, but never leave anything behind
                self._record(F.FAULT_START, OpType.FAIL, {**base, "never_bit": True}, error=str(exc))
                self._applied[sf.id] = AppliedFault(sf.id, sf.fault.kind, sf.fault.to_dict(), _planned(sf),
                                                    sf.duration_s, "never_bit", self._rel(now), None,
                                                    error=str(exc))
                return self._applied[sf.id]
            except BaseException as exc:
                errors = self._undo(act)
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

    def _undo(self, act: _Active) -> list[str]:
        """Run the undo steps newest first; every step runs even when an earlier one fails."""
        errors: list[str] = []
        heal: dict[str, Any] = {}
        while act.undo:
            what, fn = act.undo.pop()
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
            self._tail = self._tail or HistoryTail(self.history_dir)
        try:
            for _ in range(100_000_000):  # bounded by `limit` in practice
                now = time.monotonic()
                for fid, act in list(self._active.items()):
                    if fid in ours and act.heal_at <= now:
                        self.heal(fid)
                if waiting and self._tail is not None:
                    for op in self._tail.poll():
                        for w in list(waiting):
                            if w.trigger.matches(op):
                                w.seen += 1
                                if w.seen >= w.trigger.nth:
                                    waiting.remove(w)
                                    fired.append((time.monotonic() + w.trigger.delay_s, w.sf, op))
                while timed and t0 + (timed[0].at_s or 0.0) <= now:
                    self._apply_quietly(timed.pop(0), None)
                for item in [x for x in fired if x[0] <= now]:
                    fired.remove(item)
                    self._apply_quietly(item[1], item[2])
                for w in list(waiting):
                    if now - t0 > w.trigger.timeout_s:
                        waiting.remove(w)
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
            self.heal_all()
        return self.applied

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

    def close(self) -> None:
        """Stop, heal, and close the nemesis's own recorder."""
        try:
            self.stop()
        finally:
            if self._own_recorder and self.recorder is not None:
                self.recorder.close()

    def __enter__(self) -> Nemesis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
