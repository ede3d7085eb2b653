"""Real `celery worker` processes: start, ping-ready, inspect, kill the pool child or the worker, shut down, restart, scale.

Public API: `WorkerSpec` (what to run), `WorkerProcess` (one worker), `WorkerGroup` (a run's
workers), `KilledChild`; `harness.workers.container.ContainerWorker` (a worker in a container
on a containers stack, which `worker_for` picks when the stack says so). Workers are started through ``python -m harness.workers.launch`` so any
app gets the stack's URLs, extra settings and history recording with no code change.

Example:
    >>> spec = WorkerSpec(app="pkg.tasks:app", pool="prefork", concurrency=2, queues=("orders",))
    >>> spec.queues
    ('orders',)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.workers.group import WorkerGroup
from harness.workers.process import KilledChild, WorkerProcess, WorkerSpec

if TYPE_CHECKING:
    from harness.stack.base import Stack

__all__ = ["KilledChild", "WorkerGroup", "WorkerProcess", "WorkerSpec", "worker_for"]


def worker_for(stack: Stack, spec: WorkerSpec, **kwargs: Any) -> Any:
    """A worker for `spec` where the stack's ``workers`` option says: a host `WorkerProcess`, or
    a container worker on a containers stack started with ``workers="containers"``.

    Lives here, not on the stack: workers depend on the stack, never the other way round.

    >>> from types import SimpleNamespace
    >>> urls = SimpleNamespace(url_for=lambda role: f"redis://127.0.0.1/{role.value}")
    >>> w = worker_for(SimpleNamespace(urls=urls), WorkerSpec(app="pkg.tasks:app"))
    >>> type(w).__name__
    'WorkerProcess'
    """
    from harness.stack.base import Role

    options = getattr(stack, "options", None)
    if getattr(options, "workers", "host") == "containers":  # a containers stack (only it has the option)
        from harness.workers.container import ContainerWorker

        return ContainerWorker(stack, spec)  # type: ignore[arg-type]
    return WorkerProcess(spec, broker_url=stack.urls.url_for(Role.WORKER_BROKER),
                         backend_url=stack.urls.url_for(Role.WORKER_BACKEND), **kwargs)
