"""Writing gob streams as Go's ``gob.Encoder`` writes them.

An :class:`Encoder` is one stream. Before the first value of a type it sends
the type's definition and then, depth first, the definitions of the types it
contains that this stream has not seen (builtin types are never defined).
Every message is its length then its body; a value's body is its type id then
the value. A struct is a sequence of (field-number delta, value) pairs ending
in a zero delta; fields whose value is Go's zero value are left out (false, 0,
"", empty slices, nil maps and pointers), while nested structs and arrays are
always written and a non-nil empty map is written as a zero count. Slice,
array and map elements are always written. Any other top-level value is a
"singleton": a zero field delta, then the value, written even when zero.

Each schema is compiled once into a writer function (cached by schema
object), so encoding walks no schema at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .errors import GobError
from .schema import ArrayOf, GobType, Kind, MapOf, Ptr, Scalar, SliceOf, Struct, base_of
from .typeids import TypeIds
from .wire import encode_definition, float_to_uint, put_int, put_uint, zigzag

T = TypeVar("T")

Writer = Callable[[bytearray, Any], None]

_writers: dict[GobType[Any], Writer] = {}


def writer_for(t: GobType[Any]) -> Writer:
    """The function that appends a value of ``t`` (pointers flattened) to a buffer."""
    t = base_of(t)
    found = _writers.get(t)
    if found is None:
        found = _writers[t] = _compile(t)
    return found


def _compile(t: GobType[Any]) -> Writer:
    if isinstance(t, Scalar):
        return _scalar_writer(t)
    if isinstance(t, SliceOf):
        return _sequence_writer(t.elem, None, t.go_string)
    if isinstance(t, ArrayOf):
        return _sequence_writer(t.elem, t.length, t.go_string)
    if isinstance(t, MapOf):
        return _map_writer(t)
    if isinstance(t, Struct):
        return _struct_writer(t)
    raise TypeError(f"cannot encode {t!r}")  # pragma: no cover


def _int_range(t: Scalar[Any]) -> tuple[int, int]:
    if t.kind is Kind.INT:
        return -(1 << (t.bits - 1)), (1 << (t.bits - 1)) - 1
    return 0, (1 << t.bits) - 1


def _scalar_writer(t: Scalar[Any]) -> Writer:
    what = t.go_string
    if t.kind in (Kind.INT, Kind.UINT):
        low, high = _int_range(t)
        signed = t.kind is Kind.INT

        def write_int(buf: bytearray, v: Any) -> None:
            if type(v) is not int and (not isinstance(v, int) or isinstance(v, bool)):
                raise GobError(f"{what} value must be an int, not {type(v).__name__}")
            if not low <= v <= high:
                raise GobError(f"{v} is out of range for {what}")
            put_uint(buf, zigzag(v) if signed else v)

        return write_int
    if t.kind is Kind.BOOL:

        def write_bool(buf: bytearray, v: Any) -> None:
            if not isinstance(v, bool):
                raise GobError(f"{what} value must be a bool, not {type(v).__name__}")
            buf.append(1 if v else 0)

        return write_bool
    if t.kind is Kind.FLOAT:

        def write_float(buf: bytearray, v: Any) -> None:
            if not isinstance(v, float | int) or isinstance(v, bool):
                raise GobError(f"{what} value must be a float, not {type(v).__name__}")
            put_uint(buf, float_to_uint(float(v)))

        return write_float
    if t.kind is Kind.STRING:

        def write_string(buf: bytearray, v: Any) -> None:
            if not isinstance(v, str):
                raise GobError(f"{what} value must be a str, not {type(v).__name__}")
            try:
                raw = v.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError as err:
                raise GobError(f"{what} value is not encodable as UTF-8: {err}") from None
            put_uint(buf, len(raw))
            buf += raw

        return write_string

    def write_bytes(buf: bytearray, v: Any) -> None:
        if not isinstance(v, bytes | bytearray | memoryview):
            raise GobError(f"{what} value must be bytes, not {type(v).__name__}")
        put_uint(buf, len(v))
        buf += v

    return write_bytes


def _element_writer(elem: GobType[Any], where: str) -> Writer:
    """Elements are always sent; a nil pointer element is an error, as in Go."""
    write = writer_for(elem)
    if not isinstance(elem, Ptr):
        return write

    def write_pointer(buf: bytearray, v: Any) -> None:
        if v is None:
            raise GobError(f"nil pointer element in {where}")
        write(buf, v)

    return write_pointer


def _sequence_writer(elem: GobType[Any], length: int | None, what: str) -> Writer:
    write_elem = _element_writer(elem, what)

    def write_sequence(buf: bytearray, v: Any) -> None:
        if isinstance(v, str | bytes | dict) or not hasattr(v, "__len__"):
            raise GobError(f"{what} value must be a sequence, not {type(v).__name__}")
        if length is not None and len(v) != length:
            raise GobError(f"{what} value has {len(v)} items")
        put_uint(buf, len(v))
        for item in v:
            write_elem(buf, item)

    return write_sequence


def _map_writer(t: MapOf[Any, Any]) -> Writer:
    write_key = _element_writer(t.key, t.go_string)
    write_elem = _element_writer(t.elem, t.go_string)
    what = t.go_string

    def write_map(buf: bytearray, v: Any) -> None:
        if v is None:  # a nil map where it must be written: Go writes it empty
            buf.append(0)
            return
        if not isinstance(v, dict):
            raise GobError(f"{what} value must be a dict, not {type(v).__name__}")
        put_uint(buf, len(v))
        for key, item in v.items():
            write_key(buf, key)
            write_elem(buf, item)

    return write_map


# How a struct field decides it is zero and left out (see omission_rule).
_NEVER, _FALSY, _NONE, _NONE_OR_FALSY = 0, 1, 2, 3


def omission_rule(t: GobType[Any]) -> int:
    """When Go leaves a struct field of type ``t`` out of the stream."""
    base = base_of(t)
    if isinstance(base, Scalar | SliceOf):
        return _NONE_OR_FALSY if isinstance(t, Ptr) else _FALSY
    if isinstance(base, MapOf):
        return _NONE
    return _NONE if isinstance(t, Ptr) else _NEVER  # structs and arrays are always sent


def _struct_writer(t: Struct[Any]) -> Writer:
    plan = [(f.attr, omission_rule(f.type), writer_for(f.type)) for f in t.fields]
    cls = t.cls
    what = t.go_string

    def write_struct(buf: bytearray, v: Any) -> None:
        if not isinstance(v, cls):
            raise GobError(f"{what} value must be a {cls.__name__}, not {type(v).__name__}")
        last = -1
        for number, (attr, rule, write) in enumerate(plan):
            item = getattr(v, attr)
            if rule and (
                (rule == _FALSY and not item)
                or (rule == _NONE and item is None)
                or (rule == _NONE_OR_FALSY and (item is None or not item))
            ):
                continue
            put_uint(buf, number - last)
            last = number
            write(buf, item)
        buf.append(0)

    return write_struct


def frame(out: bytearray, body: bytes | bytearray) -> None:
    """Append one message: its length, then its body."""
    put_uint(out, len(body))
    out += body


class Encoder:
    """One gob stream being written: remembers which types it has defined.

    ``type_ids`` is the (simulated) Go process the stream comes from; share
    one between encoders to number types as one Go process would. Not
    thread-safe.
    """

    def __init__(self, type_ids: TypeIds | None = None) -> None:
        self._type_ids = type_ids if type_ids is not None else TypeIds()
        self._sent: set[str] = set()

    def encode(self, t: GobType[T], value: T) -> bytes:
        """The bytes that put ``value`` on the stream: any new definitions, then the value.

        Raises GobError if ``value`` does not fit ``t``; the stream is then
        unchanged.
        """
        base = base_of(t)
        _check_not_nil(t, value)
        body = _value_message(base, self._type_ids.id_of(base), value)
        out = bytearray()
        newly_sent: list[str] = []
        self._define(out, base, newly_sent)
        self._sent.update(newly_sent)
        frame(out, body)
        return bytes(out)

    def _define(self, out: bytearray, t: GobType[Any], newly_sent: list[str]) -> None:
        """Send ``t``'s definition, then its parts', unless this stream has them."""
        t = base_of(t)
        if isinstance(t, Scalar) or t.go_string in self._sent or t.go_string in newly_sent:
            return
        wire = self._type_ids.definition(t)
        assert wire is not None
        frame(out, encode_definition(self._type_ids.id_of(t), wire))
        newly_sent.append(t.go_string)
        if isinstance(t, Struct):
            for f in t.fields:
                self._define(out, f.type, newly_sent)
        elif isinstance(t, SliceOf | ArrayOf):
            self._define(out, t.elem, newly_sent)
        elif isinstance(t, MapOf):
            self._define(out, t.key, newly_sent)
            self._define(out, t.elem, newly_sent)


_fresh_heads: dict[GobType[Any], tuple[int, bytes]] = {}


def encode(t: GobType[T], value: T, *, type_ids: TypeIds | None = None) -> bytes:
    """A whole stream holding just ``value``, as a fresh ``gob.NewEncoder`` writes it.

    Without ``type_ids`` (a process that encodes nothing else), the type's id and its
    definitions are the same for every stream, so they are worked out once per schema:
    IPAM sends each gossip message as a stream of its own.
    """
    if type_ids is not None:
        return Encoder(type_ids).encode(t, value)
    base = base_of(t)
    head = _fresh_heads.get(base)
    if head is None:
        ids = TypeIds()
        type_id = ids.id_of(base)  # first, as the Encoder numbers it
        written = bytearray()
        Encoder(ids)._define(written, base, [])
        head = _fresh_heads[base] = (type_id, bytes(written))
    _check_not_nil(t, value)
    type_id, definitions = head
    out = bytearray(definitions)
    frame(out, _value_message(base, type_id, value))
    return bytes(out)


def _check_not_nil(t: GobType[Any], value: object) -> None:
    if value is None and isinstance(base_of(t), Struct | Scalar | SliceOf | ArrayOf):
        raise GobError(f"cannot encode a nil {t.go_string}")


def _value_message(base: GobType[Any], type_id: int, value: object) -> bytearray:
    """A value message's body: the type id, then the value (a singleton's after a zero
    field delta)."""
    body = bytearray()
    put_int(body, type_id)
    if not isinstance(base, Struct):
        body.append(0)  # the singleton's field delta
    writer_for(base)(body, value)
    return body
