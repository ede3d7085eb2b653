"""The embedded local stack: real RabbitMQ, Redis and proxy processes; no mocks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from broker_probes import durable_queue, get_one, publish_persistent

from harness.errors import ConfigError
from harness.smoke import run_smoke
from harness.stack.base import Role
from harness.stack.rabbitmq import find_rabbitmq_server

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        p = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return False
    return p.status() != psutil.STATUS_ZOMBIE


def _wait_all_gone(pids: list[int], timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    left = [p for p in pids if _alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if _alive(p)]
    return left


def test_task_round_trip_through_per_role_proxies(chaos_stack):
    urls = chaos_stack.urls
    # Every role has its own proxy, distinct from the direct address.
    listens = {ep.listen_port for ep in urls.proxied.values()}
    assert len(listens) == len(Role)
    for role in Role:
        assert urls.url_for(role) != (urls.broker_url if role.is_broker else urls.backend_url)
    result = run_smoke(chaos_stack)
    assert result["ok"], result


def test_urls_never_use_default_credentials(chaos_stack):
    urls = chaos_stack.urls
    assert "guest" not in urls.broker_url
    assert urls.broker_url.startswith("amqp://chaos-") and "@127.0.0.1:" in urls.broker_url
    assert urls.backend_url.startswith("redis://:") and "@127.0.0.1:" in urls.backend_url


def test_persistent_message_survives_broker_sigkill_and_restart(chaos_stack):
    broker = chaos_stack.broker
    url = chaos_stack.urls.broker_url
    queue = durable_queue("chaos-durable-test")
    body = {"n": time.time_ns()}
    publish_persistent(url, queue, body)
    old_pids = list(broker.pids)
    broker.kill()
    assert not broker.is_running()
    assert not any(_alive(p) for p in old_pids[:1])
    broker.start()
    assert get_one(url, queue) == body


def test_missing_rabbitmq_server_gives_clear_error(tmp_path):
    with pytest.raises(ConfigError) as exc:
        find_rabbitmq_server(path=str(tmp_path))
    msg = str(exc.value)
    assert "rabbitmq-server is not on PATH" in msg and "apt-get install -y rabbitmq-server" in msg


def test_missing_rabbitmq_server_cli_exits_2_with_the_fix(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CHAOS_RABBITMQ_SERVER"}
    env["PATH"] = str(Path(sys.executable).parent)  # python and celery-chaos only
    r = subprocess.run([sys.executable, "-m", "harness", "stack", "up", "--json"], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "rabbitmq-server is not on PATH" in r.stderr
    assert "apt-get install -y rabbitmq-server" in r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stack_up_tears_everything_down_on_signal(sig, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "harness", "stack", "up", "--json"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, process_group=0)
    try:
        line = proc.stdout.readline()  # one JSON object once the stack is up
        assert line, proc.stderr.read()
        info = json.loads(line)
        pids = info["pids"]
        dirs = info["temp_dirs"]
        assert len(dirs) >= 3 and all(Path(d).is_dir() for d in dirs)
        assert len(pids) >= 4  # beam.smp, epmd, redis-server, toxiproxy
        assert set(info["proxied"]) == {r.value for r in Role}
        assert all(_alive(p) for p in pids)
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert _wait_all_gone(pids) == []
    assert [d for d in dirs if Path(d).exists()] == []


def test_session_stack_is_torn_down_after_a_failing_test(tmp_path):
    # A pytest run of its own whose only test fails while the stack is up.
    (tmp_path / "test_fails.py").write_text(
        "import json, os\n"
        "def test_fails(chaos_stack):\n"
        f"    open({str(tmp_path / 'pids.json')!r}, 'w').write(json.dumps([chaos_stack.pids(), chaos_stack.temp_dirs()]))\n"
        "    assert False, 'deliberate failure'\n"
    )
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "deliberate failure" in r.stdout
    pids, dirs = json.loads((tmp_path / "pids.json").read_text())
    assert len(pids) >= 4
    assert _wait_all_gone(pids) == []
    assert [d for d in dirs if Path(d).exists()] == []


def test_workers_spawned_while_the_broker_boots_start_once_it_answers():
    # The overlapped start: proxies exist before the broker answers, workers import their app
    # meanwhile and poll the broker (broker_wait), then answer a ping; everything is reaped.
    from celery import Celery

    from harness.stack.local import LocalStack
    from harness.workers import WorkerGroup, WorkerSpec

    stack = LocalStack()
    urls = stack.boot()
    group = WorkerGroup([WorkerSpec(app="harness.smoke:app", concurrency=1, hostname="overlap1@127.0.0.1")],
                        broker_url=urls.url_for(Role.WORKER_BROKER), backend_url=urls.url_for(Role.WORKER_BACKEND),
                        control_url=urls.broker_url, ready_timeout=60)
    client = None
    try:
        group.spawn(broker_wait=60)
        stack.await_ready()
        group.wait_ready()
        client = Celery("overlap", broker=urls.url_for(Role.PRODUCER_BROKER),
                        backend=urls.url_for(Role.PRODUCER_BACKEND), set_as_current=False)
        assert client.send_task("chaos.smoke.echo", args=["x"]).get(timeout=30)["value"] == "x"
        pids = stack.pids() + group.get().pids()
        dirs = stack.temp_dirs()
    finally:
        if client is not None:
            client.close()
        group.stop()
        stack.stop()
    assert _wait_all_gone(pids) == []
    assert [d for d in dirs if Path(d).exists()] == []
