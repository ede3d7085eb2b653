"""The nemesis against the real local stack: each fault kind applied (and seen to bite), then healed.

Every test leaves the session stack as it found it: that is the property under test as much as
the fault itself (heal always, also on exceptions and Ctrl-C).
"""

from __future__ import annotations

import _thread
import http.server
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import amqp
import pytest
import redis
from broker_probes import amqp_ok

from harness.errors import ConfigError, UnsupportedFault
from harness.faults import (
    BackendOutage,
    Bandwidth,
    BrokerOutage,
    KillWorker,
    Latency,
    LimitData,
    MemoryAlarm,
    PartnerApiFault,
    ResetPeer,
    RolePartition,
    Schedule,
    Slicer,
    after_publishes,
    at,
    when,
)
from harness.faults.nemesis import Nemesis
from harness.history import F, HistoryRecorder, OpType, read_history
from harness.stack.base import Role

pytestmark = pytest.mark.chaos



def _redis(url: str, timeout: float = 1.5) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def _redis_ok(url: str, timeout: float = 1.5) -> bool:
    try:
        return bool(_redis(url, timeout).ping())
    except redis.RedisError:
        return False


def _wait(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def _healthy(stack: Any) -> None:
    """The stack is fully usable through every role's proxy, with no toxic anywhere."""
    tp = stack.toxiproxy
    for role in Role:
        ep = stack.urls.proxied[role]
        info = tp.get_proxy(ep.proxy_name)
        assert info.enabled, f"proxy {ep.proxy_name} left disabled"
        assert not info.toxics, f"toxics left on {ep.proxy_name}: {info.toxics}"
    _wait(lambda: all(amqp_ok(stack.urls.url_for(r)) for r in (Role.PRODUCER_BROKER, Role.WORKER_BROKER)), 30,
          "the broker through both broker proxies")
    _wait(lambda: all(_redis_ok(stack.urls.url_for(r)) for r in (Role.PRODUCER_BACKEND, Role.WORKER_BACKEND)), 30,
          "the backend through both backend proxies")


@pytest.fixture
def nemesis(chaos_stack: Any, tmp_path: Path) -> Iterator[Nemesis]:
    n = Nemesis(chaos_stack, history_dir=tmp_path / "history")
    try:
        yield n
    finally:
        n.close()
        _healthy(chaos_stack)


def _ops(nemesis: Nemesis) -> list[Any]:
    assert nemesis.history_dir is not None
    return [op for op in read_history(nemesis.history_dir) if op.process == "nemesis"]


def _toxics(stack: Any, role: str) -> list[Any]:
    return stack.toxiproxy.toxics(stack.urls.proxied[Role(role)].proxy_name)


# ------------------------------------------------------------------------------------ outages


def test_broker_proxy_down_refuses_every_client_then_heals(chaos_stack: Any, nemesis: Nemesis) -> None:
    urls = chaos_stack.urls
    with nemesis.fault(BrokerOutage("proxy_down")) as applied:
        assert applied.effect["proxies"] == [urls.proxied[Role.PRODUCER_BROKER].proxy_name,
                                             urls.proxied[Role.WORKER_BROKER].proxy_name]
        assert not amqp_ok(urls.url_for(Role.WORKER_BROKER))
        assert not amqp_ok(urls.url_for(Role.PRODUCER_BROKER))
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", urls.proxied[Role.WORKER_BROKER].listen_port), timeout=1).close()
        assert amqp_ok(urls.broker_url), "the broker itself stays up"
    assert amqp_ok(urls.url_for(Role.WORKER_BROKER))
    kinds = [(op.f, op.type.value) for op in _ops(nemesis)]
    assert kinds == [("fault_start", "invoke"), ("fault_start", "ok"), ("fault_stop", "invoke"), ("fault_stop", "ok")]


def test_broker_blackhole_accepts_but_never_answers(chaos_stack: Any, nemesis: Nemesis) -> None:
    urls = chaos_stack.urls
    port = urls.proxied[Role.WORKER_BROKER].listen_port
    with nemesis.fault(BrokerOutage("blackhole")):
        # TCP connects (no refusal, no reset) but the handshake gets no answer: a silent partition.
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"AMQP\x00\x00\x09\x01")
            s.settimeout(0.7)
            with pytest.raises(TimeoutError):
                s.recv(10)
        assert {t.type for t in _toxics(chaos_stack, "producer_broker")} == {"timeout"}
        assert not amqp_ok(urls.url_for(Role.PRODUCER_BROKER), timeout=0.7)
    assert amqp_ok(urls.url_for(Role.WORKER_BROKER))


def test_role_partition_cuts_only_the_workers_from_the_broker(chaos_stack: Any, nemesis: Nemesis) -> None:
    urls = chaos_stack.urls
    with nemesis.fault(RolePartition("worker_broker")):
        assert not amqp_ok(urls.url_for(Role.WORKER_BROKER))
        assert amqp_ok(urls.url_for(Role.PRODUCER_BROKER)), "producers keep publishing"
        assert _redis_ok(urls.url_for(Role.WORKER_BACKEND)), "workers still reach the backend"
    with nemesis.fault(RolePartition("backend", mode="blackhole")):
        assert not _redis_ok(urls.url_for(Role.PRODUCER_BACKEND), timeout=0.5)
        assert not _redis_ok(urls.url_for(Role.WORKER_BACKEND), timeout=0.5)
        assert amqp_ok(urls.url_for(Role.WORKER_BROKER))


def test_backend_kill_restart_and_graceful_stop(chaos_stack: Any, nemesis: Nemesis) -> None:
    urls = chaos_stack.urls
    r = _redis(urls.backend_url)
    r.set("chaos-test-key", "kept")
    with nemesis.fault(BackendOutage("kill_restart")) as applied:
        assert applied.effect["action"] == "SIGKILL"
        assert not chaos_stack.backend.is_running()
        assert not _redis_ok(urls.url_for(Role.WORKER_BACKEND), timeout=0.5)
    assert chaos_stack.backend.is_running()
    assert _redis_ok(urls.url_for(Role.WORKER_BACKEND))
    with nemesis.fault(BackendOutage("graceful_stop")):
        assert not chaos_stack.backend.is_running()
    assert _redis_ok(urls.url_for(Role.PRODUCER_BACKEND))
    stop = [op for op in _ops(nemesis) if op.f == F.FAULT_STOP and op.type is OpType.OK]
    assert [op.value["action"] for op in stop] == ["started", "started"]


@pytest.mark.slow
def test_broker_kill_restart_and_graceful_stop(chaos_stack: Any, nemesis: Nemesis) -> None:
    urls = chaos_stack.urls
    with nemesis.fault(BrokerOutage("kill_restart")):
        assert not chaos_stack.broker.is_running()
        assert not amqp_ok(urls.broker_url, timeout=0.5)
    assert amqp_ok(urls.url_for(Role.WORKER_BROKER))
    with nemesis.fault(BrokerOutage("graceful_stop")) as applied:
        assert applied.effect["action"] == "graceful stop"
        assert not chaos_stack.broker.is_running()
    assert amqp_ok(urls.url_for(Role.PRODUCER_BROKER))


def test_memory_alarm_blocks_publishers_until_healed(chaos_stack: Any, nemesis: Nemesis) -> None:
    urls = chaos_stack.urls
    events: list[str] = []
    creds, hostport = urls.url_for(Role.PRODUCER_BROKER).split("://", 1)[1].split("@", 1)
    user, password = creds.split(":", 1)
    conn = amqp.Connection(host=hostport.split("/", 1)[0], userid=user, password=password, virtual_host="/",
                           connect_timeout=3, on_blocked=lambda reason: events.append(f"blocked:{reason}"),
                           on_unblocked=lambda: events.append("unblocked"))
    conn.connect()
    try:
        ch = conn.channel()
        q = f"chaos-alarm-{uuid.uuid4().hex[:6]}"
        ch.queue_declare(q, auto_delete=True)
        with nemesis.fault(MemoryAlarm()):
            ch.basic_publish(amqp.Message(b"x"), routing_key=q)
            deadline = time.monotonic() + 10
            while not events and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=0.2)
                except TimeoutError:
                    pass
            assert events and events[0].startswith("blocked"), f"publisher was not blocked: {events}"
        deadline = time.monotonic() + 10
        while "unblocked" not in events and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=0.2)
            except TimeoutError:
                pass
        assert "unblocked" in events
    finally:
        conn.collect()


# ------------------------------------------------------------------------------ degraded links


def test_latency_slows_one_role_by_the_configured_delay(chaos_stack: Any, nemesis: Nemesis) -> None:
    urls = chaos_stack.urls
    r = _redis(urls.url_for(Role.PRODUCER_BACKEND), timeout=5)
    r.ping()

    def rtt() -> float:
        t = time.monotonic()
        r.ping()
        return time.monotonic() - t

    with nemesis.fault(Latency("producer_backend", ms=300, direction="to_client")) as applied:
        assert [t.stream for t in _toxics(chaos_stack, "producer_backend")] == ["downstream"]
        assert applied.effect["attributes"] == {"latency": 300, "jitter": 0}
        assert rtt() >= 0.29
        fast = _redis(urls.url_for(Role.WORKER_BACKEND))
        t = time.monotonic()
        fast.ping()
        assert time.monotonic() - t < 0.25, "the other role is not slowed"
    assert rtt() < 0.25


@pytest.mark.parametrize(("fault", "toxic", "streams", "attributes"), [
    (Bandwidth("worker_backend", kb_per_s=4), "bandwidth", {"upstream", "downstream"}, {"rate": 4}),
    (ResetPeer("worker_backend", after_ms=50), "reset_peer", {"upstream"}, {"timeout": 50}),
    (Slicer("worker_backend", 8, 2, 10, direction="to_client"), "slicer", {"downstream"},
     {"average_size": 8, "size_variation": 2, "delay": 10}),
    (LimitData("worker_backend", bytes=64), "limit_data", {"downstream"}, {"bytes": 64}),
], ids=lambda x: getattr(x, "kind", None) or "")
def test_toxic_faults_are_installed_as_configured_and_removed(chaos_stack: Any, nemesis: Nemesis, fault: Any,
                                                               toxic: str, streams: set[str],
                                                               attributes: dict[str, int]) -> None:
    with nemesis.fault(fault):
        found = _toxics(chaos_stack, "worker_backend")
        assert {t.type for t in found} == {toxic}
        assert {t.stream for t in found} == streams
        for t in found:
            assert {k: t.attributes[k] for k in attributes} == attributes
        if toxic in ("reset_peer", "limit_data"):
            # Redis answers a PING with 7 bytes: limit_data=64 passes one; a big value does not.
            r = _redis(chaos_stack.urls.url_for(Role.WORKER_BACKEND))
            with pytest.raises(redis.RedisError):
                r.set("chaos-big", "x" * 4096)
                r.get("chaos-big")
    assert _toxics(chaos_stack, "worker_backend") == []


def test_partner_api_fault_on_an_extra_proxy(chaos_stack: Any, nemesis: Nemesis) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        name = f"partner-{uuid.uuid4().hex[:6]}"
        ep = chaos_stack.add_proxy(name, f"127.0.0.1:{server.server_address[1]}")

        def get(timeout: float = 2.0) -> bytes:
            import urllib.request

            with urllib.request.urlopen(f"{ep.url}/", timeout=timeout) as resp:  # noqa: S310 - loopback only
                return bytes(resp.read())

        assert get() == b"ok"
        with nemesis.fault(PartnerApiFault("down", proxy=name)):
            with pytest.raises(OSError):
                get()
        assert get() == b"ok"
        with nemesis.fault(PartnerApiFault("latency", proxy=name, ms=400)):
            t = time.monotonic()
            assert get() == b"ok"
            assert time.monotonic() - t >= 0.39
        assert chaos_stack.toxiproxy.toxics(ep.proxy_name) == []
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------------ heal always


def test_heal_on_exception_inside_the_fault(chaos_stack: Any, nemesis: Nemesis) -> None:
    with pytest.raises(RuntimeError, match="scenario crashed"):
        with nemesis.fault(RolePartition("workers")):
            raise RuntimeError("scenario crashed")
    assert amqp_ok(chaos_stack.urls.url_for(Role.WORKER_BROKER))
    assert [a.outcome for a in nemesis.applied] == ["healed"]


@pytest.mark.usefixtures("ctrl_c_raises")
def test_heal_on_ctrl_c_during_a_schedule(chaos_stack: Any, nemesis: Nemesis) -> None:
    schedule = Schedule.of(at(0, RolePartition("worker_broker"), duration_s=60),
                           at(30, Latency("producer_broker", ms=10), duration_s=1))
    timer = threading.Timer(0.8, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            nemesis.run(schedule)
    finally:
        timer.cancel()
    assert chaos_stack.toxiproxy.get_proxy(chaos_stack.urls.proxied[Role.WORKER_BROKER].proxy_name).enabled
    assert [a.outcome for a in nemesis.applied] == ["healed"]
    stops = [op for op in _ops(nemesis) if op.f == F.FAULT_STOP and op.type is OpType.OK]
    assert [op.value["fault_id"] for op in stops] == ["f1"]


def test_stop_heals_active_faults_and_skips_the_rest(chaos_stack: Any, nemesis: Nemesis) -> None:
    schedule = Schedule.of(at(0, Latency("worker_broker", ms=5), duration_s=60),
                           at(40, RolePartition("producer_broker"), duration_s=5))
    nemesis.start(schedule)
    _wait(lambda: nemesis.active_ids == ["f1"], 5, "f1 to be applied")
    assert not nemesis.wait(0.2)
    applied = nemesis.stop()
    assert [(a.id, a.outcome) for a in applied] == [("f1", "healed"), ("f2", "interrupted")]
    assert applied[0].started_s is not None and applied[0].healed_s is not None
    assert applied[0].healed_s >= applied[0].started_s
    assert _toxics(chaos_stack, "worker_broker") == []


def test_a_time_schedule_runs_with_real_times_in_the_history(chaos_stack: Any, nemesis: Nemesis) -> None:
    schedule = Schedule.of(at(0.2, Latency("worker_backend", ms=20), duration_s=0.5),
                           at(0.3, RolePartition("producer_backend"), duration_s=0.2))
    t = time.monotonic()
    applied = nemesis.run(schedule)
    assert time.monotonic() - t < 5
    assert [a.outcome for a in applied] == ["healed", "healed"]
    a1, a2 = applied
    assert a1.started_s is not None and a1.healed_s is not None and a2.started_s is not None
    assert 0.2 <= a1.started_s < 0.5 and a1.healed_s - a1.started_s >= 0.5
    assert 0.3 <= a2.started_s < 0.6
    ops = _ops(nemesis)
    starts = {op.value["fault_id"]: op for op in ops if op.f == F.FAULT_START and op.type is OpType.OK}
    stops = {op.value["fault_id"]: op for op in ops if op.f == F.FAULT_STOP and op.type is OpType.OK}
    assert (stops["f1"].time - starts["f1"].time) / 1e9 >= 0.5
    assert starts["f2"].value["proxies"] == [chaos_stack.urls.proxied[Role.PRODUCER_BACKEND].proxy_name]


def test_triggers_fire_on_history_events_and_time_out_when_they_never_come(chaos_stack: Any, nemesis: Nemesis) -> None:
    assert nemesis.history_dir is not None
    schedule = Schedule.of(when(after_publishes(2), Latency("worker_broker", ms=5), duration_s=0.2),
                           when(after_publishes(5, timeout_s=1.5), Latency("producer_broker", ms=5)))
    producer = HistoryRecorder(nemesis.history_dir, "producer-1")

    def publish_twice() -> None:
        time.sleep(0.3)
        for i in range(2):
            producer.record(F.PUBLISH, OpType.OK, {"task_id": f"t{i}"})

    threading.Thread(target=publish_twice).start()
    try:
        applied = nemesis.run(schedule)
    finally:
        producer.close()
    assert [(a.id, a.outcome) for a in applied] == [("f1", "healed"), ("f2", "never_bit")]
    assert "did not fire within 1.5 s" in (applied[1].error or "")
    start = next(op for op in _ops(nemesis) if op.f == F.FAULT_START and op.type is OpType.INVOKE)
    assert start.value["event"]["f"] == "publish"
    failed = [op for op in _ops(nemesis) if op.f == F.FAULT_START and op.type is OpType.FAIL]
    assert failed and failed[0].value["never_bit"] is True


# ------------------------------------------------------------------------------ preflight


def test_preflight_names_what_the_stack_cannot_do(chaos_stack: Any, tmp_path: Path) -> None:
    from harness.stack.external import ExternalStack

    external = ExternalStack(broker_url=chaos_stack.urls.broker_url, backend_url=chaos_stack.urls.backend_url)
    with external:
        n = Nemesis(external, history_dir=tmp_path / "h")
        with pytest.raises(UnsupportedFault, match="external stack did not start it"):
            n.preflight(BrokerOutage("kill_restart"))
        with pytest.raises(UnsupportedFault, match="need a fault proxy"):
            n.preflight(Latency())
        n.close()
    n = Nemesis(chaos_stack, history_dir=tmp_path / "h2")
    with pytest.raises(ConfigError, match=r"no proxy named 'nowhere' in this stack .* stack.add_proxy\('nowhere'"):
        n.preflight(PartnerApiFault(proxy="nowhere"))
    with pytest.raises(UnsupportedFault, match="needs the run's workers"):
        n.preflight(KillWorker())
    with pytest.raises(ConfigError, match="has an event trigger, which follows the run.s history: give the Nemesis a history_dir"):
        Nemesis(chaos_stack).preflight(Schedule.of(when(after_publishes(1), Latency())))
    n.close()
