"""The base class of every sample-system task: effects, retries, and the way to the dead-letter queue.

Responsibility: what all services share, so each task body only states its business step.

* ``self.apply_effects(...)``: write effects idempotently and report each to the harness
  history (``record_effect``, a no-op outside the harness).
* ``self.retry_or_fail(exc)``: retry transient errors with exponential backoff + jitter up to
  ``max_retries``; re-raise fatal errors and exhausted retries (the task then fails).
* ``on_failure``: a task that fails for good writes its failure record (exception, traceback,
  attempts) and, depending on ``Settings.dlq_mode``, either lets the worker reject the message
  into RabbitMQ's dead-letter exchange (``reject``: ``task_acks_on_failure=False``) or
  publishes the envelope itself (``publish``/``redis``, and hard time limits, which Celery acks;
  a hard time limit the worker requeues, ``Settings.acks_on_timeout=False``, is not dead-lettered
  by the task).

Per-process resources (effect store, partner client with its circuit breaker) live in a
`Runtime` attached to the app and are rebuilt after a fork.

Example (a task of a service module)::

    @app.task(base=ServiceTask, bind=True, name="orders.confirm")
    def confirm(self, order, *, key):
        self.apply_effects(self.effect(key, "order.confirmed", order_id=order["order_id"]))
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
import traceback as tb_mod
from typing import Any

from celery import Celery, Task
from celery.exceptions import Ignore, TimeLimitExceeded

from harness.history.effects import record_dlq, record_effect
from harness.workload import KEY_HEADER, RUN_ID_HEADER
from sample_system.circuit_breaker import CircuitBreaker
from sample_system.dlq.envelope import make_envelope
from sample_system.dlq.queues import DeadLetters, dead_letters_for
from sample_system.effects import Effect, EffectStore, FailureRecord
from sample_system.partner_client import CircuitOpenError, PartnerClient
from sample_system.retry_policy import RetryPolicy, is_retryable
from sample_system.settings import Settings
from sample_system.topology import DEFAULT, TASK_ROUTES

log = logging.getLogger(__name__)

#: Message header: how many of a task's retries were waits for an open circuit breaker.
DEFERRALS_HEADER = "breaker_deferrals"


class Runtime:
    """Per-process resources of one app: effect store, partner client + breaker, retry policy, DLQ."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.effects = EffectStore(settings.db_url, idempotent=settings.idempotent_effects)
        self.retry_policy = RetryPolicy(settings.max_retries, settings.retry_backoff,
                                        settings.retry_backoff_max, settings.retry_jitter)
        self._lock = threading.Lock()
        self._pid = -1
        self._partner: PartnerClient | None = None
        self._rng = random.Random()

    def _refresh(self) -> None:
        # A forked pool child must not share the parent's breaker state or RNG sequence.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            s = self.settings
            breaker = CircuitBreaker(s.breaker_failure_threshold, s.breaker_reset_timeout)
            self._partner = PartnerClient(s.partner_url, timeout=s.partner_timeout, breaker=breaker)
            self._rng = random.Random()

    @property
    def partner(self) -> PartnerClient:
        with self._lock:
            self._refresh()
            assert self._partner is not None
            return self._partner

    @property
    def rng(self) -> random.Random:
        with self._lock:
            self._refresh()
            return self._rng

    @property
    def dead_letters(self) -> DeadLetters:
        return dead_letters_for(self.app, effects=self.effects)


def runtime_of(app: Celery) -> Runtime:
    """The Runtime `make_app` attached to `app`."""
    rt = getattr(app, "sample_runtime", None)
    if rt is None:
        raise RuntimeError(f"{app!r} was not built by sample_system.make_app: it has no sample_runtime")
    return rt


class ServiceTask(Task):
    """Base task (see the module docstring)."""

    abstract = True

    # ----------------------------------------------------------------- context
    @property
    def runtime(self) -> Runtime:
        return runtime_of(self.app)

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    def run_id(self) -> str | None:
        return getattr(self.request, RUN_ID_HEADER, None)

    def unit_headers(self, key: str) -> dict[str, str]:
        """Headers for a message this task publishes on behalf of unit `key`."""
        h = {KEY_HEADER: key}
        rid = self.run_id()
        if rid:
            h[RUN_ID_HEADER] = rid
        return h

    def partner_headers(self) -> dict[str, str]:
        """Tracing headers the partner API logs: which task, which attempt, which process."""
        return {"X-Task-Id": str(self.request.id or ""), "X-Attempt": str((self.request.retries or 0) + 1),
                "X-Worker-Pid": str(os.getpid())}

    # ----------------------------------------------------------------- effects
    def effect(self, key: str, kind: str, idempotency_key: str | None = None, **value: Any) -> Effect:
        """An effect of this task for unit `key`; the idempotency key defaults to ``kind:key``.

        The value also records the queue that delivered the task, so routing is checkable from
        the effect store alone.
        """
        queue = (self.request.delivery_info or {}).get("routing_key")
        return Effect(key=key, kind=kind, idempotency_key=idempotency_key or f"{kind}:{key}",
                      value={**value, "queue": queue}, task_id=self.request.id, run_id=self.run_id())

    def apply_effects(self, *effects: Effect) -> bool:
        """Write `effects` atomically; True if new, False if a duplicate the store absorbed."""
        new = self.runtime.effects.apply(effects)
        for e in effects:
            record_effect(e.key, e.kind, duplicate=not new, idempotency_key=e.idempotency_key)
        return new

    # ----------------------------------------------------------------- retries
    def retry_or_fail(self, exc: BaseException) -> None:
        """Retry `exc` with backoff if it is transient and retries remain; otherwise re-raise it.

        A call the open circuit breaker refused (`CircuitOpenError`) was never made: the task
        waits for the breaker's trial window without spending its retry budget, at most
        ``Settings.breaker_max_deferrals`` times (Celery's own retry counter still counts them).
        """
        req = self.request
        retries = req.retries or 0
        deferrals = int(getattr(req, DEFERRALS_HEADER, 0) or 0)
        policy = self.runtime.retry_policy
        if not is_retryable(exc):
            raise exc
        headers = {h: v for h in (KEY_HEADER, RUN_ID_HEADER) if (v := getattr(req, h, None))}
        if isinstance(exc, CircuitOpenError) and deferrals < self.settings.breaker_max_deferrals:
            # Jitter after the breaker's window so the deferred tasks do not all race for its one trial.
            wait = (exc.retry_after or 0.0) + self.runtime.rng.uniform(0.0, policy.backoff)
            raise self._retry(exc=exc, countdown=round(wait, 3), max_retries=policy.max_retries + deferrals + 1,
                              headers={**headers, DEFERRALS_HEADER: deferrals + 1})
        spent = retries - deferrals
        if policy.exhausted(spent):
            raise exc
        countdown = policy.countdown(spent, self.runtime.rng, retry_after=getattr(exc, "retry_after", None))
        raise self._retry(exc=exc, countdown=countdown, max_retries=policy.max_retries + deferrals,
                          headers={**headers, DEFERRALS_HEADER: deferrals})

    def _retry(self, **options: Any) -> BaseException:
        """Publish the next attempt (`Task.retry`); once it is published, record this attempt as
        concluded for the retry-fork guard. Celery calls `on_retry` also when it cancels a running
        task on a lost connection, with nothing published: recording there would drop the
        redelivery that must run, so the record is written here, after the publish."""
        countdown = options.get("countdown")
        if countdown and self.settings.queue_type == "quorum" and self.settings.round_up_countdowns:
            # Native delayed delivery (quorum queues) takes whole seconds: Celery 5.7 truncates
            # 1.9 s to 1 s and refuses 0.4 s outright (ValueError from kombu's routing-key
            # calculation), which fails the retry and dead-letters a task that had retries left.
            options["countdown"] = max(1, math.ceil(countdown))
        ret = self.retry(throw=False, **options)  # raises Reject if the publish failed
        if self.settings.retry_fork_guard and self.request.id:
            try:
                self.runtime.effects.conclude_attempt(self.request.id, self._attempt_id())
            except Exception:  # noqa: BLE001 - the guard is best effort; the retry is published
                log.exception("could not record the retried attempt of %s[%s]", self.name, self.request.id)
        return ret

    # ----------------------------------------------------------------- stale attempts
    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        # A delivery of an attempt that already published its retry: its ack was lost. Running
        # it would retry again and fork the task (see Settings.retry_fork_guard).
        if not self.settings.retry_fork_guard:
            return
        attempt = self._attempt_id()
        try:
            stale = self.runtime.effects.attempt_concluded(task_id, attempt)
        except Exception:  # noqa: BLE001 - the store down: run it (a possible fork beats a loss)
            log.exception("could not read the attempts of %s[%s]", self.name, task_id)
            return
        if stale:
            log.warning("%s[%s] attempt %s already retried (its ack was lost): ignoring this copy",
                        self.name, task_id, attempt)
            raise Ignore()

    def _attempt_id(self) -> str:
        # A DLQ replay starts the retry counter again: it is a new generation of attempts.
        replays = int(getattr(self.request, "dlq_replays", 0) or 0)
        return f"{replays}.{int(self.request.retries or 0)}"

    # ----------------------------------------------------------------- dead letters
    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        mode = self.settings.dlq_mode
        if mode == "off":
            return
        # Hard time limits run this in the worker's main process with no task request pushed.
        req = self.request
        retries = int(getattr(req, "retries", 0) or 0)
        key = (kwargs or {}).get("key") or getattr(req, KEY_HEADER, None)
        run_id = getattr(req, RUN_ID_HEADER, None)
        exc_text = f"{type(exc).__name__}: {exc}"
        traceback_text = str(getattr(einfo, "traceback", "") or "".join(tb_mod.format_exception(exc)))
        now = time.time()
        try:
            self.runtime.effects.record_failure(FailureRecord(
                task_id=task_id, name=self.name, key=key, run_id=run_id, exception=exc_text,
                traceback=traceback_text, attempts=retries + 1, failed_at=now))
        except Exception:  # noqa: BLE001 - the dead letter must still happen if the DB is down
            log.exception("could not store the failure record of %s[%s]", self.name, task_id)
        reason = "time_limit" if isinstance(exc, TimeLimitExceeded) else type(exc).__name__
        if isinstance(exc, TimeLimitExceeded) and self.acks_late and not self.acks_on_timeout:
            # The worker requeues a timed-out message (task_acks_on_timeout=False): it runs again,
            # and reaches the DLQ only through the queue's delivery limit (RabbitMQ dead-letters
            # it). An envelope here would dead-letter a task that is still to run.
            return
        if mode == "reject" and not isinstance(exc, TimeLimitExceeded):
            # The worker rejects the message after this returns (task_acks_on_failure=False) and
            # RabbitMQ moves it to the DLX; nothing to publish.
            record_dlq(task_id, key=key, reason=reason, name=self.name, attempts=retries + 1, mode=mode,
                       exception=exc_text[:500])
            return
        signature = None
        if getattr(req, "id", None) == task_id:
            sig = self.signature_from_request(req, args, kwargs)
            signature = dict(sig)
        envelope = make_envelope(
            task_id=task_id, name=self.name, args=args or (), kwargs=kwargs or {}, exception=exc_text,
            traceback=traceback_text, attempts=retries + 1, key=key, run_id=run_id,
            queue=TASK_ROUTES.get(self.name, DEFAULT), reason=reason, failed_at=now, signature=signature)
        try:
            new = self.runtime.dead_letters.land(envelope)
        except Exception:  # noqa: BLE001
            log.exception("could not publish the dead letter of %s[%s]", self.name, task_id)
            return
        record_dlq(task_id, key=key, reason=reason, name=self.name, attempts=retries + 1, mode=mode,
                   duplicate=not new, exception=exc_text[:500])
