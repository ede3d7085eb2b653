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

from typing import Any, Literal

from kombu import Exchange, Queue

QueueType = Literal["classic", "quorum"]

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


def dead_letter_queue(queue_type: QueueType = "classic") -> Queue:
    """The dead-letter queue, bound to the DLX with one routing key for every service queue.

    >>> dead_letter_queue("quorum").queue_arguments
    {'x-queue-type': 'quorum'}
    """
    args = {"x-queue-type": "quorum"} if queue_type == "quorum" else None
    return Queue(DLQ_QUEUE, exchange=dead_letter_exchange(), routing_key=DLQ_ROUTING_KEY, durable=True,
                 queue_arguments=args)


def exchange_for(queue: str, queue_type: QueueType = "classic") -> Exchange:
    """The exchange a service queue is bound to.

    Classic queues keep a direct exchange named after the queue. Quorum queues get a topic
    exchange (``<queue>.topic``): Celery's native delayed delivery, which quorum queues need for
    ETA and countdown tasks, cannot route through direct exchanges, and a new name never clashes
    with the direct exchange a classic deployment left on the same broker.

    >>> exchange_for("orders").type, exchange_for("orders", "quorum").name
    ('direct', 'orders.topic')
    """
    if queue_type == "quorum":
        return Exchange(f"{queue}.topic", type="topic", durable=True)
    return Exchange(queue, type="direct", durable=True)


def task_queues(*, dlq: bool, queue_type: QueueType = "classic", delivery_limit: int | None = None) -> list[Queue]:
    """The service queues, each with its own exchange; with `dlq`, dead-lettered to the DLX.

    Every queue dead-letters with the same routing key, so one DLQ collects failures from all
    services; the original queue stays readable in the message's ``x-death`` header.

    Quorum queues dead-letter *at least once* (``x-dead-letter-strategy``, which RabbitMQ only
    accepts with ``x-overflow: reject-publish``): the rejected message stays in the source queue
    until the DLQ has confirmed it. A classic queue dead-letters at most once, so a broker crash
    right after a reject can lose the dead letter (found by ``certify --load``).

    A quorum queue with a `delivery_limit` dead-letters (or, without `dlq`, drops) a message
    returned more than that many times (``x-delivery-limit``): the bound on a poison message
    that is requeued for ever.

    >>> q = task_queues(dlq=True, queue_type="quorum")[0]
    >>> q.queue_arguments["x-queue-type"], q.queue_arguments["x-dead-letter-strategy"]
    ('quorum', 'at-least-once')
    >>> task_queues(dlq=True, queue_type="quorum", delivery_limit=2)[0].queue_arguments["x-delivery-limit"]
    2
    """
    args: dict[str, Any] = {}
    if dlq:
        args.update({"x-dead-letter-exchange": DLX_EXCHANGE, "x-dead-letter-routing-key": DLQ_ROUTING_KEY})
    if queue_type == "quorum":
        args["x-queue-type"] = "quorum"
        if dlq:
            args.update({"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"})
        if delivery_limit is not None:
            args["x-delivery-limit"] = int(delivery_limit)
    return [
        Queue(name, exchange_for(name, queue_type), routing_key=name, durable=True,
              queue_arguments=dict(args) if args else None)
        for name in SERVICE_QUEUES
    ]


def queue_type_of(app: Any) -> QueueType:
    """The queue type an app's task queues declare ("quorum" if any is a quorum queue)."""
    for q in app.conf.task_queues or ():
        if (q.queue_arguments or {}).get("x-queue-type") == "quorum":
            return "quorum"
    return "classic"


def celery_routes() -> dict[str, dict[str, str]]:
    """`TASK_ROUTES` in Celery's ``task_routes`` shape."""
    return {name: {"queue": queue} for name, queue in TASK_ROUTES.items()}
