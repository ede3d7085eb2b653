"""Notifications: fire-and-forget fan-out to channels, event subscribers and paging.

``notifications.notify`` is fire-and-forget (no result stored): it publishes one
``notifications.deliver`` per channel, each a rate-limited call to the partner API. Celery
enforces ``rate_limit`` per worker *node* (a token bucket in each worker's main process), not
across the fleet: N workers deliver up to N times the limit.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import Celery

from sample_system.service_task import ServiceTask, runtime_of

_IDS = uuid.UUID("0b7f3c52-6c55-4f4e-8f0e-1d2a3b4c5d6e")


def delivery_task_id(key: str, channel: str) -> str:
    """Deterministic id of the delivery of unit `key` on `channel` (a redelivered fan-out reuses it)."""
    return str(uuid.uuid5(_IDS, f"deliver:{key}:{channel}"))


def register(app: Celery) -> None:
    settings = runtime_of(app).settings

    @app.task(base=ServiceTask, bind=True, shared=False, name="notifications.notify", ignore_result=True)
    def notify(self: ServiceTask, user: str, message: str, *, key: str,
               channels: list[str] | None = None) -> list[str]:
        ids = []
        for channel in channels or self.settings.notification_channels:
            tid = delivery_task_id(key, channel)
            self.app.send_task("notifications.deliver", args=(channel, user, message), kwargs={"key": key},
                               task_id=tid, headers=self.unit_headers(key))
            ids.append(tid)
        return ids

    @app.task(base=ServiceTask, bind=True, shared=False, name="notifications.deliver", ignore_result=True,
              rate_limit=settings.rate_limit)
    def deliver(self: ServiceTask, channel: str, user: str, message: str, *, key: str) -> None:
        try:
            result = self.runtime.partner.send_message(
                idempotency_key=f"notification:{key}:{channel}", channel=channel, to=user, body=message,
                headers=self.partner_headers())
        except Exception as exc:  # noqa: BLE001 - classified by retry_or_fail
            self.retry_or_fail(exc)
            raise
        self.apply_effects(self.effect(key, f"notification.{channel}", message_id=result.get("id"), to=user))

    @app.task(base=ServiceTask, bind=True, shared=False, name="notifications.welcome_user", ignore_result=True)
    def welcome_user(self: ServiceTask, event: dict[str, Any], *, key: str) -> None:
        self.apply_effects(self.effect(key, "welcome.sent", user=event["payload"].get("user"), event_id=event["id"]))

    @app.task(base=ServiceTask, bind=True, shared=False, name="notifications.send_receipt", ignore_result=True)
    def send_receipt(self: ServiceTask, event: dict[str, Any], *, key: str) -> None:
        self.apply_effects(self.effect(key, "receipt.sent", order_id=event["payload"].get("order_id"),
                                       event_id=event["id"]))

    @app.task(base=ServiceTask, bind=True, shared=False, name="notifications.page_oncall", ignore_result=True)
    def page_oncall(self: ServiceTask, report: dict[str, Any], *, key: str) -> None:
        self.apply_effects(self.effect(key, "oncall.paged", critical=report.get("critical")))
