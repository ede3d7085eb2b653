"""Routing and queue topology (pure): explicit routes for every task, the DLX on every queue, no DLQ consumer."""

from __future__ import annotations

from sample_system import Settings, make_app
from sample_system.topology import (
    DLQ_QUEUE,
    DLX_EXCHANGE,
    EVENT_SUBSCRIBERS,
    SERVICE_QUEUES,
    TASK_ROUTES,
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
