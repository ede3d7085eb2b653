"""Locust load for the sample system: submit its workload through the producer's proxy, never wait for results.

Run it against a running stack (URLs from ``celery-chaos stack up --json``)::

    export CHAOS_PRODUCER_BROKER_URL='amqp://...@127.0.0.1:<producer_broker proxy port>//'
    export CHAOS_PRODUCER_BACKEND_URL='redis://:...@127.0.0.1:<producer_backend proxy port>/0'
    export CHAOS_RUN_ID=run-1 CHAOS_HISTORY_DIR=/tmp/run-1/history    # optional: record publishes
    export CHAOS_LOAD_USER_RATE=5 CHAOS_LOAD_KINDS=order,notification  # optional: pacing, kinds
    locust -f loadtests/locustfile.py --headless -u 10 -r 10 -t 60s

Every variable is described in ``harness/load/target.py`` and docs/load.md. The sample
system's own settings come from ``SAMPLE_*`` variables (``sample_system.settings``); they must
match the workers' (notification channels, scan asset count).

Each request in Locust's statistics is one workload unit submitted (name = its kind: order,
scan, notification, event, poison, declined, exhausted), its response time the publish latency
(until the broker confirmed every message of the unit).
"""

from __future__ import annotations

from harness.load.target import LoadTarget
from harness.load.user import CeleryUser
from sample_system import Settings, make_app
from sample_system.workload import KINDS, SampleWorkload


class SampleSystemUser(CeleryUser):
    """Submits units of the sample workload (every kind, or ``CHAOS_LOAD_KINDS``)."""

    def create_app(self, target: LoadTarget):  # noqa: ANN201 - a Celery app
        overrides = {"broker_url": target.broker_url}
        if target.backend_url:
            overrides["backend_url"] = target.backend_url
        return make_app(Settings.from_env(**overrides), main="sample_system_load")

    def create_workload(self, app, target: LoadTarget) -> SampleWorkload:  # noqa: ANN001
        # The same Settings as the app (channels, assets): units and messages agree.
        return SampleWorkload(app.sample_settings, kinds=target.kinds or KINDS)
