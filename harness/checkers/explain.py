"""Why an anomaly happened and what to change: the configuration explains, it never excuses.

Responsibility: turn an anomaly and the configuration under test (`Expectations`) into the
fields a counterexample carries: ``cause`` (what the configuration did), ``setting`` (the
Celery setting to change) and ``fix`` (the change). Checkers attach them to every violation
they can explain; an unexplained violation carries none (the report then says so).

Example:
    >>> from harness.checkers.expectations import Expectations
    >>> loss_on_kill(Expectations(acks_late=False), scope="child")["setting"]
    'task_acks_late'
    >>> loss_on_kill(Expectations(acks_late=True, reject_on_worker_lost=True), scope="child")
    {}
"""

from __future__ import annotations

from typing import Any

from harness.checkers.expectations import Expectations

__all__ = ["acked_on_time_limit", "duplicate_effect", "duplicate_execution", "lost_without_kill", "loss_on_kill"]

_LATE_ACKS_FIX = "set task_acks_late=True and task_reject_on_worker_lost=True (and make the task idempotent)"


def loss_on_kill(exp: Expectations, *, scope: str) -> dict[str, Any]:
    """Why a task cut by a kill of `scope` ("worker" or "child") could be lost under `exp`'s configuration."""
    if not exp.acks_late:
        return {"cause": "early acks (task_acks_late=False, Celery's default): the message was acknowledged "
                         "when the task started, so the kill lost it",
                "setting": "task_acks_late", "fix": _LATE_ACKS_FIX}
    if scope == "child" and not exp.reject_on_worker_lost:
        return {"cause": "late acks without reject-on-worker-lost: Celery acknowledges a task whose pool child "
                         "died as failed, so it is never redelivered",
                "setting": "task_reject_on_worker_lost", "fix": "set task_reject_on_worker_lost=True"}
    return {}


def lost_without_kill(exp: Expectations, *, reached_a_worker: bool = False) -> dict[str, Any]:
    """Why an acknowledged publish may never have run when no kill cut it (publish or broker side).

    A task a worker received was published: publisher confirms do not explain its loss.
    """
    cfg = exp.config
    if reached_a_worker:
        return {}
    if cfg.get("broker_kind") == "amqp" and not cfg.get("confirm_publish"):
        return {"cause": "publisher confirms are off: a publish can be 'sent' and still be dropped by the broker "
                         "or a broken connection",
                "setting": "broker_transport_options['confirm_publish']",
                "fix": "set broker_transport_options={'confirm_publish': True}"}
    if cfg.get("broker_kind") == "redis":
        return {"cause": "Redis keeps unacknowledged messages only in memory unless persistence is on, and a "
                         "connection reset can leave a reserved message stuck",
                "setting": "Redis appendonly / broker_transport_options",
                "fix": "run Redis with appendonly yes (appendfsync always) and use late acks"}
    return {}


def duplicate_execution(exp: Expectations, cause: str) -> dict[str, Any]:
    """The setting behind a duplicate execution attributed to `cause` (see harness.checkers.duplicates)."""
    if cause == "visibility_timeout":
        vt = exp.config.get("visibility_timeout")
        return {"setting": "broker_transport_options['visibility_timeout']",
                "fix": ("raise the visibility_timeout " + (f"({vt:g} s) " if isinstance(vt, int | float) else "")
                        + "above the longest ETA, countdown and task time limit")}
    if cause in ("worker_lost", "redelivery"):
        return {"setting": "task idempotency", "fix": "make the task's effects idempotent (a unique key / upsert)"}
    return {}


def duplicate_effect(exp: Expectations) -> dict[str, Any]:
    """Why a declared effect was stored twice, and the fix."""
    out = {"setting": "the effect write",
           "fix": "make the write idempotent: a unique constraint on the effect's idempotency key (insert or "
                  "ignore / get_or_create), or check-then-write inside one transaction"}
    if not exp.idempotent_effects:
        out["cause"] = "the system's effect writes are not idempotent: a redelivered task writes again"
    return out


def acked_on_time_limit() -> dict[str, Any]:
    """Why a late-acked task that hit its hard time limit never ran again: the worker acked it.

    >>> acked_on_time_limit()["setting"]
    'task_acks_on_timeout (task_acks_on_failure_or_timeout)'
    """
    return {"cause": "the task hit its hard time limit and the worker acknowledged its message "
                     "(task_acks_on_timeout, which falls back to task_acks_on_failure_or_timeout, True by "
                     "default): it is never redelivered, and dead-lettered only if the task publishes it itself",
            "setting": "task_acks_on_timeout (task_acks_on_failure_or_timeout)",
            "fix": "set task_acks_on_timeout=False (Celery >= 5.7; task_acks_on_failure_or_timeout=False before) "
                   "so a timed-out message is requeued, and bound its redeliveries (a quorum queue "
                   "x-delivery-limit with a dead-letter exchange)"}
