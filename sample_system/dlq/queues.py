"""The dead-letter queue itself: land, list and replay dead letters on RabbitMQ or Redis.

Responsibility: one small interface (`DeadLetters`) over the two places a dead letter can be.

* `RabbitDeadLetters`: the ``dead_letters`` queue behind the ``sample.dlx`` exchange. With late
  acks the worker *rejects* a permanently failed message and RabbitMQ moves it here
  atomically (exactly once even if the worker dies right after: either the reject reached the
  broker and the message moved, or it did not and the message is redelivered, fails again and
  is rejected then). With early acks there is nothing left to reject, so the task publishes an
  envelope here itself. Listing is non-destructive (``basic.get`` without ack, then the channel
  closes and the broker puts every message back).
* `RedisDeadLetters`: a Redis broker has no dead-lettering (``basic_reject(requeue=False)`` just
  drops the message), so the envelope goes into a hash keyed by task id with ``HSETNX``: a
  redelivered task that fails again finds its entry already there, which keeps it exactly once.

Replay republishes the original message (RabbitMQ) or the task's own signature (envelopes)
with the same task id and the retry counter reset, so a chain resumes where it stopped, then
removes the dead letter. A crash between the two can replay a task twice; effects are
idempotent, so that costs a duplicate execution, never a duplicate effect.

Example (needs a running broker)::

    from sample_system import Settings, make_app
    dlq = dead_letters_for(make_app(Settings()))
    print([e.task_id for e in dlq.entries()])
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any, Protocol

import redis as redis_lib
from amqp.exceptions import PreconditionFailed
from celery import Celery
from kombu import Connection, Producer

from harness.workload import DLQEntry
from sample_system.dlq.envelope import (
    X_DEATH_HEADERS,
    entry_from_envelope,
    entry_from_task_message,
    is_envelope,
    merge_copies,
    with_failure,
)
from sample_system.effects import EffectStore
from sample_system.topology import (
    DLQ_QUEUE,
    DLQ_ROUTING_KEY,
    REDIS_DLQ_KEY,
    dead_letter_exchange,
    dead_letter_queue,
    queue_type_of,
)

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 10_000


class DeadLetters(Protocol):
    """Where dead letters live."""

    def declare(self) -> None:
        """Create the DLQ (idempotent)."""

    def land(self, envelope: dict[str, Any]) -> bool:
        """Store a published envelope; False if this task id was already there."""

    def entries(self, limit: int = DEFAULT_LIMIT) -> list[DLQEntry]:
        """One entry per task id, with exception details and `copies`."""

    def replay(self, task_ids: Iterable[str]) -> list[str]:
        """Republish the chosen dead letters and remove them; return the ids replayed."""

    def purge(self) -> int:
        """Delete every dead letter; return how many messages were removed."""


def dead_letters_for(app: Celery, *, effects: EffectStore | None = None) -> DeadLetters:
    """The DLQ of `app`'s broker (RabbitMQ queue or Redis hash)."""
    url = app.conf.broker_url or ""
    if url.split("://", 1)[0].lower() in ("redis", "rediss"):
        return RedisDeadLetters(app, effects=effects)
    return RabbitDeadLetters(app, effects=effects)


def _failure_details(app: Celery, effects: EffectStore | None, entries: list[DLQEntry]) -> list[DLQEntry]:
    """Fill exception/traceback of rejected messages from the failure records (or the result backend)."""
    missing = [e for e in entries if not e.exception]
    if not missing:
        return entries
    records = {}
    if effects is not None:
        try:
            records = effects.failures(e.task_id for e in missing)
        except Exception as exc:  # noqa: BLE001 - list what we can even if the DB is down
            log.warning("DLQ: failure records unavailable (%s); falling back to the result backend", exc)
    out: list[DLQEntry] = []
    for e in entries:
        if e.exception:
            out.append(e)
            continue
        rec = records.get(e.task_id)
        if rec is not None:
            out.append(with_failure(e, exception=rec.exception, traceback=rec.traceback, attempts=rec.attempts))
            continue
        try:
            meta = app.backend.get_task_meta(e.task_id)
        except Exception:  # noqa: BLE001 - a backend outage must not hide the DLQ
            meta = {}
        result = meta.get("result")
        if meta.get("status") == "FAILURE" and result is not None:
            exc_text = f"{type(result).__name__}: {result}" if isinstance(result, BaseException) else str(result)
            out.append(with_failure(e, exception=exc_text, traceback=str(meta.get("traceback") or "")))
        else:
            out.append(with_failure(e, exception="(failure record unavailable)", traceback=""))
    return out


class RabbitDeadLetters:
    """The RabbitMQ DLQ (see the module docstring)."""

    def __init__(self, app: Celery, *, effects: EffectStore | None = None, timeout: float = 10.0) -> None:
        self.app = app
        self.effects = effects
        self.timeout = timeout

    def _connection(self) -> Connection:
        return self.app.connection_for_write()

    def _queue(self) -> Any:
        return dead_letter_queue(queue_type_of(self.app))

    def declare(self) -> None:
        """Declare the DLQ; one left with other arguments (the other queue type) is re-created."""
        with self._connection() as conn:
            conn.ensure_connection(max_retries=3, timeout=self.timeout)
            try:
                with conn.channel() as ch:
                    self._queue()(ch).declare()
                return
            except PreconditionFailed as exc:
                log.warning("%s exists with other arguments (%s): deleting and re-declaring it", DLQ_QUEUE, exc)
            with conn.channel() as ch:
                q = self._queue()(ch)
                q.delete()
                q.declare()

    def land(self, envelope: dict[str, Any]) -> bool:
        with self._connection() as conn:
            conn.ensure_connection(max_retries=3, timeout=self.timeout)
            with conn.channel() as ch:
                Producer(ch).publish(
                    envelope, exchange=dead_letter_exchange(), routing_key=DLQ_ROUTING_KEY, serializer="json",
                    declare=[self._queue()], delivery_mode=2, message_id=envelope["task_id"],
                    correlation_id=envelope["task_id"], headers={"x-sample-envelope": envelope["envelope"]},
                    retry=True, retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
                    timeout=self.timeout,
                )
        return True

    def _drain(self, ch: Any, limit: int) -> list[Any]:
        queue = self._queue()(ch)
        queue.declare()
        msgs = []
        for _ in range(limit):
            m = queue.get(no_ack=False, accept=["json", "application/json"])
            if m is None:
                break
            msgs.append(m)
        return msgs

    @staticmethod
    def _entry(m: Any) -> DLQEntry:
        body = m.decode()
        if is_envelope(body):
            return entry_from_envelope(body)
        return entry_from_task_message(m.headers or {}, body)

    def entries(self, limit: int = DEFAULT_LIMIT) -> list[DLQEntry]:
        with self._connection() as conn:
            conn.ensure_connection(max_retries=3, timeout=self.timeout)
            ch = conn.channel()
            try:
                entries = [self._entry(m) for m in self._drain(ch, limit)]
            finally:
                # Closing the channel without acking puts every fetched message back.
                ch.close()
        return _failure_details(self.app, self.effects, merge_copies(entries))

    def replay(self, task_ids: Iterable[str]) -> list[str]:
        wanted = set(task_ids)
        replayed: list[str] = []
        with self._connection() as conn:
            conn.ensure_connection(max_retries=3, timeout=self.timeout)
            ch = conn.channel()
            pub_ch = conn.channel()
            try:
                producer = Producer(pub_ch)
                done: set[str] = set()
                for m in self._drain(ch, DEFAULT_LIMIT):
                    entry = self._entry(m)
                    if entry.task_id not in wanted:
                        continue
                    if entry.task_id not in done:
                        self._republish(producer, m, entry)
                        done.add(entry.task_id)
                        replayed.append(entry.task_id)
                    m.ack()  # extra copies of a replayed task go too: one replay per task id
            finally:
                pub_ch.close()
                ch.close()
        return replayed

    def _republish(self, producer: Producer, m: Any, entry: DLQEntry) -> None:
        body = m.decode()
        if is_envelope(body):
            _replay_envelope(self.app, body)
            return
        headers = {k: v for k, v in (m.headers or {}).items() if k not in X_DEATH_HEADERS}
        headers["retries"] = 0
        headers["dlq_replays"] = int(headers.get("dlq_replays") or 0) + 1
        props = m.properties or {}
        # The raw body goes back unchanged (chain/chord links included) to the queue it died in.
        producer.publish(
            m.body, exchange="", routing_key=entry.queue or "default", headers=headers,
            content_type=m.content_type, content_encoding=m.content_encoding, delivery_mode=2,
            correlation_id=props.get("correlation_id") or entry.task_id, reply_to=props.get("reply_to"),
            retry=True, retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
            timeout=self.timeout,
        )

    def purge(self) -> int:
        with self._connection() as conn:
            conn.ensure_connection(max_retries=3, timeout=self.timeout)
            with conn.channel() as ch:
                q = self._queue()(ch)
                q.declare()
                return int(q.purge() or 0)


def _replay_envelope(app: Celery, env: dict[str, Any]) -> None:
    """Republish a published envelope's task: its own signature when known, else name+args."""
    extra = {"dlq_replays": 1}
    if env.get("key"):
        extra["chaos_key"] = env["key"]
    if env.get("run_id"):
        extra["chaos_run_id"] = env["run_id"]
    sig_dict = env.get("signature")
    if sig_dict:
        sig = app.signature(sig_dict)
        opts = dict(sig.options)
        headers = {**(opts.get("headers") or {}), **extra}
        headers["dlq_replays"] = int((opts.get("headers") or {}).get("dlq_replays") or 0) + 1
        sig.options.pop("redelivered", None)
        sig.apply_async(task_id=env["task_id"], retries=0, headers=headers)
    else:
        app.send_task(env["name"], args=env.get("args") or [], kwargs=env.get("kwargs") or {},
                      task_id=env["task_id"], headers=extra)


class RedisDeadLetters:
    """The Redis-broker DLQ: a hash task id -> envelope (see the module docstring)."""

    def __init__(self, app: Celery, *, effects: EffectStore | None = None, timeout: float = 10.0) -> None:
        self.app = app
        self.effects = effects
        self.timeout = timeout

    def _redis(self) -> redis_lib.Redis:
        return redis_lib.Redis.from_url(self.app.conf.broker_url, socket_timeout=self.timeout,
                                        socket_connect_timeout=self.timeout)

    def declare(self) -> None:
        pass  # a hash needs no declaration

    def land(self, envelope: dict[str, Any]) -> bool:
        with self._redis() as r:
            return bool(r.hsetnx(REDIS_DLQ_KEY, envelope["task_id"], json.dumps(envelope, default=str)))

    def entries(self, limit: int = DEFAULT_LIMIT) -> list[DLQEntry]:
        with self._redis() as r:
            raw = r.hgetall(REDIS_DLQ_KEY)
        out = [entry_from_envelope(json.loads(v)) for _, v in sorted(raw.items())[:limit]]
        return _failure_details(self.app, self.effects, out)

    def replay(self, task_ids: Iterable[str]) -> list[str]:
        replayed = []
        with self._redis() as r:
            for tid in task_ids:
                raw = r.hget(REDIS_DLQ_KEY, tid)
                if raw is None:
                    continue
                _replay_envelope(self.app, json.loads(raw))
                r.hdel(REDIS_DLQ_KEY, tid)
                replayed.append(tid)
        return replayed

    def purge(self) -> int:
        with self._redis() as r:
            n = int(r.hlen(REDIS_DLQ_KEY))
            r.delete(REDIS_DLQ_KEY)
            return n


__all__ = ["DEFAULT_LIMIT", "DLQ_QUEUE", "DeadLetters", "RabbitDeadLetters", "RedisDeadLetters", "dead_letters_for"]
