"""The epmd-compatible name server of the local cluster: per-port views, registrations that live
as long as the node's connection (a killed node is gone at once), the wire format Erlang reads."""

from __future__ import annotations

import socket
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.processes.managed import ManagedProcess, free_port
from harness.stack.epmd import ALIVE2_REQ, ALIVE2_X_RESP, NAMES_REQ, PORT2_RESP, encode_port_please


def _alive2(name: str, port: int) -> bytes:
    n = name.encode()
    body = bytes([ALIVE2_REQ]) + struct.pack(">HBBHHH", port, 77, 0, 6, 5, len(n)) + n + struct.pack(">H", 0)
    return struct.pack(">H", len(body)) + body


def _recv_all(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(4096):
        out += chunk
    return out


def _port_please(epmd_port: int, name: str) -> int | None:
    with socket.create_connection(("127.0.0.1", epmd_port), timeout=2) as s:
        s.sendall(encode_port_please(name))
        data = _recv_all(s)
    assert data[0] == PORT2_RESP
    if data[1] != 0:
        return None
    port, node_type, _proto, high, low, nlen = struct.unpack(">HBBHHH", data[2:12])
    assert (node_type, high, low, data[12:12 + nlen].decode()) == (77, 6, 5, name)  # echoed as registered
    return int(port)


@pytest.fixture
def views(tmp_path: Path) -> Iterator[tuple[int, int]]:
    a, b = free_port(), free_port()
    cfg = tmp_path / "views.json"
    cfg.write_text(f'{{"{a}": {{"node2": 40002}}, "{b}": {{}}}}')
    proc = ManagedProcess("epmd-views", [sys.executable, "-m", "harness.stack.epmd", "--config", str(cfg)],
                          log_path=tmp_path / "epmd.log")
    proc.start()
    try:
        proc.wait_ready(lambda: socket.create_connection(("127.0.0.1", b), timeout=0.5).close(), timeout=10,
                        what="the name server's ports")
        yield a, b
    finally:
        proc.stop(timeout=5)


def test_each_port_answers_its_own_view_and_a_dead_node_is_gone(views: tuple[int, int]) -> None:
    a, b = views
    reg = socket.create_connection(("127.0.0.1", b), timeout=2)
    reg.sendall(_alive2("node2", 35001))
    resp = reg.recv(6)
    assert resp[0] == ALIVE2_X_RESP and resp[1] == 0 and struct.unpack(">I", resp[2:6])[0] > 3
    assert _port_please(a, "node2") == 40002, "port a's view: node2 behind its proxy"
    assert _port_please(b, "node2") == 35001, "port b's view: node2 itself"
    with socket.create_connection(("127.0.0.1", a), timeout=2) as s:
        s.sendall(struct.pack(">H", 1) + bytes([NAMES_REQ]))
        assert b"name node2 at port 35001" in _recv_all(s)
    reg.close()  # the node died: epmd forgets it with its connection
    deadline = time.monotonic() + 5
    while _port_please(a, "node2") is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _port_please(a, "node2") is None and _port_please(b, "node2") is None
