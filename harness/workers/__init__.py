"""Real `celery worker` processes: start, ping-ready, inspect, kill the pool child or the worker, shut down, restart, scale.

Public API: `WorkerSpec` (what to run), `WorkerProcess` (one worker), `WorkerGroup` (a run's
workers), `KilledChild`. Workers are started through ``python -m harness.workers.launch`` so any
app gets the stack's URLs, extra settings and history recording with no code change.

Example:
    >>> spec = WorkerSpec(app="pkg.tasks:app", pool="prefork", concurrency=2, queues=("orders",))
    >>> spec.queues
    ('orders',)
"""

from harness.workers.group import WorkerGroup
from harness.workers.process import KilledChild, WorkerProcess, WorkerSpec

__all__ = ["KilledChild", "WorkerGroup", "WorkerProcess", "WorkerSpec"]
