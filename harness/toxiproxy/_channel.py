"""The plumbing between toxics: chunks, bounded channels and the stub a toxic runs against.

Responsibility: give each toxic Go-like primitives on asyncio without a task per chunk:
`recv` (chunk, EOF, interrupt or timer), `send` (with back-pressure), interruptible `sleep`, and
`close` (EOF downstream). A channel hands a waiting sender's chunk over at the moment it frees a
slot, so "empty" always means "nothing in flight" and a removed toxic can be spliced out safely.

Example:
    >>> ch = Channel(max_items=2)
    >>> ch.put_nowait(Chunk(b"x", 0.0)); ch.pop().data
    b'x'
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class Chunk:
    """One read from a socket, stamped with its receive time (loop clock, seconds)."""

    __slots__ = ("data", "ts")

    def __init__(self, data: bytes, ts: float) -> None:
        self.data = data
        self.ts = ts


class _Signal:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


EOF = _Signal("EOF")  # the input is closed and drained (Go: a closed channel yields nil forever)
INTERRUPTED = _Signal("INTERRUPTED")  # the toxic must return so the link can restart or remove it
TIMEOUT = _Signal("TIMEOUT")  # recv(timeout=...) elapsed without a chunk

Item = Chunk | _Signal


def _wake(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)


class Channel:
    """A FIFO of chunks between two stages, bounded by count and bytes, closable (EOF).

    A single consumer waits through `getter`; producers either `put_nowait` (the socket reader, which
    pauses the socket when `full()`) or `await put` (a toxic, which blocks like a Go channel send).
    A dead channel (its consumer is gone) silently drops everything.
    """

    __slots__ = ("_items", "_bytes", "max_items", "max_bytes", "closed", "dead", "getter", "_putters",
                 "on_space")

    def __init__(self, max_items: int = 1, max_bytes: int = 1 << 62) -> None:
        self._items: deque[Chunk] = deque()
        self._bytes = 0
        self.max_items = max(1, max_items)
        self.max_bytes = max_bytes
        self.closed = False
        self.dead = False
        self.getter: asyncio.Future[None] | None = None
        self._putters: deque[tuple[Chunk, asyncio.Future[None]]] = deque()
        self.on_space: Callable[[], None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def full(self) -> bool:
        return len(self._items) >= self.max_items or self._bytes >= self.max_bytes

    def idle(self) -> bool:
        """Nothing queued and nobody waiting to queue."""
        return not self._items and not self._putters

    def put_nowait(self, chunk: Chunk) -> None:
        if self.dead or self.closed:
            return
        self._items.append(chunk)
        self._bytes += len(chunk.data)
        _wake(self.getter)

    async def put(self, chunk: Chunk) -> None:
        if self.dead or self.closed:
            return
        if not self._putters and not self.full():
            self.put_nowait(chunk)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._putters.append((chunk, fut))
        try:
            await fut
        except asyncio.CancelledError:
            self._putters = deque(p for p in self._putters if p[1] is not fut)
            raise

    def pop(self) -> Chunk:
        chunk = self._items.popleft()
        self._bytes -= len(chunk.data)
        self._refill()
        return chunk

    def _refill(self) -> None:
        # Hand waiting senders' chunks over now, so a sender never writes into a spliced-out channel.
        moved = False
        while self._putters and not self.full():
            chunk, fut = self._putters.popleft()
            self._items.append(chunk)
            self._bytes += len(chunk.data)
            _wake(fut)
            moved = True
        if not moved and not self.full() and self.on_space is not None:
            self.on_space()

    def close(self) -> None:
        """Mark EOF: the consumer sees EOF once the queued chunks are gone."""
        self.closed = True
        _wake(self.getter)

    def kill(self) -> None:
        """The consumer is gone: drop queued chunks and release blocked senders."""
        self.dead = True
        self._items.clear()
        self._bytes = 0
        while self._putters:
            _wake(self._putters.popleft()[1])


class Stub:
    """What a running toxic sees: its input, its (re-pointable) output, interrupts and closing.

    Mirrors Go's ToxicStub: a toxic returns from its pipe function when `recv` reports INTERRUPTED
    or after it called `close()`.
    """

    __slots__ = ("input", "output", "interrupted", "closed", "_waiter", "_loop")

    def __init__(self, input: Channel, output: Channel, loop: asyncio.AbstractEventLoop) -> None:
        self.input = input
        self.output = output
        self.interrupted = False
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._loop = loop

    def interrupt(self) -> None:
        self.interrupted = True
        _wake(self._waiter)

    def now(self) -> float:
        return self._loop.time()

    async def recv(self, timeout: float | None = None) -> Item:
        """The next chunk, EOF, INTERRUPTED, or TIMEOUT after `timeout` seconds without a chunk."""
        deadline = None if timeout is None else self._loop.time() + timeout
        while True:
            if self.interrupted:
                return INTERRUPTED
            ch = self.input
            if ch._items:
                return ch.pop()
            if ch.closed:
                return EOF
            if deadline is not None and self._loop.time() >= deadline:
                return TIMEOUT
            fut: asyncio.Future[None] = self._loop.create_future()
            self._waiter = fut
            ch.getter = fut
            handle = None if deadline is None else self._loop.call_at(deadline, _wake, fut)
            try:
                await fut
            finally:
                self._waiter = None
                if handle is not None:
                    handle.cancel()

    async def sleep(self, seconds: float | None) -> bool:
        """Sleep unless interrupted first (None: until interrupted); True when the full time passed."""
        if self.interrupted:
            return False
        if seconds is not None and seconds <= 0:
            return True
        fut: asyncio.Future[None] = self._loop.create_future()
        self._waiter = fut
        handle = None if seconds is None else self._loop.call_later(min(seconds, 1e9), _wake, fut)
        try:
            await fut
        finally:
            self._waiter = None
            if handle is not None:
                handle.cancel()
        return not self.interrupted

    async def send(self, chunk: Chunk) -> None:
        await self.output.put(chunk)

    def close(self) -> None:
        """Go's stub.Close(): EOF downstream; whatever still arrives here is dropped."""
        if not self.closed:
            self.closed = True
            self.output.close()
            self.input.kill()
