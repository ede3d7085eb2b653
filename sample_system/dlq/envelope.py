"""What a dead letter says: turning DLQ messages into `DLQEntry` values (pure, no I/O).

Responsibility: read the two shapes a dead letter can have and build the envelope a task
publishes itself.

* A **rejected Celery message** (RabbitMQ dead-lettered it on ``basic.reject``): task id, name
  and retries are in the protocol-2 headers, args/kwargs in the body ``[args, kwargs, embed]``,
  the original queue and reason in RabbitMQ's ``x-death`` header. Exception and traceback are
  not in the message (the broker moves it unchanged); they come from the failure record the
  task wrote before the reject (see ``sample_system.effects.FailureRecord``).
* A **published envelope** (early acks, hard time limits, Redis broker): a JSON object with
  every field, marked ``"envelope": "sample_system.dlq/1"``.

Example:
    >>> headers = {"id": "t1", "task": "orders.validate", "retries": 0, "chaos_key": "r:poison:0",
    ...            "x-death": [{"queue": "orders", "reason": "rejected", "count": 1}]}
    >>> e = entry_from_task_message(headers, [[{"items": []}], {"key": "r:poison:0"}, {}])
    >>> (e.task_id, e.name, e.queue, e.reason, e.attempts, e.key)
    ('t1', 'orders.validate', 'orders', 'rejected', 1, 'r:poison:0')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace as _replace
from typing import Any

from harness.workload import DLQEntry

ENVELOPE_VERSION = "sample_system.dlq/1"

#: Headers RabbitMQ adds when dead-lettering; stripped when a message is replayed.
X_DEATH_HEADERS = frozenset({
    "x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
    "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason",
})


def _x_death(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    deaths = headers.get("x-death") or []
    return deaths[0] if deaths and isinstance(deaths[0], Mapping) else {}


def entry_from_task_message(headers: Mapping[str, Any], body: Any) -> DLQEntry:
    """A DLQEntry from a dead-lettered Celery protocol-2 message (without exception details)."""
    args: Any = ()
    kwargs: Any = {}
    if isinstance(body, list | tuple) and len(body) >= 2:
        args, kwargs = body[0], body[1]
    death = _x_death(headers)
    kwargs = dict(kwargs) if isinstance(kwargs, Mapping) else {}
    return DLQEntry(
        task_id=str(headers.get("id", "")),
        name=str(headers.get("task", "")),
        args=tuple(args) if isinstance(args, list | tuple) else (args,),
        kwargs=kwargs,
        attempts=int(headers.get("retries") or 0) + 1,
        key=headers.get("chaos_key") or kwargs.get("key"),
        run_id=headers.get("chaos_run_id"),
        queue=headers.get("x-first-death-queue") or death.get("queue"),
        reason=headers.get("x-first-death-reason") or death.get("reason") or "rejected",
    )


def is_envelope(body: Any) -> bool:
    return isinstance(body, Mapping) and body.get("envelope") == ENVELOPE_VERSION


def entry_from_envelope(body: Mapping[str, Any]) -> DLQEntry:
    """A DLQEntry from an envelope the task published itself."""
    return DLQEntry(
        task_id=str(body["task_id"]),
        name=str(body["name"]),
        args=tuple(body.get("args") or ()),
        kwargs=dict(body.get("kwargs") or {}),
        exception=str(body.get("exception") or ""),
        traceback=str(body.get("traceback") or ""),
        attempts=int(body.get("attempts") or 1),
        key=body.get("key"),
        run_id=body.get("run_id"),
        queue=body.get("queue"),
        reason=body.get("reason"),
    )


def make_envelope(*, task_id: str, name: str, args: Iterable[Any], kwargs: Mapping[str, Any],
                  exception: str, traceback: str, attempts: int, key: str | None, run_id: str | None,
                  queue: str | None, reason: str, failed_at: float,
                  signature: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON envelope a task publishes when the broker cannot dead-letter the message itself.

    `signature` (the task's own signature, chain/chord links included) lets a replay resume
    the workflow exactly where it stopped.

    >>> make_envelope(task_id="t", name="n", args=[], kwargs={}, exception="E", traceback="",
    ...               attempts=1, key=None, run_id=None, queue="orders", reason="failed", failed_at=0.0)["envelope"]
    'sample_system.dlq/1'
    """
    return {
        "envelope": ENVELOPE_VERSION, "task_id": task_id, "name": name, "args": list(args),
        "kwargs": dict(kwargs), "exception": exception, "traceback": traceback, "attempts": attempts,
        "key": key, "run_id": run_id, "queue": queue, "reason": reason, "failed_at": failed_at,
        "signature": dict(signature) if signature is not None else None,
    }


def merge_copies(entries: Iterable[DLQEntry]) -> list[DLQEntry]:
    """One entry per task id, `copies` counting how many messages carried it (order kept).

    >>> a = DLQEntry(task_id="t", name="n")
    >>> [e.copies for e in merge_copies([a, a, DLQEntry(task_id="u", name="n")])]
    [2, 1]
    """
    out: dict[str, DLQEntry] = {}
    for e in entries:
        prev = out.get(e.task_id)
        if prev is None:
            out[e.task_id] = e
        else:
            out[e.task_id] = _replace(prev, copies=prev.copies + e.copies, attempts=max(prev.attempts, e.attempts))
    return list(out.values())


def with_failure(entry: DLQEntry, *, exception: str, traceback: str, attempts: int | None = None) -> DLQEntry:
    """`entry` completed with the failure details stored outside the message."""
    return _replace(entry, exception=exception, traceback=traceback,
                    attempts=max(entry.attempts, attempts or 0))
