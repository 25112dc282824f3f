"""Compiled readers: one function per (schema, received type) pair.

A received value is read against two descriptions: the type the sender defined
on the stream and the schema the caller expects. Go checks they are compatible
once, when it first meets the pair, and compiles a decoding engine; so does
this module. The rules are Go's: a scalar schema accepts only the matching
builtin type; a slice, array or map schema only a slice, array (of the same
length) or map definition whose parts are compatible in turn; a struct schema
any struct definition, its fields matched by name, fields the schema lacks
skipped, fields the sender lacks left at their zero value, and a field present
on both sides but incompatible an error. Pointers are transparent.

Readers take ``(msg, pos)`` and return ``(value, pos)``; skippers take
``(msg, pos, depth)`` and return the position after the value. Both work
within one message (a ``bytes``); reading past its end raises IndexError,
which the decoder turns into :class:`GobError`, and every other problem raises
:class:`~router.mesh.gob.wire.DecodeFailure` with the offset. Skipping is the
only place that follows the sender's types rather than the schema, and
recursive definitions are legal gob, so skippers carry a nesting depth and
refuse to go deeper than :data:`MAX_DEPTH`; schemas themselves are finite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .schema import (
    ArrayOf,
    GobType,
    Kind,
    MapOf,
    Scalar,
    SliceOf,
    Struct,
    base_of,
    zero_value,
)
from .typeids import SCALAR_IDS
from .wire import (
    BYTES_ID,
    COMPLEX_ID,
    FIRST_USER_ID,
    INTERFACE_ID,
    STRING_ID,
    DecodeFailure,
    WireType,
    describe,
    long_uint,
    read_uint,
    uint_to_float,
)

Reader = Callable[[bytes, int], tuple[Any, int]]
Skipper = Callable[[bytes, int, int], int]

MAX_DEPTH = 100
"""How deeply skipped values, and received type definitions, may nest."""


class IncompatibleType(Exception):
    """The received type cannot be read into the schema's type."""


# --- scalars ------------------------------------------------------------------------


def _read_uint(msg: bytes, pos: int) -> tuple[Any, int]:
    b = msg[pos]
    if b < 0x80:
        return b, pos + 1
    return long_uint(msg, pos + 1, b)


def _read_int(msg: bytes, pos: int) -> tuple[Any, int]:
    b = msg[pos]
    if b >= 0x80:
        b, end = long_uint(msg, pos + 1, b)
    else:
        end = pos + 1
    return (-(b >> 1) - 1 if b & 1 else b >> 1), end


def _read_bool(msg: bytes, pos: int) -> tuple[Any, int]:
    u, pos = read_uint(msg, pos)
    return u != 0, pos


def _read_float(msg: bytes, pos: int) -> tuple[Any, int]:
    u, pos = read_uint(msg, pos)
    return uint_to_float(u), pos


def _read_bytes(msg: bytes, pos: int) -> tuple[Any, int]:
    n = msg[pos]
    pos += 1
    if n >= 0x80:
        n, pos = long_uint(msg, pos, n)
    end = pos + n
    if end > len(msg):
        raise DecodeFailure(f"length {n} runs past the end of its message", pos)
    return msg[pos:end], end


def _read_string(msg: bytes, pos: int) -> tuple[Any, int]:
    raw, pos = _read_bytes(msg, pos)
    return raw.decode("utf-8", "surrogateescape"), pos


def _ranged(read: Reader, t: Scalar[Any]) -> Reader:
    """Go refuses an integer that does not fit the field's width."""
    if t.kind is Kind.INT:
        low, high = -(1 << (t.bits - 1)), (1 << (t.bits - 1)) - 1
    else:
        low, high = 0, (1 << t.bits) - 1

    def read_ranged(msg: bytes, pos: int) -> tuple[Any, int]:
        value, end = read(msg, pos)
        if not low <= value <= high:
            raise DecodeFailure(f"value {value} out of range for {t.go_string}", pos)
        return value, end

    return read_ranged


def scalar_reader(t: Scalar[Any]) -> Reader:
    read: Reader = {
        Kind.BOOL: _read_bool,
        Kind.INT: _read_int,
        Kind.UINT: _read_uint,
        Kind.FLOAT: _read_float,
        Kind.STRING: _read_string,
        Kind.BYTES: _read_bytes,
    }[t.kind]
    if t.kind in (Kind.INT, Kind.UINT) and t.bits < 64:
        return _ranged(read, t)
    return read


def _skip_uint(msg: bytes, pos: int, depth: int) -> int:
    b = msg[pos]
    if b < 0x80:
        return pos + 1
    return long_uint(msg, pos + 1, b)[1]


def _skip_two_uints(msg: bytes, pos: int, depth: int) -> int:
    return _skip_uint(msg, _skip_uint(msg, pos, depth), depth)


def _skip_counted(msg: bytes, pos: int, depth: int) -> int:
    return _read_bytes(msg, pos)[1]


def _count(msg: bytes, pos: int, per_item: int, what: str) -> tuple[int, int]:
    """A slice or map count, refused if its items could not fit in the message."""
    n = msg[pos]
    pos += 1
    if n >= 0x80:
        n, pos = long_uint(msg, pos, n)
    if n * per_item > len(msg) - pos:
        raise DecodeFailure(f"{what} count {n} exceeds the data left in its message", pos)
    return n, pos


# --- the compiler -------------------------------------------------------------------------


class Plans:
    """Readers and skippers for the types defined on one stream, compiled on first use."""

    def __init__(self, wire_types: dict[int, WireType]) -> None:
        self._wire_types = wire_types
        self._readers: dict[tuple[GobType[Any], int], Reader] = {}
        self._matched: dict[tuple[GobType[Any], int], int] = {}
        self._skippers: dict[int, Skipper] = {}

    def describe(self, type_id: int) -> str:
        return describe(type_id, self._wire_types)

    def reader(self, t: GobType[Any], type_id: int) -> Reader:
        """How to read a value of schema ``t`` sent as type ``type_id``."""
        t = base_of(t)
        key = (t, type_id)
        found = self._readers.get(key)
        if found is None:
            found = self._readers[key] = self._compile(t, type_id)
        return found

    def fields_matched(self, t: Struct[Any], type_id: int) -> int:
        """How many of a received struct's fields ``t`` knows (after ``reader``)."""
        return self._matched[(t, type_id)]

    def _wire(self, t: GobType[Any], type_id: int, kind: str) -> WireType:
        wire = self._wire_types.get(type_id)
        if wire is None or wire.kind != kind:
            raise IncompatibleType(f"expected {t.go_string}, received {self.describe(type_id)}")
        return wire

    def _compile(self, t: GobType[Any], type_id: int) -> Reader:
        if isinstance(t, Scalar):
            if type_id != SCALAR_IDS[t.kind]:
                raise IncompatibleType(f"expected {t.go_string}, received {self.describe(type_id)}")
            return scalar_reader(t)
        if isinstance(t, SliceOf):
            wire = self._wire(t, type_id, "slice")
            return _sequence_reader(self.reader(t.elem, wire.elem), None, t.go_string)
        if isinstance(t, ArrayOf):
            wire = self._wire(t, type_id, "array")
            if wire.length != t.length:
                raise IncompatibleType(
                    f"expected {t.go_string}, received an array of length {wire.length}"
                )
            return _sequence_reader(self.reader(t.elem, wire.elem), t.length, t.go_string)
        if isinstance(t, MapOf):
            wire = self._wire(t, type_id, "map")
            return _map_reader(self.reader(t.key, wire.key), self.reader(t.elem, wire.elem))
        if isinstance(t, Struct):
            return self._struct_reader(t, type_id)
        raise TypeError(f"cannot decode {t!r}")  # pragma: no cover

    def _struct_reader(self, t: Struct[Any], type_id: int) -> Reader:
        wire = self._wire(t, type_id, "struct")
        by_name = {f.go_name: (f, slot) for f, slot in zip(t.fields, t.init_slot, strict=True)}
        readers: list[Reader] = []
        slots: list[int] = []
        kinds: list[int] = []
        for name, field_id in wire.fields:
            if not name:
                raise IncompatibleType(f"a field of received struct {wire.name} has no name")
            known = by_name.get(name)
            if known is None:
                readers.append(_discarding(self.skipper(field_id)))
                slots.append(-1)
                kinds.append(_GENERIC)
                continue
            field, slot = known
            try:
                readers.append(self.reader(field.type, field_id))
            except IncompatibleType as err:
                raise IncompatibleType(f"field {t.go_string}.{name}: {err}") from None
            slots.append(slot)
            kinds.append(inline_kind(field.type))
        self._matched[(t, type_id)] = sum(1 for s in slots if s >= 0)
        zeros = [None] * len(t.fields)
        for field, slot in zip(t.fields, t.init_slot, strict=True):
            zeros[slot] = zero_value(field.type)
        return _struct_reader(t.cls, zeros, readers, slots, kinds)

    def skipper(self, type_id: int, depth: int = 0) -> Skipper:
        """How to step over a value of ``type_id`` that the schema has no place for."""
        found = self._skippers.get(type_id)
        if found is not None:
            return found
        if depth > MAX_DEPTH:
            raise IncompatibleType("received type definitions nest too deeply")
        cell: list[Skipper] = []

        def deferred(msg: bytes, pos: int, d: int) -> int:  # resolves a recursive type
            return cell[0](msg, pos, d)

        self._skippers[type_id] = deferred
        try:
            skip = self._build_skipper(type_id, depth)
        except BaseException:
            del self._skippers[type_id]
            raise
        cell.append(skip)
        self._skippers[type_id] = skip
        return skip

    def _build_skipper(self, type_id: int, depth: int) -> Skipper:
        if type_id < FIRST_USER_ID:
            if type_id in (1, 2, 3, 4):
                return _skip_uint
            if type_id in (BYTES_ID, STRING_ID):
                return _skip_counted
            if type_id == COMPLEX_ID:
                return _skip_two_uints
            if type_id == INTERFACE_ID:
                raise IncompatibleType("interface values are not supported")
            raise IncompatibleType(f"cannot skip builtin type {type_id}")
        wire = self._wire_types.get(type_id)
        if wire is None:
            raise IncompatibleType(f"undefined type {type_id}")
        if wire.kind == "struct":
            fields = [self.skipper(field_id, depth + 1) for _, field_id in wire.fields]
            return _struct_skipper(fields)
        if wire.kind in ("slice", "array"):
            length = wire.length if wire.kind == "array" else None
            return _sequence_skipper(self.skipper(wire.elem, depth + 1), length)
        if wire.kind == "map":
            key = self.skipper(wire.key, depth + 1)
            return _map_skipper(key, self.skipper(wire.elem, depth + 1))
        return _skip_counted  # GobEncoder and Binary/TextMarshaler values: counted bytes


def _discarding(skip: Skipper) -> Reader:
    def read_discarded(msg: bytes, pos: int) -> tuple[Any, int]:
        return None, skip(msg, pos, 0)

    return read_discarded


# Field kinds a struct reader decodes inline rather than through a reader call.
_GENERIC, _INLINE_UINT, _INLINE_INT, _INLINE_BOOL, _INLINE_BYTES, _INLINE_STRING = range(6)


def inline_kind(t: GobType[Any]) -> int:
    """Which inline path of ``_struct_reader`` can decode a field of schema ``t``."""
    t = base_of(t)
    if not isinstance(t, Scalar):
        return _GENERIC
    if t.kind is Kind.UINT and t.bits == 64:
        return _INLINE_UINT
    if t.kind is Kind.INT and t.bits == 64:
        return _INLINE_INT
    return {Kind.BOOL: _INLINE_BOOL, Kind.BYTES: _INLINE_BYTES, Kind.STRING: _INLINE_STRING}.get(
        t.kind, _GENERIC
    )


def _struct_reader(
    cls: type[Any], zeros: list[Any], readers: list[Reader], slots: list[int], kinds: list[int]
) -> Reader:
    nfields = len(readers)

    def read_struct(msg: bytes, pos: int) -> tuple[Any, int]:
        values = zeros.copy()
        field = -1
        end = len(msg)
        while pos < end:  # as in Go, the end of the message also ends a struct
            delta = msg[pos]
            pos += 1
            if delta >= 0x80:
                delta, pos = long_uint(msg, pos, delta)
            if delta == 0:
                break
            field += delta
            if field >= nfields:
                raise DecodeFailure(f"field number {field} out of range", pos)
            kind = kinds[field]
            if kind == _GENERIC:
                value, pos = readers[field](msg, pos)
            else:
                # Every inline kind starts with an unsigned integer.
                value = msg[pos]
                pos += 1
                if value >= 0x80:
                    value, pos = long_uint(msg, pos, value)
                if kind >= _INLINE_BYTES:
                    stop = pos + value
                    if stop > end:
                        raise DecodeFailure(f"length {value} runs past the end of its message", pos)
                    value = msg[pos:stop]
                    pos = stop
                    if kind == _INLINE_STRING:
                        value = value.decode("utf-8", "surrogateescape")
                elif kind == _INLINE_BOOL:
                    value = value != 0
                elif kind == _INLINE_INT:
                    value = -(value >> 1) - 1 if value & 1 else value >> 1
            slot = slots[field]
            if slot >= 0:
                values[slot] = value
        return cls(*values), pos

    return read_struct


def _sequence_reader(read_elem: Reader, length: int | None, what: str) -> Reader:
    def read_sequence(msg: bytes, pos: int) -> tuple[Any, int]:
        n, pos = _count(msg, pos, 1, what)
        if length is not None and n != length:
            raise DecodeFailure(f"{what} received with {n} items", pos)
        items: list[Any] = []
        append = items.append
        for _ in range(n):
            item, pos = read_elem(msg, pos)
            append(item)
        return tuple(items), pos

    return read_sequence


def _map_reader(read_key: Reader, read_elem: Reader) -> Reader:
    def read_map(msg: bytes, pos: int) -> tuple[Any, int]:
        n, pos = _count(msg, pos, 2, "map")
        out = {}
        for _ in range(n):
            key, pos = read_key(msg, pos)
            out[key], pos = read_elem(msg, pos)
        return out, pos

    return read_map


def _nested(pos: int, depth: int) -> None:
    if depth >= MAX_DEPTH:
        raise DecodeFailure("skipped values nest too deeply", pos)


def _struct_skipper(fields: list[Skipper]) -> Skipper:
    def skip_struct(msg: bytes, pos: int, depth: int) -> int:
        _nested(pos, depth)
        field = -1
        while pos < len(msg):
            delta, pos = read_uint(msg, pos)
            if delta == 0:
                break
            field += delta
            if field >= len(fields):
                raise DecodeFailure(f"field number {field} out of range", pos)
            pos = fields[field](msg, pos, depth + 1)
        return pos

    return skip_struct


def _sequence_skipper(skip_elem: Skipper, length: int | None) -> Skipper:
    def skip_sequence(msg: bytes, pos: int, depth: int) -> int:
        _nested(pos, depth)
        n, pos = _count(msg, pos, 1, "slice")
        if length is not None and n != length:
            raise DecodeFailure(f"array of length {length} received with {n} items", pos)
        for _ in range(n):
            pos = skip_elem(msg, pos, depth + 1)
        return pos

    return skip_sequence


def _map_skipper(skip_key: Skipper, skip_elem: Skipper) -> Skipper:
    def skip_map(msg: bytes, pos: int, depth: int) -> int:
        _nested(pos, depth)
        n, pos = _count(msg, pos, 2, "map")
        for _ in range(n):
            pos = skip_elem(msg, skip_key(msg, pos, depth + 1), depth + 1)
        return pos

    return skip_map
