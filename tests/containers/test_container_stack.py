"""The containers stack: real RabbitMQ, Redis and Toxiproxy containers; real workers; no mocks."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import kombu
import pytest
import redis
from broker_probes import durable_queue, get_one, publish_persistent

from harness.errors import ConfigError
from harness.smoke import run_smoke
from harness.stack.base import Role

pytestmark = pytest.mark.containers
REPO = Path(__file__).resolve().parents[2]


def _amqp_connects(url: str, timeout: float) -> bool:
    try:
        with kombu.Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=0, timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - any failure means "does not connect now"
        return False


def test_task_round_trip_through_per_role_proxies(container_stack):
    urls = container_stack.urls
    listens = {ep.listen_port for ep in urls.proxied.values()}
    assert len(listens) == len(Role)
    for role, ep in urls.proxied.items():
        assert ep.listen_host == "127.0.0.1"
        # Toxiproxy (on the host's network by default) reaches the servers by their published ports.
        server = container_stack.broker if role.is_broker else container_stack.backend
        assert ep.upstream == server.address
        assert urls.url_for(role) != (urls.broker_url if role.is_broker else urls.backend_url)
    result = run_smoke(container_stack)
    assert result["ok"], result


def test_urls_use_the_stacks_own_credentials_on_loopback(container_stack):
    urls = container_stack.urls
    assert "guest" not in urls.broker_url
    assert urls.broker_url.startswith("amqp://chaos-") and "@127.0.0.1:" in urls.broker_url
    assert urls.backend_url.startswith("redis://:") and "@127.0.0.1:" in urls.backend_url
    for c in container_stack.containers():
        assert c.startswith(f"chaos-{container_stack.run_id}-")


def test_rabbitmqctl_runs_in_the_broker_container(container_stack):
    out = container_stack.broker.ctl("list_queues", "name")
    assert "name" in out.lower() or "listing" in out.lower() or out.strip() == ""


def test_rabbitmq_settings_are_in_effect_in_the_broker_container(container_stack):
    """The module stack's `STACK_RABBITMQ` (conftest): conf and app_env in the running broker's
    environment, the policy set and acting (a message expires on its queue, not on another)."""
    broker = container_stack.broker
    settings = container_stack.options.rabbitmq
    assert settings.conf["consumer_timeout"] == 1234000
    env = broker.ctl("eval", "{application:get_env(rabbit, consumer_timeout), "
                             "application:get_env(rabbit, channel_tick_interval)}.")
    assert "{{ok,1234000},{ok,30000}}" in env.replace(" ", ""), env
    (listed,) = json.loads(broker.ctl("list_policies", "--formatter", "json"))
    assert (listed["name"], listed["pattern"]) == ("chaos-ct-ttl", "^chaos-ct-ttl\\.")
    assert json.loads(listed["definition"]) == {"message-ttl": 300}

    url = container_stack.urls.url_for(Role.PRODUCER_BROKER)
    tag = time.time_ns()
    expiring, kept = durable_queue(f"chaos-ct-ttl.{tag}"), durable_queue(f"chaos-ct-keep.{tag}")
    for q in (expiring, kept):
        publish_persistent(url, q, {"n": tag})
    deadline = time.monotonic() + 10
    counts: dict[str, int] = {}
    with kombu.Connection(url, connect_timeout=5) as conn:
        channel = conn.default_channel
        try:
            for _ in range(200):  # bounded by count and by the deadline
                counts = {q.name: q(channel).queue_declare(passive=True).message_count for q in (expiring, kept)}
                if counts[expiring.name] == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        finally:
            for q in (expiring, kept):
                q(channel).delete()
    assert counts == {expiring.name: 0, kept.name: 1}, counts


def test_persistent_message_survives_broker_kill_and_start(container_stack):
    broker = container_stack.broker
    url = container_stack.urls.broker_url
    queue = durable_queue("chaos-durable-ct")
    body = {"n": time.time_ns()}
    publish_persistent(url, queue, body)
    container_id, port = broker.container.id, broker.host_port
    broker.kill()
    assert not broker.is_running()
    assert not _amqp_connects(url, timeout=1.0)
    broker.start()
    assert broker.is_running()
    assert (broker.container.id, broker.host_port) == (container_id, port)
    assert get_one(url, queue) == body


def test_pause_freezes_the_broker_without_refusing_connections(container_stack):
    broker = container_stack.broker
    host, port = "127.0.0.1", broker.host_port
    broker.pause()
    try:
        assert broker.is_paused()
        # A paused broker accepts TCP (the kernel does) but never answers the AMQP handshake.
        with socket.create_connection((host, port), timeout=2) as s:
            s.settimeout(1.5)
            s.sendall(b"AMQP\x00\x00\x09\x01")
            with pytest.raises(socket.timeout):
                s.recv(8)
        assert not _amqp_connects(container_stack.urls.broker_url, timeout=1.5)
    finally:
        broker.unpause()
    assert not broker.is_paused()
    assert _amqp_connects(container_stack.urls.broker_url, timeout=5)


def test_a_proxy_fault_cuts_one_role_only(container_stack):
    urls, tp = container_stack.urls, container_stack.toxiproxy
    tp.update_proxy(Role.WORKER_BROKER.proxy_name, enabled=False)
    try:
        # As on the local stack: a disabled proxy refuses the connection.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", urls.proxied[Role.WORKER_BROKER].listen_port), timeout=2).close()
        assert not _amqp_connects(urls.url_for(Role.WORKER_BROKER), timeout=1.5)
        assert _amqp_connects(urls.url_for(Role.PRODUCER_BROKER), timeout=5)
    finally:
        tp.update_proxy(Role.WORKER_BROKER.proxy_name, enabled=True)
    assert _amqp_connects(urls.url_for(Role.WORKER_BROKER), timeout=5)


def test_backend_kill_keeps_results_with_aof(container_stack):
    backend = container_stack.backend
    key = f"chaos-ct-{time.time_ns()}"
    r = redis.Redis.from_url(container_stack.urls.backend_url, socket_timeout=5)
    r.set(key, "kept")
    r.close()
    backend.kill()
    assert not backend.is_running()
    backend.start()
    r = redis.Redis.from_url(container_stack.urls.url_for(Role.PRODUCER_BACKEND), socket_timeout=5)
    try:
        assert r.get(key) == b"kept"
    finally:
        r.close()


def test_add_proxy_reaches_a_container_and_a_service_on_the_host_loopback(container_stack):
    backend_upstream = container_stack.urls.proxied[Role.WORKER_BACKEND].upstream
    ep = container_stack.add_proxy("backend_again", backend_upstream)
    password = container_stack.urls.backend_url.split(":")[2].split("@")[0]
    r = redis.Redis(host="127.0.0.1", port=ep.listen_port, password=password, socket_timeout=5)
    try:
        assert r.ping()
    finally:
        r.close()
    with pytest.raises(ConfigError, match="name of a role's proxy"):
        container_stack.add_proxy("worker_broker", backend_upstream)

    # A dependency on the host's loopback (like the sample system's partner API), through the proxy.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        server.settimeout(10)
        host_ep = container_stack.add_proxy("partner_api", f"127.0.0.1:{server.getsockname()[1]}")
        assert host_ep.listen_host == "127.0.0.1" and host_ep.url.startswith("http://127.0.0.1:")
        with socket.create_connection(("127.0.0.1", host_ep.listen_port), timeout=5) as client:
            client.sendall(b"hello partner")
            conn, _ = server.accept()
            with conn:
                conn.settimeout(5)
                assert conn.recv(64) == b"hello partner"
                conn.sendall(b"hi")
                client.settimeout(5)
                assert client.recv(16) == b"hi"
        # Adding the name again re-points the same proxy (same port) at a new upstream.
        with socket.socket() as server2:
            server2.bind(("127.0.0.1", 0))
            server2.listen(4)
            server2.settimeout(10)
            again = container_stack.add_proxy("partner_api", f"127.0.0.1:{server2.getsockname()[1]}")
            assert (again.proxy_name, again.listen_port) == (host_ep.proxy_name, host_ep.listen_port)
            with socket.create_connection(("127.0.0.1", again.listen_port), timeout=5) as client:
                client.sendall(b"second")
                conn, _ = server2.accept()
                with conn:
                    conn.settimeout(5)
                    assert conn.recv(64) == b"second"
        # Faults act on it like on any other proxy of the stack.
        container_stack.toxiproxy.update_proxy(host_ep.proxy_name, enabled=False)
        try:
            with pytest.raises(OSError):
                with socket.create_connection(("127.0.0.1", host_ep.listen_port), timeout=2) as c:
                    c.settimeout(2)
                    c.sendall(b"x")
                    if c.recv(1) == b"":
                        raise ConnectionResetError("closed by the proxy")
        finally:
            container_stack.toxiproxy.update_proxy(host_ep.proxy_name, enabled=True)


def test_worker_in_a_container_runs_tasks_through_the_worker_proxies(container_stack):
    from celery import Celery

    from harness.workers import WorkerSpec
    from harness.workers.container import ContainerWorker

    spec = WorkerSpec(app="harness.smoke:app", pool="solo", concurrency=1, queues=("ct-container",))
    urls = container_stack.urls
    broker_inside, _ = container_stack.worker_urls()
    assert broker_inside == urls.url_for(Role.WORKER_BROKER)  # the worker shares the host's network
    with ContainerWorker(container_stack, spec, project_dir=REPO) as worker:
        assert worker.is_running()
        client = Celery("ct-client", broker=urls.url_for(Role.PRODUCER_BROKER),
                        backend=urls.url_for(Role.PRODUCER_BACKEND))
        client.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")
        try:
            value = client.send_task("chaos.smoke.echo", args=["in-container"], queue="ct-container").get(timeout=30)
        finally:
            client.close()
        assert value["value"] == "in-container"
        name = worker.container.name
    assert name not in container_stack.containers()
