"""Build the sample system's Celery app from `Settings`.

Responsibility: translate every `Settings` field into Celery configuration, attach the queue
topology and routes, register the services' tasks and, on RabbitMQ, a consumer bootstep that
declares the dead-letter exchange and queue before the worker consumes (RabbitMQ silently drops
a message dead-lettered to an exchange that does not exist).

Example:
    >>> app = make_app(Settings(acks_late=False, rate_limit=None))
    >>> app.conf.task_acks_late, app.tasks["notifications.deliver"].rate_limit
    (False, None)
    >>> app.conf.task_acks_on_failure        # early acks: nothing left to reject, the task publishes
    True
    >>> make_app(Settings()).conf.task_acks_on_failure   # late acks: reject -> dead-letter exchange
    False
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, bootsteps

from sample_system.service_task import Runtime
from sample_system.services import register_all
from sample_system.settings import Settings
from sample_system.topology import (
    DEFAULT,
    celery_routes,
    dead_letter_queue,
    exchange_for,
    queue_type_of,
    task_queues,
)

log = logging.getLogger(__name__)


class DeclareDeadLetterQueue(bootsteps.StartStopStep):
    """Consumer bootstep: declare ``sample.dlx`` and ``dead_letters`` on every (re)connect."""

    requires = {"celery.worker.consumer.connection:Connection"}

    def start(self, c: Any) -> None:
        try:
            with c.connection.channel() as ch:
                dead_letter_queue(queue_type_of(c.app))(ch).declare()
        except Exception:  # noqa: BLE001 - the consumer must start; the producer side declares too
            log.exception("could not declare the dead-letter queue")


def celery_config(s: Settings) -> dict[str, Any]:
    """The Celery configuration for `s` (one line per reliability setting)."""
    broker_opts: dict[str, Any]
    if s.broker == "rabbitmq":
        broker_opts = {"confirm_publish": s.confirm_publish}
    else:
        broker_opts = {
            "visibility_timeout": s.visibility_timeout or 3600,  # kombu's default when not set
            "socket_timeout": s.backend_socket_timeout,
            "socket_connect_timeout": s.backend_socket_timeout,
        }
    return {
        "broker_url": s.effective_broker_url,
        "result_backend": s.backend_url,
        # json only: never unpickle what came off the wire
        "task_serializer": s.serializer,
        "result_serializer": s.serializer,
        "accept_content": [s.serializer],
        "result_accept_content": [s.serializer],
        "timezone": "UTC",
        "enable_utc": True,
        # delivery guarantees
        "task_acks_late": s.acks_late,
        "task_reject_on_worker_lost": s.reject_on_worker_lost,
        # reject (not ack) a permanently failed message so RabbitMQ dead-letters it atomically
        "task_acks_on_failure": s.dlq_mode != "reject",
        # a hard time limit is acked and its envelope published by the task's on_failure; with
        # acks_on_timeout=False it is requeued (bounded by the quorum queues' delivery_limit)
        "task_acks_on_timeout": s.acks_on_timeout,
        "worker_prefetch_multiplier": s.prefetch_multiplier,
        "broker_heartbeat": s.broker_heartbeat,
        "broker_connection_timeout": s.broker_connection_timeout,
        "broker_connection_retry_on_startup": True,
        "task_publish_retry": s.publish_max_retries > 0,
        "task_publish_retry_policy": {"max_retries": s.publish_max_retries, "interval_start": 0,
                                      "interval_step": 0.5, "interval_max": 2},
        "broker_transport_options": broker_opts,
        "worker_cancel_long_running_tasks_on_connection_loss": s.cancel_long_running_tasks_on_connection_loss,
        # limits and housekeeping
        "task_soft_time_limit": s.soft_time_limit or None,
        "task_time_limit": s.time_limit or None,
        "result_expires": s.result_expires,
        "worker_max_tasks_per_child": s.max_tasks_per_child,
        "worker_concurrency": s.concurrency,
        "worker_send_task_events": s.send_events,
        "task_send_sent_event": s.send_events,
        "task_track_started": True,
        "result_extended": True,
        "redis_socket_timeout": s.backend_socket_timeout,
        "result_backend_always_retry": s.backend_always_retry,
        "result_backend_max_retries": 10,
        "result_backend_max_sleep_between_retries_ms": 2000,
        "redis_socket_connect_timeout": s.backend_socket_timeout,
        # routing: per-service queues, explicit routes, nothing implicit
        "task_queues": task_queues(dlq=True, queue_type=s.queue_type, delivery_limit=s.delivery_limit),
        "task_routes": celery_routes(),
        "task_default_queue": DEFAULT,
        "task_default_exchange": exchange_for(DEFAULT, s.queue_type).name,
        "task_default_exchange_type": exchange_for(DEFAULT, s.queue_type).type,
        "task_default_routing_key": DEFAULT,
        "task_default_rate_limit": None,
        "task_default_retry_delay": 60,
        "task_max_retries": s.max_retries,
    }


def make_app(settings: Settings | None = None, *, main: str = "sample_system") -> Celery:
    """A new Celery app for `settings` (defaults: the production values) with every service registered.

    The app carries ``app.sample_settings`` and ``app.sample_runtime`` (per-process resources).
    """
    s = settings if settings is not None else Settings()
    app = Celery(main, set_as_current=False)
    app.config_from_object(celery_config(s))
    app.sample_settings = s  # type: ignore[attr-defined]
    app.sample_runtime = Runtime(app, s)  # type: ignore[attr-defined]
    if s.broker == "rabbitmq":
        app.steps["consumer"].add(DeclareDeadLetterQueue)
    register_all(app)
    return app
