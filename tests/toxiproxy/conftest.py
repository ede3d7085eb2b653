"""Fixtures for the built-in Toxiproxy tests: one server process per module, real upstream sockets.

Every test starts from an empty server (all proxies deleted), talks to it over real loopback
sockets, and leaves no threads, sockets or processes behind.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from tp_util import EchoServer, RawHttp

from harness.toxiproxy.client import ToxiproxyClient
from harness.toxiproxy.process import ToxiproxyProcess


@pytest.fixture(scope="module")
def tp_process() -> Iterator[ToxiproxyProcess]:
    with ToxiproxyProcess(extra_args=["-seed", "1"]) as tp:
        yield tp


@pytest.fixture()
def client(tp_process: ToxiproxyProcess) -> Iterator[ToxiproxyClient]:
    c = ToxiproxyClient(tp_process.url, timeout=5.0)
    for name in c.proxies():
        c.delete_proxy(name)
    yield c
    for name in c.proxies():
        c.delete_proxy(name)


@pytest.fixture()
def http(tp_process: ToxiproxyProcess, client: ToxiproxyClient) -> RawHttp:
    assert tp_process.port is not None
    return RawHttp("127.0.0.1", tp_process.port)


@pytest.fixture()
def echo() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


@pytest.fixture()
def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def _no_thread_leaks() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
    assert not leaked, f"threads left running: {leaked}"
