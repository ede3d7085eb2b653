"""History operations: the Jepsen-style record every process appends to.

Responsibility: the `Op` value and the vocabulary of `f` names shared by the recorder
(worker/producer signals), the nemesis (faults) and the checkers. Leaf module: imports
nothing from the harness.

One op per JSON line, keys in Jepsen's order:
``index, time (ns, CLOCK_MONOTONIC, comparable across processes of one machine),
process, type (invoke|ok|fail|info), f, value``, optional ``error``.

Vocabulary (``f``) and who records it:

==============  ===========  ===========================================================
f               process      types and meaning
==============  ===========  ===========================================================
publish         producer     invoke before send; ok when the broker confirmed; fail when
                             known not sent; info when unknown (timeout, connection lost)
receive         worker       ok: the worker got the message (value.redelivered)
execute         worker child invoke at start (task_prerun); ok on success; fail on an
                             exception (value.state = FAILURE or RETRY); info when the
                             outcome is unknown (worker lost, time limit kill)
retry           worker child ok: the task asked for a retry (value.countdown, value.attempt)
reject          worker       ok: the message was rejected (value.requeue)
ack             worker       invoke: Celery asked for the ack; ok: the worker acked the message
                             on its channel; fail: the ack did not go out (channel or connection closed: the broker will
                             deliver the message again). value.acks_late, value.acks_on_failure,
                             value.acks_on_timeout (the task's settings), value.after
                             ("accepted", "success", "failure", "time_limit", "retry",
                             "ignore", "worker_lost"): what the ack concluded
revoke          worker       ok: the task was revoked
chord_error     worker child ok: Celery recorded a chord's error instead of running its callback
                             (``chord_error_from_stack``: a header failed, the join raised, the
                             callback could not be published or ``chord_unlock`` gave up);
                             value.task_id is the callback's, value.by the task that did it
worker_lost     worker       ok: the pool child running the task died (value.exitcode)
effect          worker child ok: a side effect was applied (value.key, value.kind,
                             value.duplicate: the idempotent store already had it)
dlq             worker/any   ok: the task landed in the dead-letter queue (value.task_id,
                             value.key, value.reason)
result          client       invoke: a client asks for a task's result and waits at most
                             value.timeout_s (``AsyncResult.get``); ok: it got it
                             (value.state); fail: it did not (the error: a timeout, a
                             connection error)
stored_effect   harness      ok: one record read back from the effect store after drain
                             (value.key, value.kind, value.idempotency_key, value.task_id,
                             value.count): the final state, not an event
dlq_entry       harness      ok: one task read back from the dead-letter queue after drain
                             (value.task_id, value.key, value.name, value.args,
                             value.kwargs, value.exception, value.copies): the final state
fault_start     nemesis      invoke/ok: a fault is applied; ok.value says what it did
fault_stop      nemesis      invoke/ok: that fault is healed
phase           harness      ok: run phase markers (load_start, heal, quiesce, drain, check);
                             ``final_state`` says what the drain read (effects_read,
                             dlq_read, queues left)
==============  ===========  ===========================================================

Common value keys: ``task_id``, ``name`` (task name), ``key`` (the workload's unique
unit key), ``run_id`` (the run that published the message: leftovers of an earlier run carry
another one), ``pid``, ``hostname``, ``attempt`` (retries so far), ``redelivered``
(``delivery_info.redelivered``), ``parent_id``/``root_id``/``group_id``/``chord_id``.

Who writes what is documented in harness/history/celery_signals.py (Celery) and
harness/history/effects.py (effects API).

Example:
    >>> op = Op(index=0, time=10, process="producer-1", type=OpType.INVOKE, f=F.PUBLISH,
    ...         value={"task_id": "t1", "key": "order-1"})
    >>> Op.from_json(op.to_json()) == op
    True
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any


class OpType(str, enum.Enum):  # noqa: UP042 - str() kept as the lead defined it
    INVOKE = "invoke"
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


class F:
    """Names of operations (the ``f`` field)."""

    PUBLISH = "publish"
    RECEIVE = "receive"
    EXECUTE = "execute"
    RETRY = "retry"
    REJECT = "reject"
    ACK = "ack"
    REVOKE = "revoke"
    WORKER_LOST = "worker_lost"
    CHORD_ERROR = "chord_error"
    EFFECT = "effect"
    DLQ = "dlq"
    RESULT = "result"
    STORED_EFFECT = "stored_effect"
    DLQ_ENTRY = "dlq_entry"
    FAULT_START = "fault_start"
    FAULT_STOP = "fault_stop"
    PHASE = "phase"


@dataclass(frozen=True, slots=True)
class Op:
    """One history operation. `value` is JSON-serialisable; `error` a short string."""

    index: int
    time: int
    process: str
    type: OpType
    f: str
    value: Any = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "index": self.index,
            "time": self.time,
            "process": self.process,
            "type": self.type.value,
            "f": self.f,
            "value": self.value,
        }
        if self.error is not None:
            d["error"] = self.error
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Op:
        return cls(
            index=int(d.get("index", -1)),
            time=int(d["time"]),
            process=str(d["process"]),
            type=OpType(d["type"]),
            f=str(d["f"]),
            value=d.get("value"),
            error=d.get("error"),
        )

    @classmethod
    def from_json(cls, line: str) -> Op:
        return cls.from_dict(json.loads(line))
