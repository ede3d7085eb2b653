"""The Toxiproxy v2 HTTP API: routing, request decoding and responses, as Toxiproxy 2.12.0 answers.

Responsibility: map (method, path, body) to proxy-collection operations and render the exact
bodies, status codes and headers of the real server (see docs/toxiproxy.md and the reference
in the design notes). Routing follows gorilla/mux: decoded paths, `[^/]+` variables, 301 to the
clean path, 404 `404 page not found`, 405 with an empty body, 403 for browsers.

Example (inside a running loop):
    api = ToxiproxyApi(ProxyCollection(random.Random()))
    resp = await api.handle(Request("GET", "/version", (1, 1), [("Host", "x")]))
    resp.body  # b'{"version": "2.12.0"}\\n'
"""

from __future__ import annotations

import base64
import os
import threading
import time
from urllib.parse import quote

from ._gojson import (
    FLOAT32,
    POPULATE_ITEM_TYPE,
    PROXY_FIELDS,
    STRING,
    GoJSONError,
    Obj,
    decode_fields,
    decode_struct,
    go_str,
    kind_of,
    match_field,
    parse_first_value,
)
from ._http import Request, Response
from .proxy import (
    TOXIC_EXISTS,
    TOXIC_NOT_FOUND,
    AlreadyStarted,
    ApiError,
    Proxy,
    ProxyCollection,
    api_error,
)
from .toxics import KINDS, Direction, Toxic, ToxicKind

VERSION = "2.12.0"

TOXIC_FIELDS = {"name": STRING, "type": STRING, "stream": STRING, "toxicity": FLOAT32,
                "attributes": "toxics.NoopToxic"}
TOXIC_UPDATE_TYPE = ('struct { Attributes interface {} "json:\\"attributes\\""; '
                     'Toxicity float32 "json:\\"toxicity\\"" }')

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"

# --- request ids (xid format: 12 bytes -> 20 base32hex chars) ------------------------------------

_xid_lock = threading.Lock()
_xid_counter = int.from_bytes(os.urandom(3), "big")
_xid_machine = os.urandom(3)


def request_id() -> str:
    global _xid_counter
    with _xid_lock:
        _xid_counter = (_xid_counter + 1) & 0xFFFFFF
        counter = _xid_counter
    raw = (int(time.time()).to_bytes(4, "big") + _xid_machine + (os.getpid() & 0xFFFF).to_bytes(2, "big")
           + counter.to_bytes(3, "big"))
    return base64.b32hexencode(raw).decode().rstrip("=").lower()


# --- paths --------------------------------------------------------------------------------------

def clean_path(p: str) -> str:
    """gorilla/mux cleanPath: Go's path.Clean, keeping a trailing slash."""
    if p == "":
        return "/"
    if p[0] != "/":
        p = "/" + p
    parts: list[str] = []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if parts:
                parts.pop()
            continue
        parts.append(seg)
    np = "/" + "/".join(parts)
    if p.endswith("/") and np != "/":
        np += "/"
    return np


def _escape_path(p: str) -> str:
    return quote(p.encode("utf-8", "surrogateescape"), safe="/$&+,:;=@!'()*")


# --- responses ----------------------------------------------------------------------------------


def _json(body: str, status: int = 200) -> Response:
    return Response(status, body.encode("utf-8", "surrogateescape"), {"Content-Type": JSON})


def _error(message: str, status: int) -> Response:
    body = f'{{"error":{go_str(message)},"status":{status}}}\n'
    return Response(status, body.encode(), {"Content-Type": TEXT, "X-Content-Type-Options": "nosniff"})


def _plain_error(text: str, status: int) -> Response:
    return Response(status, (text + "\n").encode(), {"Content-Type": TEXT, "X-Content-Type-Options": "nosniff"})


def _bad_body(err: GoJSONError) -> ApiError:
    return ApiError(f"bad request body: {err}", 400)


# --- the API ------------------------------------------------------------------------------------

_ROUTES: list[tuple[tuple[str, ...], tuple[str, ...], str]] = [
    # (path pattern segments, methods, handler name); "*" is a {var}
    (("reset",), ("POST",), "reset"),
    (("proxies",), ("GET",), "proxy_index"),
    (("proxies",), ("POST",), "proxy_create"),
    (("populate",), ("POST",), "populate"),
    (("proxies", "*"), ("GET",), "proxy_show"),
    (("proxies", "*"), ("POST", "PATCH"), "proxy_update"),
    (("proxies", "*"), ("DELETE",), "proxy_delete"),
    (("proxies", "*", "toxics"), ("GET",), "toxic_index"),
    (("proxies", "*", "toxics"), ("POST",), "toxic_create"),
    (("proxies", "*", "toxics", "*"), ("GET",), "toxic_show"),
    (("proxies", "*", "toxics", "*"), ("POST", "PATCH"), "toxic_update"),
    (("proxies", "*", "toxics", "*"), ("DELETE",), "toxic_delete"),
    (("version",), ("GET",), "version"),
]


def _match(pattern: tuple[str, ...], segments: list[str]) -> list[str] | None:
    if len(pattern) != len(segments):
        return None
    found: list[str] = []
    for pat, seg in zip(pattern, segments, strict=True):
        if pat == "*":
            if not seg:
                return None
            found.append(seg)
        elif pat != seg:
            return None
    return found


class ToxiproxyApi:
    """The HTTP API over a ProxyCollection; `handle` is the HTTP server's handler."""

    def __init__(self, proxies: ProxyCollection) -> None:
        self.proxies = proxies

    async def handle(self, req: Request) -> Response:
        path, query = req.path, req.query
        cleaned = clean_path(path)
        if cleaned != path:
            location = _escape_path(cleaned) + ("?" + query if query else "")
            return Response(301, b"", {"Location": location})
        segments = path[1:].split("/")
        method_mismatch = False
        for pattern, methods, name in _ROUTES:
            params = _match(pattern, segments)
            if params is None:
                continue
            if req.method not in methods:
                method_mismatch = True
                continue
            resp = await self._dispatch(name, req, params)
            resp.headers["X-Toxiproxy-Request-Id"] = request_id()
            return resp
        if method_mismatch:
            return Response(405)
        return _plain_error("404 page not found", 404)

    async def _dispatch(self, name: str, req: Request, params: list[str]) -> Response:
        if (req.header("User-Agent") or "").startswith("Mozilla/"):
            return _plain_error("User agent not allowed", 403)
        if name == "populate":
            return await self.populate(req)
        try:
            async with self.proxies.lock:
                return await getattr(self, name)(req, *params)
        except ApiError as e:
            return _error(e.message, e.status)

    # --- proxies --------------------------------------------------------------------------------

    async def version(self, req: Request) -> Response:
        return Response(200, f'{{"version": "{VERSION}"}}\n'.encode(),
                        {"Content-Type": "application/json;charset=utf-8"})

    async def proxy_index(self, req: Request) -> Response:
        names = sorted(self.proxies.proxies, key=lambda n: n.encode("utf-8", "surrogateescape"))
        body = ",".join(f"{go_str(n)}:{self.proxies.proxies[n].to_json()}" for n in names)
        return _json("{" + body + "}")

    async def proxy_create(self, req: Request) -> Response:
        try:
            fields = decode_struct(req.body, PROXY_FIELDS, "Proxy", "toxiproxy.Proxy")
        except GoJSONError as e:
            raise _bad_body(e) from None
        name = str(fields.get("name", ""))
        upstream = str(fields.get("upstream", ""))
        if not name:
            raise ApiError("missing required field: name", 400)
        if not upstream:
            raise ApiError("missing required field: upstream", 400)
        proxy = await self.proxies.add(name, str(fields.get("listen", "")), upstream,
                                       bool(fields.get("enabled", True)))
        return _json(proxy.to_json(), 201)

    async def proxy_show(self, req: Request, name: str) -> Response:
        return _json(self.proxies.get(name).to_json())

    async def proxy_update(self, req: Request, name: str) -> Response:
        proxy = self.proxies.get(name)
        try:
            fields = decode_struct(req.body, PROXY_FIELDS, "Proxy", "toxiproxy.Proxy")
        except GoJSONError as e:
            raise _bad_body(e) from None
        await proxy.update(str(fields.get("listen", proxy.listen)), str(fields.get("upstream", proxy.upstream)),
                           bool(fields.get("enabled", proxy.enabled)))
        return _json(proxy.to_json())

    async def proxy_delete(self, req: Request, name: str) -> Response:
        self.proxies.remove(name)
        return Response(204)

    async def reset(self, req: Request) -> Response:
        for proxy in list(self.proxies.proxies.values()):
            try:
                await proxy.start()
            except AlreadyStarted:
                pass
            proxy.reset_toxics()
        return Response(204)

    async def populate(self, req: Request) -> Response:
        done: list[Proxy] = []
        try:
            async with self.proxies.lock:
                entries = self._decode_populate(req.body)
                for listen, name, upstream, enabled in entries:
                    done.append(await self.proxies.add_or_replace(name, listen, upstream, enabled))
        except ApiError as e:
            items = "[" + ",".join(p.to_json() for p in done) + "]" if done else "null"
            return _json(f'{{"error":{go_str(e.message)},"status":{e.status},"proxies":{items}}}', e.status)
        items = "[" + ",".join(p.to_json() for p in done) + "]" if done else "null"
        return _json(f'{{"proxies":{items}}}', 201)

    @staticmethod
    def _decode_populate(body: bytes) -> list[tuple[str, str, str, bool]]:
        try:
            value = parse_first_value(body)
        except GoJSONError as e:
            raise _bad_body(e) from None
        if value is None:
            return []
        if isinstance(value, Obj) or not isinstance(value, list):
            raise ApiError(f"bad request body: json: cannot unmarshal {kind_of(value)} into Go value of type "
                           f"[]{POPULATE_ITEM_TYPE}", 400)
        decoded: list[dict[str, object]] = []
        first_error: str | None = None
        for item in value:
            if item is None:
                decoded.append({})
            elif isinstance(item, Obj):
                fields, err = decode_fields(item, PROXY_FIELDS, "")
                first_error = first_error or err
                decoded.append(fields)
            else:
                first_error = first_error or (f"json: cannot unmarshal {kind_of(item)} into Go value of type "
                                              f"{POPULATE_ITEM_TYPE}")
                decoded.append({})
        if first_error is not None:
            raise ApiError(f"bad request body: {first_error}", 400)
        out = []
        for i, fields in enumerate(decoded, start=1):
            if not fields.get("name"):
                raise ApiError(f"missing required field: name at proxy {i}", 400)
            if not fields.get("upstream"):
                raise ApiError(f"missing required field: upstream at proxy {i}", 400)
            out.append((str(fields.get("listen", "")), str(fields["name"]), str(fields["upstream"]),
                        bool(fields.get("enabled", True))))
        return out

    # --- toxics ---------------------------------------------------------------------------------

    async def toxic_index(self, req: Request, name: str) -> Response:
        proxy = self.proxies.get(name)
        return _json("[" + ",".join(t.to_json() for t in proxy.all_toxics()) + "]")

    async def toxic_create(self, req: Request, name: str) -> Response:
        proxy = self.proxies.get(name)
        try:
            value = parse_first_value(req.body)
        except GoJSONError as e:
            raise _bad_body(e) from None
        if value is None:
            value = Obj()
        if not isinstance(value, Obj):
            raise ApiError(f"bad request body: json: cannot unmarshal {kind_of(value)} into Go value of type "
                           "toxics.ToxicWrapper", 400)
        fields, err = decode_fields(value, TOXIC_FIELDS, "ToxicWrapper")
        if err is not None:
            raise ApiError(f"bad request body: {err}", 400)
        stream = str(fields.get("stream", "downstream"))
        if Direction.parse(stream) is None:
            raise ApiError("stream was invalid, can be either upstream or downstream", 400)
        toxic_type = str(fields.get("type", ""))
        toxic_name = str(fields.get("name", "")) or f"{toxic_type}_{stream}"
        kind = KINDS.get(toxic_type)
        if kind is None:
            raise ApiError("invalid toxic type", 400)
        if proxy.find_toxic(toxic_name) is not None:
            raise api_error(TOXIC_EXISTS)
        attrs = _decode_attributes(value, kind)
        toxicity = fields.get("toxicity", 1.0)
        assert isinstance(toxicity, float)
        toxic = Toxic(toxic_name, kind, stream, toxicity, {**kind.defaults(), **attrs})
        proxy.add_toxic(toxic)
        return _json(toxic.to_json())

    async def toxic_show(self, req: Request, name: str, toxic_name: str) -> Response:
        toxic = self.proxies.get(name).find_toxic(toxic_name)
        if toxic is None:
            raise api_error(TOXIC_NOT_FOUND)
        return _json(toxic.to_json())

    async def toxic_update(self, req: Request, name: str, toxic_name: str) -> Response:
        proxy = self.proxies.get(name)
        toxic = proxy.find_toxic(toxic_name)
        if toxic is None:
            raise api_error(TOXIC_NOT_FOUND)
        try:
            value = parse_first_value(req.body)
        except GoJSONError as e:
            raise _bad_body(e) from None
        if value is None:
            return _json(toxic.to_json())
        if not isinstance(value, Obj):
            raise ApiError(f"bad request body: json: cannot unmarshal {kind_of(value)} into Go value of type "
                           f"{TOXIC_UPDATE_TYPE}", 400)
        fields, err = decode_fields(value, {"attributes": "toxics." + toxic.kind.go_struct,
                                            "toxicity": FLOAT32}, "")
        if err is not None:
            raise ApiError(f"bad request body: {err}", 400)
        attrs = _decode_attributes(value, toxic.kind)
        toxicity = fields.get("toxicity")
        proxy.update_toxic(toxic, attrs, toxicity if isinstance(toxicity, float) else None)
        return _json(toxic.to_json())

    async def toxic_delete(self, req: Request, name: str, toxic_name: str) -> Response:
        proxy = self.proxies.get(name)
        toxic = proxy.find_toxic(toxic_name)
        if toxic is None:
            raise api_error(TOXIC_NOT_FOUND)
        proxy.remove_toxic(toxic)
        return Response(204)


def _decode_attributes(value: Obj, kind: ToxicKind) -> dict[str, int]:
    """Decode every `attributes` object of the body into the kind's integer fields (merged)."""
    fields = dict(kind.fields)
    out: dict[str, int] = {}
    for key, raw in value:
        if match_field(key, {"attributes": ""}) is None or not isinstance(raw, Obj):
            continue
        got, err = decode_fields(raw, fields, kind.go_struct, "attributes.")
        if err is not None:
            raise ApiError(f"bad request body: {err}", 400)
        out.update({k: int(v) for k, v in got.items()})  # type: ignore[call-overload]
    return out


__all__ = ["VERSION", "ToxiproxyApi"]
