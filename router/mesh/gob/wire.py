"""Gob's wire primitives and its type definitions.

Integers: an unsigned value below 128 is one byte; a larger one is a byte
holding the negated byte count (0xff = 1 byte ... 0xf8 = 8 bytes) followed by
the value big-endian. A signed value is folded into an unsigned one first:
``n >= 0`` -> ``2n``, ``n < 0`` -> ``2(-n-1) + 1``. A float64 is sent as the
unsigned integer of its IEEE bits with the bytes reversed (so small integral
floats are short). Strings and []byte are a count then the bytes.

A stream is a sequence of messages, each a count then that many bytes. A
message begins with a signed type id: a negative id ``-n`` means the rest of the
message defines type ``n`` (a ``wireType`` struct); a positive id means a value
of that type follows. Ids below 64 are builtin (1 bool, 2 int, 3 uint, 4 float,
5 []byte, 6 string, 7 complex, 8 interface, 16-23 gob's own definition types);
the sender numbers its own types from 64 (Go 1.21 and later) or 65 (earlier Go,
such as the Go 1.15 that built weave 2.8.1).

A ``wireType`` is itself gob-encoded as a struct with one of these fields set:
0 ``ArrayT{CommonType, Elem, Len}``, 1 ``SliceT{CommonType, Elem}``, 2
``StructT{CommonType, Field []{Name, Id}}``, 3 ``MapT{CommonType, Key, Elem}``,
4 ``GobEncoderT``, 5 ``BinaryMarshalerT``, 6 ``TextMarshalerT`` (each just a
``CommonType{Name, Id}``). This module writes and reads those definitions with
hand-written code rather than through the generic codec: they are fixed, and
the decoder must be able to read them before it knows any other type.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from typing import Any

BOOL_ID = 1
INT_ID = 2
UINT_ID = 3
FLOAT_ID = 4
BYTES_ID = 5
STRING_ID = 6
COMPLEX_ID = 7
INTERFACE_ID = 8
FIRST_USER_ID = 64
"""The lowest id a sender may define (Go's ``firstUserId``)."""

BUILTIN_NAMES = {
    BOOL_ID: "bool",
    INT_ID: "int",
    UINT_ID: "uint",
    FLOAT_ID: "float",
    BYTES_ID: "bytes",
    STRING_ID: "string",
    COMPLEX_ID: "complex",
    INTERFACE_ID: "interface",
}

MAX_UINT64 = (1 << 64) - 1

# The wireType field that carries each kind of definition, in field order.
WIRE_KINDS = (
    "array",
    "slice",
    "struct",
    "map",
    "gob_encoder",
    "binary_marshaler",
    "text_marshaler",
)


class DecodeFailure(Exception):
    """Raised inside a message with the offset in it; the decoder adds context."""

    def __init__(self, cause: str, pos: int) -> None:
        super().__init__(cause)
        self.cause = cause
        self.pos = pos


@dataclasses.dataclass(frozen=True, slots=True)
class WireType:
    """One type definition as sent: ``kind`` is one of ``WIRE_KINDS``.

    ``elem``/``key`` are type ids, ``length`` is an array's length and
    ``fields`` a struct's (name, type id) pairs in field-number order.
    """

    kind: str
    name: str
    elem: int = 0
    key: int = 0
    length: int = 0
    fields: tuple[tuple[str, int], ...] = ()


# --- integers -----------------------------------------------------------------


def put_uint(buf: bytearray, x: int) -> None:
    """Append gob's encoding of the unsigned integer ``x`` (0 <= x < 2**64)."""
    if x < 0x80:
        buf.append(x)
    else:
        n = (x.bit_length() + 7) >> 3
        buf.append(256 - n)
        buf += x.to_bytes(n, "big")


def zigzag(i: int) -> int:
    """Gob's fold of a signed integer into an unsigned one."""
    return ((-i - 1) << 1) | 1 if i < 0 else i << 1


def unzigzag(u: int) -> int:
    return -(u >> 1) - 1 if u & 1 else u >> 1


def put_int(buf: bytearray, i: int) -> None:
    put_uint(buf, zigzag(i))


def long_uint(msg: bytes, pos: int, first: int) -> tuple[int, int]:
    """Finish an unsigned integer whose first byte ``first`` (>= 0x80) is at ``pos - 1``."""
    n = 256 - first
    if n > 8:
        raise DecodeFailure(f"invalid integer length byte {first:#04x}", pos - 1)
    end = pos + n
    if end > len(msg):
        raise DecodeFailure("integer runs past the end of its message", pos - 1)
    return int.from_bytes(msg[pos:end], "big"), end


def read_uint(msg: bytes, pos: int) -> tuple[int, int]:
    """Read an unsigned integer at ``pos``; IndexError at the end of ``msg``."""
    b = msg[pos]
    if b < 0x80:
        return b, pos + 1
    return long_uint(msg, pos + 1, b)


def read_int(msg: bytes, pos: int) -> tuple[int, int]:
    u, pos = read_uint(msg, pos)
    return unzigzag(u), pos


_DOUBLE = struct.Struct(">d")


def float_to_uint(f: float) -> int:
    """A float64's IEEE bits, bytes reversed, as gob sends them."""
    return int.from_bytes(_DOUBLE.pack(f), "little")


def uint_to_float(u: int) -> float:
    value: float = _DOUBLE.unpack(u.to_bytes(8, "little"))[0]
    return value


def read_counted(msg: bytes, pos: int) -> tuple[bytes, int]:
    """A count then that many bytes (gob's string and []byte)."""
    n, pos = read_uint(msg, pos)
    end = pos + n
    if end > len(msg):
        raise DecodeFailure(f"length {n} runs past the end of its message", pos)
    return msg[pos:end], end


# --- writing definitions -----------------------------------------------------------


def encode_definition(type_id: int, wire: WireType) -> bytes:
    """The body of the message that defines ``type_id`` (without its length)."""
    buf = bytearray()
    put_int(buf, -type_id)
    put_uint(buf, WIRE_KINDS.index(wire.kind) + 1)  # the one wireType field set
    put_uint(buf, 1)  # CommonType, field 0 of every definition struct
    _put_common(buf, wire.name, type_id)
    last = 0
    for number, value in _definition_fields(wire):
        if value:
            put_uint(buf, number - last)
            last = number
            if number == 1 and wire.kind == "struct":
                _put_struct_fields(buf, wire.fields)
            else:
                put_int(buf, value)  # type ids and lengths are Go ints
    buf.append(0)  # end of the definition struct
    buf.append(0)  # end of wireType
    return bytes(buf)


def _definition_fields(wire: WireType) -> list[tuple[int, Any]]:
    """The definition struct's fields after CommonType (field 0), by field number."""
    if wire.kind == "array":
        return [(1, wire.elem), (2, wire.length)]
    if wire.kind == "slice":
        return [(1, wire.elem)]
    if wire.kind == "struct":
        return [(1, wire.fields)]
    if wire.kind == "map":
        return [(1, wire.key), (2, wire.elem)]
    return []


def _put_common(buf: bytearray, name: str, type_id: int) -> None:
    last = -1
    if name:
        put_uint(buf, 0 - last)
        last = 0
        raw = name.encode("utf-8", "surrogateescape")
        put_uint(buf, len(raw))
        buf += raw
    put_uint(buf, 1 - last)
    put_int(buf, type_id)
    buf.append(0)


def _put_struct_fields(buf: bytearray, fields: tuple[tuple[str, int], ...]) -> None:
    put_uint(buf, len(fields))
    for name, type_id in fields:
        last = -1
        if name:
            raw = name.encode("utf-8", "surrogateescape")
            buf.append(1)
            put_uint(buf, len(raw))
            buf += raw
            last = 0
        if type_id:
            put_uint(buf, 1 - last)
            put_int(buf, type_id)
        buf.append(0)


# --- reading definitions ------------------------------------------------------------

# A reader for one field of a fixed struct: (msg, pos) -> (value, pos).
_FieldReader = Callable[[bytes, int], tuple[Any, int]]


def _read_fixed_struct(
    msg: bytes, pos: int, readers: tuple[_FieldReader, ...], what: str
) -> tuple[dict[int, Any], int]:
    """Read a struct of known layout, returning {field number: value}.

    As in Go, the end of the message also ends the struct.
    """
    values: dict[int, Any] = {}
    field = -1
    while pos < len(msg):
        delta, pos = read_uint(msg, pos)
        if delta == 0:
            break
        field += delta
        if field >= len(readers):
            raise DecodeFailure(f"field number {field} out of range in {what}", pos)
        values[field], pos = readers[field](msg, pos)
    return values, pos


def _read_name(msg: bytes, pos: int) -> tuple[str, int]:
    raw, pos = read_counted(msg, pos)
    return raw.decode("utf-8", "surrogateescape"), pos


def _read_common(msg: bytes, pos: int) -> tuple[str, int]:
    values, pos = _read_fixed_struct(msg, pos, (_read_name, read_int), "CommonType")
    # The Id inside is redundant with the message's own id; Go ignores it too.
    return values.get(0, ""), pos


def _read_field_list(msg: bytes, pos: int) -> tuple[tuple[tuple[str, int], ...], int]:
    count, pos = read_uint(msg, pos)
    if count > len(msg) - pos:
        raise DecodeFailure(f"field count {count} exceeds the message", pos)
    fields = []
    for _ in range(count):
        values, pos = _read_fixed_struct(msg, pos, (_read_name, read_int), "fieldType")
        fields.append((values.get(0, ""), values.get(1, 0)))
    return tuple(fields), pos


_DEFINITION_LAYOUTS: dict[str, tuple[_FieldReader, ...]] = {
    "array": (_read_common, read_int, read_int),
    "slice": (_read_common, read_int),
    "struct": (_read_common, _read_field_list),
    "map": (_read_common, read_int, read_int),
    "gob_encoder": (_read_common,),
    "binary_marshaler": (_read_common,),
    "text_marshaler": (_read_common,),
}


def _definition_reader(kind: str) -> _FieldReader:
    layout = _DEFINITION_LAYOUTS[kind]

    def read(msg: bytes, pos: int) -> tuple[Any, int]:
        values, pos = _read_fixed_struct(msg, pos, layout, f"{kind} definition")
        return (kind, values), pos

    return read


_WIRE_TYPE_READERS = tuple(_definition_reader(kind) for kind in WIRE_KINDS)


_definitions_seen: dict[bytes, WireType] = {}


def decode_definition(msg: bytes, pos: int) -> WireType:
    """Read the ``wireType`` at ``pos``, which must fill the rest of ``msg``.

    Peers send the same few definitions at the start of every stream, so
    definitions already read are remembered (a bounded number of them).
    """
    raw = msg[pos:]
    known = _definitions_seen.get(raw)
    if known is not None:
        return known
    wire = _parse_definition(msg, pos)
    if len(_definitions_seen) >= 1024:
        _definitions_seen.clear()
    _definitions_seen[raw] = wire
    return wire


def _parse_definition(msg: bytes, pos: int) -> WireType:
    values, pos = _read_fixed_struct(msg, pos, _WIRE_TYPE_READERS, "wireType")
    if len(values) != 1:
        raise DecodeFailure(f"type definition sets {len(values)} kinds, not one", pos)
    if pos != len(msg):
        raise DecodeFailure("extra data after a type definition", pos)
    ((kind, fields),) = values.values()
    name = fields.get(0, "")
    if kind == "array":
        length = fields.get(2, 0)
        if length < 0:
            raise DecodeFailure(f"negative array length {length}", pos)
        return WireType(kind, name, elem=fields.get(1, 0), length=length)
    if kind == "slice":
        return WireType(kind, name, elem=fields.get(1, 0))
    if kind == "struct":
        return WireType(kind, name, fields=fields.get(1, ()))
    if kind == "map":
        return WireType(kind, name, key=fields.get(1, 0), elem=fields.get(2, 0))
    return WireType(kind, name)


def describe(type_id: int, wire_types: dict[int, WireType]) -> str:
    """A human-readable name for a wire type id, for error messages."""
    if type_id in BUILTIN_NAMES:
        return BUILTIN_NAMES[type_id]
    wire = wire_types.get(type_id)
    if wire is None:
        return f"undefined type {type_id}"
    return f"{wire.kind} {wire.name or '(unnamed)'} (id {type_id})"
