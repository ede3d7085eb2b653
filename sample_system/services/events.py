"""Domain events: ``user.created``, ``order.paid`` fanned out to every interested service's queue.

``events.publish`` (and ``publish_event`` from inside another task, as ``orders.confirm`` does)
sends one task per subscriber in ``topology.EVENT_SUBSCRIBERS``; each is routed to its own
service's queue. Subscriber task ids are derived from the event id, so a redelivered publish
re-sends the *same* task ids (visible as duplicates in the history) and the idempotent effects
absorb them.

Why not a broker fan-out exchange: it would put one message with one task id into several
queues, and Celery would run that id several times; here each subscriber gets its own id.

Example:
    >>> subscriber_task_id("order.paid:o-1", "notifications.send_receipt") == \\
    ...     subscriber_task_id("order.paid:o-1", "notifications.send_receipt")
    True
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import Celery

from sample_system.service_task import ServiceTask
from sample_system.topology import EVENT_SUBSCRIBERS

_IDS = uuid.UUID("9d5e2f7a-1b3c-4d6e-8f90-a1b2c3d4e5f6")


class UnknownEvent(ValueError):
    """An event nobody subscribes to (fatal: a typo, not a transient error)."""


def subscriber_task_id(event_id: str, subscriber: str) -> str:
    return str(uuid.uuid5(_IDS, f"{event_id}:{subscriber}"))


def publish_event(task: ServiceTask, event: str, payload: dict[str, Any], *, key: str) -> list[str]:
    """Send `event` to each subscriber's queue from inside `task`; return the subscriber task ids."""
    subscribers = EVENT_SUBSCRIBERS.get(event)
    if not subscribers:
        raise UnknownEvent(f"no subscribers for event {event!r}; known events: {sorted(EVENT_SUBSCRIBERS)}")
    event_id = f"{event}:{key}"
    body = {"id": event_id, "type": event, "payload": payload}
    ids = []
    for subscriber in subscribers:
        tid = subscriber_task_id(event_id, subscriber)
        task.app.send_task(subscriber, kwargs={"event": body, "key": key}, task_id=tid,
                           headers=task.unit_headers(key))
        ids.append(tid)
    return ids


def register(app: Celery) -> None:
    @app.task(base=ServiceTask, bind=True, shared=False, name="events.publish", ignore_result=True)
    def publish(self: ServiceTask, event: str, payload: dict[str, Any], *, key: str) -> list[str]:
        return publish_event(self, event, payload, key=key)
