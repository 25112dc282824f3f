"""Go's ``encoding/json`` output for :mod:`router.api.govalue` trees, byte for byte.

``/report`` is ``json.MarshalIndent(status, "", "    ")`` with no trailing newline, and
the template function ``json`` is ``json.Marshal``.  What differs from Python's ``json``:
``<``, ``>`` and ``&`` are written ``\\u003c``, ``\\u003e``, ``\\u0026`` (Go escapes HTML
by default), so are U+2028 and U+2029; other non-ASCII text is written as is; floats use
Go's layout (``1e+21``, ``1e-7``, ``0.000001``); map keys come out sorted and struct fields
in declaration order; nil slices and maps are ``null``, empty ones ``[]``/``{}``.
"""

from __future__ import annotations

import math

from router.api.gofmt import format_float
from router.api.govalue import GoMap, GoNil, GoSlice, GoTime, GoValue, NoValue, is_empty


class UnsupportedValue(ValueError):
    """Go's ``json: unsupported value`` (NaN and infinities)."""


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
            "\t": "\\t", "<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
            "\u2028": "\\u2028", "\u2029": "\\u2029"}


def quote_string(text: str) -> str:
    """A JSON string as Go writes it (HTML-safe; lone surrogates, which cannot be
    UTF-8, become U+FFFD as Go's invalid bytes do)."""
    out = ['"']
    for ch in text:
        escaped = _ESCAPES.get(ch)
        if escaped is not None:
            out.append(escaped)
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        elif "\ud800" <= ch <= "\udfff":
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def format_json_float(x: float) -> str:
    """A float64 as ``encoding/json`` writes it: fixed notation from 1e-6 up to 1e21,
    exponent notation outside (``1e-7``, ``1e+21``)."""
    if math.isnan(x) or math.isinf(x):
        raise UnsupportedValue(f"json: unsupported value: {format_float(x)}")
    magnitude = abs(x)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        text = format_float(x, "e")
        mantissa, _, exponent = text.partition("e")
        if exponent.startswith("-0"):
            exponent = "-" + exponent[2:]
        return f"{mantissa}e{exponent}"
    return format_float(x, "f")


def marshal(value: GoValue, indent: str | None = None) -> str:
    """``json.Marshal(value)``, or ``json.MarshalIndent(value, "", indent)``."""
    out: list[str] = []
    _encode(value, out, indent, 0)
    return "".join(out)


def _encode(value: GoValue, out: list[str], indent: str | None, level: int) -> None:
    if isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(format_json_float(value))
    elif isinstance(value, str):
        out.append(quote_string(value))
    elif isinstance(value, GoNil | NoValue):
        out.append("null")
    elif isinstance(value, GoTime):
        out.append(quote_string(value.rfc3339()))
    elif isinstance(value, GoSlice):
        if value.nil:
            out.append("null")
        else:
            _encode_items(list(value.items), out, indent, level)
    elif isinstance(value, GoMap):
        if value.nil:
            out.append("null")
        else:
            _encode_members(list(value.entries), out, indent, level)
    else:
        members = [(f.name, f.value) for f in value.fields
                   if not (f.omitempty and is_empty(f.value))]
        _encode_members(members, out, indent, level)


def _newline(out: list[str], indent: str | None, level: int) -> None:
    if indent is not None:
        out.append("\n" + indent * level)


def _encode_items(items: list[GoValue], out: list[str], indent: str | None,
                  level: int) -> None:
    if not items:
        out.append("[]")
        return
    out.append("[")
    for i, item in enumerate(items):
        if i:
            out.append(",")
        _newline(out, indent, level + 1)
        _encode(item, out, indent, level + 1)
    _newline(out, indent, level)
    out.append("]")


def _encode_members(members: list[tuple[str, GoValue]], out: list[str],
                    indent: str | None, level: int) -> None:
    if not members:
        out.append("{}")
        return
    out.append("{")
    for i, (name, item) in enumerate(members):
        if i:
            out.append(",")
        _newline(out, indent, level + 1)
        out.append(quote_string(name))
        out.append(": " if indent is not None else ":")
        _encode(item, out, indent, level + 1)
    _newline(out, indent, level)
    out.append("}")

