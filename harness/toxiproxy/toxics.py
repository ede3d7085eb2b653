"""The toxic kinds: their attributes as the API shows them, and what each does to a stream.

Responsibility: one `ToxicKind` per Toxiproxy type (latency, bandwidth, slow_close, timeout,
reset_peer, slicer, limit_data, noop) plus `Toxic`, a configured instance on a proxy. Each kind's
`pipe` is an async function over a `Stub` that behaves like Toxiproxy's Go `Pipe` (see
docs/toxiproxy.md for the few places where we deliberately do better than a crash).

Example:
    >>> t = Toxic("latency_downstream", KINDS["latency"], "downstream", 1.0, {"latency": 100, "jitter": 0})
    >>> t.to_json()
    '{"attributes":{"latency":100,"jitter":0},"name":"latency_downstream","type":"latency","stream":"downstream","toxicity":1}'
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from ._channel import EOF, INTERRUPTED, TIMEOUT, Chunk, Stub
from ._gojson import INT, INT64, go_float32, go_str


class Direction(enum.IntEnum):
    """Upstream is client -> server, downstream is server -> client (Go's order: upstream first)."""

    UPSTREAM = 0
    DOWNSTREAM = 1

    @classmethod
    def parse(cls, stream: str) -> Direction | None:
        low = stream.lower()
        if low == "upstream":
            return cls.UPSTREAM
        if low == "downstream":
            return cls.DOWNSTREAM
        return None


Attrs = Mapping[str, int]
PipeFn = Callable[[Stub, Attrs, dict[str, int], random.Random], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ToxicKind:
    """A toxic type as registered in Toxiproxy: Go struct name, attribute fields, behaviour."""

    name: str
    go_struct: str
    fields: tuple[tuple[str, str], ...]  # (json name, Go integer type) in Go's field order
    pipe: PipeFn
    buffer: int = 1  # capacity (chunks) of its input channel; Go buffers 1024 for latency
    closes_on_remove: bool = False  # timeout: removing it closes the connection (Go's Cleanup)
    resets: bool = False  # reset_peer: connections opened while it exists close with RST

    def defaults(self) -> dict[str, int]:
        return {name: 0 for name, _ in self.fields}


class Toxic:
    """A toxic configured on a proxy. `attributes` is replaced (never mutated) on update so that a
    running stub keeps a consistent snapshot until it is restarted."""

    __slots__ = ("name", "kind", "stream", "toxicity", "attributes")

    def __init__(self, name: str, kind: ToxicKind, stream: str, toxicity: float,
                 attributes: Mapping[str, int]) -> None:
        self.name = name
        self.kind = kind
        self.stream = stream  # as sent ("UPSTREAM" stays "UPSTREAM"), like Toxiproxy
        self.toxicity = toxicity
        self.attributes = dict(attributes)

    @property
    def direction(self) -> Direction:
        d = Direction.parse(self.stream)
        assert d is not None
        return d

    def to_json(self) -> str:
        attrs = ",".join(f"{go_str(k)}:{int(self.attributes.get(k, 0))}" for k, _ in self.kind.fields)
        return (f'{{"attributes":{{{attrs}}},"name":{go_str(self.name)},"type":{go_str(self.kind.name)},'
                f'"stream":{go_str(self.stream)},"toxicity":{go_float32(self.toxicity)}}}')


# --- behaviours ---------------------------------------------------------------------------------
# Each returns when interrupted (the link restarts or removes it) or after closing its stub.


async def noop(stub: Stub, a: Attrs, state: dict[str, int], rng: random.Random) -> None:
    while True:
        item = await stub.recv()
        if item is INTERRUPTED:
            return
        if item is EOF:
            stub.close()
            return
        await stub.send(item)  # type: ignore[arg-type]


async def latency(stub: Stub, a: Attrs, state: dict[str, int], rng: random.Random) -> None:
    base, jitter = a["latency"], a["jitter"]
    while True:
        item = await stub.recv()
        if item is INTERRUPTED:
            return
        if item is EOF:
            stub.close()
            return
        assert isinstance(item, Chunk)
        delay_ms = base + (rng.randrange(jitter * 2) - jitter if jitter > 0 else 0)
        # Pipelined, not cumulative: the delay counts from when the chunk was read.
        sleep = delay_ms / 1000.0 - (stub.now() - item.ts)
        if await stub.sleep(sleep):
            item.ts += sleep  # so a second latency toxic adds its own delay on top
            await stub.send(item)
        else:
            await stub.send(item)  # interrupted: forward now, never drop
            return


async def bandwidth(stub: Stub, a: Attrs, state: dict[str, int], rng: random.Random) -> None:
    rate = a["rate"]  # KB/s, 1 KB = 1000 bytes
    sleep = 0.0
    while True:
        item = await stub.recv()
        if item is INTERRUPTED:
            return
        if item is EOF:
            stub.close()
            return
        assert isinstance(item, Chunk)
        if rate <= 0:
            # Rate 0 holds the data until the toxic is changed or removed (Toxiproxy does the same;
            # a negative rate crashes Toxiproxy, we treat it like 0).
            await stub.sleep(None)
            await stub.send(item)
            return
        data = item.data
        sleep += len(data) / rate / 1000.0
        piece = rate * 100  # bytes per 100 ms
        while len(data) > piece:
            if not await stub.sleep(0.1):
                await stub.send(Chunk(data, item.ts))
                return
            await stub.send(Chunk(data[:piece], item.ts))
            data = data[piece:]
            sleep -= 0.1
        start = stub.now()
        if await stub.sleep(sleep):
            sleep -= stub.now() - start  # carry the timer's overshoot into the next chunk
            await stub.send(Chunk(data, item.ts))
        else:
            await stub.send(Chunk(data, item.ts))
            return


async def slow_close(stub: Stub, a: Attrs, state: dict[str, int], rng: random.Random) -> None:
    delay = a["delay"] / 1000.0
    while True:
        item = await stub.recv()
        if item is INTERRUPTED:
            return
        if item is EOF:
            if await stub.sleep(delay):
                stub.close()
            return  # interrupted: the restarted stub sees EOF again and waits again
        await stub.send(item)  # type: ignore[arg-type]


async def timeout(stub: Stub, a: Attrs, state: dict[str, int], rng: random.Random) -> None:
    limit = a["timeout"] / 1000.0 if a["timeout"] > 0 else None
    while True:
        item = await stub.recv(timeout=limit)  # the timer restarts with every dropped chunk
        if item is INTERRUPTED:
            return
        if item is TIMEOUT or item is EOF:
            stub.close()
            return
        # data is dropped on the floor


async def reset_peer(stub: Stub, a: Attrs, state: dict[str, int], rng: random.Random) -> None:
    item = await stub.recv()  # first chunk (dropped) or EOF
    if item is INTERRUPTED:
        return
    # Not interruptible, as in Toxiproxy: once triggered the reset happens.
    if a["timeout"] > 0:
        await asyncio.sleep(a["timeout"] / 1000.0)
    stub.close()


def slice_bounds(length: int, average: int, variation: int, rng: random.Random) -> list[tuple[int, int]]:
    """Split [0, length) by recursive halving into pieces of about average +- variation bytes.

    Toxiproxy's recursion never ends for average_size 0 (stack overflow) and can cut outside the
    chunk when the variation is large; here a piece is never smaller than 1 byte.
    """
    out: list[tuple[int, int]] = []
    stack = [(0, length)]
    while stack:
        start, end = stack.pop()
        size = end - start
        if size - average <= variation or size <= 1:
            out.append((start, end))
            continue
        mid = start + size // 2
        if variation > 0:
            mid += rng.randrange(variation * 2) - variation
        mid = min(max(mid, start + 1), end - 1)
        stack.append((mid, end))
        stack.append((start, mid))
    return out


async def slicer(stub: Stub, a: Attrs, state: dict[str, int], rng: random.Random) -> None:
    delay = a["delay"] / 1_000_000.0  # microseconds
    while True:
        item = await stub.recv()
        if item is INTERRUPTED:
            return
        if item is EOF:
            stub.close()
            return
        assert isinstance(item, Chunk)
        data = item.data
        for start, end in slice_bounds(len(data), a["average_size"], a["size_variation"], rng):
            await stub.send(Chunk(data[start:end], item.ts))
            if not await stub.sleep(delay):
                if end < len(data):
                    await stub.send(Chunk(data[end:], item.ts))
                return


async def limit_data(stub: Stub, a: Attrs, state: dict[str, int], rng: random.Random) -> None:
    limit = a["bytes"]
    remaining = limit - state.get("sent", 0)
    while True:
        item = await stub.recv()
        if item is INTERRUPTED:
            return
        if item is EOF:
            stub.close()
            return
        assert isinstance(item, Chunk)
        remaining = max(remaining, 0)
        data = item.data[:remaining] if remaining < len(item.data) else item.data
        if data:
            await stub.send(Chunk(data, item.ts))
            state["sent"] = state.get("sent", 0) + len(data)
        remaining = limit - state.get("sent", 0)
        if remaining <= 0:
            stub.close()
            return


KINDS: dict[str, ToxicKind] = {
    k.name: k
    for k in (
        ToxicKind("latency", "LatencyToxic", (("latency", INT64), ("jitter", INT64)), latency, buffer=1024),
        ToxicKind("bandwidth", "BandwidthToxic", (("rate", INT64),), bandwidth),
        ToxicKind("slow_close", "SlowCloseToxic", (("delay", INT64),), slow_close),
        ToxicKind("timeout", "TimeoutToxic", (("timeout", INT64),), timeout, closes_on_remove=True),
        ToxicKind("reset_peer", "ResetToxic", (("timeout", INT64),), reset_peer, resets=True),
        ToxicKind("slicer", "SlicerToxic",
                  (("average_size", INT), ("size_variation", INT), ("delay", INT)), slicer),
        ToxicKind("limit_data", "LimitDataToxic", (("bytes", INT64),), limit_data),
        ToxicKind("noop", "NoopToxic", (), noop),
    )
}
NOOP = KINDS["noop"]
