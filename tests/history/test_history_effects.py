"""The effects API, and execute ops from Celery's own tracer (``Task.apply`` runs the real trace code)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from harness.history import (
    F,
    HistoryRecorder,
    OpType,
    active_recorder,
    install,
    read_history,
    record,
    record_dlq,
    record_effect,
    record_stored_effects,
    use_recorder,
)


def test_calls_are_no_ops_without_a_recorder() -> None:
    assert active_recorder() is None
    assert record_effect("k1", "charge") is None
    assert record_dlq("t1", key="k1") is None
    assert record(F.PHASE, "ok", {"phase": "heal"}) is None


def test_effects_go_to_the_active_recorder_with_pid_and_run_id(tmp_path: Path) -> None:
    with HistoryRecorder(tmp_path, "worker-1") as rec, use_recorder(rec, run_id="r1"):
        record_effect("order-1", "charge", amount=10)
        record_effect("order-1", "charge", duplicate=True, amount=10)
        record_dlq("t9", key="order-2", reason="max retries exceeded")
        record(F.PHASE, OpType.OK, {"phase": "drain"})
    h = read_history(tmp_path)
    assert [op.f for op in h] == ["effect", "effect", "dlq", "phase"]
    e0, e1, dlq, _ = h
    assert (e0.value["key"], e0.value["kind"], e0.value["duplicate"], e0.value["amount"]) == ("order-1", "charge", False, 10)
    assert e1.value["duplicate"] is True
    assert e0.value["run_id"] == "r1" and isinstance(e0.value["pid"], int)
    assert dlq.value == {"task_id": "t9", "key": "order-2", "reason": "max retries exceeded", "run_id": "r1",
                         "pid": dlq.value["pid"]}


def test_bad_effect_arguments_are_refused_even_when_not_recording() -> None:
    with pytest.raises(ValueError, match="workload unit key"):
        record_effect("", "charge")
    with pytest.raises(ValueError, match="effect kind"):
        record_effect("k1", None)  # type: ignore[arg-type]


def test_stored_effects_are_recorded_as_final_state(tmp_path: Path) -> None:
    with HistoryRecorder(tmp_path, "harness") as rec:
        n = record_stored_effects(rec, [{"key": "k1", "kind": "charge", "count": 1},
                                        {"key": "k2", "kind": "charge", "count": 2}])
        with pytest.raises(ValueError, match="no 'key'"):
            record_stored_effects(rec, [{"kind": "charge"}])
    assert n == 2
    assert [(op.f, op.value["key"], op.value["count"]) for op in read_history(tmp_path)] == [
        (F.STORED_EFFECT, "k1", 1), (F.STORED_EFFECT, "k2", 2)]


@pytest.fixture
def eager_app(tmp_path: Path) -> Iterator[tuple[Celery, Path]]:
    app = Celery("effects_app", broker="memory://", backend="cache+memory://", set_as_current=False)

    @app.task(name="effects_app.charge", bind=True, shared=False)
    def charge(self, key: str, amount: int = 1) -> str:
        record_effect(key, "charge", amount=amount)
        record_effect(f"{key}:mail", "email")
        return key

    @app.task(name="effects_app.boom", shared=False)
    def boom(key: str) -> None:
        raise ValueError(f"boom {key}")

    inst = install(app, tmp_path / "h", "run-e", process_name="worker")
    try:
        yield app, tmp_path / "h"
    finally:
        inst.uninstall()


def test_effect_in_a_task_carries_the_task_identity_and_execute_brackets_it(eager_app) -> None:
    app, hdir = eager_app
    res = app.tasks["effects_app.charge"].apply(("order-7",), {"amount": 5}, task_id="t-7")
    assert res.get() == "order-7"
    h = read_history(hdir)
    assert [(op.f, op.type.value) for op in h] == [
        ("execute", "invoke"), ("effect", "ok"), ("effect", "ok"), ("execute", "ok")]
    inv, eff, mail, ok = h
    assert inv.value["task_id"] == ok.value["task_id"] == eff.value["task_id"] == "t-7"
    assert inv.value["key"] == "order-7" and inv.value["attempt"] == 0
    assert eff.value["name"] == "effects_app.charge" and eff.value["amount"] == 5
    assert "task_key" not in eff.value
    assert mail.value["key"] == "order-7:mail" and mail.value["task_key"] == "order-7"
    assert ok.value["state"] == "SUCCESS"


def test_failing_task_is_execute_fail_with_the_exception(eager_app) -> None:
    app, hdir = eager_app
    app.tasks["effects_app.boom"].apply(("k-b",), task_id="t-b")
    h = read_history(hdir)
    assert [(op.f, op.type.value) for op in h] == [("execute", "invoke"), ("execute", "fail")]
    assert h[1].value["state"] == "FAILURE" and h[1].value["exc_type"] == "ValueError"
    assert h[1].error == "ValueError: boom k-b"
