"""Background work of the orders app.

The payment flow is a chain: ``charge_order`` (the payment provider's API, slow) then
``send_receipt``. Checkout is a chord: one ``reserve_item`` per line item, then
``finalize_order`` creates the shipment once every item is reserved.

With ``SHOP_HARDENED=1`` every write is idempotent (``get_or_create`` on the natural key), so
a task that runs twice because its worker died after the write leaves one row, not two.
"""

import hashlib
import logging
import time

from celery import shared_task
from django.conf import settings
from django.db import OperationalError, transaction

from .models import Email, Order, Payment, Reservation, Shipment

log = logging.getLogger(__name__)

# Two pool processes share one sqlite file: a write can meet "database is locked" (a reader
# upgrading to a writer does not wait). The hardened shop retries it; the defaults shop does not.
RETRY = ({"autoretry_for": (OperationalError,), "retry_backoff": 0.2, "max_retries": 8}
         if settings.SHOP_HARDENED else {})


def _provider_latency(reference: str) -> float:
    """How long the payment provider takes for this order: 0.3 to 1.0 s, stable per order."""
    h = int(hashlib.sha256(reference.encode()).hexdigest()[:8], 16)
    return 0.3 + (h % 71) / 100


def _call_payment_provider(order: Order) -> str:
    # Stand-in for the provider's HTTP API: slow, and returns its charge id.
    time.sleep(_provider_latency(order.reference))
    return "ch_" + hashlib.sha256(f"{order.reference}:{order.amount_cents}".encode()).hexdigest()[:20]


@shared_task(bind=True, **RETRY)
def charge_order(self, order_id: int) -> int:
    order = Order.objects.get(pk=order_id)
    provider_ref = _call_payment_provider(order)
    with transaction.atomic():
        if settings.SHOP_HARDENED:
            payment, created = Payment.objects.get_or_create(
                order=order, defaults={"amount_cents": order.amount_cents, "provider_ref": provider_ref,
                                       "task_id": self.request.id or ""})
            if not created:
                log.info("order %s was already charged (payment %s): not charging again", order_id, payment.pk)
        else:
            payment = Payment.objects.create(order=order, amount_cents=order.amount_cents,
                                             provider_ref=provider_ref, task_id=self.request.id or "")
        Order.objects.filter(pk=order_id).update(status="paid")
    return payment.pk


@shared_task(bind=True, **RETRY)
def send_receipt(self, payment_id: int) -> None:
    payment = Payment.objects.select_related("order").get(pk=payment_id)
    order = payment.order
    time.sleep(0.1)  # the mail provider
    if settings.SHOP_HARDENED:
        Email.objects.get_or_create(order=order, template="receipt",
                                    defaults={"to": order.customer_email, "task_id": self.request.id or ""})
    else:
        Email.objects.create(order=order, template="receipt", to=order.customer_email,
                             task_id=self.request.id or "")


# The warehouse API accepts five requests a second from us.
@shared_task(bind=True, rate_limit="5/s", **RETRY)
def reserve_item(self, order_id: int, sku: str, quantity: int) -> str:
    time.sleep(0.2)  # the warehouse API
    if settings.SHOP_HARDENED:
        Reservation.objects.get_or_create(order_id=order_id, sku=sku,
                                          defaults={"quantity": quantity, "task_id": self.request.id or ""})
    else:
        Reservation.objects.create(order_id=order_id, sku=sku, quantity=quantity, task_id=self.request.id or "")
    return sku


@shared_task(bind=True, **RETRY)
def finalize_order(self, reserved_skus: list[str], order_id: int) -> int:
    with transaction.atomic():
        if settings.SHOP_HARDENED:
            shipment, _ = Shipment.objects.get_or_create(
                order_id=order_id, defaults={"items": len(reserved_skus), "task_id": self.request.id or ""})
        else:
            shipment = Shipment.objects.create(order_id=order_id, items=len(reserved_skus),
                                               task_id=self.request.id or "")
        Order.objects.filter(pk=order_id).update(status="ready")
    return shipment.pk
