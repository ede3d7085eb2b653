"""Worker faults through the nemesis: kill the child running a task (found in the history), SIGKILL,
warm and cold shutdown with restart at heal, pause/thaw, scale and scale back."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from harness.faults import ColdShutdown, KillWorker, KillWorkerChild, PauseWorker, ScaleWorkers, WarmShutdown
from harness.faults.nemesis import Nemesis
from harness.history import F, OpType, read_history
from harness.stack.base import Role
from harness.workers import WorkerGroup, WorkerSpec

pytestmark = pytest.mark.chaos

ENGINE_DIR = Path(__file__).resolve().parents[1] / "engine"
if str(ENGINE_DIR) not in sys.path:
    sys.path.insert(0, str(ENGINE_DIR))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def setup(chaos_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WorkerGroup, Path, str]]:
    base = tmp_path_factory.mktemp("nemesis-workers")
    queue = f"engine-nw-{uuid.uuid4().hex[:6]}"
    spec = WorkerSpec(app="engine_app:app", concurrency=2, queues=(queue,), hostname="nw1@127.0.0.1",
                      pythonpath=(str(ENGINE_DIR),), env={"ENGINE_EFFECTS_DIR": str(base / "effects")})
    urls = chaos_stack.urls
    group = WorkerGroup([spec], broker_url=urls.url_for(Role.WORKER_BROKER),
                        backend_url=urls.url_for(Role.WORKER_BACKEND), control_url=urls.broker_url,
                        history_dir=base / "history", run_id="nemesis-workers", log_dir=base / "logs")
    with group:
        yield group, base / "history", queue
    assert not [p for p in group.pids() if _alive(p)]


@pytest.fixture
def nemesis(chaos_stack: Any, setup: tuple[WorkerGroup, Path, str]) -> Iterator[Nemesis]:
    group, history, _ = setup
    n = Nemesis(chaos_stack, history_dir=history, workers=group)
    try:
        yield n
    finally:
        n.close()
        assert [w.is_running() for w in group] == [True] * len(group)


@pytest.fixture(scope="module")
def client(chaos_stack: Any) -> Iterator[Celery]:
    urls = chaos_stack.urls
    app = Celery("nemesis-client", broker=urls.url_for(Role.PRODUCER_BROKER), set_as_current=False)
    try:
        yield app
    finally:
        app.close()


def test_kill_the_child_running_a_task_found_in_the_history(setup: Any, nemesis: Nemesis, client: Celery) -> None:
    group, history, queue = setup
    w = group.get("nw1")
    key = f"k-{uuid.uuid4().hex[:6]}"
    res = client.send_task("engine.slow", kwargs={"key": key, "seconds": 20}, queue=queue)
    with nemesis.fault(KillWorkerChild(task_name="engine.slow", wait_s=15)) as applied:
        assert applied.outcome == "active"
        assert applied.effect["task_id"] == res.id and applied.effect["hostname"] == w.hostname
        (pid,) = applied.effect["killed_pids"]
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
    start = next(op for op in read_history(history) if op.f == F.FAULT_START and op.type is OpType.OK)
    assert start.value["scope"] == "child" and start.value["task_id"] == res.id


def test_kill_child_that_finds_nothing_never_bites(nemesis: Nemesis) -> None:
    with nemesis.fault(KillWorkerChild(task_name="engine.nothing", wait_s=0.3)) as applied:
        assert applied.outcome == "never_bit"
        assert "no pool child was running engine.nothing" in (applied.error or "")


def test_kill_worker_restarts_it_at_heal(setup: Any, nemesis: Nemesis) -> None:
    group, _, _ = setup
    w = group.get("nw1")
    old = w.pids()
    with nemesis.fault(KillWorker(worker="nw1")) as applied:
        assert sorted(applied.effect["killed_pids"]) == sorted(old)
        assert applied.effect["hostnames"] == [w.hostname] and applied.effect["scope"] == "worker"
        assert not w.is_running()
    assert w.is_running() and w.pid not in old and w.ping()
    assert nemesis.applied[-1].heal["restarted"] == [w.hostname]


@pytest.mark.parametrize("fault", [WarmShutdown(worker="nw1", timeout_s=20), ColdShutdown(worker="nw1")],
                         ids=["warm", "cold"])
def test_shutdowns_exit_the_worker_and_heal_restarts_it(setup: Any, nemesis: Nemesis, fault: Any) -> None:
    group, _, _ = setup
    w = group.get("nw1")
    with nemesis.fault(fault) as applied:
        assert applied.effect["exited_cleanly"] == {w.hostname: True}
        assert not w.is_running()
    assert w.ping()


def test_pause_freezes_the_worker_until_healed(setup: Any, nemesis: Nemesis) -> None:
    group, _, _ = setup
    w = group.get("nw1")
    with nemesis.fault(PauseWorker("nw1")):
        assert not w.ping(timeout=0.5)
        state = open(f"/proc/{w.pid}/stat", "rb").read().rsplit(b")", 1)[1].split()[0]
        assert state == b"T"
    assert w.ping(timeout=2)


def test_scale_workers_and_back(setup: Any, nemesis: Nemesis) -> None:
    group, _, _ = setup
    with nemesis.fault(ScaleWorkers(count=2)) as applied:
        assert len(group) == 2 and applied.effect["changed"] == ["nw1-2@127.0.0.1"]
        assert group.get("nw1-2").ping()
    assert group.hostnames == ["nw1@127.0.0.1"]
