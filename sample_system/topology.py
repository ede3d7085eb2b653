"""Where every message goes: per-service queues, explicit routes, the dead-letter exchange and event subscribers.

Responsibility: the broker topology as data. Each service has its own queue (orders, payments,
scans, notifications, events) plus a high-priority queue for paging; every task has an
explicit route; with the DLQ enabled on RabbitMQ every service queue carries
``x-dead-letter-exchange`` so a rejected message moves to ``dead_letters`` atomically.

The dead-letter queue is deliberately *not* among the task queues: a worker started without
``-Q`` consumes every task queue, and it must never consume (and re-run) dead letters.

Example:
    >>> route_for("payments.charge")
    'payments'
    >>> [q.name for q in task_queues(dlq=True)][:2]
    ['orders', 'payments']
    >>> task_queues(dlq=True)[0].queue_arguments["x-dead-letter-exchange"]
    'sample.dlx'
"""

from __future__ import annotations

from kombu import Exchange, Queue

ORDERS = "orders"
PAYMENTS = "payments"
SCANS = "scans"
NOTIFICATIONS = "notifications"
EVENTS = "events"
PRIORITY = "priority"
DEFAULT = "default"

#: Queues workers consume (``celery -A sample_system worker -Q <these>``).
SERVICE_QUEUES: tuple[str, ...] = (ORDERS, PAYMENTS, SCANS, NOTIFICATIONS, EVENTS, PRIORITY, DEFAULT)

DLX_EXCHANGE = "sample.dlx"
DLQ_QUEUE = "dead_letters"
DLQ_ROUTING_KEY = "dead_letters"
#: On a Redis broker the DLQ is a hash (task id -> envelope) in the broker's database.
REDIS_DLQ_KEY = "sample:dead_letters"

#: Explicit route for every task of the sample system (task name -> queue).
TASK_ROUTES: dict[str, str] = {
    "orders.validate": ORDERS,
    "orders.reserve_inventory": ORDERS,
    "orders.confirm": ORDERS,
    "payments.charge": PAYMENTS,
    "payments.open_wallet": PAYMENTS,
    "scans.scan_asset": SCANS,
    "scans.aggregate_report": SCANS,
    "notifications.notify": NOTIFICATIONS,
    "notifications.deliver": NOTIFICATIONS,
    "notifications.welcome_user": NOTIFICATIONS,
    "notifications.send_receipt": NOTIFICATIONS,
    "notifications.page_oncall": PRIORITY,
    "events.publish": EVENTS,
}

#: Domain event -> the subscriber tasks (one per interested service) it fans out to.
EVENT_SUBSCRIBERS: dict[str, tuple[str, ...]] = {
    "user.created": ("notifications.welcome_user", "payments.open_wallet"),
    "order.paid": ("notifications.send_receipt",),
}


def route_for(task_name: str) -> str:
    """The queue a task is routed to; unknown names raise KeyError naming the known ones."""
    try:
        return TASK_ROUTES[task_name]
    except KeyError:
        raise KeyError(f"no route for task {task_name!r}; routed tasks: {sorted(TASK_ROUTES)}") from None


def dead_letter_exchange() -> Exchange:
    """The exchange RabbitMQ dead-letters rejected messages to (direct, durable)."""
    return Exchange(DLX_EXCHANGE, type="direct", durable=True)


def dead_letter_queue() -> Queue:
    """The dead-letter queue, bound to the DLX with one routing key for every service queue."""
    return Queue(DLQ_QUEUE, exchange=dead_letter_exchange(), routing_key=DLQ_ROUTING_KEY, durable=True)


def task_queues(*, dlq: bool) -> list[Queue]:
    """The service queues, each with its own direct exchange; with `dlq`, dead-lettered to the DLX.

    Every queue dead-letters with the same routing key, so one DLQ collects failures from all
    services; the original queue stays readable in the message's ``x-death`` header.
    """
    args = {"x-dead-letter-exchange": DLX_EXCHANGE, "x-dead-letter-routing-key": DLQ_ROUTING_KEY} if dlq else None
    return [
        Queue(name, Exchange(name, type="direct", durable=True), routing_key=name, durable=True,
              queue_arguments=dict(args) if args else None)
        for name in SERVICE_QUEUES
    ]


def celery_routes() -> dict[str, dict[str, str]]:
    """`TASK_ROUTES` in Celery's ``task_routes`` shape."""
    return {name: {"queue": queue} for name, queue in TASK_ROUTES.items()}
