"""A small HTTP/1.1 server on asyncio that writes responses byte-for-byte like Go's net/http.

Responsibility: parse requests (keep-alive, pipelining, Content-Length and chunked bodies,
bounded sizes and timeouts), hand them to an async handler, and render its `Response` with Go's
header order (handler headers sorted, then Connection, Transfer-Encoding, Date, Content-Length),
Go's chunked encoding for bodies over 2048 bytes and Go's answers to malformed requests.

Example:
    >>> Response(204).status, REASONS[405]
    (204, 'Method Not Allowed')
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate

log = logging.getLogger("harness.toxiproxy")

MAX_HEADER_BYTES = (1 << 20) + 4096  # Go's DefaultMaxHeaderBytes plus its slack
MAX_BODY_BYTES = 64 << 20  # Toxiproxy has no limit; we keep memory bounded
READ_TIMEOUT = 15.0  # Go's ReadTimeout in Toxiproxy
IDLE_TIMEOUT = 60.0
CHUNKING_THRESHOLD = 2048  # Go buffers this much before switching to chunked encoding

REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently",
    400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    409: "Conflict", 413: "Request Entity Too Large", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
}

_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class BadRequest(Exception):
    """The request cannot be parsed; answered like Go does, then the connection closes."""

    def __init__(self, reason: str = "", status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


_HEX = frozenset("0123456789abcdefABCDEF")


def unescape_path(raw: str) -> str:
    """Go's URL path unescaping: %XX only (a bad escape is a 400), '+' stays '+'."""
    if "%" not in raw:
        return raw
    data = raw.encode("utf-8", "surrogateescape")
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        c = data[i]
        if c == 0x25:
            if i + 2 >= n or chr(data[i + 1]) not in _HEX or chr(data[i + 2]) not in _HEX:
                raise BadRequest("invalid URL escape")
            out.append(int(data[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(c)
            i += 1
    return out.decode("utf-8", "surrogateescape")


def split_target(target: str) -> tuple[str, str]:
    """The decoded path and raw query of a request target (origin or absolute form)."""
    if target.startswith("/"):
        raw_path, _, query = target.partition("?")
    elif target.lower().startswith(("http://", "https://")):
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        raw_path, _, query = (rest[slash:] if slash >= 0 else "/").partition("?")
    else:
        raise BadRequest("invalid request URI")
    return unescape_path(raw_path), query


@dataclass(slots=True)
class Request:
    method: str
    target: str
    version: tuple[int, int]
    headers: list[tuple[str, str]]
    body: bytes = b""
    path: str = ""
    query: str = ""

    def __post_init__(self) -> None:
        if not self.path:
            self.path, self.query = split_target(self.target)

    def header(self, name: str) -> str | None:
        low = name.lower()
        for k, v in self.headers:
            if k.lower() == low:
                return v
        return None


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


def _canonical(name: str) -> str:
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.split("-"))


def render(resp: Response, version: tuple[int, int], close: bool, keep_alive_10: bool = False) -> bytes:
    proto = "HTTP/1.1" if version >= (1, 1) else "HTTP/1.0"
    lines = [f"{proto} {resp.status} {REASONS.get(resp.status, 'status code ' + str(resp.status))}"]
    for key in sorted(resp.headers):
        lines.append(f"{key}: {resp.headers[key]}")
    if close and version >= (1, 1):
        lines.append("Connection: close")
    elif keep_alive_10 and not close:
        lines.append("Connection: keep-alive")
    no_body = resp.status in (204, 304) or resp.status < 200
    chunked = not no_body and len(resp.body) > CHUNKING_THRESHOLD and version >= (1, 1)
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    lines.append("Date: " + formatdate(usegmt=True))
    if not no_body and not chunked:
        lines.append(f"Content-Length: {len(resp.body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
    if no_body:
        return head
    if chunked:
        return head + f"{len(resp.body):x}\r\n".encode() + resp.body + b"\r\n0\r\n\r\n"
    return head + resp.body


def bad_request_bytes(err: BadRequest) -> bytes:
    status = err.status
    text = f"{status} {REASONS.get(status, 'Bad Request')}"
    if err.reason:
        text += ": " + err.reason
    return (f"HTTP/1.1 {status} {REASONS.get(status, 'Bad Request')}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n" + text).encode()


class _Parser:
    """Incremental request parser over a byte buffer."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.wants_continue = False  # headers of an Expect: 100-continue request seen, body pending

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next_request(self) -> Request | None:
        """A complete request, None if more bytes are needed; raises BadRequest."""
        buf = self.buf
        # Go tolerates (and skips) empty lines before a request line.
        while buf.startswith(b"\r\n") or buf.startswith(b"\n"):
            del buf[: 2 if buf.startswith(b"\r\n") else 1]
        end = buf.find(b"\r\n\r\n")
        sep = 4
        alt = buf.find(b"\n\n")
        if alt >= 0 and (end < 0 or alt < end):
            end, sep = alt, 2
        if end < 0:
            if len(buf) > MAX_HEADER_BYTES:
                raise BadRequest("", 431)
            return None
        if end > MAX_HEADER_BYTES:
            raise BadRequest("", 431)
        head = bytes(buf[:end]).decode("latin-1")
        lines = head.replace("\r\n", "\n").split("\n")
        method, target, version = self._request_line(lines[0])
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if not line:
                continue
            if line[0] in " \t":
                raise BadRequest("malformed MIME header line")
            name, colon, value = line.partition(":")
            if not colon or not name or any(c not in _TOKEN for c in name):
                raise BadRequest("malformed MIME header line")
            value = value.strip(" \t")
            if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value):
                raise BadRequest("invalid header value")
            headers.append((_canonical(name), value))
        req = Request(method, target, version, headers)
        if version >= (1, 1) and req.header("Host") is None:
            raise BadRequest("missing required Host header")
        body_start = end + sep
        te = req.header("Transfer-Encoding")
        if te is not None:
            if te.strip().lower() != "chunked":
                raise BadRequest("unsupported transfer encoding")
            parsed = self._chunked(body_start)
            if parsed is None:
                return None
            req.body, consumed = parsed
            del buf[:consumed]
            return req
        lengths = [v for k, v in headers if k == "Content-Length"]
        length = 0
        if lengths:
            if len(set(lengths)) > 1 or not lengths[0].strip().isdigit():
                raise BadRequest("bad Content-Length")
            length = int(lengths[0].strip())
            if length > MAX_BODY_BYTES:
                raise BadRequest("", 413)
        if len(buf) - body_start < length:
            self.wants_continue = "100-continue" in (req.header("Expect") or "").lower()
            return None
        req.body = bytes(buf[body_start:body_start + length])
        del buf[:body_start + length]
        return req

    @staticmethod
    def _request_line(line: str) -> tuple[str, str, tuple[int, int]]:
        method, sp1, rest = line.partition(" ")
        target, sp2, proto = rest.partition(" ")
        if not sp1 or not sp2:
            raise BadRequest("malformed HTTP request " + repr(line)[:80])
        if not method or any(c not in _TOKEN for c in method):
            raise BadRequest("invalid method")
        if proto == "HTTP/1.1":
            version = (1, 1)
        elif proto == "HTTP/1.0":
            version = (1, 0)
        else:
            raise BadRequest("malformed HTTP version " + repr(proto)[:40])
        if not target or any(ord(c) < 33 or ord(c) == 127 for c in target):
            raise BadRequest("invalid request URI")
        split_target(target)
        return method, target, version

    def _chunked(self, start: int) -> tuple[bytes, int] | None:
        buf = self.buf
        pos = start
        body = bytearray()
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                if len(buf) - pos > 4096:
                    raise BadRequest("malformed chunked encoding")
                return None
            size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadRequest("malformed chunked encoding") from None
            if size < 0 or len(body) + size > MAX_BODY_BYTES:
                raise BadRequest("", 413)
            pos = eol + 2
            if size == 0:
                # Skip trailers up to the empty line.
                while True:
                    eol = buf.find(b"\r\n", pos)
                    if eol < 0:
                        return None
                    if eol == pos:
                        return bytes(body), eol + 2
                    pos = eol + 2
            if len(buf) < pos + size + 2:
                return None
            body += buf[pos:pos + size]
            if buf[pos + size:pos + size + 2] != b"\r\n":
                raise BadRequest("malformed chunked encoding")
            pos += size + 2


class HttpProtocol(asyncio.Protocol):
    """One HTTP connection: requests are answered one at a time, in order."""

    def __init__(self, handler: Handler, connections: set[HttpProtocol]) -> None:
        self.handler = handler
        self.connections = connections
        self.parser = _Parser()
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.closing = False
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self.continue_sent = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)
        self._arm(IDLE_TIMEOUT)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.closing = True
        if self._timer is not None:
            self._timer.cancel()
        # A running handler is left to finish (as Go does): cancelling it half-way through, say, a
        # populate could leave proxies half-started. Its answer is simply not written.

    def _arm(self, seconds: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        if not self.busy and self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if not self.parser.buf:
            self._arm(READ_TIMEOUT)
        self.parser.feed(data)
        if not self.busy:
            self._process()

    def eof_received(self) -> bool:
        if not self.busy:
            return False
        self.closing = True
        return True

    def _process(self) -> None:
        assert self.transport is not None
        try:
            req = self.parser.next_request()
        except BadRequest as e:
            self.transport.write(bad_request_bytes(e))
            self.closing = True
            self.transport.close()
            return
        if req is None:
            if self.parser.wants_continue and not self.continue_sent:
                self.continue_sent = True  # Go sends this when the handler starts reading the body
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if self.closing:
                self.transport.close()
            return
        self.continue_sent = False
        self.parser.wants_continue = False
        self.busy = True
        self._task = asyncio.get_running_loop().create_task(self._serve(req))

    async def _serve(self, req: Request) -> None:
        assert self.transport is not None
        try:
            resp = await self.handler(req)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("handler failed for %s %s", req.method, req.target)
            resp = Response(500, b'{"error":"internal error","status":500}\n',
                            {"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"})
        conn_hdr = (req.header("Connection") or "").lower()
        if req.version >= (1, 1):
            close = "close" in conn_hdr
            keep_10 = False
        else:
            close = "keep-alive" not in conn_hdr
            keep_10 = not close
        close = close or self.closing
        if self.transport.is_closing():
            return
        self.transport.write(render(resp, req.version, close, keep_10))
        self.busy = False
        if close:
            self.closing = True
            self.transport.close()
            return
        self._arm(IDLE_TIMEOUT)
        if self.parser.buf:
            self._process()


async def serve(handler: Handler, host: str, port: int) -> tuple[asyncio.AbstractServer, set[HttpProtocol]]:
    """Start an HTTP server; returns it and the live connection set (to close them on shutdown)."""
    loop = asyncio.get_running_loop()
    conns: set[HttpProtocol] = set()
    server = await loop.create_server(lambda: HttpProtocol(handler, conns), host, port, reuse_address=True)
    return server, conns
