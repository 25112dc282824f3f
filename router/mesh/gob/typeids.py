"""Which id and name Go gives each gob type.

Go numbers gob types once per *process*, not per stream: the first time any
encoder needs a type, the type and everything it contains get the next free
ids, and every later stream from that process reuses them. Within one build
the order is fixed: a struct takes its id before its fields' types, a slice,
array or map takes its id after its element (and key) types. The name in a
definition is the Go spelling of the type at the place that first needed it:
``reflect`` ``Name()`` at top level and for a slice's element, the field type's
``Name()`` or else ``String()`` for a struct field, and "" for a map's key and
element and an array's element (so a struct first met as a map key is sent
unnamed, exactly as Go does).

:class:`TypeIds` replays that bookkeeping. Give several encoders one instance
to mimic one Go process; a fresh instance per encoder is a process that
encodes nothing else. ``first_id`` is 65 for the Go 1.15 that built weave
2.8.1 and 64 for Go 1.21 and later; decoders accept either, byte-for-byte
equality with a given Go build needs the matching value.
"""

from __future__ import annotations

from typing import Any

from .schema import ArrayOf, GobType, Kind, MapOf, Scalar, SliceOf, Struct, base_of
from .wire import BOOL_ID, BYTES_ID, FLOAT_ID, INT_ID, STRING_ID, UINT_ID, WireType

WEAVE_FIRST_ID = 65
"""The first user type id of the Go release weave 2.8.1 was built with (1.15)."""

SCALAR_IDS = {
    Kind.BOOL: BOOL_ID,
    Kind.INT: INT_ID,
    Kind.UINT: UINT_ID,
    Kind.FLOAT: FLOAT_ID,
    Kind.STRING: STRING_ID,
    Kind.BYTES: BYTES_ID,
}


def field_type_name(t: GobType[Any]) -> str:
    """The name Go gives a type first met as a struct field's type."""
    base = base_of(t)
    return base.go_name or base.go_string


class TypeIds:
    """Go's process-wide gob type table: ids and definitions by Go type.

    Types are keyed by their Go spelling (``go_string`` of the type under any
    pointers), as Go keys them by ``reflect.Type``; two different schemas with
    one spelling are refused rather than confused.
    """

    def __init__(self, first_id: int = WEAVE_FIRST_ID) -> None:
        self._next_id = first_id
        self._ids: dict[str, int] = {}
        self._definitions: dict[str, WireType] = {}
        self._schemas: dict[str, GobType[Any]] = {}

    def id_of(self, t: GobType[Any]) -> int:
        """The id of ``t``, numbering it and all it contains if this is its first use."""
        base = base_of(t)
        return self._build(base, base.go_name)

    def definition(self, t: GobType[Any]) -> WireType | None:
        """What the encoder sends to define ``t``; None for builtin types."""
        base = base_of(t)
        if isinstance(base, Scalar):
            return None
        self.id_of(base)
        return self._definitions[base.go_string]

    def _allocate(self) -> int:
        type_id = self._next_id
        self._next_id += 1
        return type_id

    def _build(self, t: GobType[Any], name: str) -> int:
        t = base_of(t)
        if isinstance(t, Scalar):
            return SCALAR_IDS[t.kind]
        key = t.go_string
        known = self._ids.get(key)
        if known is not None:
            if not same_shape(self._schemas[key], t):
                raise TypeError(f"two different schemas are both spelled {key!r}")
            return known
        self._schemas[key] = t
        if isinstance(t, Struct):
            type_id = self._ids[key] = self._allocate()
            fields = tuple(
                (f.go_name, self._build(f.type, field_type_name(f.type))) for f in t.fields
            )
            self._definitions[key] = WireType("struct", name, fields=fields)
            return type_id
        if isinstance(t, SliceOf):
            elem = self._build(t.elem, t.elem.go_name)
            wire = WireType("slice", name, elem=elem)
        elif isinstance(t, ArrayOf):
            elem = self._build(t.elem, "")
            wire = WireType("array", name, elem=elem, length=t.length)
        elif isinstance(t, MapOf):
            key_id = self._build(t.key, "")
            elem = self._build(t.elem, "")
            wire = WireType("map", name, key=key_id, elem=elem)
        else:  # pragma: no cover - every schema class is handled above
            raise TypeError(f"cannot number {t!r}")
        type_id = self._ids[key] = self._allocate()
        self._definitions[key] = wire
        return type_id


def same_shape(a: GobType[Any], b: GobType[Any]) -> bool:
    """Whether two schemas describe the same Go type (identity aside)."""
    a, b = base_of(a), base_of(b)
    if a is b:
        return True
    if type(a) is not type(b) or a.kind is not b.kind or a.go_string != b.go_string:
        return False
    if isinstance(a, Struct) and isinstance(b, Struct):
        return len(a.fields) == len(b.fields) and all(
            fa.go_name == fb.go_name and same_shape(fa.type, fb.type)
            for fa, fb in zip(a.fields, b.fields, strict=True)
        )
    if isinstance(a, MapOf) and isinstance(b, MapOf):
        return same_shape(a.key, b.key) and same_shape(a.elem, b.elem)
    if isinstance(a, ArrayOf) and isinstance(b, ArrayOf):
        return a.length == b.length and same_shape(a.elem, b.elem)
    if isinstance(a, SliceOf) and isinstance(b, SliceOf):
        return same_shape(a.elem, b.elem)
    return isinstance(a, Scalar)
