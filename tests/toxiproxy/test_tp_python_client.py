"""toxiproxy-python 0.1.1, unchanged, against the built-in server: every call it makes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from tp_util import EchoServer, connect, idle_for, read_until_close, recv_exactly

from harness.toxiproxy.client import ToxiproxyClient
from harness.toxiproxy.process import ToxiproxyProcess

toxiproxy = pytest.importorskip("toxiproxy")
from toxiproxy.api import APIConsumer  # noqa: E402
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists  # noqa: E402


@pytest.fixture()
def server(tp_process: ToxiproxyProcess, client: ToxiproxyClient) -> Iterator[toxiproxy.Toxiproxy]:
    old = (APIConsumer.host, APIConsumer.port)
    srv = toxiproxy.Toxiproxy()
    srv.update_api_consumer("127.0.0.1", tp_process.port)  # class-global in that library
    try:
        yield srv
    finally:
        APIConsumer.host, APIConsumer.port = old


def test_running_version_and_create(server, echo: EchoServer) -> None:
    assert server.running() is True
    assert server.version() == b'{"version": "2.12.0"}\n'
    proxy = server.create(upstream=echo.addr, name="py")
    assert proxy.name == "py" and proxy.enabled is True
    host, port = proxy.listen.rsplit(":", 1)
    with connect(int(port), host) as s:
        s.sendall(b"hi")
        assert recv_exactly(s, 2) == b"hi"
    with pytest.raises(ProxyExists):
        server.create(upstream=echo.addr, name="py")
    assert set(server.proxies()) == {"py"}
    assert server.get_proxy("py").upstream == echo.addr
    assert server.get_proxy("missing") is None


def test_toxics_through_the_python_client(server, echo: EchoServer) -> None:
    proxy = server.create(upstream=echo.addr, name="py")
    port = int(proxy.listen.rsplit(":", 1)[1])
    assert proxy.add_toxic(type="latency", attributes={"latency": 200}) is None
    toxics = proxy.toxics()
    assert list(toxics) == ["latency_downstream"]
    t = toxics["latency_downstream"]
    assert (t.type, t.stream, t.toxicity, t.attributes) == ("latency", "downstream", 1, {"latency": 200, "jitter": 0})
    with connect(port) as s:
        start = time.monotonic()
        s.sendall(b"x")
        recv_exactly(s, 1)
        assert time.monotonic() - start >= 0.19
    assert proxy.get_toxic("latency_downstream").name == "latency_downstream"
    assert proxy.destroy_toxic("latency_downstream") is True
    assert proxy.toxics() == {}
    with pytest.raises(ProxyExists):  # the library maps every 409 (here: toxic exists) to ProxyExists
        proxy.add_toxic(type="timeout", name="t")
        proxy.add_toxic(type="timeout", name="t")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="latency", name="frac", attributes={"latency": 1.5})
    with pytest.raises(NotFound):
        proxy.destroy_toxic("nope")


def test_disable_enable_and_down(server, echo: EchoServer) -> None:
    proxy = server.create(upstream=echo.addr, name="py")
    port = int(proxy.listen.rsplit(":", 1)[1])
    proxy.disable()
    assert proxy.enabled is False
    with pytest.raises(ConnectionRefusedError):
        connect(port, timeout=2)
    proxy.enable()
    assert proxy.enabled is True
    with connect(port) as s:
        with proxy.down():
            assert read_until_close(s, 3)[1] == "eof"
            with pytest.raises(ConnectionRefusedError):
                connect(port, timeout=2)
    with connect(port) as s:  # same port after down()
        s.sendall(b"ok")
        assert recv_exactly(s, 2) == b"ok"


def test_reset_destroy_and_destroy_all(server, echo: EchoServer) -> None:
    a = server.create(upstream=echo.addr, name="a")
    server.create(upstream=echo.addr, name="b")
    a.add_toxic(type="bandwidth", attributes={"rate": 0})
    a.disable()
    assert server.reset() is True
    again = server.get_proxy("a")
    assert again.enabled is True and again.toxics() == {}
    assert server.destroy(a) is True
    assert set(server.proxies()) == {"b"}
    server.destroy_all()
    assert server.proxies() == {}


def test_populate_emulation(server, echo: EchoServer) -> None:
    with EchoServer() as other:
        created = server.populate([{"name": "one", "upstream": echo.addr, "listen": "127.0.0.1:0"},
                                   {"name": "two", "upstream": echo.addr, "listen": "127.0.0.1:0"}])
        assert sorted(p.name for p in created) == ["one", "two"]
        listen = server.get_proxy("one").listen
        # same textual listen and upstream: untouched; a new upstream: deleted and recreated
        again = server.populate([{"name": "one", "upstream": echo.addr, "listen": listen},
                                 {"name": "two", "upstream": other.addr, "listen": "127.0.0.1:0"}])
        assert [p.name for p in again] == ["two"]
        assert server.get_proxy("two").upstream == other.addr
        assert server.get_proxy("one").listen == listen


def test_cut_connection_with_rate_zero(server, echo: EchoServer) -> None:
    proxy = server.create(upstream=echo.addr, name="cut")
    port = int(proxy.listen.rsplit(":", 1)[1])
    proxy.add_toxic(type="bandwidth", name="CUT_DOWN", attributes={"rate": 0})
    with connect(port) as s:
        s.sendall(b"z")
        assert idle_for(s, 0.3)
        proxy.destroy_toxic("CUT_DOWN")
        assert recv_exactly(s, 1) == b"z"
