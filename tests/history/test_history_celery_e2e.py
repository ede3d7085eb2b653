"""End to end: a real ``celery worker`` (prefork, threads, solo) against real RabbitMQ + Redis.

The worker records through ``--chaos-history`` only (no change to task code); the test process
records its publishes through `install`. Then the merged history must tell the whole story:
publish -> receive -> execute, retries, chain children carrying their key, failures, effects,
leftovers of another run, and (prefork) a SIGKILLed pool child: worker_lost with exit code -9,
the requeued message redelivered and executed by a new child.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import chain

from harness.history import F, History, Op, OpType, install, read_history
from harness.history.celery_signals import KEY_HEADER, RUN_ID_HEADER

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack_urls(chaos_stack: Any) -> tuple[str, str]:
    """(broker_url, backend_url) of the session's stack (the plugin's; local RabbitMQ + Redis by default)."""
    return chaos_stack.urls.broker_url, chaos_stack.urls.backend_url


class Worker:
    """A `celery worker` subprocess in its own process group, always reaped."""

    def __init__(self, tmp: Path, broker: str, backend: str, queue: str, pool: str, history: Path,
                 run_id: str, *, wrapper: bool = False) -> None:
        self.log = tmp / f"worker-{pool}.log"
        env = dict(os.environ, HISTORY_TEST_BROKER=broker, HISTORY_TEST_BACKEND=backend,
                   HISTORY_TEST_QUEUE=queue, PYTHONPATH=os.pathsep.join([str(HERE), str(REPO)]))
        for var in ("CHAOS_HISTORY_DIR", "CHAOS_RUN_ID", "CHAOS_PROCESS_NAME"):
            env.pop(var, None)
        common = ["worker", "-P", pool, "-c", "2", "-n", f"hist-{pool}-{uuid.uuid4().hex[:6]}@localhost",
                  "-l", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        if wrapper:  # an app that opted in to nothing: the environment and the wrapper command
            env.update(CHAOS_HISTORY_DIR=str(history), CHAOS_RUN_ID=run_id)
            cmd = [sys.executable, "-m", "harness.history.record_worker", "-A", "history_app:plain_app", *common]
        else:
            cmd = [sys.executable, "-m", "celery", "-A", "history_app", *common,
                   "--chaos-history", str(history), "--chaos-run-id", run_id]
        self._fh = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, cwd=str(tmp), stdout=self._fh, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            if b" ready." in self.log.read_bytes():
                return
            time.sleep(0.1)
        pytest.fail(f"worker not ready after {timeout} s:\n{self.tail()}")

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        # Warm shutdown through the main process only: a SIGTERM to the whole group would kill
        # pool children mid-reply and show up as (real) worker losses in the history.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        # Pool children are in the same group; make sure none outlives the test.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._fh.close()


@contextlib.contextmanager
def running(tmp: Path, urls: tuple[str, str], pool: str, *,
            wrapper: bool = False) -> Iterator[tuple[Any, Worker, Path, str]]:
    import history_app

    run_id = f"run-{uuid.uuid4().hex[:8]}"
    queue = f"history-{uuid.uuid4().hex[:8]}"
    hdir = tmp / "history"
    app = history_app.create_app(urls[0], urls[1], queue)
    inst = install(app, hdir, run_id, process_name="producer-1")
    worker = Worker(tmp, urls[0], urls[1], queue, pool, hdir, run_id, wrapper=wrapper)
    try:
        worker.wait_ready()
        yield app, worker, hdir, run_id
    finally:
        worker.stop()
        inst.uninstall()
        app.close()


def _ops(h: History, f: str, type_: OpType, task_id: str) -> list[Op]:
    return [op for op in h if op.f == f and op.type is type_ and op.value.get("task_id") == task_id]


def _one(h: History, f: str, type_: OpType, task_id: str) -> Op:
    ops = _ops(h, f, type_, task_id)
    assert len(ops) == 1, f"expected one {f}/{type_.value} for {task_id}, got {ops}"
    return ops[0]


def _assert_common_story(h: History, app: Any, results: dict[str, Any], run_id: str, producer: str) -> None:
    """publish invoke/ok by the producer, receive, execute invoke + completion, for each task."""
    for name, res in results.items():
        tid = res.id
        inv = [op for op in _ops(h, F.PUBLISH, OpType.INVOKE, tid) if op.process == producer]
        ok = [op for op in _ops(h, F.PUBLISH, OpType.OK, tid) if op.process == producer]
        if name == "chain":  # the last link is published by the worker, after the first link ran
            assert not inv and not ok, name
        else:
            assert len(inv) == len(ok) == 1 and inv[0].index < ok[0].index, name
        assert _ops(h, F.RECEIVE, OpType.OK, tid), f"{name}: no receive"
        assert _ops(h, F.EXECUTE, OpType.INVOKE, tid), f"{name}: no execute"
    leftovers = {op.value.get("run_id") for op in h if isinstance(op.value, dict) and "run_id" in op.value}
    assert leftovers <= {run_id, "an-earlier-run"}, leftovers
    assert not h.skipped, h.skipped


def _publish_workload(app: Any) -> dict[str, Any]:
    t = app.tasks
    results = {
        "add": t["history_app.add"].apply_async((1, 2), {"key": "add-1"}),
        "charge": t["history_app.charge"].delay("charge-1", amount=5),   # key passed positionally
        "flaky": t["history_app.flaky"].delay("flaky-1", fails=1),
        "boom": t["history_app.boom"].delay("boom-1"),
    }
    results["chain"] = chain(t["history_app.add"].s(1, 2, key="chain-1"), t["history_app.add"].s(10)).apply_async()
    # A message of another run (a leftover): the worker must record its foreign run id.
    results["leftover"] = t["history_app.add"].apply_async((0, 0), headers={RUN_ID_HEADER: "an-earlier-run",
                                                                             KEY_HEADER: "old-1"})
    return results


def _wait_results(results: dict[str, Any]) -> None:
    assert results["add"].get(timeout=30) == 3
    assert results["charge"].get(timeout=30) == "charge-1"
    assert results["flaky"].get(timeout=30) == 1
    with pytest.raises(ValueError, match="boom"):
        results["boom"].get(timeout=30)
    assert results["chain"].get(timeout=30) == 13
    assert results["leftover"].get(timeout=30) == 0


def _assert_workload(h: History, results: dict[str, Any], run_id: str) -> None:
    add_ok = _one(h, F.EXECUTE, OpType.OK, results["add"].id)
    assert add_ok.value["key"] == "add-1" and add_ok.value["run_id"] == run_id
    assert _one(h, F.RECEIVE, OpType.OK, results["add"].id).value["redelivered"] is False

    charge = results["charge"].id
    effect = [op for op in h if op.f == F.EFFECT and op.value.get("task_id") == charge]
    assert len(effect) == 1 and effect[0].value["key"] == "charge-1" and effect[0].value["amount"] == 5
    assert _one(h, F.EXECUTE, OpType.INVOKE, charge).process == effect[0].process

    flaky = results["flaky"].id
    retry = _one(h, F.RETRY, OpType.OK, flaky)
    assert retry.value["key"] == "flaky-1" and retry.value["countdown"] == 0.2 and retry.value["attempt"] == 0
    fails = _ops(h, F.EXECUTE, OpType.FAIL, flaky)
    assert [op.value["state"] for op in fails] == ["RETRY"]
    republished = _ops(h, F.PUBLISH, OpType.OK, flaky)
    assert len(republished) == 2 and republished[1].value["key"] == "flaky-1"
    assert republished[1].value["attempt"] == 1
    ok = _one(h, F.EXECUTE, OpType.OK, flaky)
    assert ok.value["attempt"] == 1 and ok.index > retry.index

    boom = _one(h, F.EXECUTE, OpType.FAIL, results["boom"].id)
    assert boom.value["state"] == "FAILURE" and "boom boom-1" in (boom.error or "")

    child_id = results["chain"].id  # the chain's result is its last link
    link_pub = _one(h, F.PUBLISH, OpType.OK, child_id)
    assert link_pub.value["key"] == "chain-1", "a chain child carries its parent's key"
    assert link_pub.value["parent_id"] is not None
    assert _one(h, F.EXECUTE, OpType.OK, child_id).value["key"] == "chain-1"

    left = _one(h, F.RECEIVE, OpType.OK, results["leftover"].id)
    assert left.value["run_id"] == "an-earlier-run" and left.value["key"] == "old-1"


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_threads_and_solo_pools_record_the_whole_story(tmp_path: Path, stack_urls: tuple[str, str], pool: str) -> None:
    with running(tmp_path, stack_urls, pool) as (app, worker, hdir, run_id):
        results = _publish_workload(app)
        _wait_results(results)
    h = read_history(hdir)
    producer = f"producer-1-{os.getpid()}"
    _assert_common_story(h, app, results, run_id, producer)
    _assert_workload(h, results, run_id)
    worker_procs = {op.process for op in h if op.f in (F.RECEIVE, F.EXECUTE)}
    assert len(worker_procs) == 1 and worker_procs.pop() == f"worker-{worker.proc.pid}"


def test_prefork_records_children_and_a_sigkilled_child(tmp_path: Path, stack_urls: tuple[str, str]) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    with running(tmp_path, stack_urls, "prefork") as (app, worker, hdir, run_id):
        results = _publish_workload(app)
        _wait_results(results)

        slow = app.tasks["history_app.slow"].delay("slow-1", str(markers))
        deadline = time.monotonic() + 30
        started: list[Path] = []
        while time.monotonic() < deadline and not started:
            started = list(markers.glob("slow-1.*"))
            time.sleep(0.05)
        assert started, f"slow task never started:\n{worker.tail()}"
        child_pid = int(started[0].name.split(".")[1])
        os.kill(child_pid, signal.SIGKILL)
        assert slow.get(timeout=60) == "redelivered"

    h = read_history(hdir)
    producer = f"producer-1-{os.getpid()}"
    _assert_common_story(h, app, results, run_id, producer)
    _assert_workload(h, results, run_id)

    parent = f"worker-{worker.proc.pid}"
    assert {op.process for op in h if op.f == F.RECEIVE} == {parent}
    children = {op.process for op in h if op.f == F.EXECUTE and op.type is OpType.INVOKE}
    assert children and all(p.startswith(f"{parent}.child-") for p in children)

    lost = _one(h, F.WORKER_LOST, OpType.OK, slow.id)
    assert lost.process == parent
    assert lost.value["exitcode"] == -signal.SIGKILL and lost.value["child_pid"] == child_pid
    assert lost.value["key"] == "slow-1" and lost.value["run_id"] == run_id
    killed = f"{parent}.child-{child_pid}"
    first, second = _ops(h, F.EXECUTE, OpType.INVOKE, slow.id)
    assert first.process == killed and second.process != killed, "the retry runs in a new child"
    unknown = _one(h, F.EXECUTE, OpType.INFO, slow.id)
    assert unknown.process == killed and unknown.value["state"] == "WORKER_LOST"
    reject = _one(h, F.REJECT, OpType.OK, slow.id)
    assert reject.value["requeue"] is True
    receives = _ops(h, F.RECEIVE, OpType.OK, slow.id)
    assert [r.value["redelivered"] for r in receives] == [False, True]
    done = _one(h, F.EXECUTE, OpType.OK, slow.id)
    assert done.process == second.process
    assert first.index < lost.index < reject.index < receives[1].index < second.index < done.index


def test_record_worker_records_an_app_that_opted_in_to_nothing(tmp_path: Path, stack_urls: tuple[str, str]) -> None:
    with running(tmp_path, stack_urls, "solo", wrapper=True) as (app, worker, hdir, run_id):
        res = app.tasks["history_app.charge"].delay("plain-1")
        assert res.get(timeout=30) == "plain-1"
    h = read_history(hdir)
    proc = f"worker-{worker.proc.pid}"
    assert _one(h, F.RECEIVE, OpType.OK, res.id).process == proc
    assert _one(h, F.EXECUTE, OpType.OK, res.id).value["run_id"] == run_id
    effect = [op for op in h if op.f == F.EFFECT]
    assert [(op.process, op.value["key"], op.value["task_id"]) for op in effect] == [(proc, "plain-1", res.id)]
