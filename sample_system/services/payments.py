"""Payments: charging the partner API with retries, backoff and a circuit breaker; wallets for new users.

``payments.charge`` is the retry pattern: connection errors, timeouts, 5xx and 429 are retried
with exponential backoff and jitter up to ``max_retries``; 401/402/403 and validation answers
are fatal. The partner de-duplicates by ``Idempotency-Key`` and the charge and its ledger
entry are written in one transaction under the unit key, so a redelivered charge neither
charges nor books twice.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from sample_system.service_task import ServiceTask


def register(app: Celery) -> None:
    @app.task(base=ServiceTask, bind=True, shared=False, name="payments.charge")
    def charge(self: ServiceTask, order: dict[str, Any], *, key: str) -> dict[str, Any]:
        try:
            result = self.runtime.partner.charge(
                idempotency_key=f"charge:{key}", amount=order["amount"], currency=order["currency"],
                card=order["card"], order_id=order["order_id"], headers=self.partner_headers())
        except Exception as exc:  # noqa: BLE001 - classified by retry_or_fail
            self.retry_or_fail(exc)
            raise
        charge_id = result.get("id")
        self.apply_effects(
            self.effect(key, "payment.charged", charge_id=charge_id, amount=order["amount"]),
            self.effect(key, "ledger.debit", account=order.get("customer", "anonymous"), amount=order["amount"],
                        charge_id=charge_id),
        )
        return {**order, "charge_id": charge_id}

    @app.task(base=ServiceTask, bind=True, shared=False, name="payments.open_wallet", ignore_result=True)
    def open_wallet(self: ServiceTask, event: dict[str, Any], *, key: str) -> None:
        self.apply_effects(self.effect(key, "wallet.opened", user=event["payload"].get("user"),
                                       event_id=event["id"]))
