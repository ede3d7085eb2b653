"""A small Celery app for the history tests (not the sample system).

The worker subprocess imports it with ``celery -A history_app worker`` and reads its broker,
backend and queue from HISTORY_TEST_BROKER / HISTORY_TEST_BACKEND / HISTORY_TEST_QUEUE. Tests
build their producer-side app with `create_app`. Task code knows nothing about the history
except the effects API, as in a real system.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from celery import Celery

from harness.history import install_worker_option, record_effect


def create_app(broker: str, backend: str, queue: str, *, set_as_current: bool = False,
               worker_option: bool = True) -> Celery:
    app = Celery("history_app", broker=broker, backend=backend, set_as_current=set_as_current)
    app.conf.update(
        task_default_queue=queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_lost_wait=1.0,  # report a killed child's task after 1 s instead of 10 s
        broker_transport_options={"confirm_publish": True},
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        result_expires=600,
        worker_hijack_root_logger=False,
    )

    @app.task(name="history_app.add", shared=False)
    def add(x: int, y: int, key: str | None = None) -> int:
        return x + y

    @app.task(name="history_app.charge", shared=False)
    def charge(key: str, amount: int = 1) -> str:
        record_effect(key, "charge", amount=amount)
        return key

    @app.task(name="history_app.flaky", bind=True, shared=False, max_retries=3)
    def flaky(self, key: str, fails: int = 1) -> int:  # type: ignore[no-untyped-def]
        if self.request.retries < fails:
            raise self.retry(countdown=0.2)
        record_effect(key, "flaky")
        return int(self.request.retries)

    @app.task(name="history_app.boom", shared=False)
    def boom(key: str) -> None:
        raise ValueError(f"boom {key}")

    @app.task(name="history_app.slow", bind=True, shared=False)
    def slow(self, key: str, marker_dir: str) -> str:  # type: ignore[no-untyped-def]
        if (self.request.delivery_info or {}).get("redelivered"):
            return "redelivered"
        # Tell the test which pool child runs it, then wait to be killed (bounded).
        (Path(marker_dir) / f"{key}.{os.getpid()}").write_text("started")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.05)
        return "not killed"

    if worker_option:
        install_worker_option(app)
    return app


_urls = (
    os.environ.get("HISTORY_TEST_BROKER", "memory://"),
    os.environ.get("HISTORY_TEST_BACKEND", "cache+memory://"),
    os.environ.get("HISTORY_TEST_QUEUE", "history-test"),
)
app = create_app(*_urls, set_as_current=True)
# The same app without the worker option: recorded only through `python -m harness.history.record_worker`.
plain_app = create_app(*_urls, worker_option=False)
