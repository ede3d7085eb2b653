"""The built-in server on the system's python3 (Debian bookworm: 3.11.2), standard library only.

On CPython < 3.11.3 a pause_reading() inside connection_made is ignored, so the client's first
bytes arrive before the upstream is dialled; they must be delivered, not dropped.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _echo_server() -> tuple[socket.socket, int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return srv, int(srv.getsockname()[1])


@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no system python3 at /usr/bin/python3")
def test_first_bytes_sent_at_connect_are_delivered_on_system_python(tmp_path):
    api = _free_port()
    proc = subprocess.Popen([str(SYSTEM_PYTHON), "-S", "-m", "harness.toxiproxy", "-host", "127.0.0.1",
                             "-port", str(api)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            process_group=0)
    srv, echo_port = _echo_server()
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{api}/version", timeout=1).read()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not answer /version"
                time.sleep(0.05)
        req = urllib.request.Request(f"http://127.0.0.1:{api}/proxies", method="POST",
                                     data=json.dumps({"name": "echo", "listen": "127.0.0.1:0",
                                                      "upstream": f"127.0.0.1:{echo_port}"}).encode())
        listen = json.loads(urllib.request.urlopen(req, timeout=5).read())["listen"]
        port = int(listen.rsplit(":", 1)[1])
        for i in range(20):  # the race is per connection: try several
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                msg = f"hello-{i}".encode()
                c.sendall(msg)  # at once, while the proxy may still be dialling the upstream
                got = b""
                while len(got) < len(msg):
                    chunk = c.recv(64)
                    assert chunk, f"connection {i}: EOF after {got!r}: the first bytes were dropped"
                    got += chunk
                assert got == msg
    finally:
        srv.close()
        proc.terminate()
        proc.wait(timeout=10)
