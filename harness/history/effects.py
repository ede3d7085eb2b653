"""The effects API: how the system under test reports side effects into the history.

Responsibility: one-line calls for task code (``record_effect``, ``record_dlq``, ``record``)
that append to the recorder installed in this process, and a harness-side call to put the
effect store's final contents into the history (``record_stored_effects``).

Every call is a no-op (returns None) when no recorder is installed, so the system under test
runs unchanged outside the harness. Inside a running task the op's value also carries the
task's ``task_id``, ``name``, ``attempt``, ``run_id`` (and ``task_key`` when the task's workload
key differs from the effect's key).

Example (in a task body of the sample system)::

    applied = store.apply_once(order_id, "charge")
    record_effect(order_id, "charge", duplicate=not applied, amount=10)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from harness.history.active import active_context, active_recorder
from harness.history.ops import F, Op, OpType
from harness.history.recorder import HistoryRecorder

__all__ = ["record", "record_dlq", "record_effect", "record_stored_effects"]

_CONTEXT_KEYS = ("task_id", "name", "attempt", "run_id", "hostname")


def _with_context(value: dict[str, Any]) -> dict[str, Any]:
    ctx = active_context()
    for k in _CONTEXT_KEYS:
        if k in ctx and k not in value:
            value[k] = ctx[k]
    task_key = ctx.get("key")
    if task_key is not None and "key" in value and task_key != value["key"]:
        value.setdefault("task_key", task_key)
    value.setdefault("pid", os.getpid())
    return value


def record(f: str, type: OpType | str = OpType.OK, value: Any = None, *, error: str | None = None) -> Op | None:
    """Append any op to this process's history (None when nothing is recorded here).

    >>> record("phase", "ok", {"phase": "load_start"}) is None   # no recorder installed
    True
    """
    rec = active_recorder()
    if rec is None:
        return None
    return rec.record(f, type, value, error=error)


def record_effect(key: str, kind: str, *, duplicate: bool = False, **value: Any) -> Op | None:
    """Record that a side effect `kind` was applied for workload unit `key`.

    Call it after the effect is durable. Pass ``duplicate=True`` when the (idempotent) effect
    store already had it: the checker then counts a duplicate *execution* that the store
    absorbed, not a duplicate *effect*. Extra keyword arguments go into the op's value.

    >>> record_effect("order-1", "charge", amount=10) is None   # no recorder installed
    True
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"record_effect needs the workload unit key as a non-empty str, got {key!r}")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"record_effect needs the effect kind as a non-empty str (e.g. 'charge'), got {kind!r}")
    rec = active_recorder()
    if rec is None:
        return None
    v = _with_context({"key": key, "kind": kind, "duplicate": bool(duplicate), **value})
    return rec.record(F.EFFECT, OpType.OK, v)


def record_dlq(task_id: str, *, key: str | None = None, reason: str | None = None, **value: Any) -> Op | None:
    """Record that task `task_id` landed in the dead-letter queue (by the code that sends it there).

    >>> record_dlq("t-1", key="order-1", reason="max retries exceeded") is None
    True
    """
    rec = active_recorder()
    if rec is None:
        return None
    v: dict[str, Any] = {"task_id": task_id, **value}
    if key is not None:
        v["key"] = key
    if reason is not None:
        v["reason"] = reason
    ctx = active_context()
    if "run_id" in ctx:
        v.setdefault("run_id", ctx["run_id"])
    v.setdefault("pid", os.getpid())
    return rec.record(F.DLQ, OpType.OK, v)


def record_stored_effects(recorder: HistoryRecorder, effects: Iterable[Mapping[str, Any]]) -> int:
    """Put the effect store's final contents into the history, one ``stored_effect`` op per row.

    The harness calls this after drain with rows read from the sample system's effect store;
    each row needs a ``key`` (the workload unit) and should say ``kind`` and ``count`` (how many
    times the store holds that effect). Returns the number of ops recorded.

    >>> import tempfile
    >>> rec = HistoryRecorder(tempfile.mkdtemp(), "harness")
    >>> record_stored_effects(rec, [{"key": "order-1", "kind": "charge", "count": 1}])
    1
    """
    n = 0
    for row in effects:
        if "key" not in row:
            raise ValueError(f"stored effect row {dict(row)!r} has no 'key': every row must name its workload unit")
        recorder.record(F.STORED_EFFECT, OpType.OK, dict(row))
        n += 1
    return n
