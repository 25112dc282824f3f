"""Struct readers generated as Python source, for speed.

Decoding is dominated by structs: a 100-peer full-mesh topology update holds
~10,000 ``connectionSummary`` values of four fields each. A generic loop pays,
per field, a list lookup to find the field's reader, a call, a tuple for the
result and a store into a list of values; for the common field kinds this
module writes the reading code out inline instead, one straight-line block per
received field, and compiles it with ``exec`` once per (schema, received type)
pair, the way ``dataclasses`` builds ``__init__``.

Gob sends a struct's fields in increasing field number, each as the delta from
the previous one, ending with a zero delta (or the end of the message). So the
generated function tests the fields in order: "is the next field number k?"
then reads field k and the following delta, for k = 0, 1, ...; a field number
left over after the last test is out of range. Nothing received from the
network is ever part of the source: it is made only of local names, integer
constants and the slots the schema assigns; readers for other kinds, zero
values and the class are passed in as globals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import CodeType
from typing import Any

from .wire import DecodeFailure, long_uint

Reader = Callable[[bytes, int], tuple[Any, int]]

GENERIC, UINT, INT, BOOL, BYTES, STRING, SKIP = range(7)
"""How a received field is read: by a reader call, inline by kind, or skipped."""

_NEXT_DELTA = """\
    if pos < end:
        d = msg[pos]
        pos += 1
        if d >= 0x80:
            d, pos = long_uint(msg, pos, d)
        nxt = {current} + d if d else -2
    else:
        nxt = -2
"""

_UNSIGNED = """\
        x = msg[pos]
        pos += 1
        if x >= 0x80:
            x, pos = long_uint(msg, pos, x)
"""

_COUNTED = """\
        stop = pos + x
        if stop > end:
            raise DecodeFailure("length " + str(x) + " runs past the end of its message", pos)
"""


def _field_code(index: int, kind: int, slot: int) -> str:
    """Source reading received field ``index`` into local ``v<slot>``."""
    target = f"v{slot}"
    if kind == GENERIC:
        return f"        {target}, pos = R{index}(msg, pos)\n"
    if kind == SKIP:
        return f"        pos = R{index}(msg, pos, 0)\n"
    code = _UNSIGNED
    if kind == UINT:
        code += f"        {target} = x\n"
    elif kind == INT:
        code += f"        {target} = -(x >> 1) - 1 if x & 1 else x >> 1\n"
    elif kind == BOOL:
        code += f"        {target} = x != 0\n"
    else:
        code += _COUNTED
        value = "msg[pos:stop]"
        if kind == STRING:
            value += '.decode("utf-8", "surrogateescape")'
        code += f"        {target} = {value}\n        pos = stop\n"
    return code


def struct_reader(
    cls: type[Any],
    zeros: list[Any],
    fields: list[tuple[int, int, Any]],
    *,
    many: bool = False,
    length: int | None = None,
) -> Reader:
    """A reader for a received struct whose field ``i`` is ``fields[i] = (kind, slot, reader)``.

    ``slot`` is the field's position among ``cls``'s constructor arguments
    (ignored for SKIP); ``reader`` is the reader (GENERIC) or skipper (SKIP).
    Constructor arguments no received field fills get ``zeros[slot]``. With
    ``many`` the reader reads a slice of such structs (an array if ``length``
    is set) into a tuple, looping inside the one generated function.
    """
    setters = _slot_setters(cls)
    if setters is not None and len(setters) != len(zeros):
        setters = None
    zero_sources = tuple(_zero_source(slot, zero) for slot, zero in enumerate(zeros))
    layout = (tuple((kind, slot) for kind, slot, _ in fields), zero_sources, setters is not None)
    code = _compiled(layout, many, length)
    namespace: dict[str, Any] = {
        "long_uint": long_uint,
        "DecodeFailure": DecodeFailure,
        "C": cls,
        "new": object.__new__,
    }
    for slot, zero in enumerate(zeros):
        namespace[f"Z{slot}"] = zero
    for slot, setter in enumerate(setters or ()):
        namespace[f"S{slot}"] = setter
    for index, (kind, _, reader) in enumerate(fields):
        if kind in (GENERIC, SKIP):
            namespace[f"R{index}"] = reader
    exec(code, namespace)
    generated: Reader = namespace["read_structs" if many else "read_struct"]
    return generated


_Layout = tuple[tuple[tuple[int, int], ...], tuple[str, ...], bool]


def _zero_source(slot: int, zero: Any) -> str:
    """A zero value as source: a literal for scalars and (), else the global ``Z<slot>``."""
    if type(zero) in (bool, int, float, str, bytes, type(None)) or (
        type(zero) is tuple and not zero
    ):
        literal = repr(zero)
        if literal not in ("nan", "inf", "-inf"):
            return literal
    return f"Z{slot}"


_code_cache: dict[tuple[_Layout, bool, int | None], CodeType] = {}


def _compiled(layout: _Layout, many: bool, length: int | None) -> CodeType:
    """The code defining the reader for one layout, generated and compiled once."""
    key = (layout, many, length)
    code = _code_cache.get(key)
    if code is None:
        if len(_code_cache) > 4096:  # bound what a stream of odd layouts can make us keep
            _code_cache.clear()
        code = _code_cache[key] = compile(_source(layout, many, length), "<gob>", "exec")
    return code


def _source(layout: _Layout, many: bool, length: int | None) -> str:
    body = _struct_body(layout)
    if not many:
        return "def read_struct(msg, pos):\n    end = len(msg)\n" + body + "    return o, pos\n"
    lines = ["def read_structs(msg, pos):\n", "    end = len(msg)\n", _COUNT]
    if length is not None:
        lines.append(_LENGTH_CHECK.format(length=length))
    lines.append("    items = []\n    append = items.append\n    for _ in range(n):\n")
    lines.append(_indent(body))
    lines.append("        append(o)\n    return tuple(items), pos\n")
    return "".join(lines)


_COUNT = """\
    n = msg[pos]
    pos += 1
    if n >= 0x80:
        n, pos = long_uint(msg, pos, n)
    if n > end - pos:
        raise DecodeFailure("slice count " + str(n) + " exceeds the data left in its message", pos)
"""

_LENGTH_CHECK = """\
    if n != {length}:
        raise DecodeFailure("array of length {length} received with " + str(n) + " items", pos)
"""


def _struct_body(layout: _Layout) -> str:
    """Source that reads one struct at ``pos`` into ``o`` (indented for a function body)."""
    fields, zero_sources, fill_slots = layout
    count = len(zero_sources)
    lines = [f"    v{slot} = {source}\n" for slot, source in enumerate(zero_sources)]
    lines.append(_NEXT_DELTA.format(current=-1))
    for index, (kind, slot) in enumerate(fields):
        lines.append(f"    if nxt == {index}:\n")
        lines.append(_field_code(index, kind, slot))
        lines.append(_indent(_NEXT_DELTA.format(current=index)))
    lines.append("    if nxt != -2:\n")
    lines.append('        raise DecodeFailure("field number " + str(nxt) + " out of range", pos)\n')
    if fill_slots:
        # A frozen dataclass's __init__ assigns through object.__setattr__, which
        # costs more than reading the struct did; filling the slots directly
        # gives the same object (see _slot_setters for when that is allowed).
        lines.append("    o = new(C)\n")
        lines.extend(f"    S{slot}(o, v{slot})\n" for slot in range(count))
    else:
        lines.append(f"    o = C({', '.join(f'v{slot}' for slot in range(count))})\n")
    return "".join(lines)


_setters_cache: dict[type[Any], list[Any] | None] = {}


def _slot_setters(cls: type[Any]) -> list[Any] | None:
    """The slot setters of ``cls``'s __init__ arguments, in order, if filling them is safe:
    a slots dataclass without ``__post_init__`` whose every field is an __init__ argument."""
    if cls in _setters_cache:
        return _setters_cache[cls]
    setters = None
    if dataclasses.is_dataclass(cls) and not hasattr(cls, "__post_init__"):
        fields = dataclasses.fields(cls)
        slots = cls.__dict__.get("__slots__", ())
        if all(f.init and f.name in slots for f in fields):
            setters = [cls.__dict__[f.name].__set__ for f in fields]
    _setters_cache[cls] = setters
    return setters


def _indent(code: str) -> str:
    return "".join("    " + line if line.strip() else line for line in code.splitlines(True))
