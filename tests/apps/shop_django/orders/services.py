"""What the views call: create the order, start its background work."""

from celery import chain, chord, group

from .catalog import CHECKOUT_ITEMS
from .models import Order
from .tasks import charge_order, finalize_order, reserve_item, send_receipt


def payment_flow(order: Order):
    """Charge the order, then email the receipt."""
    return chain(charge_order.s(order.pk), send_receipt.s())


def checkout_flow(order: Order, items=CHECKOUT_ITEMS):
    """Reserve every item in parallel, then create the shipment."""
    return chord(group(reserve_item.s(order.pk, sku, qty) for sku, qty in items),
                 finalize_order.s(order.pk))
