"""The Toxiproxy-compatible server process: API listener, proxies, config file, logging, shutdown.

Responsibility: wire the HTTP API to a proxy collection on one asyncio loop, populate from a
`-config` file at start (errors are only logged, as in Toxiproxy), log JSON lines on stdout like
Toxiproxy's zerolog output, and stop cleanly (listeners and connections closed) on SIGINT/SIGTERM.

Example (inside a running loop):
    server = ToxiproxyServer("127.0.0.1", 0)
    await server.start()      # server.url == "http://127.0.0.1:40123"
    await server.stop()
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import signal
import sys
import time
from pathlib import Path

from ._addr import AddrError, bind_listener, format_addr
from ._http import HttpProtocol
from .api import VERSION, ToxiproxyApi
from .proxy import ApiError, ProxyCollection

log = logging.getLogger("harness.toxiproxy")

_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "warning": logging.WARNING, "error": logging.ERROR, "fatal": logging.CRITICAL,
           "panic": logging.CRITICAL, "disabled": logging.CRITICAL + 10}


class JsonLineFormatter(logging.Formatter):
    """zerolog-style lines: {"level":"info","name":"redis",...,"time":"...","message":"Started proxy"}."""

    def format(self, record: logging.LogRecord) -> str:
        level = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
                 logging.ERROR: "error"}.get(record.levelno, "fatal")
        doc: dict[str, object] = {"level": level}
        doc.update(getattr(record, "fields", {}))
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info).splitlines()[-1]
        doc["time"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)) + time.strftime("%z")
        doc["message"] = record.getMessage()
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def configure_logging(level_name: str | None) -> None:
    """Route the server's log to stdout as JSON lines at `level_name` (Toxiproxy's LOG_LEVEL)."""
    level = _LEVELS.get((level_name or "info").strip().lower(), logging.INFO)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonLineFormatter())
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


class ToxiproxyServer:
    """The API plus its proxies on the running loop; `start()` binds, `stop()` closes everything."""

    def __init__(self, host: str = "localhost", port: int = 8474, seed: int | None = None) -> None:
        self.host = host
        self.port = port
        self.proxies = ProxyCollection(random.Random(seed))
        self.api = ToxiproxyApi(self.proxies)
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[HttpProtocol] = set()
        self.address = ""

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    async def start(self) -> None:
        """Bind the API address; raises AddrError with Go's `listen tcp ...` message on failure."""
        host = self.host
        addr = format_addr(host, self.port) if host else f":{self.port}"
        sock, actual = await bind_listener(addr, backlog=1024)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: HttpProtocol(self.api.handle, self._conns), sock=sock,
                                                backlog=1024)
        self.address = actual.replace("[::]", "127.0.0.1") if actual.startswith("[::]") else actual
        log.info("Starting Toxiproxy HTTP server", extra={"fields": {"address": actual}})

    async def populate_file(self, path: str) -> None:
        """Apply a JSON config file like POST /populate; problems are logged, never raised."""
        try:
            body = Path(path).read_bytes()
        except OSError as e:
            log.error("Error reading config file", extra={"fields": {"config": path, "error": str(e)}})
            return
        async with self.proxies.lock:
            try:
                entries = self.api._decode_populate(body)
                for listen, name, upstream, enabled in entries:
                    await self.proxies.add_or_replace(name, listen, upstream, enabled)
            except ApiError as e:
                log.error("Failed to populate proxies from file", extra={"fields": {"error": e.message}})
                return
        log.info("Populated proxies from file", extra={"fields": {"config": path, "proxies": len(entries)}})

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self._conns):
            if conn.transport is not None:
                conn.transport.close()
        self.proxies.clear()
        await asyncio.sleep(0)


async def run(host: str, port: int, config: str | None = None, seed: int | None = None) -> int:
    """Serve until SIGINT/SIGTERM; returns the process exit code."""
    server = ToxiproxyServer(host, port, seed)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    if config:
        await server.populate_file(config)
    try:
        await server.start()
    except AddrError as e:
        log.error("API server failed", extra={"fields": {"error": str(e)}})
        await server.stop()
        return 1
    log.info("Toxiproxy ready", extra={"fields": {"version": VERSION}})
    try:
        await stop.wait()
    finally:
        log.info("Shutdown started")
        await server.stop()
    return 0
