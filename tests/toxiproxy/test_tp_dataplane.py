"""Data-plane behaviour of every toxic and of the connection model, over real loopback sockets.

Timing assertions use generous bounds (a shared 2-core machine); each checks a lower bound that
proves the toxic acted and an upper bound that proves it did not act twice or hang.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from tp_util import EchoServer, connect, idle_for, read_until_close, recv_exactly

from harness.toxiproxy.client import ProxyInfo, ToxiproxyClient


def proxy_for(client: ToxiproxyClient, upstream: EchoServer | str, name: str = "p") -> ProxyInfo:
    addr = upstream if isinstance(upstream, str) else upstream.addr
    return client.create_proxy(name, addr)


def rtt(sock: socket.socket, payload: bytes = b"ping") -> float:
    t = time.monotonic()
    sock.sendall(payload)
    recv_exactly(sock, len(payload))
    return time.monotonic() - t


# --- connection model ---------------------------------------------------------------------------


def test_passthrough_both_directions(client: ToxiproxyClient, echo: EchoServer) -> None:
    p = proxy_for(client, echo)
    with connect(p.listen_port) as s:
        blob = bytes(range(256)) * 4096
        t = threading.Thread(target=s.sendall, args=(blob,))
        t.start()
        assert recv_exactly(s, len(blob), timeout=20) == blob
        t.join(10)


def test_no_half_close_client_shutdown_loses_late_reply(client: ToxiproxyClient) -> None:
    with EchoServer(mode="sink") as sink:
        p = proxy_for(client, sink)
        with connect(p.listen_port) as s:
            s.sendall(b"request")
            up = sink.next_conn()
            s.shutdown(socket.SHUT_WR)
            assert read_until_close(s, 3) == (b"", "eof")  # EOF at once, no waiting for the reply
            assert up.done.wait(3) and up.ended == "eof"
            assert bytes(up.received) == b"request"


def test_upstream_down_gives_connect_then_eof(client: ToxiproxyClient, free_tcp_port: int) -> None:
    p = proxy_for(client, f"127.0.0.1:{free_tcp_port}")
    with connect(p.listen_port) as s:
        assert read_until_close(s, 3) == (b"", "eof")


def test_upstream_close_reaches_client_as_eof(client: ToxiproxyClient) -> None:
    with EchoServer(mode="greet_close", reply=b"hello") as srv:
        p = proxy_for(client, srv)
        with connect(p.listen_port) as s:
            assert read_until_close(s, 3) == (b"hello", "eof")


def test_disable_refuses_new_and_closes_existing(client: ToxiproxyClient, echo: EchoServer) -> None:
    p = proxy_for(client, echo)
    with connect(p.listen_port) as s:
        assert rtt(s) < 2
        up = echo.next_conn()
        client.update_proxy("p", enabled=False)
        assert read_until_close(s, 3)[1] in ("eof", "reset")
        assert up.done.wait(3) and up.ended in ("eof", "reset")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", p.listen_port), timeout=2)


def test_latency_does_not_delay_connect(client: ToxiproxyClient, echo: EchoServer) -> None:
    p = proxy_for(client, echo)
    client.add_toxic("p", "latency", stream="upstream", attributes={"latency": 1000})
    t = time.monotonic()
    with connect(p.listen_port):
        assert time.monotonic() - t < 0.5


# --- latency ------------------------------------------------------------------------------------


def test_latency_each_direction_and_stacking(client: ToxiproxyClient, echo: EchoServer) -> None:
    p = proxy_for(client, echo)
    with connect(p.listen_port) as s:
        assert rtt(s) < 0.1
        client.add_toxic("p", "latency", attributes={"latency": 150})  # existing connection: applies now
        assert 0.14 <= rtt(s) < 0.6
        client.add_toxic("p", "latency", stream="upstream", attributes={"latency": 150})
        assert 0.29 <= rtt(s) < 0.9
        client.add_toxic("p", "latency", name="second", attributes={"latency": 150})
        assert 0.44 <= rtt(s) < 1.2
        client.reset()
        assert rtt(s) < 0.1


def test_latency_is_pipelined_not_cumulative(client: ToxiproxyClient, echo: EchoServer) -> None:
    p = proxy_for(client, echo)
    client.add_toxic("p", "latency", attributes={"latency": 200})
    with connect(p.listen_port) as s:
        t = time.monotonic()
        for _ in range(5):
            s.sendall(b"x")
            time.sleep(0.02)
        recv_exactly(s, 5, timeout=5)
        elapsed = time.monotonic() - t
    assert 0.2 <= elapsed < 0.2 + 0.1 + 0.25  # not 5 x 200 ms


def test_latency_jitter_bounds(client: ToxiproxyClient, echo: EchoServer) -> None:
    p = proxy_for(client, echo)
    client.add_toxic("p", "latency", attributes={"latency": 100, "jitter": 50})
    with connect(p.listen_port) as s:
        samples = [rtt(s) for _ in range(12)]
    assert min(samples) >= 0.045
    assert max(samples) < 0.4
    assert max(samples) - min(samples) > 0.01  # jitter actually varies


def test_latency_update_applies_at_once_and_removal_flushes(client: ToxiproxyClient, echo: EchoServer) -> None:
    p = proxy_for(client, echo)
    client.add_toxic("p", "latency", attributes={"latency": 100})
    with connect(p.listen_port) as s:
        assert 0.09 <= rtt(s) < 0.5
        client.update_toxic("p", "latency_downstream", attributes={"latency": 400})
        assert 0.39 <= rtt(s) < 1.0
        client.update_toxic("p", "latency_downstream", attributes={"latency": 2000})
        t = time.monotonic()
        s.sendall(b"held")
        time.sleep(0.2)
        client.remove_toxic("p", "latency_downstream")
        recv_exactly(s, 4, timeout=3)
        assert time.monotonic() - t < 1.0  # delivered at once on removal, not after 2 s
        assert rtt(s) < 0.1  # and back to the fast path


def test_latency_eof_not_delayed_beyond_data(client: ToxiproxyClient) -> None:
    with EchoServer(mode="reply_close", reply=b"reply") as srv:
        p = proxy_for(client, srv)
        client.add_toxic("p", "latency", attributes={"latency": 300})
        with connect(p.listen_port) as s:
            t = time.monotonic()
            s.sendall(b"q")
            assert recv_exactly(s, 5, timeout=3) == b"reply"
            data_at = time.monotonic() - t
            assert read_until_close(s, 3) == (b"", "eof")
            assert 0.29 <= data_at < 0.9
            assert time.monotonic() - t - data_at < 0.15


def test_toxicity_zero_never_applies_and_one_always(client: ToxiproxyClient, echo: EchoServer) -> None:
    p = proxy_for(client, echo)
    client.add_toxic("p", "latency", toxicity=0.0, attributes={"latency": 500})
    with connect(p.listen_port) as s:
        assert rtt(s) < 0.3
    client.update_toxic("p", "latency_downstream", toxicity=1.0)
    with connect(p.listen_port) as s:
        assert rtt(s) >= 0.49


# --- bandwidth ----------------------------------------------------------------------------------


def test_bandwidth_rate(client: ToxiproxyClient) -> None:
    with EchoServer(mode="sink") as sink:
        p = proxy_for(client, sink)
        client.add_toxic("p", "bandwidth", stream="upstream", attributes={"rate": 100})  # 100 KB/s
        with connect(p.listen_port) as s:
            up_t = time.monotonic()
            s.sendall(b"x" * 50_000)
            up = sink.next_conn()
            deadline = time.monotonic() + 5
            while len(up.received) < 50_000 and time.monotonic() < deadline:
                time.sleep(0.01)
            elapsed = time.monotonic() - up_t
    assert len(up.received) == 50_000
    assert 0.4 <= elapsed < 1.5  # 50 000 B at 100 000 B/s = 0.5 s


@pytest.mark.parametrize("rate", [0, -5])
def test_bandwidth_zero_holds_then_delivers_on_removal(client: ToxiproxyClient, echo: EchoServer, rate: int) -> None:
    p = proxy_for(client, echo)
    client.add_toxic("p", "bandwidth", attributes={"rate": rate})
    with connect(p.listen_port) as s:
        s.sendall(b"cut")
        assert idle_for(s, 0.4)  # held, and the connection stays open
        client.remove_toxic("p", "bandwidth_downstream")
        assert recv_exactly(s, 3) == b"cut"
        assert rtt(s) < 0.2
    assert client.version() == "2.12.0"  # a negative rate kills the real server; not this one


def test_connection_cut_both_directions_like_testcontainers(client: ToxiproxyClient, echo: EchoServer) -> None:
    p = proxy_for(client, echo)
    client.add_toxic("p", "bandwidth", name="CUT_CONNECTION_DOWNSTREAM", attributes={"rate": 0})
    client.add_toxic("p", "bandwidth", name="CUT_CONNECTION_UPSTREAM", stream="upstream", attributes={"rate": 0})
    with connect(p.listen_port) as s:
        s.sendall(b"a")
        assert idle_for(s, 0.3)
        client.remove_toxic("p", "CUT_CONNECTION_UPSTREAM")
        client.remove_toxic("p", "CUT_CONNECTION_DOWNSTREAM")
        assert recv_exactly(s, 1) == b"a"


# --- slow_close ---------------------------------------------------------------------------------


def test_slow_close_delays_eof_not_data(client: ToxiproxyClient) -> None:
    with EchoServer(mode="reply_close", reply=b"bye") as srv:
        p = proxy_for(client, srv)
        client.add_toxic("p", "slow_close", attributes={"delay": 500})
        with connect(p.listen_port) as s:
            t = time.monotonic()
            s.sendall(b"q")
            assert recv_exactly(s, 3) == b"bye"
            assert time.monotonic() - t < 0.3
            assert read_until_close(s, 3) == (b"", "eof")
            assert 0.45 <= time.monotonic() - t < 1.2


# --- timeout ------------------------------------------------------------------------------------


def test_timeout_closes_idle_connection(client: ToxiproxyClient, echo: EchoServer) -> None:
    p = proxy_for(client, echo)
    client.add_toxic("p", "timeout", attributes={"timeout": 300})
    with connect(p.listen_port) as s:
        t = time.monotonic()
        assert read_until_close(s, 3) == (b"", "eof")
        assert 0.28 <= time.monotonic() - t < 1.0


def test_timeout_drops_data_and_timer_restarts_per_chunk(client: ToxiproxyClient, echo: EchoServer) -> None:
    p = proxy_for(client, echo)
    client.add_toxic("p", "timeout", stream="upstream", attributes={"timeout": 500})
    with connect(p.listen_port) as s:
        for _ in range(4):  # 4 x 250 ms > 500 ms, but every chunk restarts the timer
            s.sendall(b"dropped")
            assert idle_for(s, 0.25)
        assert read_until_close(s, 3)[1] == "eof"
    assert all(len(u.received) == 0 for u in echo.all)


@pytest.mark.parametrize("toxicity", [1.0, 0.0])
def test_timeout_zero_holds_until_removal_which_closes(client: ToxiproxyClient, echo: EchoServer,
                                                       toxicity: float) -> None:
    p = proxy_for(client, echo)
    client.add_toxic("p", "timeout", toxicity=toxicity, attributes={"timeout": 0})
    with connect(p.listen_port) as s:
        s.sendall(b"gone")  # reaching the upstream proves the connection is fully set up
        up = echo.next_conn()
        deadline = time.monotonic() + 3
        while len(up.received) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        if toxicity:
            assert idle_for(s, 0.4)  # the echo is dropped
        else:
            assert recv_exactly(s, 4) == b"gone"  # the toxic lost its roll: a noop
        client.remove_toxic("p", "timeout_downstream")
        assert read_until_close(s, 3)[1] == "eof"


# --- reset_peer ---------------------------------------------------------------------------------


def test_reset_peer_rsts_new_connections_on_first_data(client: ToxiproxyClient, echo: EchoServer) -> None:
    p = proxy_for(client, echo)
    client.add_toxic("p", "reset_peer", stream="upstream", attributes={"timeout": 100})
    with connect(p.listen_port) as s:
        up = echo.next_conn()
        assert idle_for(s, 0.3)  # an idle connection is not reset
        t = time.monotonic()
        s.sendall(b"trigger")
        assert read_until_close(s, 3) == (b"", "reset")
        assert 0.09 <= time.monotonic() - t < 0.8
        assert up.done.wait(3) and up.ended == "reset"
        assert bytes(up.received) == b""  # the triggering chunk was dropped


def test_reset_peer_on_older_connection_is_a_plain_close(client: ToxiproxyClient, echo: EchoServer) -> None:
    p = proxy_for(client, echo)
    with connect(p.listen_port) as s:
        assert rtt(s) < 0.5
        client.add_toxic("p", "reset_peer", attributes={"timeout": 100})
        s.sendall(b"x")  # echoed back, and that echo is the downstream chunk that triggers it
        assert read_until_close(s, 3) == (b"", "eof")


# --- slicer -------------------------------------------------------------------------------------


def recv_pieces(s: socket.socket, total: int, timeout: float = 5.0) -> list[bytes]:
    pieces = []
    got = 0
    deadline = time.monotonic() + timeout
    while got < total and time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        piece = s.recv(65536)
        if not piece:
            break
        pieces.append(piece)
        got += len(piece)
    return pieces


def test_slicer_splits_and_delays(client: ToxiproxyClient, echo: EchoServer) -> None:
    p = proxy_for(client, echo)
    client.add_toxic("p", "slicer", attributes={"average_size": 10, "size_variation": 5, "delay": 10_000})
    data = bytes(range(100))
    with connect(p.listen_port) as s:
        t = time.monotonic()
        s.sendall(data)
        pieces = recv_pieces(s, 100)
        elapsed = time.monotonic() - t
    assert b"".join(pieces) == data
    assert len(pieces) >= 5
    assert elapsed >= 0.04


def test_slicer_zero_variation_exact_pieces(client: ToxiproxyClient, echo: EchoServer) -> None:
    p = proxy_for(client, echo)
    client.add_toxic("p", "slicer", attributes={"average_size": 1, "size_variation": 0, "delay": 20_000})
    with connect(p.listen_port) as s:
        s.sendall(b"abcdefgh")
        pieces = recv_pieces(s, 8)
    assert b"".join(pieces) == b"abcdefgh"
    assert len(pieces) >= 6  # 8 one-byte pieces 20 ms apart; allow a little coalescing


def test_slicer_average_zero_does_not_crash(client: ToxiproxyClient, echo: EchoServer) -> None:
    p = proxy_for(client, echo)
    client.add_toxic("p", "slicer", attributes={"average_size": 0, "size_variation": 0, "delay": 0})
    client.add_toxic("p", "slicer", name="wide", attributes={"average_size": 0, "size_variation": 50, "delay": 0})
    with connect(p.listen_port) as s:
        s.sendall(b"z" * 300)
        assert recv_exactly(s, 300) == b"z" * 300
    assert client.version() == "2.12.0"


# --- limit_data ---------------------------------------------------------------------------------


def test_limit_data_truncates_then_closes(client: ToxiproxyClient, echo: EchoServer) -> None:
    p = proxy_for(client, echo)
    client.add_toxic("p", "limit_data", attributes={"bytes": 10})
    with connect(p.listen_port) as s:
        s.sendall(b"0123456")
        assert recv_exactly(s, 7) == b"0123456"
        s.sendall(b"789abcdef")
        assert read_until_close(s, 3) == (b"789", "eof")


def test_limit_data_zero_closes_on_first_data(client: ToxiproxyClient, echo: EchoServer) -> None:
    p = proxy_for(client, echo)
    client.add_toxic("p", "limit_data", stream="upstream", attributes={"bytes": 0})
    with connect(p.listen_port) as s:
        assert idle_for(s, 0.3)
        s.sendall(b"x")
        assert read_until_close(s, 3) == (b"", "eof")
    assert all(len(u.received) == 0 for u in echo.all)


def test_limit_data_count_survives_updates(client: ToxiproxyClient, echo: EchoServer) -> None:
    p = proxy_for(client, echo)
    client.add_toxic("p", "limit_data", attributes={"bytes": 8})
    with connect(p.listen_port) as s:
        s.sendall(b"12345")
        assert recv_exactly(s, 5) == b"12345"
        client.update_toxic("p", "limit_data_downstream", attributes={"bytes": 10})  # restart, same count
        s.sendall(b"6789abc")
        assert read_until_close(s, 3) == (b"6789a", "eof")  # 10 - 5 already sent


def test_noop_passes_everything(client: ToxiproxyClient, echo: EchoServer) -> None:
    p = proxy_for(client, echo)
    client.add_toxic("p", "noop")
    client.add_toxic("p", "noop", stream="upstream")
    with connect(p.listen_port) as s:
        assert rtt(s, b"x" * 100_000) < 2


# --- runtime changes keep the byte stream intact ------------------------------------------------


def test_adding_and_removing_toxics_midstream_preserves_order(client: ToxiproxyClient, echo: EchoServer) -> None:
    """Switching links between the fast path and the toxic pipeline must never reorder or lose bytes."""
    p = proxy_for(client, echo)
    total = 4_000_000
    payload = b"".join(i.to_bytes(4, "big") for i in range(total // 4))
    received = bytearray()
    with connect(p.listen_port, timeout=30) as s:
        def reader() -> None:
            s.settimeout(30)
            while len(received) < total:
                piece = s.recv(1 << 16)
                if not piece:
                    return
                received.extend(piece)

        t = threading.Thread(target=reader)
        t.start()
        sender = threading.Thread(target=lambda: [s.sendall(payload[i:i + 8192]) for i in range(0, total, 8192)])
        sender.start()
        for i in range(30):
            stream = "upstream" if i % 2 else "downstream"
            kind = ("noop", "latency", "slicer")[i % 3]
            attrs = {"latency": 1} if kind == "latency" else (
                {"average_size": 4096, "size_variation": 100, "delay": 0} if kind == "slicer" else {})
            client.add_toxic("p", kind, name=f"t{i}", stream=stream, attributes=attrs)
            time.sleep(0.005)
            if i % 4 == 3:
                client.reset()
        client.reset()
        sender.join(60)
        t.join(60)
    assert len(received) == total
    assert bytes(received) == payload


def test_backpressure_bounds_buffering(client: ToxiproxyClient) -> None:
    """A client that stops reading makes the upstream block instead of the proxy buffering everything."""
    with EchoServer(mode="sink") as sink:
        p = proxy_for(client, sink)
        with connect(p.listen_port) as s:
            s.sendall(b"x")
            up = sink.next_conn()
            up.sock.settimeout(3)
            sent = 0
            chunk = b"y" * 65536
            with pytest.raises(TimeoutError):
                while sent < 500 * 1024 * 1024:
                    up.sock.sendall(chunk)
                    sent += len(chunk)
            assert sent < 64 * 1024 * 1024  # kernel buffers + a bounded proxy buffer


def test_toxicity_is_rolled_per_connection(client: ToxiproxyClient, echo: EchoServer) -> None:
    p = proxy_for(client, echo)
    client.add_toxic("p", "latency", toxicity=0.5, attributes={"latency": 150})
    slow = fast = 0
    for _ in range(16):  # P(all 16 rolls agree) = 2 ** -15
        with connect(p.listen_port) as s:
            if rtt(s) >= 0.14:
                slow += 1
            else:
                fast += 1
    assert slow > 0 and fast > 0, (slow, fast)


def test_closed_connections_release_their_sockets(client: ToxiproxyClient, echo: EchoServer, tp_process) -> None:
    psutil = pytest.importorskip("psutil")
    server = psutil.Process(tp_process.proc.pid)
    p = proxy_for(client, echo)
    client.add_toxic("p", "latency", stream="upstream", attributes={"latency": 1})  # half the links piped
    baseline = server.num_fds()
    socks = [connect(p.listen_port) for _ in range(200)]
    for s in socks:
        s.sendall(b"x")
    for s in socks:
        recv_exactly(s, 1)
    assert server.num_fds() >= baseline + 300
    for i, s in enumerate(socks):
        if i % 2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        s.close()
    deadline = time.monotonic() + 10
    while server.num_fds() > baseline + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.num_fds() <= baseline + 2


def test_disable_releases_every_socket(client: ToxiproxyClient, echo: EchoServer, tp_process) -> None:
    psutil = pytest.importorskip("psutil")
    server = psutil.Process(tp_process.proc.pid)
    baseline = server.num_fds()
    p = proxy_for(client, echo)
    client.add_toxic("p", "bandwidth", attributes={"rate": 0})  # data held inside the pipeline
    socks = [connect(p.listen_port) for _ in range(50)]
    try:
        for s in socks:
            s.sendall(b"held")
        deadline = time.monotonic() + 5
        while len(echo.all) < 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        client.update_proxy("p", enabled=False)
        deadline = time.monotonic() + 10
        while server.num_fds() > baseline and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.num_fds() <= baseline
        assert all(read_until_close(s, 3)[1] in ("eof", "reset") for s in socks)
    finally:
        for s in socks:
            s.close()
