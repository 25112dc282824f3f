"""A schema-less reader of Go ``encoding/gob`` streams, for annotating captured bytes.

Background (the public gob format, see the ``encoding/gob`` package docs)
--------------------------------------------------------------------------
* unsigned integer: one byte if < 128, else a byte holding the negated byte
  count followed by that many big-endian bytes; signed integer: the unsigned
  value with the sign in bit 0 (``u >> 1``, complemented if bit 0 is set);
  bool/float are unsigned too (floats byte-reversed); strings and ``[]byte``
  are a count and the bytes;
* a stream is a sequence of messages, each ``uint length`` + ``int type id`` +
  payload.  A negative id introduces a type definition (a ``wireType`` value
  for id ``-id``); a positive id a value: struct values as ``(field delta,
  value)*`` ending with delta 0, other values prefixed by a 0 ("singleton") byte;
* slices and arrays are a count and the elements, maps a count and key/element
  pairs, interfaces a type name, type id, byte count and singleton value, and
  ``GobEncoder``/``BinaryMarshaler`` types their marshalled bytes.

Design: type definitions in the stream are collected as they arrive (the
bootstrap ``wireType`` family is hard-coded), so any gob stream of mesh/weave
data can be turned into plain Python values without knowing the Go types.
This is a *debugging aid* for the interop captures, not the agent's codec:
it favours readable output and raises :class:`GobDumpError` on anything odd.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

BASIC = {1: "bool", 2: "int", 3: "uint", 4: "float", 5: "bytes", 6: "string", 7: "complex"}
INTERFACE_ID = 8


class GobDumpError(ValueError):
    """The bytes are not a gob stream this reader understands (message says where)."""


@dataclass(frozen=True)
class TypeDef:
    """One type: ``kind`` is struct/slice/array/map/gobencoder; ids refer to other types."""

    kind: str
    name: str = ""
    fields: tuple[tuple[str, int], ...] = ()
    elem: int = 0
    key: int = 0
    length: int = 0


# The bootstrap types describing type definitions themselves (ids 16-23 as in Go;
# 24 is this module's own id for gobEncoderType, which never appears on the wire).
_BOOTSTRAP: dict[int, TypeDef] = {
    16: TypeDef("struct", "wireType", (("ArrayT", 17), ("SliceT", 19), ("StructT", 20),
                                       ("MapT", 23), ("GobEncoderT", 24),
                                       ("BinaryMarshalerT", 24), ("TextMarshalerT", 24))),
    17: TypeDef("struct", "arrayType", (("CommonType", 18), ("Elem", 2), ("Len", 2))),
    18: TypeDef("struct", "CommonType", (("Name", 6), ("Id", 2))),
    19: TypeDef("struct", "sliceType", (("CommonType", 18), ("Elem", 2))),
    20: TypeDef("struct", "structType", (("CommonType", 18), ("Field", 22))),
    21: TypeDef("struct", "fieldType", (("Name", 6), ("Id", 2))),
    22: TypeDef("slice", "[]fieldType", elem=21),
    23: TypeDef("struct", "mapType", (("CommonType", 18), ("Key", 2), ("Elem", 2))),
    24: TypeDef("struct", "gobEncoderType", (("CommonType", 18),)),
}


class Reader:
    """A cursor over bytes with gob's primitive decoders."""

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.pos = offset

    def take(self, count: int) -> bytes:
        if count < 0 or self.pos + count > len(self.data):
            raise GobDumpError(f"need {count} bytes at offset {self.pos}, have {self.left()}")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def left(self) -> int:
        return len(self.data) - self.pos

    def uint(self) -> int:
        first = self.take(1)[0]
        if first < 0x80:
            return first
        count = 256 - first
        if count > 8:
            raise GobDumpError(f"integer of {count} bytes at offset {self.pos - 1}")
        return int.from_bytes(self.take(count), "big")

    def int(self) -> int:
        raw = self.uint()
        return ~(raw >> 1) if raw & 1 else raw >> 1

    def bytes(self) -> bytes:
        return self.take(self.uint())


@dataclass
class GobMessage:
    """One message of a stream: its span, type id and (for values) the decoded value."""

    offset: int
    length: int
    type_id: int
    value: object = None
    definition: TypeDef | None = None


@dataclass
class GobStream:
    """Decoder state that persists across messages (the types seen so far)."""

    types: dict[int, TypeDef] = field(default_factory=lambda: dict(_BOOTSTRAP))

    def messages(self, data: bytes) -> list[GobMessage]:
        """Decode every message in ``data`` (which must end on a message boundary)."""
        reader = Reader(data)
        out: list[GobMessage] = []
        while reader.left():
            start = reader.pos
            length = reader.uint()
            body = Reader(reader.take(length))
            out.append(self._message(body, start, length))
            if body.left():
                raise GobDumpError(f"{body.left()} unread bytes in message at offset {start}")
        return out

    def _message(self, body: Reader, start: int, length: int) -> GobMessage:
        type_id = body.int()
        if type_id < 0:
            wire = self.value(body, 16)
            definition = self._to_typedef(wire)
            self.types[-type_id] = definition
            return GobMessage(start, length, type_id, wire, definition)
        is_struct = type_id in self.types and self.types[type_id].kind == "struct"
        if not is_struct and body.uint() != 0:
            raise GobDumpError(f"singleton value without 0 prefix at offset {start}")
        return GobMessage(start, length, type_id, self.value(body, type_id))

    def value(self, reader: Reader, type_id: int) -> object:
        """Decode one value of type ``type_id`` (no singleton prefix)."""
        if type_id in BASIC:
            return _basic(reader, BASIC[type_id])
        if type_id == INTERFACE_ID:
            return self._interface(reader)
        typedef = self.types.get(type_id)
        if typedef is None:
            raise GobDumpError(f"unknown type id {type_id} at offset {reader.pos}")
        if typedef.kind == "struct":
            return self._struct(reader, typedef)
        if typedef.kind in ("slice", "array"):
            return [self.value(reader, typedef.elem) for _ in range(reader.uint())]
        if typedef.kind == "map":
            return [
                (self.value(reader, typedef.key), self.value(reader, typedef.elem))
                for _ in range(reader.uint())
            ]
        return reader.bytes()  # gobencoder: the marshalled bytes

    def _struct(self, reader: Reader, typedef: TypeDef) -> dict[str, object]:
        result: dict[str, object] = {}
        index = -1
        while True:
            delta = reader.uint()
            if delta == 0:
                return result
            index += delta
            if index >= len(typedef.fields):
                raise GobDumpError(f"field {index} beyond {typedef.name} at offset {reader.pos}")
            name, field_type = typedef.fields[index]
            result[name] = self.value(reader, field_type)

    def _interface(self, reader: Reader) -> object:
        name = reader.bytes().decode()
        if not name:
            return None
        type_id = reader.int()
        inner = Reader(reader.bytes())
        if inner.uint() != 0:
            raise GobDumpError(f"interface value of {name} without singleton prefix")
        return {"interface": name, "value": self.value(inner, type_id)}

    @staticmethod
    def _to_typedef(wire: object) -> TypeDef:
        if not isinstance(wire, dict) or len(wire) != 1:
            raise GobDumpError(f"type definition with unexpected shape: {wire!r}")
        kind, body = next(iter(wire.items()))
        assert isinstance(body, dict)
        common = body.get("CommonType", {})
        name = str(common.get("Name", "")) if isinstance(common, dict) else ""
        if kind == "StructT":
            fields = body.get("Field", [])
            assert isinstance(fields, list)
            return TypeDef(
                "struct", name, tuple((str(f.get("Name", "")), int(f.get("Id", 0))) for f in fields)
            )
        if kind == "SliceT":
            return TypeDef("slice", name, elem=int(body.get("Elem", 0)))
        if kind == "ArrayT":
            return TypeDef(
                "array", name, elem=int(body.get("Elem", 0)), length=int(body.get("Len", 0))
            )
        if kind == "MapT":
            return TypeDef("map", name, key=int(body.get("Key", 0)), elem=int(body.get("Elem", 0)))
        return TypeDef("gobencoder", name)


def _basic(reader: Reader, kind: str) -> object:
    if kind == "bool":
        return reader.uint() != 0
    if kind == "int":
        return reader.int()
    if kind == "uint":
        return reader.uint()
    if kind == "float":
        return struct.unpack("<d", reader.uint().to_bytes(8, "big"))[0]
    if kind == "bytes":
        return reader.bytes()
    if kind == "string":
        return reader.bytes().decode("utf-8", errors="replace")
    real = struct.unpack("<d", reader.uint().to_bytes(8, "big"))[0]
    imag = struct.unpack("<d", reader.uint().to_bytes(8, "big"))[0]
    return complex(real, imag)


def decode_stream(data: bytes) -> list[GobMessage]:
    """All messages of one self-contained gob stream (one encoder's output)."""
    return GobStream().messages(data)


def jsonable(value: object) -> object:
    """Decoded values with ``bytes`` as hex strings and pairs as lists (for JSON dumps)."""
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
