"""Version-1 stream framing: the mesh TCP stream as a sequence of gob messages.

Background (``protocol.go`` doIntroV1, ``protocol_crypto.go`` gobTCPSender):
in version 1 both ends wrap the connection in one gob encoder and decoder.
The first value is the features map (never encrypted; the public key travels
in its "PublicKey" entry as hex), so the first messages are the gob type
definition of map[string]string and then the map. Every later message is
one gob-encoded []byte value (the sealed payload on an encrypted connection).

A gob stream is a sequence of messages, each an unsigned count followed by
that many bytes. The body starts with a signed type id: negative for a type
definition, 5 for the predeclared []byte. A top-level value that is not a
struct is preceded by a zero "field delta" byte; a []byte is then its length
and its bytes. Gob unsigned integers below 128 are one byte; larger ones are
one byte holding minus the number of big-endian bytes that follow. Signed
integers are shifted left one bit, with the low bit marking a complement.

Design: only what version 1 needs — splitting messages, and the []byte
values — is written here; decoding the features map is left to the
injected features codec, which gets the type definitions and the value as
one standalone gob stream. Go puts no size limit on version-1 messages
beyond gob's own; we refuse messages above the version-2 limit (plus gob's
few header bytes) rather than buffer without bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from router.mesh.protocol import MAX_TCP_MSG_SIZE, FramingError, MessageTooLargeError

GOB_BYTES_TYPE_ID: Final = 5
"""Gob's predeclared type id for []byte."""
GOB_MAX_UINT_BYTES: Final = 8
V1_MAX_GOB_MESSAGE: Final = MAX_TCP_MSG_SIZE + 32
"""Largest gob message accepted: a maximal payload plus its gob header bytes."""


def encode_uint(value: int) -> bytes:
    """Gob's encoding of an unsigned integer below 2**64."""
    if not 0 <= value < 1 << 64:
        raise ValueError(f"a gob unsigned integer is 64 bits, got {value}")
    if value < 0x80:
        return bytes((value,))
    digits = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return bytes((256 - len(digits),)) + digits


def encode_int(value: int) -> bytes:
    """Gob's encoding of a signed 64-bit integer."""
    folded = (~value << 1) | 1 if value < 0 else value << 1
    return encode_uint(folded)


def decode_uint(data: bytes | bytearray, offset: int) -> tuple[int, int] | None:
    """(value, offset after it) of the gob unsigned integer at ``offset``,
    or None if ``data`` ends before it does."""
    if offset >= len(data):
        return None
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    count = 256 - first
    if count > GOB_MAX_UINT_BYTES:
        raise FramingError(f"malformed gob stream: an integer claims {count} bytes (at most 8)")
    end = offset + 1 + count
    if end > len(data):
        return None
    return int.from_bytes(data[offset + 1:end], "big"), end


def decode_int(data: bytes | bytearray, offset: int) -> tuple[int, int] | None:
    """(value, offset after it) of the gob signed integer at ``offset``, or None if incomplete."""
    decoded = decode_uint(data, offset)
    if decoded is None:
        return None
    folded, end = decoded
    return (~(folded >> 1) if folded & 1 else folded >> 1), end


@dataclass(frozen=True, slots=True)
class GobMessage:
    """One gob message as received: its full bytes (count included) and its type id."""

    raw: bytes
    type_id: int
    body_offset: int
    """Where the body (the bytes after the count) starts in ``raw``."""

    @property
    def is_type_definition(self) -> bool:
        return self.type_id < 0


class GobMessageReader:
    """Splits a gob byte stream into whole messages, whatever the chunking."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[GobMessage]:
        """Every message completed by ``data``, in order; keeps any partial one."""
        self._buffer += data
        messages: list[GobMessage] = []
        while (message := self._next_message()) is not None:
            messages.append(message)
        return messages

    def _next_message(self) -> GobMessage | None:
        decoded = decode_uint(self._buffer, 0)
        if decoded is None:
            return None
        count, body_offset = decoded
        if count == 0:
            raise FramingError("malformed gob stream: a message of length 0")
        if count > V1_MAX_GOB_MESSAGE:
            raise MessageTooLargeError(
                f"incoming version-1 message of {count} bytes exceeds the limit of "
                f"{V1_MAX_GOB_MESSAGE} bytes")
        end = body_offset + count
        if len(self._buffer) < end:
            return None
        raw = bytes(self._buffer[:end])
        del self._buffer[:end]
        type_id = decode_int(raw, body_offset)
        if type_id is None:
            raise FramingError("malformed gob stream: a message ends inside its type id")
        return GobMessage(raw, type_id[0], body_offset)

    def take_buffered(self) -> bytes:
        """Hand over (and forget) bytes received past the last whole message."""
        pending = bytes(self._buffer)
        self._buffer.clear()
        return pending

    def check_clean_end(self) -> None:
        """At end of stream: raise FramingError if a message was cut short."""
        if self._buffer:
            raise FramingError(
                f"the connection closed in the middle of a message ({len(self._buffer)} bytes "
                "of an unfinished gob message received)")


def encode_bytes_message(payload: bytes) -> bytes:
    """The gob message carrying ``payload`` as a top-level []byte value."""
    body = encode_int(GOB_BYTES_TYPE_ID) + b"\x00" + encode_uint(len(payload)) + payload
    return encode_uint(len(body)) + body


def parse_bytes_message(message: GobMessage) -> bytes:
    """The payload of a []byte value message; FramingError for anything else."""
    if message.is_type_definition or message.type_id != GOB_BYTES_TYPE_ID:
        raise FramingError(
            f"malformed version-1 stream: expected a []byte value (gob type "
            f"{GOB_BYTES_TYPE_ID}), got gob type {message.type_id}")
    raw = message.raw
    after_id = decode_int(raw, message.body_offset)
    assert after_id is not None  # GobMessageReader decoded it already
    offset = after_id[1]
    if offset >= len(raw) or raw[offset] != 0:
        raise FramingError("malformed version-1 stream: a []byte value without its zero delta")
    decoded = decode_uint(raw, offset + 1)
    if decoded is None:
        raise FramingError("malformed version-1 stream: a []byte value ends inside its length")
    length, start = decoded
    if start + length != len(raw):
        raise FramingError(
            f"malformed version-1 stream: a []byte value declares {length} bytes but its "
            f"message holds {len(raw) - start}")
    return raw[start:]
