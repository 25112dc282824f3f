"""Values as Go holds them, so that ``/report`` and ``weave report -f`` print what Go prints.

Go's ``encoding/json`` and ``text/template`` look at types Python does not have: a nil
slice prints ``null`` in JSON where an empty one prints ``[]``; a map's keys come out
sorted but a struct's fields in declaration order; a nil pointer prints ``<nil>`` and a
missing map key ``<no value>``; a struct reached through a pointer prints as ``{...}`` at
the top and as an address inside another value.  The report is therefore first turned into
a tree of these values (:mod:`router.api.report`), which the JSON encoder
(:mod:`router.api.gojson`), Go's value formatting (:mod:`router.api.gofmt`) and the
template engine (:mod:`router.api.gotemplate`) all read.

Scalars are Python's ``str``, ``bool``, ``int`` (any Go integer type) and ``float``
(float64).  Everything here is an immutable value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any


@dataclass(frozen=True)
class GoNil:
    """A nil pointer or nil interface: JSON ``null``, printed ``<nil>``."""

    type_name: str = "interface {}"
    """The static type (``*paxos.Status``...), for error messages."""


@dataclass(frozen=True)
class NoValue:
    """What a missing map key (or a field of one) gives a template: ``<no value>``."""


NO_VALUE = NoValue()


@dataclass(frozen=True)
class GoTime:
    """A ``time.Time``: JSON is RFC 3339 with nanoseconds, ``%v`` is ``String()``."""

    moment: datetime
    nanos: int = 0
    """Nanoseconds within the second (``datetime`` keeps only microseconds)."""

    @staticmethod
    def zero() -> GoTime:
        return GoTime(datetime(1, 1, 1, tzinfo=UTC), 0)

    @staticmethod
    def parse(text: str) -> GoTime:
        """From RFC 3339 (``2026-12-06T20:22:52.365076447Z``, any fraction length)."""
        head, frac, tail = text, "", ""
        if "." in text:
            head, rest = text.split(".", 1)
            digits = len(rest) - len(rest.lstrip("0123456789"))
            frac, tail = rest[:digits], rest[digits:]
        else:
            for mark in ("Z", "+", "-"):
                cut = text.find(mark, 19)
                if cut >= 0:
                    head, tail = text[:cut], text[cut:]
                    break
        try:
            moment = datetime.fromisoformat(head + ("+00:00" if tail == "Z" else tail))
        except ValueError as exc:
            raise ValueError(f"not an RFC 3339 time: {text!r}") from exc
        if moment.tzinfo is None:
            raise ValueError(f"not an RFC 3339 time (no zone): {text!r}")
        return GoTime(moment, int((frac + "000000000")[:9]))

    def rfc3339(self) -> str:
        """Go's ``MarshalJSON`` text (RFC 3339, trailing zeros of the fraction cut)."""
        stamp = self.moment.strftime("%Y-%m-%dT%H:%M:%S")
        stamp = stamp.rjust(19, "0")  # strftime gives year 1 as "1" on some platforms
        frac = f"{self.nanos:09d}".rstrip("0")
        return stamp + (f".{frac}" if frac else "") + _zone(self.moment, rfc=True)

    def string(self) -> str:
        """Go's ``String()``: ``2006-01-02 15:04:05.999999999 -0700 MST``."""
        stamp = self.moment.strftime("%Y-%m-%d %H:%M:%S").rjust(19, "0")
        frac = f"{self.nanos:09d}".rstrip("0")
        return stamp + (f".{frac}" if frac else "") + " " + _zone(self.moment, rfc=False)


def _zone(moment: datetime, *, rfc: bool) -> str:
    offset = moment.utcoffset() or timedelta(0)
    if rfc and offset == timedelta(0):
        return "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    if rfc:
        return f"{sign}{hours:02d}:{mins:02d}"
    numeric = f"{sign}{hours:02d}{mins:02d}"
    if offset == timedelta(0):
        return f"{numeric} UTC"
    # a fixed offset (as parsed from RFC 3339) has no name: Go prints the offset again
    name = numeric if isinstance(moment.tzinfo, timezone) else (moment.tzname() or numeric)
    return f"{numeric} {name}"


@dataclass(frozen=True)
class GoSlice:
    items: tuple[GoValue, ...] = ()
    nil: bool = False
    """A nil slice (JSON ``null``); an empty non-nil one is ``[]``.  Both print ``[]``."""
    type_name: str = "[]interface {}"


@dataclass(frozen=True)
class GoMap:
    """A map with string keys; JSON, ``%v`` and ``range`` all go in key order."""

    entries: tuple[tuple[str, GoValue], ...] = ()
    nil: bool = False
    type_name: str = "map[string]interface {}"
    zero: GoValue = field(default_factory=lambda: GoNil())
    """The element type's zero value (what ``index`` gives for a missing key)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(sorted(self.entries,
                                                         key=lambda e: e[0].encode())))

    def get(self, key: str) -> GoValue | None:
        for name, value in self.entries:
            if name == key:
                return value
        return None


@dataclass(frozen=True)
class GoField:
    name: str
    value: GoValue
    omitempty: bool = False
    """JSON ``omitempty``: left out when empty (false, 0, "", nil, empty slice or map)."""


@dataclass(frozen=True)
class GoStruct:
    type_name: str
    """``main.WeaveStatus``, ``mesh.PeerStatus``...: for messages."""
    fields: tuple[GoField, ...]
    pointer: bool = False
    """Reached through a pointer: inside another value ``%v`` would print its address."""
    stringer: str | None = None
    """What its ``String()`` method returns, if it has one."""
    stringer_on_pointer: bool = False
    """``String()`` has a pointer receiver: only a pointer to it prints that way."""
    opaque: str | None = None
    """Why ``%v`` cannot print it as Go does (it embeds a pointer), or None."""

    def get(self, name: str) -> GoValue | None:
        for f in self.fields:
            if f.name == name:
                return f.value
        return None


GoValue = str | bool | int | float | GoNil | NoValue | GoTime | GoSlice | GoMap | GoStruct


@dataclass(frozen=True)
class Shape:
    """The Go type a JSON-form value converts to (:func:`from_json`).

    ``kind``: ``string``, ``int``, ``bool``, ``float``, ``time``, ``any`` (an
    ``interface{}``: dicts become maps), ``slice`` (of ``elem``), ``map`` (string keys,
    ``elem`` values), ``struct`` (``fields`` in order), ``ptr`` (to ``elem``)."""

    kind: str
    name: str = ""
    elem: Shape | None = None
    fields: tuple[tuple[str, Shape], ...] = field(default=())
    stringer: str | None = None
    """For structs with a value-receiver ``String()``: a ``str.format`` pattern over the
    fields' JSON-form values (``"{Addr}/{PrefixLen}"``)."""


class ShapeError(ValueError):
    """A JSON-form value does not fit the Go type it is declared to have."""


def from_json(shape: Shape, value: object, where: str = "") -> GoValue:
    """The Go value of ``shape`` that JSON-decodes from ``value`` (Python's json form)."""
    kind = shape.kind
    if kind == "ptr":
        assert shape.elem is not None
        if value is None:
            return GoNil("*" + shape.elem.name)
        inner = from_json(shape.elem, value, where)
        return _as_pointer(inner) if isinstance(inner, GoStruct) else inner
    if kind == "any":
        return _from_any(value)
    if kind in ("slice", "map") and value is None:
        return (GoSlice(nil=True, type_name=shape.name) if kind == "slice"
                else GoMap(nil=True, type_name=shape.name, zero=_zero(shape.elem)))
    return _from_json_value(shape, value, where)


def _mismatch(shape: Shape, value: object, where: str) -> ShapeError:
    return ShapeError(f"{where or 'value'}: expected {shape.name or shape.kind}, got {value!r}")


def _from_json_value(shape: Shape, value: object, where: str) -> GoValue:
    kind = shape.kind
    if kind in ("string", "time"):
        if not isinstance(value, str):
            raise _mismatch(shape, value, where)
        return value if kind == "string" else GoTime.parse(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise _mismatch(shape, value, where)
        return value
    if kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                kind == "int" and not isinstance(value, int)):
            raise _mismatch(shape, value, where)
        return float(value) if kind == "float" else value
    if kind == "slice" and shape.elem is not None:
        if not isinstance(value, list):
            raise _mismatch(shape, value, where)
        elem = shape.elem
        return GoSlice(tuple(from_json(elem, item, f"{where}[{i}]")
                             for i, item in enumerate(value)), type_name=shape.name)
    if kind in ("map", "struct"):
        if not isinstance(value, dict):
            raise _mismatch(shape, value, where)
        if kind == "struct":
            return _struct_from_json(shape, value, where)
        elem = shape.elem or Shape("any")
        return GoMap(tuple((str(k), from_json(elem, v, f"{where}.{k}"))
                           for k, v in value.items()),
                     type_name=shape.name, zero=_zero(elem))
    raise ShapeError(f"{where or 'value'}: unknown kind {kind!r}")


def _struct_from_json(shape: Shape, value: dict[Any, Any], where: str) -> GoStruct:
    unknown = set(value) - {name for name, _ in shape.fields}
    if unknown:
        raise ShapeError(f"{where or shape.name}: unknown fields {sorted(unknown)}")
    fields = tuple(GoField(name, from_json(sub, value[name], f"{where}.{name}")
                           if name in value else _zero(sub))
                   for name, sub in shape.fields)
    stringer = shape.stringer.format(**value) if shape.stringer else None
    return GoStruct(shape.name, fields, stringer=stringer)


def _as_pointer(value: GoStruct) -> GoStruct:
    return GoStruct(value.type_name, value.fields, pointer=True, stringer=value.stringer,
                    stringer_on_pointer=value.stringer_on_pointer, opaque=value.opaque)


def _zero(shape: Shape | None) -> GoValue:
    """Go's zero value of a type (what an absent field holds)."""
    if shape is None or shape.kind == "any":
        return GoNil()
    zeros: dict[str, GoValue] = {"string": "", "int": 0, "bool": False, "float": 0.0}
    if shape.kind in zeros:
        return zeros[shape.kind]
    if shape.kind == "time":
        return GoTime.zero()
    if shape.kind == "ptr":
        return GoNil("*" + (shape.elem.name if shape.elem else ""))
    if shape.kind == "slice":
        return GoSlice(nil=True, type_name=shape.name)
    if shape.kind == "map":
        return GoMap(nil=True, type_name=shape.name, zero=_zero(shape.elem))
    return GoStruct(shape.name, tuple(GoField(n, _zero(s)) for n, s in shape.fields))


def _from_any(value: object) -> GoValue:
    """An ``interface{}`` holding a JSON-form value: dicts become ``map[string]
    interface{}``, lists ``[]interface{}``; numbers keep their Python type (the agent
    fills these with Go ints, e.g. ``Attrs["mtu"]``, not with decoded float64s)."""
    if value is None:
        return GoNil()
    if isinstance(value, bool | str | int | float):
        return value
    if isinstance(value, list):
        return GoSlice(tuple(_from_any(v) for v in value))
    if isinstance(value, dict):
        return GoMap(tuple((str(k), _from_any(v)) for k, v in value.items()))
    raise ShapeError(f"not a JSON value: {value!r}")


def is_empty(value: GoValue) -> bool:
    """Go's notion of empty (``omitempty``) and of false (``if``, ``with``): false, 0,
    "", nil, empty slices and maps.  Structs and times are never empty."""
    if isinstance(value, GoNil | NoValue):
        return True
    if isinstance(value, GoSlice):
        return not value.items
    if isinstance(value, GoMap):
        return not value.entries
    if isinstance(value, GoStruct | GoTime):
        return False
    return not value


def type_name(value: GoValue) -> str:
    """Go's name for the value's type, as ``fmt`` and errors show it."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, GoTime):
        return "time.Time"
    if isinstance(value, GoStruct):
        return ("*" if value.pointer else "") + value.type_name
    if isinstance(value, GoNil | GoSlice | GoMap):
        return value.type_name
    return "<nil>"
