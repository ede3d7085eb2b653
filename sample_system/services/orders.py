"""Orders: the chain validate -> reserve inventory -> charge payment -> confirm.

Each step passes the enriched order dict on to the next (``chain`` feeds a step's return value
to the next step as its first argument); ``key`` travels as a keyword so every effect uses it as
the idempotency key. A validation error is fatal: the order goes straight to the DLQ.

Example:
    >>> sig = order_pipeline(app, {"order_id": "o-1", "items": [{"sku": "A", "qty": 1, "unit_price": 500}],
    ...                            "currency": "EUR", "card": "tok_visa"}, key="o-1")   # doctest: +SKIP
    >>> sig.apply_async()                                                               # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from celery import Celery, chain
from celery.canvas import Signature

from sample_system.service_task import ServiceTask
from sample_system.services.events import publish_event


class OrderValidationError(ValueError):
    """The order can never be processed as submitted (fatal: not retried)."""


def validate_order(order: Any) -> dict[str, Any]:
    """Check an order and return it with its ``amount`` (minor units); raise OrderValidationError.

    >>> validate_order({"order_id": "o", "items": [{"sku": "A", "qty": 2, "unit_price": 150}],
    ...                 "currency": "EUR", "card": "tok_visa"})["amount"]
    300
    """
    if not isinstance(order, dict):
        raise OrderValidationError(f"order must be an object, got {type(order).__name__}")
    missing = [f for f in ("order_id", "items", "currency", "card") if not order.get(f)]
    if missing:
        raise OrderValidationError(f"order {order.get('order_id')!r} is missing {missing}")
    amount = 0
    for item in order["items"]:
        qty, price = item.get("qty"), item.get("unit_price")
        if not isinstance(qty, int) or qty <= 0:
            raise OrderValidationError(f"order {order['order_id']!r}: item {item.get('sku')!r} has qty={qty!r}, must be > 0")
        if not isinstance(price, int) or price < 0:
            raise OrderValidationError(f"order {order['order_id']!r}: item {item.get('sku')!r} has unit_price={price!r}")
        amount += qty * price
    if amount <= 0:
        raise OrderValidationError(f"order {order['order_id']!r} totals {amount}, must be > 0")
    return {**order, "amount": amount}


def order_pipeline(app: Celery, order: dict[str, Any], *, key: str, headers: dict[str, str] | None = None,
                   root_task_id: str | None = None) -> Signature:
    """The order chain as a signature; `headers` go on every step, `root_task_id` on the first."""
    opts: dict[str, Any] = {"headers": dict(headers or {})}
    first = app.signature("orders.validate", args=(order,), kwargs={"key": key}, options=dict(opts))
    if root_task_id:
        first = first.set(task_id=root_task_id)
    return chain(
        first,
        app.signature("orders.reserve_inventory", kwargs={"key": key}, options=dict(opts)),
        app.signature("payments.charge", kwargs={"key": key}, options=dict(opts)),
        app.signature("orders.confirm", kwargs={"key": key}, options=dict(opts)),
    )


def register(app: Celery) -> None:
    @app.task(base=ServiceTask, bind=True, shared=False, name="orders.validate")
    def validate(self: ServiceTask, order: dict[str, Any], *, key: str) -> dict[str, Any]:
        return validate_order(order)

    @app.task(base=ServiceTask, bind=True, shared=False, name="orders.reserve_inventory")
    def reserve_inventory(self: ServiceTask, order: dict[str, Any], *, key: str) -> dict[str, Any]:
        reservation = f"res-{order['order_id']}"
        self.apply_effects(self.effect(key, "inventory.reserved", reservation=reservation,
                                       skus=sorted(i["sku"] for i in order["items"])))
        return {**order, "reservation": reservation}

    @app.task(base=ServiceTask, bind=True, shared=False, name="orders.confirm")
    def confirm(self: ServiceTask, order: dict[str, Any], *, key: str) -> dict[str, Any]:
        self.apply_effects(self.effect(key, "order.confirmed", charge_id=order.get("charge_id"),
                                       amount=order["amount"]))
        publish_event(self, "order.paid", {"order_id": order["order_id"], "amount": order["amount"]}, key=key)
        return {"order_id": order["order_id"], "status": "confirmed", "charge_id": order.get("charge_id")}
