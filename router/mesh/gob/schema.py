"""Describing Go types to the gob codec.

Gob is self-describing on the wire but Python is not statically typed the way
Go is, so both directions need a schema: a tree of :class:`GobType` objects that
says, for each value, which Go type it stands for. The schema decides

* how a Python value is written (``UINT16`` range-checks, a ``Struct`` writes
  its fields in declaration order and leaves out zero ones, as Go does);
* which wire types a received value may have (Go's compatibility rules: an int
  field accepts only gob ``int``, a struct field only a struct definition, ...);
* which names go into the type definitions the encoder sends. Go names a gob
  type after the ``reflect`` name or string of the Go type that first needed
  it, so every composite carries its Go spelling: ``Struct("mesh.peerSummary",
  ...)`` is named ``peerSummary`` when sent at top level and makes a field of
  type ``[]peerSummary`` be named ``[]mesh.peerSummary``. Named scalar types
  (``type PeerName uint64``) are plain ``uint`` on the wire; ``UINT64.named(
  "mesh.PeerName")`` matters only inside such spellings.

Python values: ``bool``, ``int``, ``float``, ``str`` (UTF-8 on the wire;
bytes that are not UTF-8 round-trip through ``surrogateescape``), ``bytes``,
``tuple`` for slices and arrays (any sequence is accepted when encoding),
``dict`` for maps, and frozen dataclasses for structs. A struct field of map
type is ``None`` when Go's map is nil (not sent) and a dict otherwise (an empty
non-nil map *is* sent, and receivers such as IPAM tell the two apart); a
``Ptr`` field is ``None`` when nil. Elsewhere pointers are transparent, as gob
flattens them.

Schemas are immutable trees, so they cannot describe recursive Go types; the
decoder still skips recursive types it receives in fields the schema lacks.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Sequence
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


class Kind(enum.Enum):
    """What a schema node is; scalars map one to one onto gob's builtin types."""

    BOOL = "bool"
    INT = "int"
    UINT = "uint"
    FLOAT = "float"
    STRING = "string"
    BYTES = "bytes"
    SLICE = "slice"
    ARRAY = "array"
    MAP = "map"
    STRUCT = "struct"
    PTR = "ptr"


SCALAR_KINDS = frozenset({Kind.BOOL, Kind.INT, Kind.UINT, Kind.FLOAT, Kind.STRING, Kind.BYTES})


def _split_qualname(qualname: str) -> tuple[str, str]:
    """``"mesh.PeerName"`` -> (reflect Name, reflect String) = ("PeerName", "mesh.PeerName")."""
    return qualname.rpartition(".")[2], qualname


class GobType(Generic[T]):
    """A Go type as the codec sees it.

    ``go_name`` is what Go's ``reflect.Type.Name()`` returns ("" for unnamed
    types such as ``[]int``), ``go_string`` what ``String()`` returns
    (``"[]mesh.PeerName"``). Schema objects compare by identity.
    """

    __slots__ = ("go_name", "go_string", "kind")

    def __init__(self, kind: Kind, go_name: str, go_string: str) -> None:
        self.kind = kind
        self.go_name = go_name
        self.go_string = go_string

    def __repr__(self) -> str:
        return f"<gob {self.kind.value} {self.go_string}>"


class Scalar(GobType[T]):
    """bool, a signed or unsigned integer of ``bits`` bits, float64, string or []byte."""

    __slots__ = ("bits",)

    def __init__(self, kind: Kind, go_string: str, bits: int = 0) -> None:
        if kind not in SCALAR_KINDS:
            raise TypeError(f"{kind} is not a scalar kind")
        name = "" if kind is Kind.BYTES else go_string
        super().__init__(kind, name, go_string)
        self.bits = bits

    def named(self, qualname: str) -> Scalar[T]:
        """The same wire type under a Go type name, e.g. ``UINT64.named("mesh.PeerName")``."""
        copy: Scalar[T] = Scalar(self.kind, qualname, self.bits)
        copy.go_name, copy.go_string = _split_qualname(qualname)
        return copy


BOOL: Scalar[bool] = Scalar(Kind.BOOL, "bool")
INT8: Scalar[int] = Scalar(Kind.INT, "int8", 8)
INT16: Scalar[int] = Scalar(Kind.INT, "int16", 16)
INT32: Scalar[int] = Scalar(Kind.INT, "int32", 32)
INT64: Scalar[int] = Scalar(Kind.INT, "int64", 64)
INT: Scalar[int] = Scalar(Kind.INT, "int", 64)
UINT8: Scalar[int] = Scalar(Kind.UINT, "uint8", 8)
UINT16: Scalar[int] = Scalar(Kind.UINT, "uint16", 16)
UINT32: Scalar[int] = Scalar(Kind.UINT, "uint32", 32)
UINT64: Scalar[int] = Scalar(Kind.UINT, "uint64", 64)
UINT: Scalar[int] = Scalar(Kind.UINT, "uint", 64)
FLOAT64: Scalar[float] = Scalar(Kind.FLOAT, "float64", 64)
STRING: Scalar[str] = Scalar(Kind.STRING, "string")
BYTES: Scalar[bytes] = Scalar(Kind.BYTES, "[]uint8")


class Ptr(GobType[T | None]):
    """``*T``: None is Go's nil, which a struct leaves out; elsewhere a pointer is its target."""

    __slots__ = ("elem",)

    def __init__(self, elem: GobType[T]) -> None:
        super().__init__(Kind.PTR, "", "*" + elem.go_string)
        self.elem: GobType[Any] = elem


def base_of(t: GobType[Any]) -> GobType[Any]:
    """The type under any pointers (gob sends ``**T`` as ``T``)."""
    while isinstance(t, Ptr):
        t = t.elem
    return t


class SliceOf(GobType[tuple[T, ...]]):
    """``[]T`` (or a named slice type with ``named="pkg.Name"``); decodes to a tuple."""

    __slots__ = ("elem",)

    def __init__(self, elem: GobType[T], *, named: str = "") -> None:
        if base_of(elem) is UINT8:
            raise TypeError("[]uint8 is gob's bytes type: use BYTES")
        name, string = _split_qualname(named) if named else ("", "[]" + elem.go_string)
        super().__init__(Kind.SLICE, name, string)
        self.elem: GobType[Any] = elem


class ArrayOf(GobType[tuple[T, ...]]):
    """``[N]T``; decodes to a tuple of exactly ``length`` items."""

    __slots__ = ("elem", "length")

    def __init__(self, elem: GobType[T], length: int, *, named: str = "") -> None:
        if length < 0:
            raise ValueError("array length must not be negative")
        default = f"[{length}]{elem.go_string}"
        name, string = _split_qualname(named) if named else ("", default)
        super().__init__(Kind.ARRAY, name, string)
        self.elem: GobType[Any] = elem
        self.length = length


def _comparable(t: GobType[Any]) -> bool:
    """Whether Go allows ``t`` as a map key (so its Python value is hashable too)."""
    t = base_of(t)
    if isinstance(t, Scalar):
        return t.kind is not Kind.BYTES
    if isinstance(t, ArrayOf):
        return _comparable(t.elem)
    if isinstance(t, Struct):
        return all(_comparable(f.type) for f in t.fields)
    return False


class MapOf(GobType[dict[K, V]]):
    """``map[K]V``; decodes to a dict in the order the sender wrote the entries."""

    __slots__ = ("elem", "key")

    def __init__(self, key: GobType[K], elem: GobType[V], *, named: str = "") -> None:
        if not _comparable(key):
            raise TypeError(f"{key.go_string} cannot be a Go map key")
        default = f"map[{key.go_string}]{elem.go_string}"
        name, string = _split_qualname(named) if named else ("", default)
        super().__init__(Kind.MAP, name, string)
        self.key: GobType[Any] = key
        self.elem: GobType[Any] = elem


@dataclasses.dataclass(frozen=True)
class Field:
    """One exported Go struct field: its Go name, type, and the Python attribute holding it."""

    go_name: str
    type: GobType[Any]
    attr: str


_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(go_name: str) -> str:
    """``"RemoteTCPAddr"`` -> ``"remote_tcp_addr"``, ``"UID"`` -> ``"uid"``."""
    return _CAMEL_BOUNDARY.sub("_", go_name).lower()


FieldSpec = tuple[str, GobType[Any]] | tuple[str, GobType[Any], str]


class Struct(GobType[T]):
    """A Go struct: its exported fields in declaration order, mapped onto a dataclass.

    ``fields`` are ``(GoName, type)`` pairs, the attribute being
    ``snake_case(GoName)``, or ``(GoName, type, attr)`` triples. ``cls`` must be
    a dataclass whose ``__init__`` takes exactly those attributes (in any
    order); without one a frozen dataclass is made. Unexported Go fields are
    never sent, so they are simply not listed.
    """

    __slots__ = ("_zero", "cls", "fields", "init_slot")

    @overload
    def __init__(self: Struct[Any], qualname: str, fields: Sequence[FieldSpec]) -> None: ...

    @overload
    def __init__(self, qualname: str, fields: Sequence[FieldSpec], cls: type[T]) -> None: ...

    def __init__(
        self, qualname: str, fields: Sequence[FieldSpec], cls: type[T] | None = None
    ) -> None:
        name, string = _split_qualname(qualname)
        super().__init__(Kind.STRUCT, name, string)
        self.fields = tuple(_make_field(spec) for spec in fields)
        go_names = [f.go_name for f in self.fields]
        if len(set(go_names)) != len(go_names):
            raise TypeError(f"{qualname}: duplicate field names")
        for f in self.fields:
            if not f.go_name[:1].isupper():
                raise TypeError(f"{qualname}.{f.go_name}: gob sends exported fields only")
        if cls is None:
            cls = dataclasses.make_dataclass(
                name or "Struct", [(f.attr, Any) for f in self.fields], frozen=True
            )
        assert cls is not None
        self.cls: type[T] = cls
        self.init_slot = _init_slots(qualname, cls, self.fields)
        self._zero: T | None = None

    @property
    def zero(self) -> T:
        """The Go zero value: every field zero (nested structs too, maps and pointers None)."""
        if self._zero is None:
            values: list[Any] = [None] * len(self.fields)
            for f, slot in zip(self.fields, self.init_slot, strict=True):
                values[slot] = zero_value(f.type)
            self._zero = self.cls(*values)
        return self._zero


def _make_field(spec: FieldSpec) -> Field:
    if len(spec) == 2:
        return Field(spec[0], spec[1], snake_case(spec[0]))
    return Field(spec[0], spec[1], spec[2])


def _init_slots(qualname: str, cls: type[Any], fields: tuple[Field, ...]) -> tuple[int, ...]:
    """For each gob field, its position among ``cls.__init__``'s parameters."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{qualname}: {cls!r} is not a dataclass")
    params = [f.name for f in dataclasses.fields(cls) if f.init]
    attrs = [f.attr for f in fields]
    if sorted(params) != sorted(attrs):
        raise TypeError(f"{qualname}: {cls.__name__} fields {params} do not match {attrs}")
    return tuple(params.index(a) for a in attrs)


def zero_value(t: GobType[Any]) -> Any:
    """What a struct field holds when the sender left it out."""
    if isinstance(t, Scalar):
        return _SCALAR_ZERO[t.kind]
    if isinstance(t, SliceOf):
        return ()
    if isinstance(t, ArrayOf):
        return tuple(zero_value(t.elem) for _ in range(t.length))
    if isinstance(t, Struct):
        return t.zero
    return None  # maps and pointers: nil


_SCALAR_ZERO: dict[Kind, Any] = {
    Kind.BOOL: False,
    Kind.INT: 0,
    Kind.UINT: 0,
    Kind.FLOAT: 0.0,
    Kind.STRING: "",
    Kind.BYTES: b"",
}
