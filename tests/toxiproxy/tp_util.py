"""Test helpers: a threaded upstream server with observable connections, raw HTTP, socket reads."""

from __future__ import annotations

import queue
import socket
import threading
import time
from dataclasses import dataclass, field


def connect(port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exactly(sock: socket.socket, n: int, timeout: float = 5.0) -> bytes:
    """Read n bytes or fail with what was read so far."""
    deadline = time.monotonic() + timeout
    buf = b""
    while len(buf) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout}s with {len(buf)}/{n} bytes: {buf[:80]!r}")
        sock.settimeout(remaining)
        piece = sock.recv(n - len(buf))
        if not piece:
            raise AssertionError(f"EOF after {len(buf)}/{n} bytes: {buf[:80]!r}")
        buf += piece
    return buf


def read_until_close(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, str]:
    """Read until EOF/RST/timeout; returns (data, 'eof' | 'reset' | 'timeout')."""
    deadline = time.monotonic() + timeout
    buf = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return buf, "timeout"
        sock.settimeout(remaining)
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            return buf, "reset"
        except TimeoutError:
            return buf, "timeout"
        if not piece:
            return buf, "eof"
        buf += piece


def idle_for(sock: socket.socket, seconds: float) -> bool:
    """True when nothing (no data, no EOF) arrives for `seconds`."""
    sock.settimeout(seconds)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except TimeoutError:
        return True
    return False


@dataclass
class Upstream:
    """One connection accepted by EchoServer, with what its reader saw."""

    sock: socket.socket
    received: bytearray = field(default_factory=bytearray)
    ended: str | None = None  # 'eof' | 'reset'
    done: threading.Event = field(default_factory=threading.Event)


class EchoServer:
    """A loopback TCP server. mode: 'echo' (default), 'sink' (read only), 'reply_close' (send
    `reply` on the first read, then close), 'greet_close' (send `reply` on accept, then close)."""

    def __init__(self, mode: str = "echo", reply: bytes = b"") -> None:
        self.mode = mode
        self.reply = reply
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = int(self.sock.getsockname()[1])
        self.addr = f"127.0.0.1:{self.port}"
        self.conns: queue.Queue[Upstream] = queue.Queue()
        self.all: list[Upstream] = []
        self._threads: list[threading.Thread] = []
        self._stop = False
        self._acceptor = threading.Thread(target=self._accept, name="echo-accept", daemon=True)

    def __enter__(self) -> EchoServer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for up in self.all:
            try:
                up.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            up.sock.close()
        self._acceptor.join(5)
        for t in self._threads:
            t.join(5)

    def next_conn(self, timeout: float = 5.0) -> Upstream:
        return self.conns.get(timeout=timeout)

    def _accept(self) -> None:
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            up = Upstream(c)
            self.all.append(up)
            t = threading.Thread(target=self._serve, args=(up,), name="echo-conn", daemon=True)
            self._threads.append(t)
            t.start()
            self.conns.put(up)

    def _serve(self, up: Upstream) -> None:
        c = up.sock
        try:
            if self.mode == "greet_close":
                c.sendall(self.reply)
                c.close()
                up.ended = "closed"
                return
            while True:
                try:
                    d = c.recv(65536)
                except ConnectionResetError:
                    up.ended = "reset"
                    return
                except OSError:
                    up.ended = "closed"
                    return
                if not d:
                    up.ended = "eof"
                    return
                up.received += d
                if self.mode == "echo":
                    try:
                        c.sendall(d)
                    except OSError:
                        up.ended = "reset"
                        return
                elif self.mode == "reply_close":
                    c.sendall(self.reply)
                    c.close()
                    up.ended = "closed"
                    return
        finally:
            up.done.set()


@dataclass
class HttpResult:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self) -> object:
        import json

        return json.loads(self.body)


class RawHttp:
    """HTTP/1.1 over a raw socket, so tests see exact status lines, header order and bodies."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict[str, str] | None = None, timeout: float = 5.0) -> HttpResult:
        data = body.encode() if isinstance(body, str) else (body or b"")
        hdrs = {"Host": f"{self.host}:{self.port}", "User-Agent": "tp-tests", "Connection": "close"}
        hdrs.update(headers or {})
        if body is not None:
            hdrs["Content-Length"] = str(len(data))
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            s.sendall(head.encode("utf-8", "surrogateescape") + data)
            raw, how = read_until_close(s, timeout)
        assert how == "eof", f"server did not close the connection ({how}); got {raw[:200]!r}"
        return parse_response(raw)


def parse_response(raw: bytes) -> HttpResult:
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    _, status, reason = lines[0].split(" ", 2)
    headers = [tuple(line.split(": ", 1)) for line in lines[1:]]
    result = HttpResult(int(status), reason, headers, rest, head)  # type: ignore[arg-type]
    if result.header("Transfer-Encoding") == "chunked":
        body = b""
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            body += rest[:size]
            rest = rest[size + 2:]
        result.body = body
    return result
