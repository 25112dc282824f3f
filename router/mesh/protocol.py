"""The mesh TCP wire protocol below the handshake: header, versions, framing, message tags.

Background (weaveworks/mesh as vendored by weave 2.8.1, ``protocol.go``,
``protocol_crypto.go``, ``connection.go``, ``router.go``): every mesh TCP
connection (port 6783) starts with both ends writing the 7-byte header
``b"weave" + min_version + max_version``; each end reads the other's and
uses the highest version both support (1 or 2). In version 2 every later
message is a 4-byte big-endian length followed by that many bytes (the
ciphertext, on an encrypted connection); a length above 10 MiB is refused
before the body is read. A message is one tag byte followed by its body;
a blank message is ignored and an unknown tag is logged and ignored.

Design: this module is pure. It holds the constants, the error types every
mesh wire module raises, and incremental parsers that take bytes as they
arrive (any chunking) and return whole items. Deadlines are the I/O seam's
job; the durations are exported here so that seam does not invent them.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

PROTOCOL_NAME: Final = b"weave"
"""The five bytes every mesh TCP connection starts with."""
PROTOCOL_MIN_VERSION: Final = 1
PROTOCOL_MAX_VERSION: Final = 2
HEADER_LENGTH: Final = len(PROTOCOL_NAME) + 2

HEADER_TIMEOUT: Final = 10.0
"""Seconds allowed for writing our header and reading the peer's (one deadline for both)."""
TCP_HEARTBEAT_INTERVAL: Final = 30.0
"""Seconds between heartbeat messages (tag 0) on an established connection."""
TCP_READ_TIMEOUT: Final = 2 * TCP_HEARTBEAT_INTERVAL
"""Read deadline for the rest of the handshake after the header, then renewed before each
message read on the established connection."""

MAX_TCP_MSG_SIZE: Final = 10 * 1024 * 1024
"""Largest length a frame may declare (exactly this size is allowed); on an encrypted
connection the length counts the ciphertext, so a payload may be 16 bytes shorter."""
LENGTH_PREFIX: Final = struct.Struct(">I")


class MeshProtocolError(Exception):
    """The peer sent something we cannot accept, or the peers are configured
    incompatibly. The message names the cause in operator language; the
    connection must be closed."""


class HeaderError(MeshProtocolError):
    """The peer does not speak the weave mesh protocol (or stopped mid-header)."""


class VersionMismatchError(MeshProtocolError):
    """The two version ranges do not overlap."""


class EncryptionMismatchError(MeshProtocolError):
    """One side has a password and the other has none."""


class DecryptionError(MeshProtocolError):
    """A message did not decrypt at the sequence number we expected: the
    stream was corrupted, replayed, reordered or truncated."""


class PublicKeyError(MeshProtocolError):
    """The peer's Curve25519 public key is unusable (a low-order point)."""


class WrongPasswordError(DecryptionError):
    """The peer's first encrypted message did not decrypt: the passwords differ."""


class FramingError(MeshProtocolError):
    """A message frame is malformed, too large, or cut short by the end of the stream."""


class MessageTooLargeError(FramingError):
    """A frame declares (or a payload to send needs) more than MAX_TCP_MSG_SIZE bytes."""


class PeerClosedError(MeshProtocolError):
    """The peer closed the connection before the handshake completed."""


class FeaturesError(MeshProtocolError):
    """The peer's features map lacks a mandatory entry or has an invalid one."""


def encode_header(min_version: int, max_version: int) -> bytes:
    """The 7 bytes each end writes first."""
    check_version_range(min_version, max_version)
    return PROTOCOL_NAME + bytes((min_version, max_version))


def check_version_range(min_version: int, max_version: int) -> None:
    """Raise ValueError unless 1 <= min <= max <= 2 (what this implementation speaks)."""
    if not PROTOCOL_MIN_VERSION <= min_version <= max_version <= PROTOCOL_MAX_VERSION:
        raise ValueError(
            f"protocol version range {min_version}..{max_version} is not within "
            f"{PROTOCOL_MIN_VERSION}..{PROTOCOL_MAX_VERSION}")


def check_header_prefix(received: bytes) -> None:
    """Fail as soon as the bytes received so far cannot start a weave header.

    Lets a handshake reject, say, an HTTP client on the mesh port at its first
    bytes instead of waiting for seven."""
    prefix = received[:len(PROTOCOL_NAME)]
    if PROTOCOL_NAME[:len(prefix)] != prefix:
        raise HeaderError(
            f"the peer did not start with the weave protocol header (got {prefix!r}, "
            f"expected {PROTOCOL_NAME!r}): something other than a weave router is on that port")


def parse_header(header: bytes) -> tuple[int, int]:
    """The peer's (min_version, max_version) from its 7-byte header."""
    if len(header) != HEADER_LENGTH:
        raise HeaderError(
            f"the weave protocol header is {HEADER_LENGTH} bytes, got {len(header)}")
    check_header_prefix(header)
    return header[-2], header[-1]


def negotiate_version(ours: tuple[int, int], theirs: tuple[int, int]) -> int:
    """The highest version in both (min, max) ranges, as both ends compute it."""
    low = max(ours[0], theirs[0])
    high = min(ours[1], theirs[1])
    if low > high:
        raise VersionMismatchError(
            f"no common mesh protocol version: the peer speaks versions {theirs[0]}..{theirs[1]}, "
            f"we speak {ours[0]}..{ours[1]} (check --min-protocol-version and the weave "
            "versions on both ends)")
    return high


def check_frame_length(length: int, direction: str) -> None:
    """Raise MessageTooLargeError if a frame of ``length`` bytes may not cross the wire."""
    if length > MAX_TCP_MSG_SIZE:
        raise MessageTooLargeError(
            f"{direction} message of {length} bytes exceeds the mesh maximum of "
            f"{MAX_TCP_MSG_SIZE} bytes")


def frame(body: bytes) -> bytes:
    """Length-prefix ``body`` (a payload, or its ciphertext) for a version-2 stream."""
    check_frame_length(len(body), "outgoing")
    return LENGTH_PREFIX.pack(len(body)) + body


class FrameReader:
    """Splits a version-2 byte stream into frame bodies, whatever the chunking.

    The declared length is checked against MAX_TCP_MSG_SIZE as soon as its four
    bytes are in, before any of the body is buffered."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._wanted: int | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Every frame body completed by ``data``, in order; keeps any partial frame."""
        self._buffer += data
        bodies: list[bytes] = []
        while True:
            if self._wanted is None:
                if len(self._buffer) < LENGTH_PREFIX.size:
                    return bodies
                (length,) = LENGTH_PREFIX.unpack_from(self._buffer)
                check_frame_length(length, "incoming")
                del self._buffer[:LENGTH_PREFIX.size]
                self._wanted = length
            if len(self._buffer) < self._wanted:
                return bodies
            bodies.append(bytes(self._buffer[:self._wanted]))
            del self._buffer[:self._wanted]
            self._wanted = None

    def take_buffered(self) -> bytes:
        """Hand over (and forget) bytes received past the last whole frame."""
        pending = bytes(self._buffer)
        if self._wanted is not None:
            pending = LENGTH_PREFIX.pack(self._wanted) + pending
        self._buffer.clear()
        self._wanted = None
        return pending

    def check_clean_end(self) -> None:
        """At end of stream: raise FramingError if a frame was cut short."""
        if self._buffer or self._wanted is not None:
            raise FramingError(
                f"the connection closed in the middle of a message ({self.buffered_length()} "
                "bytes of an unfinished frame received)")

    def buffered_length(self) -> int:
        """Bytes of an unfinished frame held, counting a consumed length prefix."""
        return len(self._buffer) + (LENGTH_PREFIX.size if self._wanted is not None else 0)


class ProtocolTag(enum.IntEnum):
    """The first byte of every message on an established connection."""

    HEARTBEAT = 0
    RESERVED1 = 1
    """Reserved 1..3: legacy sleeve control (ConnectionEstablished,
    FragmentationReceived, PMTUVerified); handed to the overlay like tag 7."""
    RESERVED2 = 2
    RESERVED3 = 3
    GOSSIP = 4
    GOSSIP_UNICAST = 5
    GOSSIP_BROADCAST = 6
    OVERLAY_CONTROL = 7


@dataclass(frozen=True, slots=True)
class ProtocolMessage:
    """One message: its tag byte and its body. ``tag`` is an int so that a tag
    this version does not know survives parsing (the Go side logs and ignores it)."""

    tag: int
    body: bytes

    @property
    def known_tag(self) -> ProtocolTag | None:
        """The tag as a ProtocolTag, or None for a tag mesh does not define."""
        try:
            return ProtocolTag(self.tag)
        except ValueError:
            return None


def encode_message(tag: int, body: bytes = b"") -> bytes:
    """The payload for ``tag`` and ``body`` (to be sealed and framed by a Session)."""
    if not 0 <= tag <= 0xFF:
        raise ValueError(f"a message tag is one byte, got {tag}")
    return bytes((tag,)) + body


def parse_message(payload: bytes) -> ProtocolMessage | None:
    """Split a received payload into tag and body; None for a blank payload,
    which the Go side ignores ("ignoring blank msg")."""
    if not payload:
        return None
    return ProtocolMessage(payload[0], payload[1:])
