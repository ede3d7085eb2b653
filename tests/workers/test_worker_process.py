"""Real `celery worker` processes: ready on ping, kill the child running a task, warm / cold shutdown,
SIGKILL of the whole worker, restart, scale, threads pool limits, nothing left behind."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from harness.errors import ConfigError, HarnessError, UnsupportedFault
from harness.stack.base import Role
from harness.workers import WorkerGroup, WorkerProcess, WorkerSpec
from harness.workers.process import _children_of

ENGINE_DIR = Path(__file__).resolve().parents[1] / "engine"

pytestmark = pytest.mark.chaos


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False


def _wait(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def queue() -> str:
    return f"engine-workers-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def spec(queue: str, tmp_path_factory: pytest.TempPathFactory) -> WorkerSpec:
    effects = tmp_path_factory.mktemp("effects")
    return WorkerSpec(app="engine_app:app", pool="prefork", concurrency=2, queues=(queue,),
                      hostname=f"wt-{uuid.uuid4().hex[:4]}@127.0.0.1", pythonpath=(str(ENGINE_DIR),),
                      env={"ENGINE_EFFECTS_DIR": str(effects)})


@pytest.fixture(scope="module")
def group(chaos_stack: Any, spec: WorkerSpec) -> Iterator[WorkerGroup]:
    urls = chaos_stack.urls
    g = WorkerGroup([spec], broker_url=urls.url_for(Role.WORKER_BROKER), backend_url=urls.url_for(Role.WORKER_BACKEND),
                    control_url=urls.broker_url)
    with g:
        yield g
    assert not [p for p in g.pids() if _alive(p)]


@pytest.fixture(scope="module")
def client(chaos_stack: Any) -> Iterator[Celery]:
    urls = chaos_stack.urls
    app = Celery("engine-client", broker=urls.url_for(Role.PRODUCER_BROKER), backend=urls.url_for(Role.PRODUCER_BACKEND),
                 set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def worker(group: WorkerGroup) -> WorkerProcess:
    w = group.get(0)
    if not w.is_running():  # a previous test shut it down on purpose
        w.start()
    _wait(lambda: len(w.children()) == w.spec.concurrency, 15, "a full pool")
    return w


def _slow(client: Celery, queue: str, seconds: float) -> Any:
    return client.send_task("engine.slow", kwargs={"key": f"k-{uuid.uuid4().hex[:6]}", "seconds": seconds}, queue=queue)


def test_ready_worker_answers_ping_with_its_pool(worker: WorkerProcess) -> None:
    assert worker.ping()
    assert len(worker.children()) == 2
    assert worker.busy() == {"active": 0, "reserved": 0, "scheduled": 0}
    assert sorted(worker.pids()) == sorted([worker.pid, *worker.children()])


def test_kill_the_child_running_a_task(worker: WorkerProcess, client: Celery, queue: str) -> None:
    before = set(worker.children())
    res = _slow(client, queue, 10)
    killed = worker.kill_child_running(task_name="engine.slow", timeout=15)
    assert killed.pid in before and killed.task_id == res.id and killed.task_name == "engine.slow"
    _wait(lambda: not _alive(killed.pid), 5, "the child to die")
    # Early acks: Celery marks the task failed with WorkerLostError and forks a replacement child.
    with pytest.raises(Exception, match="Worker exited prematurely|WorkerLostError|SIGKILL"):
        res.get(timeout=20)
    _wait(lambda: len(worker.children()) == 2 and killed.pid not in worker.children(), 15, "a replacement child")
    assert worker.ping()


def test_kill_child_refuses_pids_that_are_not_its_children(worker: WorkerProcess) -> None:
    with pytest.raises(HarnessError, match=f"pid {os.getpid()} is not a pool child of worker"):
        worker.kill_child(os.getpid())
    with pytest.raises(TimeoutError, match="no pool child of .* ran name=engine.nothing within 0.5 s"):
        worker.find_child_running(task_name="engine.nothing", timeout=0.5)


def test_warm_shutdown_lets_the_running_task_finish(worker: WorkerProcess, client: Celery, queue: str) -> None:
    res = _slow(client, queue, 1.5)
    worker.find_child_running(task_id=res.id, timeout=15)
    assert worker.warm_shutdown(timeout=30) is True
    assert not worker.is_running()
    assert res.get(timeout=10).startswith("k-")
    assert res.state == "SUCCESS"


def test_cold_shutdown_cuts_the_running_task(worker: WorkerProcess, client: Celery, queue: str) -> None:
    res = _slow(client, queue, 30)
    found = worker.find_child_running(task_id=res.id, timeout=15)
    t = time.monotonic()
    worker.cold_shutdown(timeout=15)
    assert time.monotonic() - t < 12, "a cold shutdown does not wait for the 30 s task"
    assert not worker.is_running() and not _alive(found.pid)
    assert res.state != "SUCCESS"


def test_sigkill_the_whole_worker_then_restart(worker: WorkerProcess) -> None:
    pids = worker.kill()
    assert len(pids) == 3
    _wait(lambda: not any(_alive(p) for p in pids), 5, "every process of the worker to die")
    old = pids[0]
    worker.start()
    assert worker.pid != old and worker.ping()
    worker.restart(timeout=20)
    assert worker.ping()


def test_scale_up_and_down(group: WorkerGroup, worker: WorkerProcess) -> None:
    started = group.scale(3)
    assert len(started) == 2 and len(group) == 3
    assert all(group.get(h).ping() for h in started)
    extra = [p for h in started for p in group.get(h).pids()]
    stopped = group.scale(1)
    assert stopped == started and group.hostnames == [worker.hostname]
    _wait(lambda: not any(_alive(p) for p in extra), 10, "scaled-down workers to exit")
    assert set(group.busy()) == {worker.hostname}
    with pytest.raises(ConfigError, match="scale needs a worker count >= 1"):
        group.scale(0)


def test_threads_pool_has_no_child_to_kill(chaos_stack: Any, spec: WorkerSpec, tmp_path: Path) -> None:
    urls = chaos_stack.urls
    threads = WorkerSpec(app=spec.app, pool="threads", concurrency=2, queues=spec.queues, env=spec.env,
                         pythonpath=spec.pythonpath)
    with WorkerProcess(threads, broker_url=urls.url_for(Role.WORKER_BROKER),
                       backend_url=urls.url_for(Role.WORKER_BACKEND), control_url=urls.broker_url) as w:
        assert w.children() == []
        with pytest.raises(UnsupportedFault, match="needs the prefork pool, but worker .* runs the threads pool"):
            w.kill_child(w.pid)
        pids = w.pids()
    assert not any(_alive(p) for p in pids)


def test_failed_start_leaves_nothing_behind(chaos_stack: Any, tmp_path: Path) -> None:
    urls = chaos_stack.urls
    bad = WorkerSpec(app="engine_app_missing:app", queues=("nothing",))
    w = WorkerProcess(bad, broker_url=urls.url_for(Role.WORKER_BROKER), backend_url=urls.url_for(Role.WORKER_BACKEND),
                      ready_timeout=20, log_dir=tmp_path)
    # An app the worker cannot import is the user's configuration: a ConfigError (exit 2).
    with pytest.raises(ConfigError, match="cannot import the app engine_app_missing:app") as err:
        w.start()
    assert "PYTHONPATH" in str(err.value)
    assert not w.is_running()
    assert w._tmp_dir is None, "the worker's own TMPDIR was removed"


def test_settings_reach_the_worker(chaos_stack: Any, spec: WorkerSpec) -> None:
    urls = chaos_stack.urls
    tuned = WorkerSpec(app=spec.app, concurrency=1, queues=spec.queues, env=spec.env, pythonpath=spec.pythonpath,
                       settings={"task_acks_late": True, "worker_prefetch_multiplier": 4})
    with WorkerProcess(tuned, broker_url=urls.url_for(Role.WORKER_BROKER),
                       backend_url=urls.url_for(Role.WORKER_BACKEND), control_url=urls.broker_url) as w:
        conf = w.conf()
    assert conf["task_acks_late"] is True and conf["worker_prefetch_multiplier"] == 4
    assert conf["broker_url"].split("@")[-1].startswith(f"127.0.0.1:{urls.proxied[Role.WORKER_BROKER].listen_port}")


def test_children_of_reads_proc_without_scanning(worker: WorkerProcess) -> None:
    assert sorted(_children_of(worker.pid)) == sorted(worker.children())
    assert _children_of(2**22 + 12345) == []


def test_a_worker_that_cannot_import_its_app_is_a_configuration_error(tmp_path: Path) -> None:
    # The harness's process may import the app (a workload adding its project to sys.path) while
    # the workers, started elsewhere, cannot: one line naming the module and the fix, no traceback.
    w = WorkerProcess(WorkerSpec(app="no_such_project_module:app"), broker_url="amqp://guest:guest@127.0.0.1:1//",
                      backend_url="redis://127.0.0.1:1/0", ready_timeout=20)
    with pytest.raises(ConfigError) as err:
        w.start()
    text = str(err.value)
    assert "cannot import the app no_such_project_module:app" in text and "PYTHONPATH" in text
    assert "\n" not in text and not w.is_running()
