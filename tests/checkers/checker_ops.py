"""Literal-history helpers for the checker tests: write a history as a few readable rows.

    H().publish("t1", key="k1").run("t1", proc="w1.child-1").ops

builds publish invoke/ok, then execute invoke/ok, with times increasing by 1 ms per op unless
`at=` (milliseconds) is given.
"""

from __future__ import annotations

from typing import Any

from harness.faults.drivers import driver_for
from harness.history.ops import F, Op, OpType

MS = 1_000_000
S = 1_000_000_000


def _declared(kind: str) -> dict[str, Any]:
    """What the nemesis adds to a fault op of `kind`: its driver's declaration (none for unknown kinds)."""
    try:
        driver = driver_for(kind)
    except Exception:  # noqa: BLE001 - a made-up kind: the test says what it means
        return {}
    return {"cuts_running_tasks": True, "scope": driver.scope} if driver.cuts_running_tasks else {}


class H:
    """A history under construction; every method appends ops and returns self."""

    def __init__(self, run_id: str | None = None) -> None:
        self.ops: list[Op] = []
        self.t = 0
        self.run_id = run_id

    def _v(self, tid: str | None, **v: Any) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if tid is not None:
            d["task_id"] = tid
        if self.run_id is not None:
            d["run_id"] = self.run_id
        d.update({k: val for k, val in v.items() if val is not None})
        return d

    def op(self, process: str, typ: OpType | str, f: str, value: Any = None, at: float | None = None,
           error: str | None = None) -> H:
        if at is not None:
            self.t = int(at * MS)
        else:
            self.t += MS
        self.ops.append(Op(len(self.ops), self.t, process, OpType(typ), f, value, error))
        return self

    def publish(self, tid: str, key: str | None = None, name: str = "tasks.t", result: str = "ok",
                process: str = "producer-1", at: float | None = None, **v: Any) -> H:
        val = self._v(tid, key=key, name=name, **v)
        self.op(process, "invoke", F.PUBLISH, val, at=at)
        if result != "none":
            self.op(process, result, F.PUBLISH, val)
        return self

    def receive(self, tid: str, host: str = "w1", redelivered: bool = False, at: float | None = None,
                process: str | None = None, **v: Any) -> H:
        return self.op(process or f"worker-{host}", "ok", F.RECEIVE,
                       self._v(tid, hostname=host, redelivered=redelivered, **v), at=at)

    def start(self, tid: str, proc: str = "w1.child-1", host: str = "w1", attempt: int = 0,
              at: float | None = None, name: str = "tasks.t", **v: Any) -> H:
        return self.op(proc, "invoke", F.EXECUTE, self._v(tid, hostname=host, attempt=attempt, name=name, **v),
                       at=at)

    def end(self, tid: str, proc: str = "w1.child-1", result: str = "ok", state: str | None = None,
            at: float | None = None, **v: Any) -> H:
        return self.op(proc, result, F.EXECUTE, self._v(tid, state=state, **v), at=at)

    def run(self, tid: str, proc: str = "w1.child-1", host: str = "w1", attempt: int = 0,
            at: float | None = None, name: str = "tasks.t", **v: Any) -> H:
        return self.start(tid, proc, host, attempt, at=at, name=name, **v).end(tid, proc)

    def effect(self, tid: str, key: str, kind: str = "write", duplicate: bool = False,
               proc: str = "w1.child-1", at: float | None = None) -> H:
        return self.op(proc, "ok", F.EFFECT, self._v(tid, key=key, kind=kind, duplicate=duplicate), at=at)

    def retry(self, tid: str, countdown: float | None, attempt: int = 0, proc: str = "w1.child-1",
              at: float | None = None) -> H:
        return self.op(proc, "ok", F.RETRY, self._v(tid, countdown=countdown, attempt=attempt), at=at)

    def dlq(self, tid: str, key: str | None = None, proc: str = "w1.child-1", at: float | None = None) -> H:
        return self.op(proc, "ok", F.DLQ, self._v(tid, key=key, reason="test"), at=at)

    def chord_error(self, callback: str, key: str | None = None, by: str = "celery.chord_unlock",
                    proc: str = "w1.child-1", at: float | None = None) -> H:
        """Celery recorded chord `callback`'s error instead of running it (chord_error_from_stack)."""
        return self.op(proc, "ok", F.CHORD_ERROR, self._v(callback, key=key, chord_id=callback, role="callback",
                                                          by=by, reason="ChordError: a header failed"), at=at)

    def worker_lost(self, tid: str | None, process: str = "worker-w1", at: float | None = None) -> H:
        return self.op(process, "ok", F.WORKER_LOST, self._v(tid, exitcode=-9), at=at)

    def fault(self, kind: str, fault_id: str, at: float | None = None, stop_at: float | None = None,
              **v: Any) -> H:
        v = {**_declared(kind), **v}
        self.op("nemesis", "invoke", F.FAULT_START, {"kind": kind, "fault_id": fault_id, **v}, at=at)
        self.op("nemesis", "ok", F.FAULT_START, {"kind": kind, "fault_id": fault_id, **v})
        if stop_at is not None:
            self.heal(kind, fault_id, at=stop_at)
        return self

    def heal(self, kind: str, fault_id: str, at: float | None = None) -> H:
        self.op("nemesis", "invoke", F.FAULT_STOP, {"kind": kind, "fault_id": fault_id}, at=at)
        return self.op("nemesis", "ok", F.FAULT_STOP, {"kind": kind, "fault_id": fault_id})

    def done(self, tid: str, key: str | None = None, proc: str = "w1.child-1", host: str = "w1",
             name: str = "tasks.t", **v: Any) -> H:
        """A whole, correct unit: publish, receive, execute, effect, ok."""
        self.publish(tid, key, name=name).receive(tid, host)
        self.start(tid, proc, host, name=name, **v)
        if key is not None:
            self.effect(tid, key, proc=proc)
        return self.end(tid, proc)


def kinds(verdict: Any) -> list[tuple[str, Any]]:
    """(kind, task_id or key or chord_id) of each violation, sorted."""
    out = []
    for ce in verdict.violations():
        ident = ce.get("task_id") or ce.get("chord_id") or ce.get("key") or ce.get("fault_id")
        out.append((ce["kind"], ident))
    return sorted(out, key=repr)
