"""Variants of the sample system on the real stack: each one's dead-letter path behaves as documented.

* early acks: no message left to reject, so the task publishes its envelope (exactly once);
* hard time limit: Celery acks the message, the worker publishes the envelope (exactly once);
* no DLQ: a failed task is acked and gone (what the harness must catch);
* Redis as broker: no dead-lettering, the envelope goes to a hash keyed by task id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sample_testkit import Partner, prepared_workload, running_worker, stack_settings, wait_until

from harness.stack.local import LocalStack, LocalStackOptions
from harness.workload import DLQEntry
from sample_system import make_app
from sample_system.dlq import dead_letters_for
from sample_system.partner_api import PartnerControl
from sample_system.topology import SERVICE_QUEUES
from sample_system.workload import SampleWorkload


def _entry(workload: SampleWorkload, app: Any, key: str, timeout: float = 30.0) -> DLQEntry:
    return wait_until(lambda: next((e for e in workload.dlq_entries(app) if e.key == key), None),
                      timeout=timeout, what=f"a dead letter for {key}", interval=0.3)


def _idle(app: Any, nodename: str, timeout: float = 30.0) -> None:
    def probe() -> bool:
        with app.connection_for_write() as conn, conn.channel() as ch:
            if any(ch.queue_declare(queue=q, passive=True).message_count for q in SERVICE_QUEUES):
                return False
        insp = app.control.inspect(destination=[nodename], timeout=1.0)
        parts = (insp.active(), insp.reserved(), insp.scheduled())
        return all(p is not None and not any(p.values()) for p in parts)
    wait_until(probe, timeout=timeout, what="queues drained and the worker idle", interval=0.3)


def _unit(workload: SampleWorkload, kind: str) -> Any:
    return next(u for u in workload.units(1, uuid.uuid4().hex[:10]) if u.kind == kind)


def test_early_acks_publish_the_envelope_and_replay_uses_it(
        chaos_stack: Any, partner: Partner, partner_control: PartnerControl, tmp_path: Path) -> None:
    settings = stack_settings(chaos_stack, partner, tmp_path, acks_late=False)
    assert settings.dlq_mode == "publish"
    workload = prepared_workload(settings)
    with running_worker(settings, tmp_path) as (app, worker):
        unit = _unit(workload, "poison")
        root = workload.submit(app, unit)
        entry = _entry(workload, app, unit.key)
        assert (entry.task_id, entry.name, entry.attempts, entry.reason) == (root, "orders.validate", 1,
                                                                               "OrderValidationError")
        assert entry.exception.startswith("OrderValidationError") and "validate_order" in entry.traceback
        _idle(app, worker.nodename)
        assert [e.copies for e in workload.dlq_entries(app) if e.key == unit.key] == [1]
        # Replay goes through the envelope's own signature: the task runs again (and fails again).
        assert dead_letters_for(app, effects=workload.store).replay([root]) == [root]
        wait_until(lambda: workload.store.failures([root]).get(root) and
                   workload.store.failures([root])[root].recorded == 2,
                   timeout=30, what="the replayed poison task to fail a second time")
        _idle(app, worker.nodename)
        assert [e.copies for e in workload.dlq_entries(app) if e.key == unit.key] == [1]


def test_hard_time_limit_is_acked_and_its_envelope_lands_once(
        chaos_stack: Any, partner: Partner, partner_control: PartnerControl, tmp_path: Path) -> None:
    # No soft limit: the hard limit kills the pool child mid-call (Celery then acks the message).
    settings = stack_settings(chaos_stack, partner, tmp_path, soft_time_limit=0, time_limit=2)
    workload = prepared_workload(settings)
    partner_control.control(stall_next=1, stall_ms=5000)
    with running_worker(settings, tmp_path) as (app, worker):
        key = f"hard-{uuid.uuid4().hex[:8]}"
        r = app.send_task("notifications.deliver", args=("sms", "u", "hi"), kwargs={"key": key})
        entry = _entry(workload, app, key)
        assert (entry.task_id, entry.reason, entry.copies) == (r.id, "time_limit", 1)
        assert entry.exception.startswith("TimeLimitExceeded")
        _idle(app, worker.nodename)
        assert [e.copies for e in workload.dlq_entries(app) if e.key == key] == [1]
        assert workload.store.effects_by_key([key]) == {}


def test_without_dlq_a_failed_task_is_acked_and_gone(
        chaos_stack: Any, partner: Partner, partner_control: PartnerControl, tmp_path: Path) -> None:
    settings = stack_settings(chaos_stack, partner, tmp_path, dlq=False)
    workload = prepared_workload(settings)
    with running_worker(settings, tmp_path) as (app, worker):
        unit = _unit(workload, "poison")
        root = workload.submit(app, unit)
        wait_until(lambda: app.AsyncResult(root).state == "FAILURE", timeout=30, what="the poison task to fail")
        _idle(app, worker.nodename)
        assert [e for e in workload.dlq_entries(app) if e.key == unit.key] == []
        assert workload.store.failures([root]) == {}


@pytest.fixture(scope="module")
def redis_stack() -> Iterator[LocalStack]:
    with LocalStack(LocalStackOptions(broker="redis")) as stack:
        yield stack


def test_redis_broker_completes_orders_and_keeps_dead_letters_in_a_hash(
        redis_stack: LocalStack, partner: Partner, partner_control: PartnerControl, tmp_path: Path) -> None:
    settings = stack_settings(redis_stack, partner, tmp_path, visibility_timeout=10, max_retries=1,
                              retry_backoff=0.1)
    settings = settings.replace(partner_url=partner.direct_url)
    assert (settings.broker, settings.dlq_mode) == ("redis", "redis")
    workload = prepared_workload(settings)
    with running_worker(settings, tmp_path) as (app, _worker):
        order, poison = _unit(workload, "order"), _unit(workload, "poison")
        workload.submit(app, order)
        root = workload.submit(app, poison)

        def order_done() -> bool:
            have = {r.idempotency_key for r in workload.effects().get(order.key, [])}
            return set(order.effects) <= have
        wait_until(order_done, timeout=30, what="the order's effects over a Redis broker")
        entry = _entry(workload, app, poison.key)
        assert (entry.task_id, entry.copies, entry.attempts) == (root, 1, 1)
        assert entry.exception.startswith("OrderValidationError")


def test_setup_recreates_a_queue_declared_with_other_arguments(
        chaos_stack: Any, partner: Partner, tmp_path: Path) -> None:
    from kombu import Exchange, Queue

    settings = stack_settings(chaos_stack, partner, tmp_path)
    app = make_app(settings)
    try:
        with app.connection_for_write() as conn, conn.channel() as ch:
            ch.queue_delete("events")
            Queue("events", Exchange("events", "direct"), routing_key="events",
                  queue_arguments={"x-max-priority": 5})(ch).declare()
        SampleWorkload(settings).setup(app)
        with app.connection_for_write() as conn, conn.channel() as ch:
            # Declaring with the sample system's own arguments now succeeds (it would raise otherwise).
            next(q for q in app.conf.task_queues if q.name == "events")(ch).declare()
    finally:
        app.close()
