"""Worker fault drivers: real ``celery worker`` processes killed, stopped, frozen or scaled.

===================  ==========================================================  ====================
kind                 apply                                                       heal
===================  ==========================================================  ====================
kill_worker_child    SIGKILL the pool child that produced the trigger's op, or      nothing (the worker
                     the child found running ``task_name``                        forks a new child)
kill_worker          SIGKILL the worker's process group                           start it again
warm_shutdown        SIGTERM the main process, wait for it to exit                start it again
cold_shutdown        SIGQUIT the main process                                     start it again
pause_worker         SIGSTOP the worker's process group                           SIGCONT
scale_workers        scale to ``count`` workers                                   scale back
===================  ==========================================================  ====================

kill_worker_child, kill_worker and cold_shutdown cut running tasks (``cuts_running_tasks``):
the checkers look for the executions they cut. A warm shutdown lets running tasks finish.

Example:
    >>> [(d.fault_type.kind, d.scope) for d in DRIVERS if d.cuts_running_tasks]
    [('kill_worker_child', 'child'), ('kill_worker', 'worker'), ('cold_shutdown', 'worker')]
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

from harness.faults.drivers.base import Application, Draws, FaultContext, FaultDriver, NeverBit, tenths
from harness.faults.kinds import (
    ColdShutdown,
    KillWorker,
    KillWorkerChild,
    PauseWorker,
    ScaleWorkers,
    WarmShutdown,
)
from harness.processes.freeze import freeze_group, thaw_group

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["DRIVERS"]


def _value(op: dict[str, Any]) -> dict[str, Any]:
    v = op.get("value")
    return v if isinstance(v, dict) else {}


def _running_targets(ctx: FaultContext, fault: Any) -> list[Any]:
    targets = [w for w in ctx.require_workers(fault.kind).select(fault.worker) if w.is_running()]
    if not targets:
        raise NeverBit(f"no running worker matches {fault.worker or 'the first worker'}")
    return targets


class KillWorkerChildDriver(FaultDriver[KillWorkerChild]):
    """kill_worker_child: SIGKILL the pool child that produced the trigger's op (exactly that
    pid), or the child found running ``task_name``; ``count`` > 1 goes on cutting children
    running task names not cut yet. Heal: nothing (the worker forks a new child)."""

    fault_type = KillWorkerChild
    cuts_running_tasks = True
    scope = "child"

    def preflight(self, ctx: FaultContext, fault: KillWorkerChild, what: str) -> None:
        group = ctx.require_workers(what)
        targets = list(group) if fault.worker in (None, "*") else group.select(fault.worker)
        if not [w for w in targets if w.pool == "prefork"]:
            _refuse_no_prefork(what, targets)

    def apply(self, ctx: FaultContext, fault: KillWorkerChild, app: Application) -> dict[str, Any]:
        group = ctx.require_workers(fault.kind)
        candidates = list(group) if fault.worker in (None, "*") else group.select(fault.worker)
        event = app.event
        target: tuple[Any, int, Any, Any] | None = None
        if event is not None:
            v = _value(event)
            pid = v.get("pid")
            if isinstance(pid, int):
                owner = group.owner_of(pid)
                if owner is not None and owner in candidates and owner.is_running() and pid != owner.pid:
                    target = (owner, pid, v.get("task_id"), v.get("name"))
                elif owner is not None and pid == owner.pid:
                    raise NeverBit(f"the triggering op came from worker {owner.hostname}'s main process "
                                   f"(pool {owner.pool}): there is no pool child to kill")
        # A success trigger (execute ok) means "after the result write, before the ack": its child
        # is the target though its task has finished (held there by the trigger's hold_s).
        after_success = event is not None and event.get("f") == "execute" and event.get("type") == "ok"
        if (target is not None and ctx.tail is not None and not after_success
                and not _still_running(ctx, target[1], target[2])):
            # The triggering task finished before the kill could land (fast tasks take a few ms,
            # the trigger ~10 ms): killing that idle child would cut nothing. Cut the next task
            # that is running instead, so the fault bites whatever the task durations.
            target = _find_running_child(ctx, candidates, fault)
            if target is None:
                raise NeverBit("the triggering task had finished and no other task started within "
                               f"{fault.wait_s:g} s: nothing to cut; the app's tasks are too short to cut mid-run "
                               f"({ctx.history_tail().describe_durations()})")
        if target is None and event is None:
            target = _find_running_child(ctx, candidates, fault)
        if target is None:
            observed = f" ({ctx.tail.describe_durations()})" if ctx.tail is not None else ""
            raise NeverBit(f"no pool child was running {fault.task_name or 'a task'} to kill{observed}")
        worker, pid, task_id, name = target
        if fault.task_name is not None and name is not None and name != fault.task_name:
            raise NeverBit(f"the triggering op is for task {name!r}, not {fault.task_name!r}")
        worker.kill_child(pid)
        if ctx.tail is not None:
            ctx.tail.forget_pid(pid)
        if name is not None:
            ctx.cut_names.add(str(name))
        if fault.count == 1:
            return {"hostname": worker.hostname, "killed_pids": [pid], "task_id": task_id, "task_name": name,
                    "scope": "child", "signal": "SIGKILL"}
        cut = [(worker.hostname, pid, task_id, name)]
        deadline = time.monotonic() + fault.wait_s
        while len(cut) < fault.count and time.monotonic() < deadline and ctx.history_dir is not None:
            more = _find_running_child(ctx, candidates, fault, avoid=frozenset(ctx.cut_names),
                                       within_s=deadline - time.monotonic())
            if more is None:
                break  # no task with an uncut name is running: every name seen is covered, or too short
            w2, pid2, tid2, name2 = more
            w2.kill_child(pid2)
            ctx.history_tail().forget_pid(pid2)
            ctx.cut_names.add(str(name2))
            cut.append((w2.hostname, pid2, tid2, name2))
        # Several task ids: the checkers match the cut executions by pid.
        return {"hostnames": sorted({c[0] for c in cut}), "killed_pids": [c[1] for c in cut],
                "task_ids": [c[2] for c in cut], "task_names": [c[3] for c in cut], "scope": "child",
                "signal": "SIGKILL"}

    def strategy(self, draws: Draws) -> SearchStrategy[KillWorkerChild]:
        from hypothesis import strategies as st

        return st.builds(KillWorkerChild, task_name=draws.task_names, worker=draws.workers,
                         wait_s=tenths(1.0, 5.0))


def _refuse_no_prefork(what: str, targets: list[Any]) -> None:
    from harness.errors import UnsupportedFault

    raise UnsupportedFault(
        f"{what} kills a prefork pool child, but the targeted workers run "
        f"{sorted({w.pool for w in targets})} pools (tasks run in the main process): use "
        "kill_worker, or start the workers with pool='prefork'")


def _still_running(ctx: FaultContext, pid: int, task_id: Any) -> bool:
    tail = ctx.history_tail()
    tail.poll()
    return any(ex.get("pid") == pid and ex.get("task_id") == task_id for ex in tail.open_executions())


def _find_running_child(ctx: FaultContext, candidates: list[Any], f: KillWorkerChild, *,
                        avoid: frozenset[str] = frozenset(),
                        within_s: float | None = None) -> tuple[Any, int, Any, Any] | None:
    """A running child (worker, pid, task id, name) of `candidates`, waiting up to `within_s`
    (default ``f.wait_s``); none whose task name is in `avoid`."""
    deadline = time.monotonic() + (f.wait_s if within_s is None else max(0.0, within_s))
    prefork = [w for w in candidates if w.pool == "prefork" and w.is_running()]
    if not prefork:
        return None
    if ctx.history_dir is not None:
        tail = ctx.history_tail()
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


def _restart_worker(w: Any) -> dict[str, Any]:
    if w.is_running():
        return {"worker": w.hostname, "action": "already running"}
    t = time.monotonic()
    w.start()
    return {"restarted": [w.hostname], "ready_s": round(time.monotonic() - t, 3)}


class _WorkerProcessDriver(FaultDriver[Any]):
    """A signal to whole workers, started again at heal when the fault says ``restart``."""

    space_fields = ("workers",)

    def preflight(self, ctx: FaultContext, fault: Any, what: str) -> None:
        ctx.require_workers(what).select(fault.worker)

    def apply(self, ctx: FaultContext, fault: Any, app: Application) -> dict[str, Any]:
        targets = _running_targets(ctx, fault)
        out: dict[str, Any] = {"hostnames": [w.hostname for w in targets], "scope": "worker"}
        if fault.restart:
            for w in targets:
                app.on_heal(f"start worker {w.hostname} again", functools.partial(_restart_worker, w))
        out.update(self.stop(fault, targets))
        return out

    def stop(self, fault: Any, targets: list[Any]) -> dict[str, Any]:
        raise NotImplementedError


class KillWorkerDriver(_WorkerProcessDriver):
    """kill_worker: SIGKILL the worker's process group; heal: start it again (``restart``)."""

    fault_type = KillWorker
    cuts_running_tasks = True
    scope = "worker"

    def stop(self, fault: KillWorker, targets: list[Any]) -> dict[str, Any]:
        killed: list[int] = []
        for w in targets:
            killed.extend(w.kill())
        return {"killed_pids": killed, "signal": "SIGKILL"}

    def strategy(self, draws: Draws) -> SearchStrategy[KillWorker]:
        from hypothesis import strategies as st

        return st.builds(KillWorker, worker=draws.workers, restart=draws.restart)


class WarmShutdownDriver(_WorkerProcessDriver):
    """warm_shutdown: SIGTERM the main process and wait for it to exit (running tasks finish,
    up to ``timeout_s``); heal: start it again (``restart``)."""

    fault_type = WarmShutdown

    def stop(self, fault: WarmShutdown, targets: list[Any]) -> dict[str, Any]:
        return {"signal": "SIGTERM", "exited_cleanly": {w.hostname: w.warm_shutdown(fault.timeout_s) for w in targets}}

    def strategy(self, draws: Draws) -> SearchStrategy[WarmShutdown]:
        from hypothesis import strategies as st

        return st.builds(WarmShutdown, worker=draws.workers, restart=draws.restart, timeout_s=tenths(1.0, 10.0))


class ColdShutdownDriver(_WorkerProcessDriver):
    """cold_shutdown: SIGQUIT the main process (it exits at once, cutting running tasks); heal:
    start it again (``restart``)."""

    fault_type = ColdShutdown
    cuts_running_tasks = True
    scope = "worker"

    def stop(self, fault: ColdShutdown, targets: list[Any]) -> dict[str, Any]:
        return {"signal": "SIGQUIT", "exited_cleanly": {w.hostname: w.cold_shutdown() for w in targets}}

    def strategy(self, draws: Draws) -> SearchStrategy[ColdShutdown]:
        from hypothesis import strategies as st

        return st.builds(ColdShutdown, worker=draws.workers, restart=draws.restart)


class PauseWorkerDriver(FaultDriver[PauseWorker]):
    """pause_worker: SIGSTOP the worker's process group (connections stay open, heartbeats
    stop); heal: SIGCONT."""

    fault_type = PauseWorker
    space_fields = ("workers",)

    def preflight(self, ctx: FaultContext, fault: PauseWorker, what: str) -> None:
        ctx.require_workers(what).select(fault.worker)

    def apply(self, ctx: FaultContext, fault: PauseWorker, app: Application) -> dict[str, Any]:
        targets = _running_targets(ctx, fault)
        frozen = []
        for w in targets:
            pgid = w.pid

            def thaw(pgid: int = pgid, host: str = w.hostname) -> dict[str, Any]:
                thaw_group(pgid)
                return {"thawed": [host]}

            app.on_heal(f"SIGCONT worker {w.hostname}", thaw)
            frozen.append(freeze_group(pgid))
        return {"hostnames": [w.hostname for w in targets], "signal": "SIGSTOP", "frozen": frozen}

    def strategy(self, draws: Draws) -> SearchStrategy[PauseWorker]:
        from hypothesis import strategies as st

        return st.builds(PauseWorker, worker=draws.workers)


class ScaleWorkersDriver(FaultDriver[ScaleWorkers]):
    """scale_workers: run ``count`` workers; heal: scale back to the count before."""

    fault_type = ScaleWorkers

    def preflight(self, ctx: FaultContext, fault: ScaleWorkers, what: str) -> None:
        ctx.require_workers(what)

    def apply(self, ctx: FaultContext, fault: ScaleWorkers, app: Application) -> dict[str, Any]:
        group = ctx.require_workers(fault.kind)
        before = len(group)

        def back() -> dict[str, Any]:
            return {"scaled_to": before, "changed": group.scale(before)}

        app.on_heal(f"scale back to {before} workers", back)
        changed = group.scale(fault.count)
        return {"from": before, "to": fault.count, "changed": changed}

    def strategy(self, draws: Draws) -> SearchStrategy[ScaleWorkers]:
        from hypothesis import strategies as st

        return st.builds(ScaleWorkers, count=st.integers(1, 3))


DRIVERS: tuple[FaultDriver[Any], ...] = (KillWorkerChildDriver(), KillWorkerDriver(), WarmShutdownDriver(),
                                         ColdShutdownDriver(), PauseWorkerDriver(), ScaleWorkersDriver())
