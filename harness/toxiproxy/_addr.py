"""Go-style TCP addresses: split, resolve, format and bind, with Go's error texts.

Responsibility: make `listen`/`upstream` strings behave as they do in Toxiproxy: `localhost:0`
resolves (IPv4 preferred), wildcards bind dual-stack and report `[::]:PORT`, and failures read
like Go's (`listen tcp 127.0.0.1:3310: bind: address already in use`).

Example:
    >>> split_host_port("[::1]:80"), split_host_port("localhost:8474")
    (('::1', '80'), ('localhost', '8474'))
    >>> format_addr("", 8666), format_addr("::1", 1)
    (':8666', '[::1]:1')
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket

RESOLVE_TIMEOUT = 5.0  # bound on a hostname lookup done for the API


class AddrError(Exception):
    """An address that Go would reject; str() is Go's message."""


def split_host_port(addr: str) -> tuple[str, str]:
    """Go's net.SplitHostPort."""
    def bad(why: str) -> AddrError:
        return AddrError(f"address {addr}: {why}")

    if addr.startswith("["):
        end = addr.find("]")
        if end < 0:
            raise bad("missing ']' in address")
        if end + 1 == len(addr):
            raise bad("missing port in address")
        if addr[end + 1] != ":":
            raise bad("missing port in address") if ":" not in addr[end + 1:] else bad("too many colons in address")
        host, port = addr[1:end], addr[end + 2:]
        if "[" in addr[1:] or "]" in addr[end + 1:]:
            raise bad("unexpected '[' in address" if "[" in addr[1:] else "unexpected ']' in address")
        return host, port
    i = addr.rfind(":")
    if i < 0:
        raise bad("missing port in address")
    host, port = addr[:i], addr[i + 1:]
    if ":" in host:
        raise bad("too many colons in address")
    if "[" in host:
        raise bad("unexpected '[' in address")
    if "]" in host:
        raise bad("unexpected ']' in address")
    return host, port


def parse_port(port: str) -> int:
    """Go's port parsing: empty is 0, digits (with sign), else a service name (`http`)."""
    if port == "":
        return 0
    text = port[1:] if port[0] in "+-" else port
    if text.isascii() and text.isdigit():
        value = int(text) if port[0] != "-" else -int(text)
        if not 0 <= value <= 65535:
            raise AddrError(f"address {port}: invalid port")
        return value
    try:
        return socket.getservbyname(port, "tcp")
    except (OSError, UnicodeError, ValueError):
        raise AddrError(f"lookup tcp/{port}: unknown port") from None


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def format_addr(ip: str, port: int) -> str:
    """Go's TCPAddr.String(): `:port` without an IP, brackets for IPv6."""
    if not ip:
        return f":{port}"
    if ":" in ip:
        return f"[{ip}]:{port}"
    return f"{ip}:{port}"


async def resolve_host(host: str) -> str:
    """An IP for `host` ("" stays ""), IPv4 preferred as Go's ResolveTCPAddr("tcp") does."""
    if host == "" or ip_literal(host) is not None:
        return host
    if "\x00" in host or len(host) > 253:
        raise AddrError(f"lookup {host}: no such host")
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT)
    except (TimeoutError, OSError, UnicodeError, ValueError):
        raise AddrError(f"lookup {host}: no such host") from None
    v4 = [i[4][0] for i in infos if i[0] == socket.AF_INET]
    v6 = [i[4][0] for i in infos if i[0] == socket.AF_INET6]
    if v4:
        return str(v4[0])
    if v6:
        return str(v6[0])
    raise AddrError(f"lookup {host}: no such host")


async def resolve(addr: str) -> str:
    """Go's `net.ResolveTCPAddr("tcp", addr).String()`; "" resolves to ":0"."""
    if addr == "":
        return ":0"
    host, port_text = split_host_port(addr)
    port = parse_port(port_text)
    return format_addr(await resolve_host(host), port)


def _is_wildcard(ip: str) -> bool:
    return ip in ("", "0.0.0.0", "::")


def _strerror(code: int) -> str:
    text = os.strerror(code)
    return text[:1].lower() + text[1:]


async def bind_listener(addr: str, backlog: int = 4096) -> tuple[socket.socket, str]:
    """Bind and listen like Go's net.Listen("tcp", addr); returns the socket and the reported address."""
    try:
        if addr == "":
            host, port = "", 0
        else:
            host, port_text = split_host_port(addr)
            port = parse_port(port_text)
        ip = await resolve_host(host)
    except AddrError as e:
        raise AddrError(f"listen tcp: {e}") from None
    shown = format_addr(ip, port)
    candidates: list[tuple[socket.AddressFamily, str, bool]]
    if _is_wildcard(ip):
        # Go opens one dual-stack IPv6 socket for every wildcard, hence "[::]:PORT" in the API.
        candidates = [(socket.AF_INET6, "::", True), (socket.AF_INET, "0.0.0.0", False)]
    elif ":" in ip:
        candidates = [(socket.AF_INET6, ip, False)]
    else:
        candidates = [(socket.AF_INET, ip, False)]
    last: OSError | None = None
    for family, bind_ip, dual in candidates:
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as e:
            last = e
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if dual:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            target: tuple[str, int] | tuple[str, int, int, int]
            if family == socket.AF_INET6:
                target = socket.getaddrinfo(bind_ip, port, family, socket.SOCK_STREAM,
                                            flags=socket.AI_NUMERICHOST)[0][4]  # type: ignore[assignment]
            else:
                target = (bind_ip, port)
            sock.bind(target)
            sock.listen(backlog)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            last = e
            if dual and e.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                continue
            break
        bound = sock.getsockname()
        return sock, format_addr(bound[0] if not dual else "::", bound[1])
    assert last is not None
    if isinstance(last, socket.gaierror):
        raise AddrError(f"listen tcp: lookup {ip}: no such host")
    code = last.errno or errno.EINVAL
    raise AddrError(f"listen tcp {shown}: bind: {_strerror(code)}")


def upstream_target(upstream: str) -> tuple[str, int]:
    """Host and port to dial for an upstream string; raises AddrError like Go's Dial would."""
    host, port_text = split_host_port(upstream)
    port = parse_port(port_text)
    return host or "127.0.0.1", port
