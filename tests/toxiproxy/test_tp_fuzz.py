"""Hypothesis fuzzing of the API: random methods, paths and bodies never crash the server.

Every answer must be well formed; a 5xx is only allowed for listen/bind/address errors (which the
real server also answers with 500). Proxies created by fuzzing always listen on loopback.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tp_util import RawHttp

from harness.toxiproxy.client import ToxiproxyClient
from harness.toxiproxy.process import ToxiproxyProcess

ALLOWED_5XX = re.compile(r"^(listen tcp|address |lookup )")
KEYS = ["name", "NAME", "Name", "upstream", "enabled", "type", "stream", "toxicity", "attributes", "latency",
        "jitter", "rate", "delay", "timeout", "bytes", "average_size", "size_variation", "Logger", "toxics", "x"]
SAFE_LISTEN = ["127.0.0.1:0", "localhost:0", "127.0.0.1:", "local373", "[::1", "127.0.0.1:99999",
               "127.0.0.1:http", "nosuchhost.invalid:0", "127.0.0.1:-1"]
TYPES = ["latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer", "limit_data", "noop", "", "x"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
    st.sampled_from(TYPES + ["upstream", "downstream", "UPSTREAM", "127.0.0.1:1", "x:1"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5)),
    max_leaves=12)


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    doc = draw(values)

    def loopback(obj: object) -> object:
        if isinstance(obj, dict):
            out = {k: loopback(v) for k, v in obj.items()}
            out["listen"] = draw(st.sampled_from(SAFE_LISTEN))  # keep every listener on loopback
            return out
        if isinstance(obj, list):
            return [loopback(v) for v in obj]
        return obj

    text = json.dumps(loopback(doc))
    tail = draw(st.sampled_from(["", " ", "garbage", "}", "\n{}"]))
    cut = draw(st.integers(min_value=0, max_value=len(text)))
    return (text if draw(st.booleans()) else text[:cut]).encode() + tail.encode()


bodies = st.one_of(json_bodies(), st.binary(max_size=64), st.just(b""))
segments = st.one_of(st.sampled_from(["proxies", "toxics", "populate", "reset", "version", "p", "latency_downstream",
                                      "..", ".", "", "%2F", "%zz", "%", "a%20b", "metrics"]),
                     st.text(min_size=1, max_size=8).map(lambda t: quote(t, safe="")))
paths = st.lists(segments, min_size=1, max_size=5).map(lambda segs: "/" + "/".join(segs))
methods = st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS"])


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[ToxiproxyProcess]:
    # Its own server: fuzzing may create proxies whose names ("a/b") can never be deleted.
    with ToxiproxyProcess() as tp:
        yield tp


def check(r, method: str) -> None:
    assert 200 <= r.status < 600
    if r.status >= 500:
        doc = json.loads(r.body)
        assert ALLOWED_5XX.match(doc["error"]), doc
        assert doc["status"] == r.status
        return
    ctype = r.header("Content-Type") or ""
    if r.status in (204, 301, 405):
        assert r.body == b""
    elif ctype.startswith("application/json") and r.body:
        json.loads(r.body)
    elif r.status >= 400 and r.body.startswith(b"{"):
        doc = json.loads(r.body)
        assert doc["status"] == r.status and isinstance(doc["error"], str) and doc["error"]


def reset_state(url: str) -> None:
    client = ToxiproxyClient(url)
    for name in client.proxies():
        if "/" not in name and name:
            client.delete_proxy(name)
    client.create_proxy("p", "127.0.0.1:1")
    client.add_toxic("p", "latency")


FUZZ = settings(max_examples=250, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(method=methods, path=paths, body=bodies)
def test_random_requests_never_crash(fuzz_server: ToxiproxyProcess, method: str, path: str, body: bytes) -> None:
    assert fuzz_server.port is not None
    http = RawHttp("127.0.0.1", fuzz_server.port)
    r = http.request(method, path, body)
    if r.status == 400 and r.body.startswith(b"400 Bad Request"):
        return  # malformed request line (e.g. a bad %-escape): Go's plain 400
    check(r, method)


@FUZZ
@given(route=st.sampled_from(["/proxies", "/populate", "/proxies/p", "/proxies/p/toxics",
                              "/proxies/p/toxics/latency_downstream", "/reset"]),
       method=st.sampled_from(["POST", "PATCH"]), body=bodies)
def test_random_bodies_on_every_write_route(fuzz_server: ToxiproxyProcess, route: str, method: str,
                                            body: bytes) -> None:
    assert fuzz_server.port is not None
    reset_state(fuzz_server.url)
    r = RawHttp("127.0.0.1", fuzz_server.port).request(method, route, body)
    check(r, method)
    assert ToxiproxyClient(fuzz_server.url).version() == "2.12.0"
