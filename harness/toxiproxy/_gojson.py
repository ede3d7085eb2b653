"""Go `encoding/json` behaviour that Toxiproxy clients can observe: decoding and encoding.

Responsibility: turn request bodies into values the way Toxiproxy's Go decoder does (first value
only, case-insensitive keys, null keeps the default, strict integer and float32 fields, Go's error
texts) and render responses the way `json.Marshal` does (HTML-safe escaping, float32 formatting).

Example:
    >>> decode_struct(b'{"NAME":"redis","enabled":null}', PROXY_FIELDS, "Proxy", "toxiproxy.Proxy")
    {'name': 'redis'}
    >>> go_float32(0.5), go_float32(1.0)
    ('0.5', '1')
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Mapping

# Field kinds of the Go structs the API decodes into. The value is the Go type name used in errors.
STRING, BOOL, INT64, INT, FLOAT32, LOGGER = "string", "bool", "int64", "int", "float32", "zerolog.Logger"

PROXY_FIELDS: dict[str, str] = {"name": STRING, "listen": STRING, "upstream": STRING, "enabled": BOOL,
                                "Logger": LOGGER}
POPULATE_ITEM_TYPE = 'struct { toxiproxy.Proxy; Enabled *bool "json:\\"enabled\\"" }'

_WS = " \t\r\n"
_INT_RE = re.compile(r"-?(0|[1-9][0-9]*)\Z")
_FLOAT32_MAX = 3.4028234663852886e38
_INT_LIMITS = {INT64: (-(2**63), 2**63 - 1), INT: (-(2**63), 2**63 - 1)}
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


class GoJSONError(Exception):
    """A decoding failure carrying Go's exact error text (without the "bad request body: " prefix)."""


class Num(str):
    """A JSON number kept as its literal text, so integer fields can reject `1.0` as Go does."""

    __slots__ = ()


class Obj(list):  # type: ignore[type-arg]
    """A JSON object as its (key, value) pairs in order; duplicate keys are kept, as Go sees them."""

    __slots__ = ()


class _BadConstant(ValueError):
    pass


def _reject_constant(name: str) -> object:
    raise _BadConstant(name)


_DECODER = json.JSONDecoder(object_pairs_hook=Obj, parse_int=Num, parse_float=Num,
                            parse_constant=_reject_constant, strict=True)


def _quote_char(c: str) -> str:
    if c == "'":
        return "'\\''"
    if c == '"':
        return "'\"'"
    if c.isprintable():
        return f"'{c}'"
    return "'" + json.dumps(c)[1:-1] + "'"


def _syntax_message(err: json.JSONDecodeError, text: str) -> str:
    pos = err.pos
    if pos >= len(text):
        return "unexpected EOF"
    c = text[pos]
    msg = err.msg
    if msg.startswith("Expecting property name"):
        ctx = "looking for beginning of object key string"
    elif msg.startswith("Expecting ':'"):
        ctx = "after object key"
    elif msg.startswith("Expecting ','"):
        # Python uses one message for both containers; find the innermost open one.
        depth_obj = text.rfind("{", 0, pos) > text.rfind("[", 0, pos)
        ctx = "after object key:value pair" if depth_obj else "after array element"
    elif msg.startswith("Invalid control character"):
        ctx = "in string literal"
    elif msg.startswith("Invalid \\escape") or msg.startswith("Invalid \\u"):
        # Python points at the backslash; Go names the character after it.
        if c == "\\" and pos + 1 < len(text):
            c = text[pos + 1]
        ctx = "in string escape code"
    elif msg.startswith("Unterminated string"):
        return "unexpected EOF"
    else:
        ctx = "looking for beginning of value"
    return f"invalid character {_quote_char(c)} {ctx}"


def _clean_str(s: str) -> str:
    # Go replaces unpaired surrogate escapes with U+FFFD; Python keeps them (and could not encode them).
    return _SURROGATE_RE.sub("\ufffd", s) if _SURROGATE_RE.search(s) else s


def parse_first_value(body: bytes) -> object:
    """Parse the first JSON value of `body`, ignoring anything after it (as Go's Decoder does).

    Strings come back cleaned, numbers as `Num`, objects as `Obj`.
    """
    text = body.decode("utf-8", "replace")
    i = 0
    n = len(text)
    while i < n and text[i] in _WS:
        i += 1
    if i == n:
        raise GoJSONError("EOF")
    try:
        value, _end = _DECODER.raw_decode(text, i)
    except json.JSONDecodeError as e:
        raise GoJSONError(_syntax_message(e, text)) from None
    except _BadConstant as e:
        c = str(e)[0] if not str(e).startswith("-") else "I"
        where = "in numeric literal" if str(e).startswith("-") else "looking for beginning of value"
        raise GoJSONError(f"invalid character '{c}' {where}") from None
    except RecursionError:
        raise GoJSONError("exceeded max depth") from None
    return value


def kind_of(value: object) -> str:
    """Go's word for a JSON value's kind in "cannot unmarshal X into ..."."""
    if isinstance(value, Obj):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Num):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null"


def _type_error(value_desc: str, struct_name: str, path: str, go_type: str) -> str:
    if not struct_name and not path:
        return f"json: cannot unmarshal {value_desc} into Go value of type {go_type}"
    return f"json: cannot unmarshal {value_desc} into Go struct field {struct_name}.{path} of type {go_type}"


def _fold(s: str) -> str:
    # Go matches keys with Unicode simple case folding; upper-then-lower covers 'ſ' and the Kelvin sign.
    return s.upper().lower()


def match_field(key: str, fields: Mapping[str, str]) -> str | None:
    """The struct field a JSON key lands in: exact match first, then case-insensitive."""
    if key in fields:
        return key
    folded = _fold(key)
    for name in fields:
        if _fold(name) == folded:
            return name
    return None


def convert(value: object, go_type: str, struct_name: str, path: str) -> tuple[object, str | None]:
    """Convert one JSON value for a field of `go_type`. Returns (value, error); null gives (None, None)."""
    if value is None:
        return None, None
    if go_type == STRING:
        if isinstance(value, str) and not isinstance(value, Num):
            return _clean_str(value), None
        return None, _type_error(kind_of(value), struct_name, path, go_type)
    if go_type == BOOL:
        if isinstance(value, bool):
            return value, None
        return None, _type_error(kind_of(value), struct_name, path, go_type)
    if go_type in _INT_LIMITS:
        if isinstance(value, Num):
            lo, hi = _INT_LIMITS[go_type]
            if _INT_RE.match(value) and lo <= int(value) <= hi:
                return int(value), None
            return None, _type_error(f"number {value}", struct_name, path, go_type)
        return None, _type_error(kind_of(value), struct_name, path, go_type)
    if go_type == FLOAT32:
        if isinstance(value, Num):
            f = float(value)
            if math.isinf(f) or abs(f) > _FLOAT32_MAX:
                return None, _type_error(f"number {value}", struct_name, path, go_type)
            return to_float32(f), None
        return None, _type_error(kind_of(value), struct_name, path, go_type)
    # Struct-typed fields (Logger, toxic attribute structs): only objects (or null) fit.
    if isinstance(value, Obj):
        return value, None
    return None, _type_error(kind_of(value), struct_name, path, go_type)


def decode_fields(obj: Obj, fields: Mapping[str, str], struct_name: str,
                  prefix: str = "") -> tuple[dict[str, object], str | None]:
    """Assign the keys of `obj` to `fields` as Go would; returns (assigned values, first type error).

    Later duplicates win; unknown keys are ignored; null leaves a field unassigned.
    """
    out: dict[str, object] = {}
    first_error: str | None = None
    for key, raw in obj:
        field = match_field(key, fields)
        if field is None:
            continue
        value, err = convert(raw, fields[field], struct_name, prefix + field)
        if err is not None:
            first_error = first_error or err
            continue
        if value is not None:
            out[field] = value
    return out, first_error


def decode_struct(body: bytes, fields: Mapping[str, str], struct_name: str, go_type: str) -> dict[str, object]:
    """Decode a request body into a flat Go struct; raises GoJSONError with Go's message."""
    value = parse_first_value(body)
    if value is None:
        return {}
    if not isinstance(value, Obj):
        raise GoJSONError(_type_error(kind_of(value), "", "", go_type))
    out, err = decode_fields(value, fields, struct_name)
    if err is not None:
        raise GoJSONError(err)
    return out


def to_float32(f: float) -> float:
    """Round a float to the nearest float32, as Go stores `toxicity`."""
    return float(struct.unpack("<f", struct.pack("<f", f))[0])


def go_float32(f: float) -> str:
    """Format a float32 the way Go's json.Marshal does (shortest digits; 'e' only for tiny/huge values)."""
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sci = f"{f:.8e}"
    for precision in range(0, 9):
        candidate = f"{f:.{precision}e}"
        if to_float32(float(candidate)) == f:
            sci = candidate
            break
    mant, _, exp_text = sci.partition("e")
    exp = int(exp_text)
    sign = "-" if f < 0 else ""
    digits = mant.lstrip("-").replace(".", "").rstrip("0") or "0"
    if abs(f) < 1e-6 or abs(f) >= 1e21:
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        e = f"{abs(exp):02d}"
        if exp < 0 and e.startswith("0"):
            e = e[1:]
        return f"{sign}{m}e{'-' if exp < 0 else '+'}{e}"
    if exp >= 0:
        whole = digits[: exp + 1].ljust(exp + 1, "0")
        frac = digits[exp + 1:]
    else:
        whole = "0"
        frac = "0" * (-exp - 1) + digits
    return sign + whole + ("." + frac if frac else "")


_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")


def go_str(s: str) -> str:
    """A JSON string literal as Go's json.Marshal writes it (UTF-8, with <, >, & escaped)."""
    text = json.dumps(s, ensure_ascii=False)
    if _GO_ESCAPE_RE.search(text):
        text = _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group(0)], text)
    return text
