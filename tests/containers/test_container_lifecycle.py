"""Containers stack lifecycle: nothing labelled with the run survives stop(), a failed start, or a CLI SIGTERM."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.errors import ConfigError, StackStartTimeout
from harness.images.engine import docker_client, leftovers
from harness.stack import open_stack
from harness.stack.containers import ContainerStack
from harness.stack.rabbitmq_config import RabbitMQSettings

pytestmark = pytest.mark.containers
REPO = Path(__file__).resolve().parents[2]
EMPTY = {"containers": [], "networks": [], "volumes": []}


def _gone(pids: list[int], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
            return True
        time.sleep(0.1)
    return False


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The child's first stdout line, or a failure naming its stderr if none came in time."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        pytest.fail(f"`stack up --provider containers` printed nothing in {timeout:.0f} s; stderr: "
                    f"{proc.stderr.read() if proc.stderr else ''}")
    return proc.stdout.readline()


def test_open_stack_containers_starts_and_stop_leaves_nothing(image_mode):
    stack = open_stack("containers", images=image_mode)
    assert isinstance(stack, ContainerStack)
    with stack:
        run_id = stack.run_id
        pids = stack.pids()
        assert len(pids) == 3
        assert len(stack.containers()) == 3
        assert stack.leftovers()["networks"] == [f"chaos-{run_id}"]
        assert stack.temp_dirs() == []
        described = stack.describe()
        assert described["run_id"] == run_id and set(described["images"]) == {"rabbitmq", "redis", "toxiproxy"}
    assert stack.leftovers() == EMPTY
    assert _gone(pids)
    stack.stop()  # twice is fine


def test_a_failed_start_removes_what_it_made(image_mode):
    # 0.3 s is far too short for RabbitMQ: start() must raise with context, and clean up.
    stack = ContainerStack(images=image_mode, startup_timeout=0.3)
    with pytest.raises(StackStartTimeout) as info:
        stack.start()
    assert "was not ready after" in str(info.value) or "exited before" in str(info.value)
    assert "last log lines" in str(info.value)
    assert stack.leftovers() == EMPTY


@pytest.mark.parametrize("conf, message", [
    # Not in the image's schemas: refused before the broker boots.
    ({"consumer_timout": 3000}, r"^rabbitmq conf: RabbitMQ \S+ has no setting 'consumer_timout' \(did you mean "
                                r"'consumer_timeout'\?\): fix or remove it$"),
    # A float the check leaves to RabbitMQ: refused at boot, read from the container's log.
    ({"vm_memory_high_watermark.relative": "lots"},
     r"^RabbitMQ refused its configuration: .*vm_memory_high_watermark\.relative.*: fix or remove that setting "
     r"\(settings asked: vm_memory_high_watermark\.relative = lots\)$"),
])
def test_a_rabbitmq_setting_the_broker_refuses_is_one_config_line(image_mode, conf, message):
    t0 = time.monotonic()
    stack = ContainerStack(images=image_mode, rabbitmq=RabbitMQSettings(conf=conf))
    with pytest.raises(ConfigError) as info:
        stack.start()
    assert re.match(message, str(info.value)) and "\n" not in str(info.value), str(info.value)
    assert time.monotonic() - t0 < 30  # at once, not after the start-up timeout (120 s)
    assert stack.leftovers() == EMPTY


def test_cli_stack_up_with_containers_provider_tears_down_on_sigterm(image_mode):
    env = {**os.environ, "CHAOS_IMAGES": image_mode, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "stack", "up", "--provider", "containers", "--json"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        info = json.loads(_read_line(proc, timeout=180))
        assert info["provider"] == "containers"
        client = docker_client()
        try:
            api_port = info["toxiproxy_url"].rsplit(":", 1)[1]
            ours = [c for c in client.containers.list(filters={"label": "celery-chaos.role=toxiproxy"})
                    if f"-port={api_port}" in (c.attrs["Config"]["Cmd"] or [])]
            assert len(ours) == 1
            run_id = ours[0].labels["celery-chaos.run"]
        finally:
            client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:  # the test failed early: let the CLI tear its stack down first
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
    client = docker_client()
    try:
        assert leftovers(client, run_id) == EMPTY
    finally:
        client.close()


def test_bridge_mode_proxies_by_container_name_and_relays_to_the_host_loopback(image_mode):
    import socket

    from harness.smoke import run_smoke
    from harness.stack.base import Role

    with ContainerStack(images=image_mode, proxy_network="bridge") as stack:
        urls = stack.urls
        for role, ep in urls.proxied.items():
            assert ep.upstream == ("broker:5672" if role.is_broker else "backend:6379")
            assert ep.listen_host == "127.0.0.1"
        assert run_smoke(stack)["ok"]
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(2)
            server.settimeout(10)
            ep = stack.add_proxy("partner_api", f"127.0.0.1:{server.getsockname()[1]}")
            with socket.create_connection(("127.0.0.1", ep.listen_port), timeout=5) as client:
                client.sendall(b"via relay")
                conn, _ = server.accept()
                with conn:
                    conn.settimeout(5)
                    assert conn.recv(64) == b"via relay"
        assert f"chaos-{stack.run_id}-hostrelay" in stack.containers()
        assert stack.leftovers()["networks"] == [f"chaos-{stack.run_id}"]
        # Through a published port a disabled proxy is no longer reachable: refused (NAT) or closed (userland proxy).
        stack.toxiproxy.update_proxy(Role.WORKER_BROKER.proxy_name, enabled=False)
        try:
            with pytest.raises(OSError):
                with socket.create_connection(("127.0.0.1", urls.proxied[Role.WORKER_BROKER].listen_port),
                                              timeout=2) as c:
                    c.settimeout(2)
                    c.sendall(b"AMQP\x00\x00\x09\x01")
                    if c.recv(8) == b"":
                        raise ConnectionResetError("closed without an answer")
        finally:
            stack.toxiproxy.update_proxy(Role.WORKER_BROKER.proxy_name, enabled=True)
    assert stack.leftovers() == EMPTY


def test_a_run_whose_owner_was_sigkilled_is_removed_by_the_next_stack(image_mode):
    code = ("import os, signal; from harness.stack.containers import ContainerStack\n"
            f"s = ContainerStack(images={image_mode!r}); s.start(); print(s.run_id, flush=True)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    run_id = r.stdout.strip()
    client = docker_client()
    try:
        assert leftovers(client, run_id)["containers"], "the killed process left its containers (as expected)"
        with ContainerStack(images=image_mode) as stack:
            assert stack.run_id != run_id
        assert leftovers(client, run_id) == EMPTY
    finally:
        from harness.images.engine import remove_run

        remove_run(client, run_id)
        client.close()
