"""Go's ``fmt`` for the values of :mod:`router.api.govalue`: ``%v`` and ``printf``.

What ``{{.X}}`` and ``{{printf ...}}`` print in a ``weave report -f`` template, and how
Go writes floats (``strconv``'s shortest digits: ``1438``, ``1.048576e+06``), which
``/metrics`` and JSON use too.  Python's ``repr`` gives the same shortest digits as Go;
only the layout around them differs, so the digits are taken from ``repr`` and laid out
here.

A value Go would print with a pointer's address (a struct pointer inside another value, a
struct that embeds a pointer) cannot be printed as Go prints it: :class:`Unprintable` says
so and which value it was.
"""

from __future__ import annotations

import math
import re

from router.api.govalue import (
    GoMap,
    GoNil,
    GoSlice,
    GoStruct,
    GoTime,
    GoValue,
    NoValue,
    type_name,
)


class Unprintable(ValueError):
    """Go would print a memory address (or another value we cannot reproduce) here."""


def _shortest(x: float) -> tuple[str, int]:
    """Shortest round-trip digits of ``|x|`` (x finite, non-zero) and the decimal point
    position ``dp``: ``|x| = 0.DIGITS × 10**dp``."""
    mantissa, _, exponent = repr(abs(x)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    every = whole + fraction
    leading = len(every) - len(every.lstrip("0"))
    digits = every.lstrip("0").rstrip("0")
    return digits, len(whole) - leading + int(exponent or 0)


def _layout_e(digits: str, dp: int, upper: bool = False) -> str:
    exp = dp - 1
    body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{body}{'E' if upper else 'e'}{'-' if exp < 0 else '+'}{abs(exp):02d}"


def _layout_f(digits: str, dp: int) -> str:
    if dp <= 0:
        return "0." + "0" * -dp + digits
    if dp >= len(digits):
        return digits + "0" * (dp - len(digits))
    return digits[:dp] + "." + digits[dp:]


def format_float(x: float, verb: str = "g", prec: int = -1) -> str:
    """``strconv.FormatFloat(x, verb, prec, 64)`` for verbs e, E, f, g, G (prec -1:
    the shortest digits that read back as ``x``)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if prec >= 0:
        # Python rounds the exact binary value half to even, as strconv does
        return f"{x:.{prec}{verb}}"
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    if x == 0:
        return sign + ("0e+00" if verb in "eE" else "0")
    digits, dp = _shortest(x)
    if verb in "eE":
        return sign + _layout_e(digits, dp, verb == "E")
    if verb == "f":
        return sign + _layout_f(digits, dp)
    exp = dp - 1
    if exp < -4 or exp >= 6:  # shortest %g decides with a precision of 6
        return sign + _layout_e(digits, dp, verb == "G")
    return sign + _layout_f(digits, dp)


def format_value(value: GoValue, *, depth: int = 0, plus: bool = False) -> str:
    """``fmt.Sprint("%v", value)`` (``%+v`` with ``plus``).  At depth 0 a struct
    reached through a pointer prints as ``&{...}`` (callers that dereference first, as
    ``text/template`` does, pass the struct with ``pointer`` cleared)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, GoNil):
        return "<nil>"
    if isinstance(value, NoValue):
        return "<no value>"
    if isinstance(value, GoTime):
        return value.string()
    if isinstance(value, GoSlice):
        return "[" + " ".join(format_value(v, depth=depth + 1, plus=plus)
                              for v in value.items) + "]"
    if isinstance(value, GoMap):
        return "map[" + " ".join(f"{k}:{format_value(v, depth=depth + 1, plus=plus)}"
                                 for k, v in value.entries) + "]"
    return _format_struct(value, depth, plus)


def _format_struct(value: GoStruct, depth: int, plus: bool) -> str:
    if value.stringer is not None and (not value.stringer_on_pointer or
                                       (value.pointer and depth == 0)):
        return value.stringer
    if value.pointer and depth > 0:
        raise Unprintable(f"Go prints the address of the {value.type_name} pointer here")
    if value.opaque:
        raise Unprintable(value.opaque)
    parts = [(f"{f.name}:" if plus else "") + format_value(f.value, depth=depth + 1, plus=plus)
             for f in value.fields]
    return ("&" if value.pointer else "") + "{" + " ".join(parts) + "}"


_VERB = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d*))?([a-zA-Z%])?")


def sprintf(fmt: str, args: list[GoValue]) -> str:
    """``fmt.Sprintf`` for the verbs templates use: v +v s d t q x X o b c e E f F g G
    and ``%%``, with flags ``-+ 0#``, width and precision.  Wrong types, missing and
    extra arguments are marked as Go marks them (``%!d(string=x)``, ``%!s(MISSING)``,
    ``%!(EXTRA int=1)``)."""
    out: list[str] = []
    index = 0
    pos = 0
    while pos < len(fmt):
        cut = fmt.find("%", pos)
        if cut < 0:
            out.append(fmt[pos:])
            break
        out.append(fmt[pos:cut])
        match = _VERB.match(fmt, cut)
        assert match is not None  # the pattern matches any "%"
        flags, width, prec, verb = match.groups()
        pos = match.end()
        if verb is None:
            out.append("%!(NOVERB)")
            continue
        if verb == "%":
            out.append("%")
            continue
        if index >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        text = _format_arg(args[index], verb, flags, None if prec is None else int(prec or 0))
        index += 1
        out.append(_pad(text, int(width) if width else 0, flags, verb))
    if index < len(args):
        extra = ", ".join(f"{type_name(a)}={format_value(a)}" for a in args[index:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _pad(text: str, width: int, flags: str, verb: str) -> str:
    if len(text) >= width:
        return text
    if "-" in flags:
        return text + " " * (width - len(text))
    if "0" in flags and verb in "dxXobeEfFgG" and not text.startswith("%!"):
        sign = text[0] if text[:1] in "+- " else ""
        return sign + "0" * (width - len(text)) + text[len(sign):]
    return " " * (width - len(text)) + text


def _bad(verb: str, value: GoValue) -> str:
    if isinstance(value, GoNil):
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({type_name(value)}={format_value(value)})"


def _format_arg(value: GoValue, verb: str, flags: str, prec: int | None) -> str:
    if verb == "v" and "#" in flags:
        raise Unprintable("%#v (Go syntax) is not supported")
    if verb == "T":
        return type_name(value)
    if verb == "v" or (verb == "s" and not isinstance(value, bool | int | float)):
        if isinstance(value, float) and prec is not None:
            return _sign(format_float(value, "g", prec), flags)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _sign(format_value(value), flags)
        text = format_value(value, plus="+" in flags)
        return text[:prec] if prec is not None and isinstance(value, str) else text
    if isinstance(value, bool):
        return ("true" if value else "false") if verb == "t" else _bad(verb, value)
    if isinstance(value, int):
        return _format_int(value, verb, flags)
    if isinstance(value, float):
        if verb not in "eEfFgG":
            return _bad(verb, value)
        default = -1 if verb in "gG" else 6
        return _sign(format_float(value, "f" if verb == "F" else verb,
                                  default if prec is None else prec), flags)
    if isinstance(value, str):
        if verb == "q":
            return quote(value)
        if verb in "xX":
            text = value.encode().hex()
            return text.upper() if verb == "X" else text
    return _bad(verb, value)


def _format_int(value: int, verb: str, flags: str) -> str:
    if verb == "d":
        return _sign(str(value), flags)
    if verb in "xXob":
        base = {"x": "x", "X": "X", "o": "o", "b": "b"}[verb]
        digits = format(abs(value), base)
        prefix = ""
        if "#" in flags:
            prefix = {"x": "0x", "X": "0X", "o": "0", "b": ""}[verb]
        return _sign(("-" if value < 0 else "") + prefix + digits, flags)
    if verb == "c":
        return chr(value) if 0 <= value <= 0x10FFFF else "\ufffd"
    if verb == "q":
        return "'" + quote(chr(value))[1:-1].replace("'", "\\'") + "'"
    if verb in "eEfFgG":
        return _bad(verb, value)
    return _bad(verb, value)


def _sign(text: str, flags: str) -> str:
    if text.startswith("-"):
        return text
    if "+" in flags:
        return "+" + text
    if " " in flags:
        return " " + text
    return text


_QUOTE_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                  "\t": "\\t", "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def quote(text: str) -> str:
    """``strconv.Quote``: a double-quoted Go string literal."""
    out = ['"']
    for ch in text:
        if ch in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)
