"""An epmd-compatible name server that gives each RabbitMQ node of a local cluster its own view.

Responsibility: answer the Erlang port mapper protocol (ALIVE2, PORT_PLEASE2, NAMES) on one
port per node, so that node A, asking *its* port for node B, is told the port of a proxy
A->B instead of B's own distribution port. All inter-node traffic then crosses the fault proxy,
one proxy per ordered pair, and a partition of one node is a matter of disabling (or
blackholing) its four proxies: no root, no iptables, no change to the nodes themselves.

Why a name server of our own: an Erlang node finds a peer by asking the epmd at
``ERL_EPMD_PORT`` on the peer's host; on loopback every node shares that host, so with the real
epmd every node would see the same (direct) ports. Nodes register here as with epmd (the
registration lives as long as the node's connection: a killed node is gone at once, a paused
one stays), names without an override (the node itself, ``rabbitmqctl``'s own node) resolve to
their registered port, and an override of a peer that is not registered answers "not found",
as epmd does for a node that is down.

Standard library only; run as ``python -m harness.stack.epmd --config views.json`` where the
file maps each listen port to its overrides: ``{"43001": {"n2": 43102, "n3": 43103}, ...}``.

Example:
    >>> decode_request(encode_port_please("rabbit-n2"))
    ('port_please', 'rabbit-n2')
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import secrets
import signal
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

ALIVE2_REQ = 120
ALIVE2_X_RESP = 118
PORT_PLEASE2_REQ = 122
PORT2_RESP = 119
NAMES_REQ = 110


@dataclass(slots=True)
class Registration:
    """What a node told us when it registered (echoed to whoever asks for it)."""

    name: str
    port: int
    node_type: int
    protocol: int
    highest: int
    lowest: int
    extra: bytes


def encode_port_please(name: str) -> bytes:
    """A PORT_PLEASE2 request, framed (for tests and probes)."""
    body = bytes([PORT_PLEASE2_REQ]) + name.encode()
    return struct.pack(">H", len(body)) + body


def decode_request(frame: bytes) -> tuple[str, object]:
    """The kind and payload of one framed request (``unknown`` for what we do not serve)."""
    body = frame[2:]
    tag = body[0]
    if tag == PORT_PLEASE2_REQ:
        return "port_please", body[1:].decode("utf-8", "replace")
    if tag == NAMES_REQ:
        return "names", None
    if tag == ALIVE2_REQ:
        port, node_type, protocol, highest, lowest, nlen = struct.unpack(">HBBHHH", body[1:11])
        name = body[11:11 + nlen].decode("utf-8", "replace")
        (elen,) = struct.unpack(">H", body[11 + nlen:13 + nlen])
        extra = body[13 + nlen:13 + nlen + elen]
        return "alive", Registration(name, port, node_type, protocol, highest, lowest, extra)
    return "unknown", tag


def port2_resp(reg: Registration, port: int) -> bytes:
    name = reg.name.encode()
    return (bytes([PORT2_RESP, 0]) + struct.pack(">HBBHHH", port, reg.node_type, reg.protocol, reg.highest,
                                                  reg.lowest, len(name))
            + name + struct.pack(">H", len(reg.extra)) + reg.extra)


class NameServer:
    """The registry shared by every view, and one view (overrides) per listen port."""

    def __init__(self, views: dict[int, dict[str, int]]) -> None:
        self.views = views
        self.registered: dict[str, Registration] = {}
        # Creation numbers tell a restarted node's pids from its previous life's: never reuse one.
        self._creation = secrets.randbelow(1 << 30) + 4

    async def serve(self, listen_port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readexactly(2)
            (n,) = struct.unpack(">H", head)
            kind, payload = decode_request(head + await reader.readexactly(n))
            if kind == "alive":
                assert isinstance(payload, Registration)
                await self._alive(payload, reader, writer)
            elif kind == "port_please":
                writer.write(self._port_please(listen_port, str(payload)))
            elif kind == "names":
                lines = "".join(f"name {r.name} at port {r.port}\n" for r in self.registered.values())
                writer.write(struct.pack(">I", listen_port) + lines.encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, struct.error, IndexError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def _port_please(self, listen_port: int, name: str) -> bytes:
        reg = self.registered.get(name)
        if reg is None:
            return bytes([PORT2_RESP, 1])
        port = self.views.get(listen_port, {}).get(name, reg.port)
        return port2_resp(reg, port)

    async def _alive(self, reg: Registration, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if reg.name in self.registered:
            writer.write(bytes([ALIVE2_X_RESP, 1]) + struct.pack(">I", 0))
            return
        self._creation += 1
        self.registered[reg.name] = reg
        writer.write(bytes([ALIVE2_X_RESP, 0]) + struct.pack(">I", self._creation))
        await writer.drain()
        try:
            # The registration holds while the node keeps this connection open.
            while await reader.read(64):
                pass
        finally:
            if self.registered.get(reg.name) is reg:
                del self.registered[reg.name]


async def _main(views: dict[int, dict[str, int]]) -> None:
    ns = NameServer(views)
    servers = []
    for port in views:
        servers.append(await asyncio.start_server(functools.partial(ns.serve, port), host="127.0.0.1", port=port,
                                                  reuse_address=True))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"epmd views listening on {sorted(views)}", flush=True)
    await stop.wait()
    for s in servers:
        s.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.stack.epmd", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="JSON: listen port -> {node alive name: port to answer}")
    args = p.parse_args(argv)
    raw = json.loads(Path(args.config).read_text())
    views = {int(k): {str(n): int(v) for n, v in m.items()} for k, m in raw.items()}
    asyncio.run(_main(views))
    return 0


if __name__ == "__main__":
    sys.exit(main())
