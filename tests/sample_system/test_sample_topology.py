"""Routing and queue topology (pure): explicit routes for every task, the DLX on every queue, no DLQ consumer."""

from __future__ import annotations

import pytest

from harness.errors import ConfigError
from sample_system import Settings, make_app
from sample_system.topology import (
    DLQ_QUEUE,
    DLX_EXCHANGE,
    EVENT_SUBSCRIBERS,
    SERVICE_QUEUES,
    TASK_ROUTES,
    dead_letter_queue,
    queue_type_of,
    route_for,
    task_queues,
)


def test_every_sample_task_has_an_explicit_route_to_a_service_queue() -> None:
    app = make_app(Settings())
    # Shared tasks of other apps imported in this process (pytest-celery's, the example apps'
    # orders.tasks.*) attach to every app: look at the tasks the sample system defines.
    ours = {name for name, task in app.tasks.items()
            if name.split(".")[0] in {"orders", "payments", "scans", "notifications", "events"}
            and getattr(task, "__module__", "").startswith("sample_system")}
    assert ours == set(TASK_ROUTES)
    for name in ours:
        assert route_for(name) in SERVICE_QUEUES
        assert app.amqp.router.route({}, name)["queue"].name == route_for(name)


def test_each_service_has_its_own_queue_and_paging_goes_to_priority() -> None:
    assert {route_for(n) for n in TASK_ROUTES} == {"orders", "payments", "scans", "notifications", "events",
                                                   "priority"}
    assert route_for("notifications.page_oncall") == "priority"


def test_every_service_queue_dead_letters_to_the_dlx_and_the_dlq_is_never_consumed() -> None:
    queues = task_queues(dlq=True)
    assert [q.name for q in queues] == list(SERVICE_QUEUES)
    assert all(q.queue_arguments == {"x-dead-letter-exchange": DLX_EXCHANGE, "x-dead-letter-routing-key": DLQ_QUEUE}
               for q in queues)
    assert DLQ_QUEUE not in SERVICE_QUEUES
    assert DLQ_QUEUE not in {q.name for q in make_app(Settings()).conf.task_queues}
    assert all(q.queue_arguments is None for q in task_queues(dlq=False))


def test_event_subscribers_are_routed_tasks_in_different_services() -> None:
    for event, subscribers in EVENT_SUBSCRIBERS.items():
        assert subscribers, event
        for s in subscribers:
            assert s in TASK_ROUTES
    assert {route_for(s) for s in EVENT_SUBSCRIBERS["user.created"]} == {"notifications", "payments"}


def test_quorum_queues_dead_letter_at_least_once_through_topic_exchanges() -> None:
    app = make_app(Settings(queue_type="quorum"))
    queues = app.conf.task_queues
    assert {q.queue_arguments["x-queue-type"] for q in queues} == {"quorum"}
    # at-least-once dead-lettering is only honoured with reject-publish overflow
    assert all(q.queue_arguments["x-dead-letter-strategy"] == "at-least-once" for q in queues)
    assert all(q.queue_arguments["x-overflow"] == "reject-publish" for q in queues)
    # native delayed delivery (countdowns on quorum queues) cannot route through direct exchanges
    assert {q.exchange.type for q in queues} == {"topic"}
    assert app.conf.task_default_exchange_type == "topic"
    assert queue_type_of(app) == "quorum" and queue_type_of(make_app(Settings())) == "classic"
    assert dead_letter_queue("quorum").queue_arguments == {"x-queue-type": "quorum"}


def test_quorum_queues_need_a_rabbitmq_broker() -> None:
    with pytest.raises(ConfigError, match="needs broker='rabbitmq'"):
        Settings(broker="redis", queue_type="quorum")
