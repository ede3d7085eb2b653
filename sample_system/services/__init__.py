"""The services of the sample system, one module each: orders, payments, scans, notifications, events.

Responsibility: register every task on an app built by `sample_system.make_app`. Each module
has ``register(app)``; task names are ``<service>.<step>`` and are routed by name
(``sample_system.topology.TASK_ROUTES``).
"""

from __future__ import annotations

from celery import Celery

from sample_system.services import chaos_probes, events, notifications, orders, payments, scans

# chaos_probes: a task whose timing the failure-mode scenarios choose (scenarios/failure_modes).
SERVICES = (orders, payments, scans, notifications, events, chaos_probes)


def register_all(app: Celery) -> None:
    """Register every service's tasks on `app`."""
    for service in SERVICES:
        service.register(app)
