"""Proxies and the proxy collection: listeners, their connections and their toxics.

Responsibility: the state behind the API, with Toxiproxy's lifecycle rules: start binds the
stored listen address and stores the actual one (so a port survives disable/enable), stop closes
the listener and every connection, update restarts only when the resolved listen or the upstream
differs, populate validates everything before changing anything.

Example (inside a running loop):
    proxies = ProxyCollection(random.Random())
    p = await proxies.create("redis", "127.0.0.1:0", "127.0.0.1:6379", enabled=True)
    p.listen  # '127.0.0.1:40891'
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence

from ._addr import AddrError, bind_listener, resolve
from ._gojson import go_str
from .connection import ClientSide, Connection
from .toxics import Direction, Toxic

log = logging.getLogger("harness.toxiproxy")


class ApiError(Exception):
    """An error with the HTTP status and message Toxiproxy would answer."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


PROXY_NOT_FOUND = ("proxy not found", 404)
PROXY_EXISTS = ("proxy already exists", 409)
TOXIC_EXISTS = ("toxic already exists", 409)
TOXIC_NOT_FOUND = ("toxic not found", 404)


def api_error(spec: tuple[str, int]) -> ApiError:
    return ApiError(*spec)


class AlreadyStarted(Exception):
    pass


class Proxy:
    """One named proxy: a listener on `listen` forwarding to `upstream`, with toxics per direction."""

    def __init__(self, name: str, listen: str, upstream: str, rng: random.Random) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.rng = rng
        self.toxics: tuple[list[Toxic], list[Toxic]] = ([], [])
        self.connections: set[Connection] = set()
        self._server: asyncio.AbstractServer | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind `listen` and accept; raises AlreadyStarted, or ApiError(500) with Go's listen error."""
        if self.enabled:
            raise AlreadyStarted()
        try:
            sock, actual = await bind_listener(self.listen)
        except AddrError as e:
            raise ApiError(str(e), 500) from None
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(lambda: ClientSide(self, self.rng), sock=sock,
                                                    backlog=4096)
        except OSError as e:
            sock.close()
            raise ApiError(f"listen tcp {actual}: {e.strerror or e}", 500) from None
        self.listen = actual
        self.enabled = True
        log.info("Started proxy", extra={"fields": {"name": self.name, "proxy": self.listen,
                                                    "upstream": self.upstream}})

    def stop(self) -> None:
        """Close the listener (new connects are refused) and every connection (peers see EOF)."""
        if not self.enabled:
            return
        self.enabled = False
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self.connections):
            conn.abort()
        self.connections.clear()
        log.info("Terminated proxy", extra={"fields": {"name": self.name, "proxy": self.listen,
                                                       "upstream": self.upstream}})

    async def differs(self, listen: str, upstream: str) -> bool:
        """Toxiproxy's rule: the resolved new listen differs from the current one, or the upstream."""
        try:
            resolved = await resolve(listen)
        except AddrError as e:
            raise ApiError(str(e), 500) from None
        return resolved != self.listen or upstream != self.upstream

    async def update(self, listen: str, upstream: str, enabled: bool) -> None:
        if await self.differs(listen, upstream):
            self.stop()
            self.listen = listen
            self.upstream = upstream
        if enabled != self.enabled:
            if enabled:
                await self.start()
            else:
                self.stop()

    # --- connections (ConnectionOwner) -----------------------------------------------------------

    def toxics_for(self, direction: Direction) -> Sequence[Toxic]:
        return self.toxics[direction]

    def connection_opened(self, conn: Connection) -> None:
        if not self.enabled:
            conn.abort()
            return
        self.connections.add(conn)

    def connection_closed(self, conn: Connection) -> None:
        self.connections.discard(conn)

    # --- toxics ---------------------------------------------------------------------------------

    def all_toxics(self) -> list[Toxic]:
        return [*self.toxics[Direction.UPSTREAM], *self.toxics[Direction.DOWNSTREAM]]

    def find_toxic(self, name: str) -> Toxic | None:
        for t in self.all_toxics():
            if t.name == name:
                return t
        return None

    def add_toxic(self, toxic: Toxic) -> None:
        direction = toxic.direction
        self.toxics[direction].append(toxic)
        for conn in list(self.connections):
            link = conn.link(direction)
            if link is not None:
                link.add_toxic(toxic)

    def update_toxic(self, toxic: Toxic, attributes: dict[str, int], toxicity: float | None) -> None:
        toxic.attributes = {**toxic.attributes, **attributes}
        if toxicity is not None:
            toxic.toxicity = toxicity
        for conn in list(self.connections):
            link = conn.link(toxic.direction)
            if link is not None:
                link.update_toxic(toxic)

    def remove_toxic(self, toxic: Toxic) -> None:
        self.toxics[toxic.direction].remove(toxic)
        for conn in list(self.connections):
            link = conn.link(toxic.direction)
            if link is not None:
                link.remove_toxic(toxic)

    def reset_toxics(self) -> None:
        for direction in (Direction.UPSTREAM, Direction.DOWNSTREAM):
            while self.toxics[direction]:
                self.remove_toxic(self.toxics[direction][0])

    # --- JSON -----------------------------------------------------------------------------------

    def to_json(self) -> str:
        toxics = ",".join(t.to_json() for t in self.all_toxics())
        return (f'{{"name":{go_str(self.name)},"listen":{go_str(self.listen)},'
                f'"upstream":{go_str(self.upstream)},"enabled":{"true" if self.enabled else "false"},'
                f'"Logger":{{}},"toxics":[{toxics}]}}')


class ProxyCollection:
    """All proxies by name, with Toxiproxy's add / add-or-replace / remove / clear rules."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.proxies: dict[str, Proxy] = {}
        # Go serialises API calls on locks; one lock keeps our awaits from interleaving changes.
        self.lock = asyncio.Lock()

    def get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise api_error(PROXY_NOT_FOUND)
        return proxy

    async def add(self, name: str, listen: str, upstream: str, enabled: bool) -> Proxy:
        if name in self.proxies:
            raise api_error(PROXY_EXISTS)
        proxy = Proxy(name, listen, upstream, self.rng)
        if enabled:
            await proxy.start()
        self.proxies[name] = proxy
        return proxy

    async def add_or_replace(self, name: str, listen: str, upstream: str, enabled: bool) -> Proxy:
        existing = self.proxies.get(name)
        if existing is not None:
            if not await existing.differs(listen, upstream):
                return existing
            existing.stop()
        proxy = Proxy(name, listen, upstream, self.rng)
        if enabled:
            await proxy.start()
        self.proxies[name] = proxy
        return proxy

    def remove(self, name: str) -> None:
        proxy = self.get(name)
        proxy.stop()
        del self.proxies[name]

    def clear(self) -> None:
        for proxy in list(self.proxies.values()):
            proxy.stop()
        self.proxies.clear()
