"""The harness's Toxiproxy client: any Toxiproxy v2 server (built-in or real), a deadline on every call.

Responsibility: the only way harness code talks to a fault proxy. Standard library only
(`http.client`), one short-lived connection per call, a total deadline per call so a stuck API
fails a test instead of hanging it, integer attributes (the real server rejects `100.0`), and
`rsplit`-based address parsing (the real server reports wildcards as `[::]:PORT`).

Example:
    >>> client = ToxiproxyClient("http://127.0.0.1:8474", timeout=5.0)  # doctest: +SKIP
    >>> p = client.create_proxy("redis", upstream="127.0.0.1:6379")      # doctest: +SKIP
    >>> client.add_toxic("redis", "latency", attributes={"latency": 100}) # doctest: +SKIP
    >>> (p.listen_host, p.listen_port)                                    # doctest: +SKIP
    ('127.0.0.1', 40891)
"""

from __future__ import annotations

import http.client
import json
import math
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from harness.errors import ConfigError, HarnessError

_SAFE = "-._~!$&'()*+,;=:@"  # path-segment characters that need no escaping


class ToxiproxyError(HarnessError):
    """The Toxiproxy API refused a call or could not be reached (status 0: no HTTP answer)."""

    def __init__(self, status: int, message: str, *, method: str = "", path: str = "") -> None:
        where = f"{method} {path}: " if method else ""
        super().__init__(f"{where}{message}" + (f" (HTTP {status})" if status else ""))
        self.status = status
        self.message = message
        self.method = method
        self.path = path


def split_listen(listen: str) -> tuple[str, int]:
    """Host and port of a `host:port` address; `[::]:8666` gives ('::', 8666).

    >>> split_listen("[::]:8666"), split_listen("127.0.0.1:40891")
    (('::', 8666), ('127.0.0.1', 40891))
    """
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"address {listen!r} has no port: expected host:port such as 127.0.0.1:8666")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


@dataclass(frozen=True, slots=True)
class ToxicInfo:
    """A toxic as the server reports it."""

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ToxicInfo:
        return cls(name=str(doc.get("name", "")), type=str(doc.get("type", "")),
                   stream=str(doc.get("stream", "")), toxicity=float(doc.get("toxicity", 1.0)),
                   attributes={str(k): v for k, v in (doc.get("attributes") or {}).items()})


@dataclass(frozen=True, slots=True)
class ProxyInfo:
    """A proxy as the server reports it; `listen` is the address clients should connect to."""

    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[ToxicInfo, ...] = ()

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ProxyInfo:
        return cls(name=str(doc.get("name", "")), listen=str(doc.get("listen", "")),
                   upstream=str(doc.get("upstream", "")), enabled=bool(doc.get("enabled", False)),
                   toxics=tuple(ToxicInfo.from_json(t) for t in (doc.get("toxics") or [])))

    @property
    def listen_host(self) -> str:
        """The listen host without brackets ('::' for a wildcard)."""
        return split_listen(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return split_listen(self.listen)[1]

    @property
    def connect_host(self) -> str:
        """Where a local client should connect: loopback for wildcard listens."""
        host = self.listen_host
        return "127.0.0.1" if host in ("", "::", "0.0.0.0") else host


def int_attributes(attributes: Mapping[str, Any] | None) -> dict[str, int]:
    """Coerce attribute values to int, as the real server requires (`100.0` is rejected there).

    >>> int_attributes({"latency": 100.0, "jitter": 5})
    {'latency': 100, 'jitter': 5}
    """
    out: dict[str, int] = {}
    for key, value in (attributes or {}).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"toxic attribute {key}={value!r} must be an integer, e.g. {key}=100")
        if isinstance(value, float):
            if not math.isfinite(value) or not value.is_integer():
                raise ConfigError(f"toxic attribute {key}={value!r} must be a whole number: Toxiproxy "
                                  f"rejects fractions; use {key}={round(value) if math.isfinite(value) else 0}")
            value = int(value)
        out[str(key)] = value
    return out


class ToxiproxyClient:
    """A Toxiproxy v2 API client with a deadline on every call.

    Example:
        client = ToxiproxyClient("http://127.0.0.1:8474")
        client.wait_ready()
        client.create_proxy("broker", upstream="127.0.0.1:5672", listen="127.0.0.1:0")
    """

    def __init__(self, url: str = "http://127.0.0.1:8474", timeout: float = 5.0) -> None:
        parts = urlsplit(url if "://" in url else "http://" + url)
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(f"Toxiproxy URL {url!r} is not usable: expected http://HOST:PORT, "
                              "e.g. http://127.0.0.1:8474")
        if timeout <= 0:
            raise ConfigError(f"timeout={timeout!r} must be positive, e.g. timeout=5.0")
        self.url = f"http://{parts.netloc}"
        self.host = parts.hostname
        self.port = parts.port or 80
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ToxiproxyClient({self.url!r}, timeout={self.timeout})"

    # --- transport ------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: object = None, *, timeout: float | None = None,
              expect: tuple[int, ...] = (200,)) -> tuple[int, bytes]:
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"User-Agent": "celery-chaos-harness", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection(self.host, self.port, timeout=limit)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            chunks = []
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no complete answer within {limit:.1f}s")
                if conn.sock is not None:
                    conn.sock.settimeout(remaining)
                piece = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
                if not piece:
                    break
                chunks.append(piece)
            status, payload = resp.status, b"".join(chunks)
        except (OSError, http.client.HTTPException) as e:
            detail = "timed out" if isinstance(e, TimeoutError | socket.timeout) else f"{type(e).__name__}: {e}"
            raise ToxiproxyError(0, f"Toxiproxy at {self.url} did not answer ({detail}); is it running? "
                                    "Check the URL and the server's log", method=method, path=path) from e
        finally:
            conn.close()
        if status not in expect:
            raise ToxiproxyError(status, _error_message(payload), method=method, path=path)
        return status, payload

    def _json(self, method: str, path: str, body: object = None, expect: tuple[int, ...] = (200,)) -> Any:
        _, payload = self._call(method, path, body, expect=expect)
        try:
            return json.loads(payload)
        except ValueError as e:
            raise ToxiproxyError(0, f"Toxiproxy answered {payload[:200]!r}, which is not JSON",
                                 method=method, path=path) from e

    # --- API ------------------------------------------------------------------------------------

    def version(self) -> str:
        """The server version, e.g. '2.12.0' (handles the plain-text answer of servers <= 2.5 too)."""
        _, payload = self._call("GET", "/version")
        text = payload.decode("utf-8", "replace").strip()
        try:
            doc = json.loads(text.replace("\\n", ""))
            if isinstance(doc, dict) and "version" in doc:
                return str(doc["version"])
        except ValueError:
            pass
        return text

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Poll /version until the API answers; raises TimeoutError saying what was seen."""
        deadline = time.monotonic() + timeout
        last = "no attempt made"
        attempts = 0
        while attempts < 10_000:
            attempts += 1
            try:
                self._call("GET", "/version", timeout=min(self.timeout, max(0.2, deadline - time.monotonic())))
                return
            except ToxiproxyError as e:
                last = str(e)
            if time.monotonic() >= deadline:
                break
            time.sleep(min(0.05 * attempts, 0.25, max(0.0, deadline - time.monotonic())))
        raise TimeoutError(f"Toxiproxy at {self.url} not ready after {timeout:.1f}s ({attempts} attempts); "
                           f"last error: {last}. Hint: check that the server started and listens on that port")

    def proxies(self) -> dict[str, ProxyInfo]:
        doc = self._json("GET", "/proxies")
        return {name: ProxyInfo.from_json(p) for name, p in doc.items()}

    def create_proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0",
                     enabled: bool = True) -> ProxyInfo:
        body = {"name": name, "upstream": upstream, "listen": listen, "enabled": enabled}
        return ProxyInfo.from_json(self._json("POST", "/proxies", body, expect=(201,)))

    def get_proxy(self, name: str) -> ProxyInfo:
        return ProxyInfo.from_json(self._json("GET", _proxy_path(name)))

    def update_proxy(self, name: str, *, enabled: bool | None = None, listen: str | None = None,
                     upstream: str | None = None) -> ProxyInfo:
        body: dict[str, object] = {}
        if enabled is not None:
            body["enabled"] = enabled
        if listen is not None:
            body["listen"] = listen
        if upstream is not None:
            body["upstream"] = upstream
        # POST, not PATCH: servers before 2.6 only accept POST, and newer ones accept both.
        return ProxyInfo.from_json(self._json("POST", _proxy_path(name), body))

    def delete_proxy(self, name: str) -> None:
        self._call("DELETE", _proxy_path(name), expect=(204,))

    def add_toxic(self, proxy: str, type: str, *, stream: str = "downstream", name: str | None = None,
                  toxicity: float = 1.0, attributes: dict[str, int] | None = None) -> ToxicInfo:
        body: dict[str, object] = {"type": type, "stream": stream, "toxicity": float(toxicity),
                                   "attributes": int_attributes(attributes)}
        if name is not None:
            body["name"] = name
        return ToxicInfo.from_json(self._json("POST", _proxy_path(proxy) + "/toxics", body))

    def update_toxic(self, proxy: str, toxic: str, *, attributes: dict[str, int] | None = None,
                     toxicity: float | None = None) -> ToxicInfo:
        body: dict[str, object] = {}
        if attributes is not None:
            body["attributes"] = int_attributes(attributes)
        if toxicity is not None:
            body["toxicity"] = float(toxicity)
        return ToxicInfo.from_json(self._json("POST", _toxic_path(proxy, toxic), body))

    def remove_toxic(self, proxy: str, toxic: str) -> None:
        self._call("DELETE", _toxic_path(proxy, toxic), expect=(204,))

    def toxics(self, proxy: str) -> list[ToxicInfo]:
        return [ToxicInfo.from_json(t) for t in self._json("GET", _proxy_path(proxy) + "/toxics")]

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._call("POST", "/reset", expect=(204,))

    def populate(self, proxies: list[dict[str, Any]]) -> list[ProxyInfo]:
        """Create or replace proxies in one call (entries: name, upstream, listen, enabled?)."""
        for i, entry in enumerate(proxies, start=1):
            if not entry.get("name") or not entry.get("upstream"):
                raise ConfigError(f"populate entry {i} needs 'name' and 'upstream', got {entry!r}")
        doc = self._json("POST", "/populate", proxies, expect=(201,))
        return [ProxyInfo.from_json(p) for p in (doc.get("proxies") or [])]


def _proxy_path(name: str) -> str:
    if not name or "/" in name:
        raise ConfigError(f"proxy name {name!r} cannot be addressed over HTTP: use a non-empty name without '/'")
    return "/proxies/" + quote(name, safe=_SAFE)


def _toxic_path(proxy: str, toxic: str) -> str:
    if not toxic or "/" in toxic:
        raise ConfigError(f"toxic name {toxic!r} cannot be addressed over HTTP: use a non-empty name without '/'")
    return _proxy_path(proxy) + "/toxics/" + quote(toxic, safe=_SAFE)


def _error_message(payload: bytes) -> str:
    text = payload.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        return text or "(empty body)"
    if isinstance(doc, dict):
        # "title" is the key of servers before 2.1.
        return str(doc.get("error") or doc.get("title") or text)
    return text
