"""Publish recording: invoke/ok around a confirmed publish, info when unknown, fail when known not sent.

Uses real transports: kombu's in-process memory transport for the ok path, and real TCP
connections to a closed loopback port for the failures (no mocks).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from kombu.exceptions import OperationalError

from harness.history import F, OpType, install, read_history
from harness.history.celery_signals import KEY_HEADER, RUN_ID_HEADER


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def memory_app(tmp_path: Path) -> Iterator[tuple[Celery, Path]]:
    app = Celery("pubtest", broker="memory://", backend="cache+memory://", set_as_current=False)

    @app.task(name="pubtest.add", shared=False)
    def add(x: int, y: int, key: str | None = None) -> int:
        return x + y

    inst = install(app, tmp_path / "h", "run-1", process_name="producer-1")
    try:
        yield app, tmp_path / "h"
    finally:
        inst.uninstall()


def _drain_headers(app: Celery, n: int) -> list[dict]:
    out = []
    with app.connection_for_read() as conn:
        q = conn.SimpleQueue("celery")
        try:
            for _ in range(n):
                msg = q.get(timeout=2)
                out.append(dict(msg.headers))
                msg.ack()
        finally:
            q.close()
    return out


def test_confirmed_publish_is_invoke_then_ok_and_stamps_key_and_run_headers(memory_app) -> None:
    app, hdir = memory_app
    add = app.tasks["pubtest.add"]
    r1 = add.apply_async((1, 2), {"key": "order-1"})
    r2 = add.apply_async((3, 4), headers={KEY_HEADER: "order-2"})
    r3 = add.apply_async((5, 6))  # no key at all: still recorded, key None

    h = read_history(hdir)
    assert [(op.f, op.type) for op in h] == [(F.PUBLISH, OpType.INVOKE), (F.PUBLISH, OpType.OK)] * 3
    assert [op.value["task_id"] for op in h] == [r1.id, r1.id, r2.id, r2.id, r3.id, r3.id]
    assert [op.value["key"] for op in h[::2]] == ["order-1", "order-2", None]
    assert {op.value["run_id"] for op in h} == {"run-1"}
    assert {op.value["name"] for op in h} == {"pubtest.add"}
    assert len(h.processes()) == 1 and h.processes()[0].startswith("producer-1-")

    headers = _drain_headers(app, 3)
    assert [hd.get(KEY_HEADER) for hd in headers] == ["order-1", "order-2", None]
    assert {hd[RUN_ID_HEADER] for hd in headers} == {"run-1"}


def test_publish_that_raised_after_sending_started_is_info_not_fail(tmp_path: Path) -> None:
    port = _closed_port()
    app = Celery("pubinfo", broker=f"amqp://guest:guest@127.0.0.1:{port}//", set_as_current=False)
    app.conf.broker_connection_timeout = 1

    @app.task(name="pubinfo.add", shared=False)
    def add(x: int, y: int, key: str | None = None) -> int:
        return x + y

    inst = install(app, tmp_path, "run-2", process_name="producer-1")
    try:
        with pytest.raises(OperationalError):
            add.apply_async((1, 2), {"key": "k1"}, retry=False, ignore_result=True)
    finally:
        inst.uninstall()
    h = read_history(tmp_path)
    assert [(op.f, op.type) for op in h] == [(F.PUBLISH, OpType.INVOKE), (F.PUBLISH, OpType.INFO)]
    assert h[1].value["key"] == "k1" and "Connection refused" in (h[1].error or "")


def test_publish_that_failed_before_anything_was_sent_is_fail(tmp_path: Path) -> None:
    # The redis result backend is contacted (to subscribe for the result) before the message
    # is built and sent: when it is down the task was certainly not published.
    port = _closed_port()
    app = Celery("pubfail", broker="memory://", backend=f"redis://127.0.0.1:{port}/0", set_as_current=False)
    app.conf.redis_socket_connect_timeout = 1
    app.conf.result_backend_transport_options = {"retry_policy": {"max_retries": 0}}

    @app.task(name="pubfail.add", shared=False)
    def add(x: int, y: int, key: str | None = None) -> int:
        return x + y

    inst = install(app, tmp_path, "run-3", process_name="producer-1")
    try:
        with pytest.raises(Exception):  # noqa: B017 - whichever error the redis client raises
            add.apply_async((1, 2), {"key": "k1"})
    finally:
        inst.uninstall()
    h = read_history(tmp_path)
    assert [(op.f, op.type) for op in h] == [(F.PUBLISH, OpType.INVOKE), (F.PUBLISH, OpType.FAIL)]
    assert h[0].value["task_id"] == h[1].value["task_id"] is not None
    assert h[1].value["not_sent"] is True and h[1].value["run_id"] == "run-3"


def test_install_twice_is_idempotent_or_refused(tmp_path: Path) -> None:
    app = Celery("twice", broker="memory://", set_as_current=False)
    inst = install(app, tmp_path, "run-4")
    try:
        assert install(app, tmp_path, "run-4") is inst
        with pytest.raises(RuntimeError, match=r"already installed.*uninstall"):
            install(app, tmp_path, "run-5")
        with pytest.raises(ValueError, match="run_id"):
            install(Celery("other", set_as_current=False), tmp_path, "")
    finally:
        inst.uninstall()
    assert "send_task" not in app.__dict__, "uninstall restores the app"


def test_an_app_installed_before_its_worker_starts_records_as_the_worker(tmp_path: Path) -> None:
    # install() at import time of a `celery worker` process: the name follows the worker_init signal.
    from celery import signals

    class WorkController:  # what worker_init is sent with: only .app is read
        def __init__(self, app: Celery) -> None:
            self.app = app

    app = Celery("becomes_worker", broker="memory://", set_as_current=False)
    inst = install(app, tmp_path, "run-6")
    try:
        first = inst.recorder
        assert first.process == f"producer-{os.getpid()}" and first.path.exists()
        signals.worker_init.send(sender=WorkController(app))
        assert inst.is_worker and inst.recorder.process == f"worker-{os.getpid()}"
        assert not first.path.exists(), "the unused producer file is removed"
    finally:
        inst.uninstall()
