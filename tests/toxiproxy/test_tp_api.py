"""API conformance of the built-in server with Toxiproxy 2.12.0: bytes, headers, status codes, rules."""

from __future__ import annotations

import json
import re
import socket

import pytest
from tp_util import EchoServer, RawHttp, connect, read_until_close, recv_exactly

from harness.toxiproxy.client import ToxiproxyClient
from harness.toxiproxy.process import ToxiproxyProcess

XID = re.compile(r"^[0-9a-v]{20}$")


def header_names(r) -> list[str]:
    # RawHttp sends "Connection: close", so Go adds "Connection: close" before Date; left out here.
    return [k for k, _ in r.headers if k != "Connection"]


# --- cross-cutting ------------------------------------------------------------------------------


def test_version_exact_bytes_and_headers(http: RawHttp) -> None:
    r = http.request("GET", "/version")
    assert (r.status, r.reason) == (200, "OK")
    assert r.body == b'{"version": "2.12.0"}\n'
    assert header_names(r) == ["Content-Type", "X-Toxiproxy-Request-Id", "Date", "Content-Length"]
    assert r.header("Content-Type") == "application/json;charset=utf-8"
    assert XID.match(r.header("X-Toxiproxy-Request-Id") or "")
    assert r.header("Content-Length") == "22"


def test_unknown_path_and_trailing_slash_are_mux_404(http: RawHttp) -> None:
    for path in ("/nope", "/proxies/", "/metrics", "/proxies/a/toxics/b/c"):
        r = http.request("GET", path)
        assert r.status == 404, path
        assert r.body == b"404 page not found\n"
        assert header_names(r) == ["Content-Type", "X-Content-Type-Options", "Date", "Content-Length"]
        assert r.header("Content-Type") == "text/plain; charset=utf-8"
        assert r.header("X-Content-Type-Options") == "nosniff"


@pytest.mark.parametrize(("method", "path"), [("PUT", "/proxies"), ("DELETE", "/proxies"),
                                              ("HEAD", "/version"), ("GET", "/reset"),
                                              ("PUT", "/proxies/x/toxics")])
def test_wrong_method_is_405_with_empty_body(http: RawHttp, method: str, path: str) -> None:
    r = http.request(method, path)
    assert r.status == 405
    assert r.body == b""
    assert header_names(r) == ["Date", "Content-Length"]
    assert r.header("Content-Length") == "0"


def test_browser_user_agent_gets_403_on_routes_only(http: RawHttp) -> None:
    r = http.request("GET", "/proxies", headers={"User-Agent": "Mozilla/5.0 (X11)"})
    assert r.status == 403
    assert r.body == b"User agent not allowed\n"
    assert r.header("Content-Type") == "text/plain; charset=utf-8"
    assert r.header("X-Toxiproxy-Request-Id")
    assert http.request("GET", "/nope", headers={"User-Agent": "Mozilla/5.0"}).status == 404
    assert http.request("GET", "/version", headers={"User-Agent": "Wget/2.1"}).status == 200


def test_unclean_path_redirects_like_gorilla_mux(http: RawHttp) -> None:
    r = http.request("GET", "/proxies/../version?x=1")
    assert r.status == 301
    assert r.header("Location") == "/version?x=1"
    assert r.body == b""


def test_decoded_path_names_and_slash_names(echo: EchoServer) -> None:
    # A name with "/" can never be deleted again, so this test gets a server of its own.
    with ToxiproxyProcess() as own:
        assert own.port is not None
        _check_decoded_names(RawHttp("127.0.0.1", own.port), echo)


def _check_decoded_names(http: RawHttp, echo: EchoServer) -> None:
    r = http.request("POST", "/proxies", json.dumps({"name": "a b", "upstream": echo.addr}))
    assert r.status == 201
    assert http.request("GET", "/proxies/a%20b").json()["name"] == "a b"  # type: ignore[index]
    assert http.request("POST", "/proxies", json.dumps({"name": "x/y", "upstream": echo.addr})).status == 201
    r = http.request("GET", "/proxies/x%2Fy")
    assert (r.status, r.body) == (404, b"404 page not found\n")


def test_error_body_format(http: RawHttp) -> None:
    r = http.request("GET", "/proxies/missing")
    assert r.status == 404
    assert r.body == b'{"error":"proxy not found","status":404}\n'
    assert header_names(r) == ["Content-Type", "X-Content-Type-Options", "X-Toxiproxy-Request-Id", "Date",
                               "Content-Length"]
    assert r.header("Content-Type") == "text/plain; charset=utf-8"


def test_keep_alive_and_pipelining(tp_process) -> None:
    with socket.create_connection(("127.0.0.1", tp_process.port), timeout=5) as s:
        req = b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n"
        s.sendall(req * 3 + b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw, how = read_until_close(s)
    assert how == "eof"
    assert raw.count(b'{"version": "2.12.0"}\n') == 4
    assert raw.count(b"Connection: close") == 1


def test_malformed_requests_get_go_400(tp_process) -> None:
    for req in (b"GET /version HTTP/1.1\r\n\r\n",  # no Host
                b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n",
                b"NOT A REQUEST\r\n\r\n",
                b"GET /version HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", tp_process.port), timeout=5) as s:
            s.sendall(req)
            raw, how = read_until_close(s)
        assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (req, raw)
        assert how == "eof"


def test_large_bodies_use_chunked_encoding_like_go(http: RawHttp, client: ToxiproxyClient, echo) -> None:
    for i in range(30):
        client.create_proxy(f"proxy-{i:02d}", echo.addr)
    r = http.request("GET", "/proxies")
    assert r.header("Transfer-Encoding") == "chunked"
    assert r.header("Content-Length") is None
    assert len(r.json()) == 30  # type: ignore[arg-type]


# --- proxies ------------------------------------------------------------------------------------


def test_create_proxy_shape_and_field_order(http: RawHttp, echo: EchoServer) -> None:
    r = http.request("POST", "/proxies", json.dumps({"name": "redis", "upstream": echo.addr,
                                                     "listen": "127.0.0.1:0"}))
    assert r.status == 201
    assert r.reason == "Created"
    assert r.header("Content-Type") == "application/json"
    m = re.fullmatch(rb'\{"name":"redis","listen":"127\.0\.0\.1:(\d+)","upstream":"127\.0\.0\.1:\d+",'
                     rb'"enabled":true,"Logger":\{\},"toxics":\[\]\}', r.body)
    assert m, r.body
    assert int(m.group(1)) > 0


def test_create_proxy_errors_in_order(http: RawHttp, echo: EchoServer) -> None:
    cases = [
        (b"", 400, "bad request body: EOF"),
        (b'{"name":', 400, "bad request body: unexpected EOF"),
        (b"garbage", 400, "bad request body: invalid character 'g' looking for beginning of value"),
        (b'{"upstream":"x:1"}', 400, "missing required field: name"),
        (b'{"name":"n"}', 400, "missing required field: upstream"),
        (b'{"name":"n","upstream":"x:1","enabled":"yes"}', 400,
         "bad request body: json: cannot unmarshal string into Go struct field Proxy.enabled of type bool"),
        (b"[]", 400, "bad request body: json: cannot unmarshal array into Go value of type toxiproxy.Proxy"),
        (b'{"name":"n","upstream":"x:1","listen":"local373"}', 500,
         "listen tcp: address local373: missing port in address"),
    ]
    for body, status, message in cases:
        r = http.request("POST", "/proxies", body)
        assert (r.status, r.json()) == (status, {"error": message, "status": status}), body


def test_create_decodes_like_go(http: RawHttp, client: ToxiproxyClient, echo: EchoServer) -> None:
    # case-insensitive keys, unknown keys ignored, null keeps the default, trailing garbage ignored
    body = '{"NAME":"a","Upstream":"' + echo.addr + '","enabled":null,"toxics":[1],"api_consumer":{}} trailing'
    r = http.request("POST", "/proxies", body)
    assert r.status == 201
    doc = r.json()
    assert doc["name"] == "a" and doc["enabled"] is True  # type: ignore[index]
    assert http.request("POST", "/proxies", json.dumps({"name": "a", "upstream": "x:1"})).json() == \
        {"error": "proxy already exists", "status": 409}


def test_listen_reporting(client: ToxiproxyClient, echo: EchoServer) -> None:
    assert client.create_proxy("lh", echo.addr, listen="localhost:0").listen.startswith("127.0.0.1:")
    for name, listen in (("wild", "0.0.0.0:0"), ("empty", ""), ("colon", ":0")):
        p = client.create_proxy(name, echo.addr, listen=listen)
        assert re.fullmatch(r"\[::\]:\d+", p.listen), p.listen
        assert p.listen_host == "::"
        with connect(p.listen_port) as s:  # dual-stack: IPv4 clients reach it
            s.sendall(b"ping")
            assert recv_exactly(s, 4) == b"ping"


def test_disabled_proxy_keeps_listen_verbatim_and_binds_on_enable(client: ToxiproxyClient, echo) -> None:
    p = client.create_proxy("d", echo.addr, listen="localhost:0", enabled=False)
    assert (p.listen, p.enabled) == ("localhost:0", False)
    p = client.update_proxy("d", enabled=True)
    assert p.enabled and p.listen.startswith("127.0.0.1:") and p.listen_port > 0


def test_port_is_kept_across_disable_enable_and_toxics_persist(client: ToxiproxyClient, echo) -> None:
    p = client.create_proxy("k", echo.addr)
    client.add_toxic("k", "latency", attributes={"latency": 1})
    assert client.update_proxy("k", enabled=False).enabled is False
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", p.listen_port), timeout=2)
    again = client.update_proxy("k", enabled=True)
    assert again.listen == p.listen
    assert [t.name for t in again.toxics] == ["latency_downstream"]


def test_update_rules(http: RawHttp, client: ToxiproxyClient, echo: EchoServer) -> None:
    p = client.create_proxy("u", echo.addr)
    path = "/proxies/u"
    assert http.request("PATCH", path, "{}").json() == http.request("GET", path).json()
    assert http.request("POST", path, '{"name":"renamed"}').json()["name"] == "u"  # type: ignore[index]
    assert http.request("PATCH", path, "").json() == {"error": "bad request body: EOF", "status": 400}
    # same port via a hostname: no restart, the connection survives
    with connect(p.listen_port) as s:
        r = http.request("PATCH", path, json.dumps({"listen": f"localhost:{p.listen_port}"}))
        assert r.status == 200 and r.json()["listen"] == p.listen  # type: ignore[index]
        s.sendall(b"still")
        assert recv_exactly(s, 5) == b"still"
        # changing only the upstream restarts on the same port and drops connections
        with EchoServer() as other:
            r = http.request("PATCH", path, json.dumps({"upstream": other.addr}))
            assert r.json()["listen"] == p.listen  # type: ignore[index]
            assert read_until_close(s, 3) == (b"", "eof")


def test_enable_failure_is_500_and_stays_disabled(http: RawHttp, client: ToxiproxyClient, echo) -> None:
    p = client.create_proxy("e1", echo.addr)
    client.update_proxy("e1", enabled=False)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", p.listen_port))
        squatter.listen(1)
        r = http.request("POST", "/proxies/e1", '{"enabled":true}')
        assert r.status == 500
        assert r.json() == {"error": f"listen tcp {p.listen}: bind: address already in use", "status": 500}
        assert client.get_proxy("e1").enabled is False
        r = http.request("POST", "/reset")
        assert r.status == 500


def test_delete_proxy(http: RawHttp, client: ToxiproxyClient, echo: EchoServer) -> None:
    p = client.create_proxy("del", echo.addr)
    with connect(p.listen_port) as s:
        r = http.request("DELETE", "/proxies/del")
        assert (r.status, r.body, r.header("Content-Length")) == (204, b"", None)
        assert read_until_close(s, 3)[1] == "eof"
    assert http.request("DELETE", "/proxies/del").json() == {"error": "proxy not found", "status": 404}


def test_proxy_index_is_sorted_object(http: RawHttp, client: ToxiproxyClient, echo) -> None:
    assert http.request("GET", "/proxies").body == b"{}"
    for name in ("b", "a", "c"):
        client.create_proxy(name, echo.addr)
    body = http.request("GET", "/proxies").body
    assert list(json.loads(body)) == ["a", "b", "c"]


# --- populate -----------------------------------------------------------------------------------


def test_populate_shapes(http: RawHttp, echo: EchoServer) -> None:
    r = http.request("POST", "/populate", "[]")
    assert (r.status, r.body, r.header("Content-Type")) == (201, b'{"proxies":null}', "application/json")
    r = http.request("POST", "/populate", "{}")
    assert r.status == 400
    assert r.body.endswith(b'"status":400,"proxies":null}')
    assert b"cannot unmarshal object into Go value of type []struct { toxiproxy.Proxy; Enabled *bool" in r.body


def test_populate_validates_everything_first(http: RawHttp, client: ToxiproxyClient, echo) -> None:
    body = json.dumps([{"name": "ok", "upstream": echo.addr}, {"name": "", "upstream": echo.addr}])
    r = http.request("POST", "/populate", body)
    assert r.json() == {"error": "missing required field: name at proxy 2", "status": 400, "proxies": None}
    assert client.proxies() == {}


def test_populate_keeps_same_and_replaces_different(http: RawHttp, client: ToxiproxyClient, echo) -> None:
    p = client.create_proxy("keep", echo.addr)
    client.add_toxic("keep", "latency", attributes={"latency": 5})
    client.update_proxy("keep", enabled=False)
    entries = [{"name": "keep", "upstream": echo.addr, "listen": p.listen},
               {"name": "new", "upstream": echo.addr, "listen": "127.0.0.1:0", "enabled": False}]
    r = http.request("POST", "/populate", json.dumps(entries))
    assert r.status == 201
    kept, new = r.json()["proxies"]  # type: ignore[index]
    assert kept["enabled"] is False and [t["name"] for t in kept["toxics"]] == ["latency_downstream"]
    assert new["enabled"] is False and new["listen"] == "127.0.0.1:0"
    # a port-0 entry always replaces: the fresh proxy has no toxics
    r = http.request("POST", "/populate", json.dumps([{"name": "keep", "upstream": echo.addr,
                                                       "listen": "127.0.0.1:0"}]))
    (replaced,) = r.json()["proxies"]  # type: ignore[index]
    assert replaced["toxics"] == [] and replaced["enabled"] is True


def test_populate_stops_at_first_start_error(http: RawHttp, client: ToxiproxyClient, echo) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        taken = f"127.0.0.1:{squatter.getsockname()[1]}"
        body = json.dumps([{"name": "first", "upstream": echo.addr},
                           {"name": "second", "upstream": echo.addr, "listen": taken},
                           {"name": "third", "upstream": echo.addr}])
        r = http.request("POST", "/populate", body)
    doc = r.json()
    assert r.status == 500 and r.header("Content-Type") == "application/json"
    assert not r.body.endswith(b"\n")
    assert doc["error"] == f"listen tcp {taken}: bind: address already in use"  # type: ignore[index]
    assert [p["name"] for p in doc["proxies"]] == ["first"]  # type: ignore[index]
    assert sorted(client.proxies()) == ["first"]


# --- toxics -------------------------------------------------------------------------------------


def test_toxic_defaults_and_shapes(http: RawHttp, client: ToxiproxyClient, echo) -> None:
    client.create_proxy("t", echo.addr)
    expected = {
        "latency": '{"latency":0,"jitter":0}', "bandwidth": '{"rate":0}', "slow_close": '{"delay":0}',
        "timeout": '{"timeout":0}', "reset_peer": '{"timeout":0}',
        "slicer": '{"average_size":0,"size_variation":0,"delay":0}', "limit_data": '{"bytes":0}', "noop": "{}",
    }
    for kind, attrs in expected.items():
        r = http.request("POST", "/proxies/t/toxics", json.dumps({"type": kind, "stream": "upstream",
                                                                   "attributes": None}))
        assert r.status == 200, r.body
        assert r.body == (f'{{"attributes":{attrs},"name":"{kind}_upstream","type":"{kind}",'
                          f'"stream":"upstream","toxicity":1}}').encode()


def test_toxic_errors_in_order(http: RawHttp, client: ToxiproxyClient, echo) -> None:
    client.create_proxy("t", echo.addr)
    client.add_toxic("t", "latency", stream="upstream", name="dup")
    cases = [
        ('{"type":"latency","stream":""}', 400, "stream was invalid, can be either upstream or downstream"),
        ('{"type":"nope"}', 400, "invalid toxic type"),
        ('{"type":"Latency"}', 400, "invalid toxic type"),
        ('{"type":"latency","name":"dup"}', 409, "toxic already exists"),
        ('{"type":"latency","attributes":{"latency":1.5}}', 400,
         "bad request body: json: cannot unmarshal number 1.5 into Go struct field "
         "LatencyToxic.attributes.latency of type int64"),
        ('{"type":"latency","attributes":{"latency":1e3}}', 400,
         "bad request body: json: cannot unmarshal number 1e3 into Go struct field "
         "LatencyToxic.attributes.latency of type int64"),
        ('{"type":"latency","attributes":{"latency":"1"}}', 400,
         "bad request body: json: cannot unmarshal string into Go struct field "
         "LatencyToxic.attributes.latency of type int64"),
        ('{"type":"latency","toxicity":"x"}', 400,
         "bad request body: json: cannot unmarshal string into Go struct field ToxicWrapper.toxicity of type float32"),
    ]
    for body, status, message in cases:
        r = http.request("POST", "/proxies/t/toxics", body)
        assert (r.status, r.json()) == (status, {"error": message, "status": status}), body
    assert http.request("POST", "/proxies/none/toxics", '{"type":"latency"}').status == 404


def test_toxic_stream_kept_as_sent_and_names_are_per_proxy(http: RawHttp, client: ToxiproxyClient, echo) -> None:
    client.create_proxy("p1", echo.addr)
    client.create_proxy("p2", echo.addr, enabled=False)
    r = http.request("POST", "/proxies/p1/toxics", '{"type":"bandwidth","stream":"UPSTREAM"}')
    assert r.json()["name"] == "bandwidth_UPSTREAM" and r.json()["stream"] == "UPSTREAM"  # type: ignore[index]
    assert client.add_toxic("p2", "latency").name == "latency_downstream"  # disabled proxy: fine
    assert client.add_toxic("p1", "latency").name == "latency_downstream"
    # clash across directions of one proxy
    r = http.request("POST", "/proxies/p1/toxics", '{"type":"noop","name":"bandwidth_UPSTREAM"}')
    assert r.status == 409


def test_toxicity_float32_and_unknown_attributes(http: RawHttp, client: ToxiproxyClient, echo) -> None:
    client.create_proxy("t", echo.addr)
    r = http.request("POST", "/proxies/t/toxics",
                     '{"type":"timeout","toxicity":0.2,"attributes":{"timeout":0,"extra":5}}')
    assert r.body.endswith(b'"toxicity":0.2}') and b'"attributes":{"timeout":0}' in r.body
    r = http.request("POST", "/proxies/t/toxics", '{"type":"noop","toxicity":2.5}')
    assert r.json()["toxicity"] == 2.5  # type: ignore[index]
    r = http.request("POST", "/proxies/t/toxics", '{"type":"latency","toxicity":-1}')
    assert r.json()["toxicity"] == -1  # type: ignore[index]


def test_toxic_order_upstream_first_then_insertion(http: RawHttp, client: ToxiproxyClient, echo) -> None:
    client.create_proxy("o", echo.addr)
    client.add_toxic("o", "latency", name="d1")
    client.add_toxic("o", "latency", name="u1", stream="upstream")
    client.add_toxic("o", "latency", name="d2")
    client.add_toxic("o", "latency", name="u2", stream="upstream")
    names = [t["name"] for t in http.request("GET", "/proxies/o/toxics").json()]  # type: ignore[union-attr]
    assert names == ["u1", "u2", "d1", "d2"]
    assert [t.name for t in client.get_proxy("o").toxics] == names


def test_toxic_update_merges_and_ignores_identity(http: RawHttp, client: ToxiproxyClient, echo) -> None:
    client.create_proxy("t", echo.addr)
    client.add_toxic("t", "latency", attributes={"latency": 100, "jitter": 10})
    r = http.request("PATCH", "/proxies/t/toxics/latency_downstream",
                     '{"attributes":{"latency":1000},"name":"x","type":"bandwidth","stream":"upstream"}')
    assert r.body == (b'{"attributes":{"latency":1000,"jitter":10},"name":"latency_downstream",'
                      b'"type":"latency","stream":"downstream","toxicity":1}')
    r = http.request("POST", "/proxies/t/toxics/latency_downstream",
                     '{"toxicity":null,"attributes":{"latency":null}}')
    assert r.json()["attributes"] == {"latency": 1000, "jitter": 10}  # type: ignore[index]
    r = http.request("POST", "/proxies/t/toxics/latency_downstream", '{"toxicity":0.5}')
    assert r.json()["toxicity"] == 0.5  # type: ignore[index]
    assert http.request("POST", "/proxies/t/toxics/none", "{}").json() == {"error": "toxic not found",
                                                                          "status": 404}


def test_toxic_show_and_delete(http: RawHttp, client: ToxiproxyClient, echo) -> None:
    client.create_proxy("t", echo.addr)
    client.add_toxic("t", "slicer", attributes={"average_size": 10, "size_variation": 5, "delay": 100})
    r = http.request("GET", "/proxies/t/toxics/slicer_downstream")
    assert r.json()["attributes"] == {"average_size": 10, "size_variation": 5, "delay": 100}  # type: ignore[index]
    r = http.request("DELETE", "/proxies/t/toxics/slicer_downstream")
    assert (r.status, r.body) == (204, b"")
    assert http.request("GET", "/proxies/t/toxics/slicer_downstream").status == 404
    assert http.request("GET", "/proxies/none/toxics/x").json() == {"error": "proxy not found", "status": 404}


def test_reset_enables_and_clears_toxics_ignoring_body(http: RawHttp, client: ToxiproxyClient, echo) -> None:
    client.create_proxy("r", echo.addr)
    client.add_toxic("r", "latency")
    client.update_proxy("r", enabled=False)
    r = http.request("POST", "/reset", "garbage")
    assert (r.status, r.body) == (204, b"")
    p = client.get_proxy("r")
    assert p.enabled and p.toxics == ()


def test_chunked_request_body_and_expect_continue(tp_process, echo: EchoServer) -> None:
    body = json.dumps({"name": "chunky", "upstream": echo.addr}).encode()
    with socket.create_connection(("127.0.0.1", tp_process.port), timeout=5) as s:
        s.sendall(b"POST /proxies HTTP/1.1\r\nHost: x\r\nConnection: close\r\nExpect: 100-continue\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        s.sendall(f"{len(body) - 5:x}\r\n".encode() + body[:-5] + b"\r\n")
        s.sendall(b"5\r\n" + body[-5:] + b"\r\n0\r\n\r\n")
        raw, how = read_until_close(s)
    assert how == "eof"
    assert b"HTTP/1.1 201 Created" in raw
    with socket.create_connection(("127.0.0.1", tp_process.port), timeout=5) as s:
        s.sendall(b"PATCH /proxies/chunky HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"{}")
        raw, how = read_until_close(s)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
