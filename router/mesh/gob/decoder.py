"""Reading gob streams as Go's ``gob.Decoder`` reads them, defensively.

A :class:`Decoder` holds the bytes received so far and the type definitions
seen on the stream. Each ``decode`` reads messages until it meets a value:
definitions on the way are recorded (a second definition of an id, or an id
below 64, is an error, as in Go), then the value is read against the caller's
schema through a reader compiled once per (schema, received type) pair (see
``plans``). Bytes after a value inside its own message are ignored, as Go
ignores them.

The input comes from the network, so nothing in it is trusted: message lengths
are bounded (``max_message_size``), counts must fit in the bytes left, nesting
is bounded, and every failure surfaces as :class:`GobError` naming the cause
and the stream offset, never as IndexError, RecursionError or MemoryError.
When the bytes end inside a message the decoder raises :class:`GobTruncated`
and rewinds to where the value began, so a caller reading a socket can
``feed`` more and call ``decode`` again; any other error is final for the
stream, which is as broken for us as for Go.
"""

from __future__ import annotations

from typing import Any, TypeVar

from .errors import GobError, GobTruncated
from .plans import IncompatibleType, Plans
from .schema import GobType, Struct, base_of
from .wire import FIRST_USER_ID, DecodeFailure, WireType, decode_definition, read_int, read_uint

T = TypeVar("T")

MAX_MESSAGE_SIZE = 64 << 20
"""Default bound on one message; a mesh frame is at most 10 MiB anyway."""


class Decoder:
    """One gob stream being read. Not thread-safe."""

    def __init__(self, data: bytes = b"", *, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self._data = bytearray(data)  # appended to cheaply; each message is copied out
        self._pos = 0
        self._dropped = 0  # stream bytes consumed and discarded before _data[0]
        self._max_message_size = max_message_size
        self._wire_types: dict[int, WireType] = {}
        self._plans = Plans(self._wire_types)
        self._broken: GobError | None = None

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer."""
        if self._pos:
            self._dropped += self._pos
            del self._data[: self._pos]
            self._pos = 0
        self._data += data

    def at_end(self) -> bool:
        """Whether every byte fed so far has been consumed (a clean place to stop)."""
        return self._pos >= len(self._data)

    @property
    def offset(self) -> int:
        """The stream offset of the next unread byte."""
        return self._dropped + self._pos

    def decode(self, t: GobType[T]) -> T:
        """Read the next value, which must be compatible with ``t``.

        Raises GobTruncated (rewound; feed more and retry) if the bytes end
        before the value does, GobError for anything else.
        """
        value: T = self._next(t)
        return value

    def skip(self) -> None:
        """Read the next value, whatever its type, and discard it (Go's ``Decode(nil)``)."""
        self._next(None)

    def _next(self, t: GobType[Any] | None) -> Any:
        if self._broken is not None:
            raise self._broken
        start = self._pos
        defined: list[int] = []
        try:
            while True:
                body, end = self._frame()
                with memoryview(self._data) as view, view[body:end] as part:
                    msg = bytes(part)
                try:
                    type_id, pos = read_int(msg, 0)
                    if type_id < 0:
                        self._define(-type_id, msg, pos)
                        defined.append(-type_id)
                        self._pos = end
                        continue
                    value = self._value(t, type_id, msg, pos)
                except IndexError:
                    raise self._fail("message ends inside a value", body + len(msg)) from None
                except DecodeFailure as failure:
                    raise self._fail(failure.cause, body + failure.pos) from None
                except IncompatibleType as err:
                    raise self._fail(str(err), body) from None
                except RecursionError:
                    raise self._fail("value nests too deeply", body) from None
                self._pos = end
                return value
        except GobTruncated:
            for type_id in defined:
                del self._wire_types[type_id]
            self._pos = start
            raise

    def _fail(self, cause: str, pos: int) -> GobError:
        """Make the error for a problem at ``pos`` in ``_data``; the stream is now broken."""
        self._broken = GobError(f"gob: {cause} (at stream byte {self._dropped + pos})")
        return self._broken

    def _frame(self) -> tuple[int, int]:
        """Where the next message's body starts and ends in ``_data``."""
        data, pos = self._data, self._pos
        if pos >= len(data):
            raise GobTruncated(f"gob: stream ends at byte {self.offset}")
        n = data[pos]
        body = pos + 1
        if n >= 0x80:
            width = 256 - n
            if width > 8:
                raise self._fail(f"invalid message length byte {n:#04x}", pos)
            if body + width > len(data):
                raise GobTruncated(
                    f"gob: stream ends inside a message length at byte {self.offset}"
                )
            n = int.from_bytes(data[body : body + width], "big")
            body += width
        if n == 0:
            raise self._fail("empty message", pos)
        if n > self._max_message_size:
            raise self._fail(f"message length {n} exceeds {self._max_message_size}", pos)
        if body + n > len(data):
            raise GobTruncated(
                f"gob: stream ends inside a {n}-byte message starting at byte {self._dropped + pos}"
            )
        return body, body + n

    def _define(self, type_id: int, msg: bytes, pos: int) -> None:
        if type_id < FIRST_USER_ID:
            raise DecodeFailure(f"definition of reserved type id {type_id}", 0)
        if type_id in self._wire_types:
            raise DecodeFailure(f"second definition of type id {type_id}", 0)
        self._wire_types[type_id] = decode_definition(msg, pos)

    def _value(self, t: GobType[Any] | None, type_id: int, msg: bytes, pos: int) -> Any:
        wire = self._wire_types.get(type_id)
        is_struct = wire is not None and wire.kind == "struct"
        if t is None:
            skip = self._plans.skipper(type_id)
            if not is_struct:
                pos = self._singleton(msg, pos)
            skip(msg, pos, 0)
            return None
        base = base_of(t)
        read = self._plans.reader(base, type_id)
        if isinstance(base, Struct):
            assert wire is not None  # the reader accepts only struct definitions
            if base.fields and wire.fields and not self._plans.fields_matched(base, type_id):
                raise IncompatibleType(
                    f"no field of received {self._plans.describe(type_id)} matches {base.go_string}"
                )
        else:
            pos = self._singleton(msg, pos)
        return read(msg, pos)[0]

    @staticmethod
    def _singleton(msg: bytes, pos: int) -> int:
        """A top-level non-struct value is preceded by a zero field delta."""
        delta, after = read_uint(msg, pos)
        if delta != 0:
            raise DecodeFailure("non-zero field delta before a top-level value", pos)
        return after


def decode(t: GobType[T], data: bytes, *, max_message_size: int = MAX_MESSAGE_SIZE) -> T:
    """The one value of type ``t`` that makes up the whole stream ``data``."""
    decoder = Decoder(data, max_message_size=max_message_size)
    value = decoder.decode(t)
    if not decoder.at_end():
        raise GobError(f"gob: {len(data) - decoder.offset} bytes left after the value")
    return value
