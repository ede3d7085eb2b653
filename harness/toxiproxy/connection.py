"""One proxied TCP connection: two sockets and the two one-way links between them.

Responsibility: move bytes client -> upstream ("upstream" link) and upstream -> client
("downstream" link) with Toxiproxy's semantics and as little overhead as possible.

A link with no toxic is in FAST mode: `data_received` writes straight into the other transport
and back-pressure is pause/resume_reading, so an idle proxy costs one loop callback per read.
When a toxic appears the link switches to PIPE mode: reads become chunks queued through a chain
of stubs (one task per toxic, not per chunk) and a writer task. When the last toxic is removed and
everything queued has been written, the link returns to FAST mode; ordering is kept throughout.

Semantics kept from Toxiproxy: no half-close (EOF on one side closes both after draining), an
upstream dial failure closes the client (EOF, not refused), SO_LINGER=0 on both sockets when a
reset_peer toxic exists at connect time, removing a timeout toxic closes the connection.

Example (what a proxy's listener does; `proxy` implements ConnectionOwner):
    server = await loop.create_server(lambda: ClientSide(proxy, rng), sock=listening_socket)
    # each accepted client: Connection(...) -> dial proxy.upstream -> two links, FAST when no toxic
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
from collections.abc import Sequence
from typing import Protocol

from ._channel import Channel, Chunk, Stub, _wake
from .toxics import NOOP, Direction, Toxic

log = logging.getLogger("harness.toxiproxy")

FAST, PIPE, DEAD = 0, 1, 2
WRITER_QUEUE_ITEMS = 4
QUEUE_BYTES = 1 << 20  # bytes a non-latency stage may queue before back-pressure
LATENCY_QUEUE_BYTES = 8 << 20  # Go buffers 1024 chunks; we also cap bytes to bound memory
_LINGER_ZERO = struct.pack("ii", 1, 0)
# Go's Close() leaves unsent bytes to the kernel; ours may still hold some in user space. A peer
# that never reads them must not keep the connection (and its buffer) forever.
CLOSE_FLUSH_TIMEOUT = 60.0


class ConnectionOwner(Protocol):
    """What a connection needs from its proxy."""

    def toxics_for(self, direction: Direction) -> Sequence[Toxic]: ...

    upstream: str

    def connection_opened(self, conn: Connection) -> None: ...

    def connection_closed(self, conn: Connection) -> None: ...


class Stage:
    """One toxic running on one link."""

    __slots__ = ("toxic", "stub", "state", "task", "removed")

    def __init__(self, toxic: Toxic, stub: Stub) -> None:
        self.toxic = toxic
        self.stub = stub
        self.state: dict[str, int] = {}  # survives interrupts (limit_data's byte count)
        self.task: asyncio.Task[None] | None = None
        self.removed = False


class Link:
    """One direction of a connection: source socket -> [toxic stages] -> destination socket."""

    __slots__ = ("conn", "direction", "state", "src", "dest", "src_paused", "dest_paused", "_drain",
                 "head", "out", "stages", "writer", "eof", "loop", "rng")

    def __init__(self, conn: Connection, direction: Direction, src: asyncio.Transport,
                 dest: asyncio.Transport) -> None:
        self.conn = conn
        self.direction = direction
        self.state = FAST
        self.src = src
        self.dest = dest
        self.src_paused = False
        self.dest_paused = False
        self._drain: asyncio.Future[None] | None = None
        self.head: Channel | None = None  # where reads go in PIPE mode
        self.out: Channel | None = None  # the writer's input in PIPE mode
        self.stages: list[Stage] = []
        self.writer: asyncio.Task[None] | None = None
        self.eof = False
        self.loop = conn.loop
        self.rng = conn.rng

    # --- reading side ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        head = self.head
        assert head is not None
        head.put_nowait(Chunk(data, self.loop.time()))
        if head.full():
            self.update_reading()

    def update_reading(self) -> None:
        if self.state == FAST:
            want = self.dest_paused
        elif self.state == PIPE:
            head = self.head
            want = head is not None and head.full() and not head.dead
        else:
            want = False
        if want != self.src_paused:
            self.src_paused = want
            if want:
                self.src.pause_reading()
            else:
                self.src.resume_reading()

    def source_eof(self) -> None:
        """Our source said EOF or went away: drain what is queued, then close the destination."""
        if self.eof:
            return
        self.eof = True
        if self.state == FAST:
            self.close_dest()
        elif self.state == PIPE:
            assert self.head is not None
            self.head.close()

    # --- writing side ---------------------------------------------------------------------------

    def dest_pause(self) -> None:
        self.dest_paused = True
        if self.state == FAST:
            self.update_reading()

    def dest_resume(self) -> None:
        self.dest_paused = False
        _wake(self._drain)
        if self.state == FAST:
            self.update_reading()

    def dest_lost(self) -> None:
        self.state = DEAD
        self.dest_paused = False
        _wake(self._drain)
        if self.out is not None:
            _wake(self.out.getter)

    def close_dest(self) -> None:
        if self.state == DEAD:
            return
        self.state = DEAD
        dest = self.dest
        dest.close()
        if dest.get_write_buffer_size():
            self.loop.call_later(CLOSE_FLUSH_TIMEOUT, dest.abort)
        self.conn.link_closed(self)

    async def _write_loop(self) -> None:
        out = self.out
        assert out is not None
        while True:
            if self.state == DEAD:
                out.kill()
                return
            if len(out):
                chunk = out.pop()
                if chunk.data:
                    self.dest.write(chunk.data)
                if self.dest_paused:
                    fut: asyncio.Future[None] = self.loop.create_future()
                    self._drain = fut
                    await fut
                    self._drain = None
                continue
            if out.closed:
                self.close_dest()
                return
            if not self.stages and self.head is out:
                self._go_fast()
                return
            fut2: asyncio.Future[None] = self.loop.create_future()
            out.getter = fut2
            await fut2

    def _go_fast(self) -> None:
        if self.head is not None:
            self.head.on_space = None
        self.head = self.out = None
        self.writer = None
        self.state = FAST
        self.update_reading()

    # --- toxics ---------------------------------------------------------------------------------

    def _to_pipe(self) -> None:
        out = Channel(WRITER_QUEUE_ITEMS, QUEUE_BYTES)
        self.out = out
        self.state = PIPE
        self._set_head(out)
        self.writer = self.loop.create_task(self._write_loop())

    def _set_head(self, ch: Channel) -> None:
        if self.head is not None and self.head is not ch:
            self.head.on_space = None
        self.head = ch
        ch.on_space = self.update_reading
        if self.eof:
            ch.close()
        self.update_reading()

    def add_toxic(self, toxic: Toxic, interrupt: bool = True) -> None:
        if self.state == DEAD:
            return
        if self.state == FAST:
            self._to_pipe()
        assert self.out is not None
        kind = toxic.kind
        inp = Channel(kind.buffer if kind.buffer > 1 else 2,
                      LATENCY_QUEUE_BYTES if kind.buffer > 1 else QUEUE_BYTES)
        stage = Stage(toxic, Stub(inp, self.out, self.loop))
        if self.stages:
            prev = self.stages[-1]
            if prev.stub.closed:
                return  # the link is already closing
            prev.stub.output = inp
            if interrupt:
                prev.stub.interrupt()  # Go restarts the previous stub (re-roll, latency flushes)
        else:
            self._set_head(inp)
        self.stages.append(stage)
        stage.task = self.loop.create_task(self._run_stage(stage))

    def update_toxic(self, toxic: Toxic) -> None:
        for stage in self.stages:
            if stage.toxic is toxic and not stage.removed:
                stage.stub.interrupt()

    def remove_toxic(self, toxic: Toxic) -> None:
        i = next((j for j, st in enumerate(self.stages) if st.toxic is toxic and not st.removed), -1)
        if i < 0:
            return
        stage = self.stages[i]
        stub = stage.stub
        if stub.closed:
            return
        if toxic.kind.closes_on_remove:
            stub.close()  # timeout toxic: removal closes the connection, whatever the toxicity roll
            stub.interrupt()
            return
        stage.removed = True
        stub.interrupt()
        if i > 0:
            self.stages[i - 1].stub.interrupt()

    async def _run_stage(self, stage: Stage) -> None:
        stub = stage.stub
        try:
            while not stage.removed:
                toxic = stage.toxic
                # Toxicity is rolled at every (re)start of the stub, as in Toxiproxy.
                kind = toxic.kind if self.rng.random() < toxic.toxicity else NOOP
                await kind.pipe(stub, toxic.attributes, stage.state, self.rng)
                if stub.closed:
                    return
                stub.interrupted = False
            await self._retire(stage)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in a toxic must not take the server down
            log.exception("toxic %s failed; closing the connection", stage.toxic.name)
            self.conn.abort()

    async def _retire(self, stage: Stage) -> None:
        """Flush a removed toxic's queue downstream, then splice it out of the chain."""
        stub = stage.stub
        while True:
            ch = stub.input
            if len(ch):
                await stub.send(ch.pop())
                continue
            if ch.closed:
                stub.close()
                return
            break
        try:
            i = self.stages.index(stage)
        except ValueError:
            return
        if i == 0:
            self._set_head(stub.output)
        else:
            self.stages[i - 1].stub.output = stub.output
        del self.stages[i]
        if not self.stages and self.out is not None:
            _wake(self.out.getter)  # the writer decides whether to go back to FAST mode

    def cancel(self) -> None:
        self.state = DEAD
        for stage in self.stages:
            if stage.task is not None:
                stage.task.cancel()
        if self.writer is not None:
            self.writer.cancel()
        self.stages = []


class Side(asyncio.Protocol):
    """The protocol of one socket of a connection (client or upstream)."""

    __slots__ = ("conn", "transport", "out", "inp", "early", "early_eof")

    def __init__(self, conn: Connection | None = None) -> None:
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        self.out: Link | None = None  # the link reading this socket
        self.inp: Link | None = None  # the link writing this socket
        # Bytes (and EOF) that arrived before the links were wired. CPython < 3.11.3 ignores a
        # pause_reading() called inside connection_made, so a client's first bytes can arrive
        # while the upstream is still being dialled; they must wait, not vanish.
        self.early: list[bytes] | None = None
        self.early_eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        out = self.out
        if out is None:
            if self.early is None:
                self.early = []
            self.early.append(data)
            return
        state = out.state
        if state == FAST:
            out.dest.write(data)
        elif state == PIPE:
            out.feed(data)

    def eof_received(self) -> bool:
        if self.out is not None:
            self.out.source_eof()
        else:
            self.early_eof = True
        return True  # keep the socket writable; the other link decides when to close it

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.conn.side_lost(self)

    def pause_writing(self) -> None:
        if self.inp is not None:
            self.inp.dest_pause()

    def resume_writing(self) -> None:
        if self.inp is not None:
            self.inp.dest_resume()


class ClientSide(Side):
    """The accepted socket: creates the connection and dials the upstream."""

    __slots__ = ("owner", "rng")

    def __init__(self, owner: ConnectionOwner, rng: random.Random) -> None:
        super().__init__()
        self.owner = owner
        self.rng = rng

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        transport.pause_reading()  # type: ignore[attr-defined]
        conn = Connection(self.owner, self, asyncio.get_running_loop(), self.rng)
        self.conn = conn
        conn.start_dial(self.owner.upstream)


class Connection:
    """A client socket, its upstream socket and the two links between them."""

    __slots__ = ("owner", "client", "upstream", "loop", "rng", "links", "_lost", "closed", "dial_task")

    def __init__(self, owner: ConnectionOwner, client: Side, loop: asyncio.AbstractEventLoop,
                 rng: random.Random) -> None:
        self.owner = owner
        self.client = client
        self.upstream: Side | None = None
        self.loop = loop
        self.rng = rng
        self.links: dict[Direction, Link] = {}
        self._lost: set[int] = set()
        self.closed = False
        self.dial_task: asyncio.Task[None] | None = None
        owner.connection_opened(self)

    def start_dial(self, target: str) -> None:
        self.dial_task = self.loop.create_task(self._dial(target))

    async def _dial(self, target: str) -> None:
        from ._addr import AddrError, upstream_target

        try:
            host, port = upstream_target(target)
            up = Side(self)
            await self.loop.create_connection(lambda: up, host, port)
        except (OSError, AddrError, UnicodeError, ValueError, OverflowError) as e:
            log.debug("unable to open connection to upstream %s: %s", target, e)
            self._close_client_only()
            return
        if self.closed:
            if up.transport is not None:
                up.transport.abort()
            return
        self.upstream = up
        self._wire()

    def _close_client_only(self) -> None:
        # The client sees a successful connect followed by EOF, as with Toxiproxy.
        self.closed = True
        t = self.client.transport
        if t is not None:
            t.close()
        self.owner.connection_closed(self)

    def _wire(self) -> None:
        client, up = self.client, self.upstream
        assert client.transport is not None and up is not None and up.transport is not None
        ct, ut = client.transport, up.transport
        ups = list(self.owner.toxics_for(Direction.UPSTREAM))
        downs = list(self.owner.toxics_for(Direction.DOWNSTREAM))
        if any(t.kind.resets for t in ups + downs):
            # Toxiproxy sets SO_LINGER=0 on both sockets when a reset_peer toxic exists at connect
            # time, so every later close of this connection is an RST.
            for tr in (ct, ut):
                sock = tr.get_extra_info("socket")
                if sock is not None:
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
                    except OSError:
                        pass
        up_link = Link(self, Direction.UPSTREAM, ct, ut)
        down_link = Link(self, Direction.DOWNSTREAM, ut, ct)
        self.links = {Direction.UPSTREAM: up_link, Direction.DOWNSTREAM: down_link}
        client.out, client.inp = up_link, down_link
        up.out, up.inp = down_link, up_link
        for t in ups:
            up_link.add_toxic(t, interrupt=False)
        for t in downs:
            down_link.add_toxic(t, interrupt=False)
        if id(client) in self._lost:
            up_link.source_eof()
            down_link.dest_lost()
            return
        for side in (client, up):
            early, side.early = side.early, None
            for chunk in early or ():
                side.data_received(chunk)
            if side.early_eof and side.out is not None:
                side.out.source_eof()
        ct.resume_reading()
        up_link.update_reading()

    def link(self, direction: Direction) -> Link | None:
        return self.links.get(direction)

    def link_closed(self, link: Link) -> None:
        """A link closed its destination socket: the other link's source is gone."""
        other = self.links.get(Direction.DOWNSTREAM if link.direction == Direction.UPSTREAM
                               else Direction.UPSTREAM)
        if other is not None:
            other.source_eof()

    def side_lost(self, side: Side) -> None:
        self._lost.add(id(side))
        if side.out is not None:
            side.out.source_eof()
        if side.inp is not None:
            side.inp.dest_lost()
        if not self.links:
            if side is self.client:
                if self.dial_task is not None and not self.dial_task.done():
                    return  # _wire/_dial will notice
                self._finish()
            return
        if self.upstream is not None and id(self.client) in self._lost and id(self.upstream) in self._lost:
            self._finish()

    def _finish(self) -> None:
        if self.closed and not self.links:
            return
        self.closed = True
        for link in self.links.values():
            link.cancel()
        self.links = {}
        self.owner.connection_closed(self)

    def abort(self) -> None:
        """Close both sockets now (proxy disabled or deleted): peers see EOF, queued data is dropped."""
        self.closed = True
        if self.dial_task is not None and not self.dial_task.done():
            self.dial_task.cancel()
        for link in self.links.values():
            link.cancel()
        for side in (self.client, self.upstream):
            if side is not None and side.transport is not None:
                side.transport.abort()
        self.links = {}
        self.owner.connection_closed(self)
