"""Pure unit tests: Go JSON decoding/encoding, address handling, slicing, flag parsing."""

from __future__ import annotations

import random

import pytest

from harness.toxiproxy import _addr
from harness.toxiproxy.__main__ import FlagError, parse_flags
from harness.toxiproxy._gojson import (
    PROXY_FIELDS,
    GoJSONError,
    decode_struct,
    go_float32,
    go_str,
    parse_first_value,
    to_float32,
)
from harness.toxiproxy.toxics import KINDS, Toxic, slice_bounds


@pytest.mark.parametrize(("body", "message"), [
    (b"", "EOF"), (b"   \n", "EOF"), (b'{"a":', "unexpected EOF"), (b'{"a":"x', "unexpected EOF"),
    (b"x", "invalid character 'x' looking for beginning of value"),
    (b'{"a" 1}', "invalid character '1' after object key"),
    (b'{"a":1 "b":2}', "invalid character '\"' after object key:value pair"),
    (b"[1 2]", "invalid character '2' after array element"),
    (b"{1:2}", "invalid character '1' looking for beginning of object key string"),
    (b"NaN", "invalid character 'N' looking for beginning of value"),
])
def test_syntax_errors_read_like_go(body: bytes, message: str) -> None:
    with pytest.raises(GoJSONError) as e:
        parse_first_value(body)
    assert str(e.value) == message


def test_decode_struct_go_rules() -> None:
    assert decode_struct(b'{"NaMe":"a","name":"b"}', PROXY_FIELDS, "Proxy", "toxiproxy.Proxy") == {"name": "b"}
    assert decode_struct(b'{"enabled":null,"x":1} junk', PROXY_FIELDS, "Proxy", "toxiproxy.Proxy") == {}
    assert decode_struct(b"null", PROXY_FIELDS, "Proxy", "toxiproxy.Proxy") == {}
    assert decode_struct(b'{"name":"\\ud800x"}', PROXY_FIELDS, "Proxy", "toxiproxy.Proxy") == {"name": "\ufffdx"}
    with pytest.raises(GoJSONError, match=r"cannot unmarshal number into Go struct field Proxy.name of type string"):
        decode_struct(b'{"name":5,"enabled":"no"}', PROXY_FIELDS, "Proxy", "toxiproxy.Proxy")  # first error wins
    with pytest.raises(GoJSONError, match="of type zerolog.Logger"):
        decode_struct(b'{"logger":1}', PROXY_FIELDS, "Proxy", "toxiproxy.Proxy")


@pytest.mark.parametrize(("value", "text"), [(1.0, "1"), (0.5, "0.5"), (0.2, "0.2"), (2.5, "2.5"), (-1.0, "-1"),
                                             (0.1, "0.1"), (1e-7, "1e-7"), (1e21, "1e+21"), (0.0, "0"),
                                             (123456.789, "123456.79")])
def test_go_float32_formatting(value: float, text: str) -> None:
    assert go_float32(to_float32(value)) == text


def test_go_string_escaping() -> None:
    assert go_str("<a&b>") == '"\\u003ca\\u0026b\\u003e"'
    assert go_str("é\u2028") == '"é\\u2028"'


def test_toxic_json_field_order() -> None:
    t = Toxic("n", KINDS["slicer"], "UPSTREAM", to_float32(0.3), {"delay": 5})
    assert t.to_json() == ('{"attributes":{"average_size":0,"size_variation":0,"delay":5},"name":"n",'
                           '"type":"slicer","stream":"UPSTREAM","toxicity":0.3}')


@pytest.mark.parametrize(("addr", "message"), [
    ("local373", "address local373: missing port in address"),
    ("a:b:c", "address a:b:c: too many colons in address"),
    ("[::1", "address [::1: missing ']' in address"),
])
def test_split_host_port_errors(addr: str, message: str) -> None:
    with pytest.raises(_addr.AddrError, match=message.replace("[", r"\[")):
        _addr.split_host_port(addr)


def test_ports_and_formatting() -> None:
    assert _addr.parse_port("") == 0 and _addr.parse_port("http") == 80
    with pytest.raises(_addr.AddrError, match="address 70000: invalid port"):
        _addr.parse_port("70000")
    assert _addr.format_addr("", 1) == ":1"
    assert _addr.format_addr("fe80::1", 2) == "[fe80::1]:2"


@pytest.mark.parametrize(("length", "avg", "var"), [(100, 10, 5), (24, 1, 0), (50, 0, 0), (50, 0, 40), (7, 3, -9),
                                                    (1, 0, 0), (0, 5, 1)])
def test_slice_bounds_cover_the_chunk_without_empty_pieces(length: int, avg: int, var: int) -> None:
    bounds = slice_bounds(length, avg, var, random.Random(3))
    assert bounds[0][0] == 0 and bounds[-1][1] == length
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    assert length == 0 or all(e > s for s, e in bounds)
    if var == 0 and avg >= 1:
        assert all(e - s <= max(avg, 1) for s, e in bounds)


def test_go_flag_syntax() -> None:
    assert parse_flags(["-host", "127.0.0.1", "--port=9000", "-version"])["port"] == "9000"
    flags = parse_flags(["-config", "c.json", "-proxy-metrics"])
    assert flags["config"] == "c.json" and flags["proxy-metrics"] is True and flags["host"] == "localhost"
    with pytest.raises(FlagError, match="flag provided but not defined: -nope"):
        parse_flags(["-nope"])
    with pytest.raises(FlagError, match="flag needs an argument: -port"):
        parse_flags(["-port"])
