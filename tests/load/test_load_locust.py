"""Locust against the real stack: the locustfile, the runner, distributed modes, reaping. Locust runs in subprocesses only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from load_testkit import LOCUSTFILE, Queues, alive, publishes, wait_for, wait_gone

from harness.history import OpType
from harness.load import LoadError, LoadRun, LoadSpec, LoadTarget, read_units, run_load
from harness.load.soak import queue_depths
from harness.stack.base import Role
from sample_system.workload import KINDS

pytestmark = pytest.mark.timeout(180)


def target(stack: Any, tmp_path: Path, **kw: Any) -> LoadTarget:
    return LoadTarget.from_urls(stack.urls, run_id=kw.pop("run_id", "load-test"), history_dir=tmp_path / "history",
                                **kw)


def test_plain_locust_cli_publishes_every_kind_of_the_sample_workload(chaos_stack: Any, queues: Queues,
                                                                       tmp_path: Path) -> None:
    history = tmp_path / "history"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "CHAOS_"))}
    env.update({"CHAOS_PRODUCER_BROKER_URL": chaos_stack.urls.url_for(Role.PRODUCER_BROKER),
                "CHAOS_PRODUCER_BACKEND_URL": chaos_stack.urls.url_for(Role.PRODUCER_BACKEND),
                "CHAOS_RUN_ID": "plain-1", "CHAOS_HISTORY_DIR": str(history), "CHAOS_LOAD_USER_RATE": "8"})
    argv = [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "-u", "3", "-r", "3", "-t", "4s",
            "-s", "5", "--json-file", str(tmp_path / "stats"), "--only-summary"]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            process_group=0)
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    log = out.decode(errors="replace")[-3000:]
    assert proc.returncode == 0, log

    stats = json.loads((tmp_path / "stats.json").read_text())
    requests = {e["name"]: e["num_requests"] for e in stats}
    assert set(requests) == set(KINDS), log
    assert sum(e["num_failures"] for e in stats) == 0
    ledger = read_units(history / "units")
    assert len(ledger) == sum(requests.values())                     # every submit is in the ledger
    assert {u.run_id for u in ledger} == {"plain-1"} and len({u.key for u in ledger}) == len(ledger)
    ok = publishes(history)
    assert ok and len(publishes(history, OpType.INVOKE)) == len(ok)
    assert {op.value["run_id"] for op in ok} == {"plain-1"}
    assert {op.value["key"] for op in ok} == {u.key for u in ledger}  # each unit's messages carry its key
    # Every confirmed publish is in RabbitMQ (no worker consumes here).
    assert queues.wait_depth(len(ok)) == len(ok)


def test_runner_counts_match_the_history_and_the_broker(chaos_stack: Any, queues: Queues, tmp_path: Path) -> None:
    t = target(chaos_stack, tmp_path, kinds=("notification",))
    spec = LoadSpec(LOCUSTFILE, users=3, rate_per_s=30, run_time_s=4)
    with LoadRun(spec, t) as run:
        result = run.wait()
        work_dir = run.work_dir
        seen = run.seen_pids
    assert result.complete and result.exit_code == 0, result.log_tail
    assert result.failures == 0 and result.ok > 0 and result.peak_users == 3 and result.workers == 0
    assert result.for_name("notification").requests == result.requests
    assert result.latency_ms.p50 is not None and result.latency_ms.p99 >= result.latency_ms.p50
    assert sum(r for _, r, _ in result.per_second) == result.requests
    ok = publishes(tmp_path / "history")
    assert len(ok) == result.ok == len(read_units(tmp_path / "history" / "units"))
    assert queue_depths(chaos_stack.urls.broker_url, ["notifications"])["notifications"] == result.ok
    assert work_dir is not None and not work_dir.exists()
    assert seen and wait_gone(seen) == []


def test_runner_stops_a_forked_distributed_run_early_and_reaps_every_process(chaos_stack: Any, queues: Queues,
                                                                               tmp_path: Path) -> None:
    t = target(chaos_stack, tmp_path, kinds=("notification",))
    spec = LoadSpec(LOCUSTFILE, users=4, rate_per_s=20, run_time_s=300, workers=2, distribution="processes")
    history = tmp_path / "history"
    started = time.monotonic()
    with LoadRun(spec, t, work_dir=tmp_path / "work") as run:
        # Both forked workers publish (the history has one file per Locust process that published).
        wait_for(lambda: len({op.value["pid"] for op in publishes(history)}) >= 2 if history.is_dir() else False,
                 timeout=90, what="publishes from two Locust worker processes")
        assert len(run.pids()) >= 3                                  # master + 2 forked workers
        result = run.stop()
        assert not run.is_running()
    assert time.monotonic() - started < 200                          # stopped long before its run time
    assert result.complete, result.log_tail
    assert result.workers == 2 and result.peak_users == 4 and result.failures == 0
    ok = publishes(history)
    assert result.ok == len(ok) > 0                                  # the workers' last reports were not lost
    assert queues.wait_depth(len(ok)) == len(ok)
    assert wait_gone(run.seen_pids) == []
    assert sorted(p.name.split(".")[1] for p in (tmp_path / "work" / "summaries").iterdir()) == \
        ["master", "worker", "worker"]


def test_runner_master_and_separate_worker_on_loopback(chaos_stack: Any, queues: Queues, tmp_path: Path) -> None:
    t = target(chaos_stack, tmp_path, kinds=("event",))
    result = run_load(LoadSpec(LOCUSTFILE, users=2, rate_per_s=10, run_time_s=5, workers=1, distribution="master"),
                      t, work_dir=tmp_path / "work")
    assert result.complete and result.workers == 1 and result.peak_users == 2, result.log_tail
    assert result.ok > 0 and result.failures == 0
    assert result.ok == len(publishes(tmp_path / "history"))
    assert queues.wait_depth(result.ok) == result.ok
    logs = sorted(p.name for p in (tmp_path / "work").glob("*.log"))
    assert logs == ["locust-master.log", "locust-worker-1.log"]


def test_a_broken_locustfile_is_a_load_error_with_the_cause(chaos_stack: Any, tmp_path: Path) -> None:
    broken = tmp_path / "broken_locustfile.py"
    broken.write_text("raise ImportError('no module named billing_app: install it or fix PYTHONPATH')\n")
    with pytest.raises(LoadError, match="without writing its statistics") as info:
        run_load(LoadSpec(str(broken), users=1, run_time_s=2), target(chaos_stack, tmp_path))
    assert "no module named billing_app" in str(info.value)


def test_queue_depths_reads_ready_messages_and_missing_queues(chaos_stack: Any) -> None:
    import kombu

    name = f"load-depth-{os.getpid()}"
    with kombu.Connection(chaos_stack.urls.broker_url, connect_timeout=5) as conn:
        q = kombu.Queue(name, auto_delete=False, durable=False)
        q(conn.default_channel).declare()
        producer = conn.Producer()
        for i in range(3):
            producer.publish({"i": i}, routing_key=name, serializer="json")
        try:
            assert queue_depths(chaos_stack.urls.broker_url, [name, f"{name}-missing"]) == \
                {name: 3, f"{name}-missing": None}
        finally:
            q(conn.default_channel).delete()


def test_nothing_of_locust_leaked_into_this_process() -> None:
    # Locust (and gevent's monkey-patching) stayed in the subprocesses.
    assert "locust" not in sys.modules
    if "gevent.monkey" in sys.modules:
        assert not sys.modules["gevent.monkey"].saved


def test_no_process_of_this_module_is_left(chaos_stack: Any) -> None:
    import psutil

    me = psutil.Process()
    leftovers = [c for c in me.children(recursive=True)
                 if "locust" in " ".join(c.cmdline()) and alive(c.pid)]
    assert leftovers == []


def test_publishes_stalled_by_a_fault_time_out_and_the_load_recovers_after_heal(chaos_stack: Any, queues: Queues,
                                                                                 tmp_path: Path) -> None:
    from harness.toxiproxy.client import ToxiproxyClient

    proxy = chaos_stack.urls.proxied[Role.PRODUCER_BROKER].proxy_name
    toxiproxy = ToxiproxyClient(chaos_stack.urls.toxiproxy_url)
    history = tmp_path / "history"
    t = target(chaos_stack, tmp_path, kinds=("notification",), publish_timeout_s=2.0)
    spec = LoadSpec(LOCUSTFILE, users=2, rate_per_s=10, run_time_s=300)

    def ok_count() -> int:
        return len(publishes(history)) if history.is_dir() else 0

    with LoadRun(spec, t) as run:
        wait_for(lambda: ok_count() >= 5, timeout=90, what="the first publishes")
        # Blackhole the broker's answers to the producer: confirms never come back.
        toxiproxy.add_toxic(proxy, "timeout", name="blackhole", stream="downstream", attributes={"timeout": 0})
        try:
            time.sleep(5)
        finally:
            toxiproxy.remove_toxic(proxy, "blackhole")
        at_heal = ok_count()
        wait_for(lambda: ok_count() >= at_heal + 10, timeout=60, what="publishes to resume after the heal")
        result = run.stop()
    assert result.complete, result.log_tail
    assert result.failures > 0 and result.ok > 0
    errors = " ".join(e.error for e in result.errors)
    assert "PublishTimeout" in errors or "CHAOS_LOAD_PUBLISH_TIMEOUT" in errors, errors
    ok, unknown = len(publishes(history)), len(publishes(history, OpType.INFO))
    assert unknown > 0                                   # the stalled publishes are indeterminate ...
    depth = queues.depth()
    assert ok <= depth <= ok + unknown                   # ... and each confirmed one is in the broker
