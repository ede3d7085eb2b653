"""Chord recording: a chord's error recorded instead of its callback, and ``chord_unlock`` tied to its chord.

In-process, no servers: kombu's memory transport and Celery's in-memory cache backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from harness.history import F, OpType, install, read_history
from harness.history.celery_signals import KEY_HEADER


@pytest.fixture
def memory_app(tmp_path: Path) -> Iterator[tuple[Celery, Path]]:
    app = Celery("chordtest", broker="memory://", backend="cache+memory://", set_as_current=False)
    # The memory transport is process-wide: keep the published callback off other tests' queue.
    app.conf.task_default_queue = "chordtest"

    @app.task(name="chordtest.collect", shared=False)
    def collect(results: list[int], key: str | None = None) -> int:
        return len(results)

    inst = install(app, tmp_path / "h", "run-1", process_name="worker-1")
    try:
        yield app, tmp_path / "h"
    finally:
        inst.uninstall()


def test_chord_error_from_stack_is_recorded_for_the_callback_with_its_key(memory_app) -> None:
    app, hdir = memory_app
    body = app.signature("chordtest.collect", kwargs={"key": "k1"},
                         options={"task_id": "cb-1", "headers": {KEY_HEADER: "k1"}})
    try:
        raise ValueError("header h0 failed")
    except ValueError as exc:  # Celery calls it while handling the error (it reads the stack)
        app.backend.chord_error_from_stack(body, exc=exc)
    assert app.backend.get_task_meta("cb-1")["status"] == "FAILURE"  # Celery's own effect, untouched
    (op,) = [op for op in read_history(hdir) if op.f == F.CHORD_ERROR]
    assert op.type is OpType.OK
    v = op.value
    assert (v["task_id"], v["chord_id"], v["role"], v["key"], v["run_id"]) == ("cb-1", "cb-1", "callback", "k1",
                                                                              "run-1")
    assert v["name"] == "chordtest.collect" and "header h0 failed" in v["reason"]


def test_chord_unlock_execution_carries_the_chord_it_polls(memory_app) -> None:
    app, hdir = memory_app
    body = app.signature("chordtest.collect", kwargs={"key": "k2"}, options={"task_id": "cb-2"})
    # An empty header is ready at once: the unlock publishes the callback and ends.
    app.tasks["celery.chord_unlock"].apply(args=("group-2", dict(body)), kwargs={"result": []})
    unlock = [op for op in read_history(hdir) if op.f == F.EXECUTE and op.value.get("name") == "celery.chord_unlock"]
    assert unlock and unlock[0].type is OpType.INVOKE
    assert (unlock[0].value["chord_id"], unlock[0].value["role"]) == ("cb-2", "unlock")
