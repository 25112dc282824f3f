"""Sleeve's datagram layout and its special (control) frames.

Background (weave 2.8.1 ``router/sleeve.go``, ``router/frame_crypto.go``): sleeve sends
UDP datagrams on the mesh port (6783).  Each datagram starts with the sender's peer name
(6 bytes), then, unencrypted, one or more frames; each frame is the name of the peer that
captured it (6), the name of the peer it is for (6), the frame length (2, big-endian) and
the Ethernet frame.  (When encrypted, the frames are sealed as a whole after the sender
name: :mod:`.sleeve_crypto`.)  A receiver reads frames while at least a frame header is
left; a frame longer than what remains, or fewer than 14 bytes left over, is an error,
but the frames read before it have already been handled.

*Special* frames are sleeve's own control traffic on the data path.  They look like an
Ethernet frame whose destination and source MACs and EtherType/length field are all zero
(Go decodes the header and sees an 802.3 frame of length 0), and are told apart by their
length:

* 22 bytes (14 zeros and the 8-byte big-endian connection UID): a heartbeat;
* 60001 bytes, all zero: the fragmentation test (sent without DF; answered with
  FragmentationReceived over the mesh connection if it arrived whole and all zero);
* any other length: a path-MTU test of ``length - 14`` bytes of IP payload (sent with DF;
  answered with PMTUVerified carrying that number, as 16 bits).  The 60000-byte "PMTU
  discovery" frame is one of these; it normally never arrives, the sender's kernel refuses
  it with EMSGSIZE, which tells the sender the path MTU.

Design: pure functions over bytes; peer names are the 48-bit integers of
:mod:`router.mesh`.  Every malformed input raises :class:`SleeveFormatError`, which
carries the frames decoded before the fault (Go handles those before reporting).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

NAME_SIZE: Final = 6
"""Bytes of a peer name on the wire."""
FRAME_HEADER_SIZE: Final = NAME_SIZE + NAME_SIZE + 2
"""Source name, destination name, length: Go's ``FrameOverhead``."""
ETHERNET_OVERHEAD: Final = 14
UDP_OVERHEAD: Final = 28
"""IPv4 (20) and UDP (8) headers."""
MAX_UDP_PACKET_SIZE: Final = 65535
MAX_FRAME_LENGTH: Final = 0xFFFF
HEARTBEAT_FRAME_SIZE: Final = ETHERNET_OVERHEAD + 8
FRAG_TEST_SIZE: Final = 60001
PMTU_DISCOVERY_SIZE: Final = 60000

_LENGTH: Final = struct.Struct(">H")
_UID: Final = struct.Struct(">Q")
_SPECIAL_HEADER: Final = bytes(ETHERNET_OVERHEAD)


class SleeveFormatError(ValueError):
    """A sleeve datagram that cannot be read as sent by a weave peer.  ``frames`` holds
    the frames decoded before the fault, in order."""

    def __init__(self, message: str, frames: tuple[SleeveFrame, ...] = ()) -> None:
        super().__init__(message)
        self.frames = frames


@dataclass(frozen=True, slots=True)
class SleeveFrame:
    """One frame of a datagram: who captured it, who it is for, the Ethernet frame."""

    src: int
    dst: int
    payload: bytes


class SpecialKind(enum.Enum):
    HEARTBEAT = "heartbeat"
    FRAG_TEST = "fragmentation test"
    MTU_TEST = "MTU test"


def encode_name(name: int) -> bytes:
    """A 48-bit peer name as its 6 wire bytes."""
    if not 0 <= name < 1 << (8 * NAME_SIZE):
        raise ValueError(f"a peer name is {8 * NAME_SIZE} bits, got {name}")
    return name.to_bytes(NAME_SIZE, "big")


def encode_frame(frame: SleeveFrame) -> bytes:
    """One frame with its header (Go's ``AppendFrame``)."""
    if len(frame.payload) > MAX_FRAME_LENGTH:
        raise ValueError(f"a sleeve frame holds at most {MAX_FRAME_LENGTH} bytes, "
                         f"got {len(frame.payload)}")
    return (encode_name(frame.src) + encode_name(frame.dst)
            + _LENGTH.pack(len(frame.payload)) + frame.payload)


def encode_frames(frames: Iterable[SleeveFrame]) -> bytes:
    """The frames part of a datagram (what is sealed when encrypted)."""
    return b"".join(encode_frame(frame) for frame in frames)


def decode_frames(data: bytes) -> list[SleeveFrame]:
    """Every frame of the frames part of a datagram, in order.

    Raises SleeveFormatError (with the frames read so far) when a frame's length runs past
    the end or 1-13 bytes are left over."""
    frames: list[SleeveFrame] = []
    offset = 0
    while len(data) - offset >= FRAME_HEADER_SIZE:
        src = int.from_bytes(data[offset:offset + NAME_SIZE], "big")
        dst = int.from_bytes(data[offset + NAME_SIZE:offset + 2 * NAME_SIZE], "big")
        (length,) = _LENGTH.unpack_from(data, offset + 2 * NAME_SIZE)
        offset += FRAME_HEADER_SIZE
        if len(data) - offset < length:
            raise SleeveFormatError(
                f"sleeve frame too short: the header says {length} bytes, "
                f"{len(data) - offset} remain", tuple(frames))
        frames.append(SleeveFrame(src, dst, data[offset:offset + length]))
        offset += length
    if offset < len(data):
        raise SleeveFormatError(
            f"{len(data) - offset} bytes of trailing garbage after the sleeve frames",
            tuple(frames))
    return frames


def split_sender(datagram: bytes) -> tuple[int, bytes]:
    """(sender's peer name, the rest) of a datagram; SleeveFormatError if too short."""
    if len(datagram) < NAME_SIZE:
        raise SleeveFormatError(
            f"sleeve datagram of {len(datagram)} bytes is shorter than a peer name")
    return int.from_bytes(datagram[:NAME_SIZE], "big"), datagram[NAME_SIZE:]


def is_special(payload: bytes) -> bool:
    """Whether a frame is sleeve's own (zero MACs, zero EtherType/length)."""
    return len(payload) >= ETHERNET_OVERHEAD and payload[:ETHERNET_OVERHEAD] == _SPECIAL_HEADER


def special_kind(payload: bytes) -> SpecialKind:
    """Which special frame this is, by its length, as Go tells them apart."""
    if not is_special(payload):
        raise SleeveFormatError("not a special frame (its Ethernet header is not all zero)")
    if len(payload) == HEARTBEAT_FRAME_SIZE:
        return SpecialKind.HEARTBEAT
    if len(payload) == FRAG_TEST_SIZE:
        return SpecialKind.FRAG_TEST
    return SpecialKind.MTU_TEST


def heartbeat_frame(conn_uid: int) -> bytes:
    """The heartbeat special frame for a connection."""
    return _SPECIAL_HEADER + _UID.pack(conn_uid)


def heartbeat_uid(payload: bytes) -> int:
    """The connection UID a heartbeat carries."""
    if special_kind(payload) is not SpecialKind.HEARTBEAT:
        raise SleeveFormatError(f"a special frame of {len(payload)} bytes is not a heartbeat")
    (uid,) = _UID.unpack_from(payload, ETHERNET_OVERHEAD)
    return int(uid)


def frag_test_frame() -> bytes:
    return bytes(FRAG_TEST_SIZE)


def frag_test_intact(payload: bytes) -> bool:
    """Whether a fragmentation test arrived as sent (all zero); only then is it acked."""
    return len(payload) == FRAG_TEST_SIZE and not any(payload)


def pmtu_discovery_frame() -> bytes:
    return bytes(PMTU_DISCOVERY_SIZE)


def mtu_test_frame(mtu: int) -> bytes:
    """The DF probe that checks an overlay MTU: an Ethernet header and ``mtu`` bytes."""
    return bytes(mtu + ETHERNET_OVERHEAD)


def mtu_tested_by(payload: bytes) -> int:
    """The MTU an MTU-test frame checks, as the PMTUVerified answer carries it (16 bits)."""
    return (len(payload) - ETHERNET_OVERHEAD) & 0xFFFF
