"""A tiny Celery app for the smoke certification: one task round trip through the proxies.

The worker reads its URLs from CHAOS_BROKER_URL / CHAOS_BACKEND_URL (set by WorkerProcess).

Example:
    >>> from harness.smoke import run_smoke
    >>> run_smoke(stack)                # doctest: +SKIP
    {'ok': True, 'task_id': '…', 'round_trip_s': 0.05, ...}
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

from harness.stack.base import Role, Stack

app = Celery("chaos-smoke")
app.conf.update(
    broker_url=os.environ.get("CHAOS_BROKER_URL"),
    result_backend=os.environ.get("CHAOS_BACKEND_URL"),
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="chaos.smoke.echo")
def echo(value: Any) -> Any:
    """Return what it got, with the worker's pid, so the round trip proves a real worker ran it."""
    return {"value": value, "pid": os.getpid()}


def run_smoke(stack: Stack, timeout: float = 30.0) -> dict[str, Any]:
    """Start a worker on the worker-role proxies, send one task through the producer-role proxies."""
    from harness.workers import WorkerProcess, WorkerSpec

    urls = stack.urls
    spec = WorkerSpec(app="harness.smoke:app", pool="prefork", concurrency=1, queues=("celery",))
    t0 = time.monotonic()
    with WorkerProcess(spec, broker_url=urls.url_for(Role.WORKER_BROKER),
                       backend_url=urls.url_for(Role.WORKER_BACKEND)) as worker:
        ready = time.monotonic() - t0
        client = Celery("chaos-smoke-client", broker=urls.url_for(Role.PRODUCER_BROKER),
                        backend=urls.url_for(Role.PRODUCER_BACKEND))
        client.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json",
                           broker_connection_retry_on_startup=True)
        try:
            t1 = time.monotonic()
            res = client.send_task("chaos.smoke.echo", args=["ping"], queue="celery")
            value = res.get(timeout=timeout)
            rt = time.monotonic() - t1
        finally:
            client.close()
        ok = value.get("value") == "ping" and value.get("pid") in worker.children() + [worker.pid]
    return {"ok": bool(ok), "task_id": res.id, "worker_ready_s": round(ready, 3), "round_trip_s": round(rt, 4),
            "result": value}
