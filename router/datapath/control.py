"""Overlay control messages on the mesh connection, and the overlays two peers share.

Background (weave 2.8.1 ``router/sleeve.go``, ``router/overlay_switch.go``; mesh's
``connection.go``): a forwarder talks to its counterpart over the mesh TCP connection.
Sleeve's messages have their own tags:

* 1 ConnectionEstablished (empty): "your heartbeat reached me"; sent once per
  forwarder, on the first heartbeat that carries the connection's UID;
* 2 FragmentationReceived (empty): "your 60001-byte fragmentation test arrived whole";
* 3 PMTUVerified (a 16-bit big-endian MTU, extra bytes ignored): "your MTU test for
  this MTU arrived".

The overlay switch, which runs one sub-forwarder per overlay both peers have, wraps
every sub-forwarder's message in mesh tag 7 (OverlayControlMsg) with the body
``<sub-forwarder index><sub-tag><body>``; the receiving switch hands ``<sub-tag>,<body>``
to its sub-forwarder of that index (Go's switch ignores the outer tag).  Indexes follow
the list of overlays both have, in the order of the *local* overlay list: Go means to
use the dialler's order, but it tests for a missing TCP remote address, which never
happens, so each side uses its own list — the same on every weave (``fastdp``, then
``sleeve``).  A peer that sends no ``Overlays`` feature gets the compat overlay (sleeve)
alone, without the switch: tags 1-3 then travel as they are.

Design: pure encoding and decoding; every malformed body raises ControlMessageError.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from typing import Final

OVERLAY_CONTROL_TAG: Final = 7
"""mesh's ProtocolOverlayControlMsg."""
OVERLAYS_FEATURE: Final = "Overlays"
MAX_SUB_FORWARDERS: Final = 256
"""The index is one byte; Go keeps at most this many common overlays."""
_MTU: Final = struct.Struct(">H")


class ControlMessageError(ValueError):
    """A control message that cannot be read as sent by a weave peer."""


class SleeveControlTag(enum.IntEnum):
    CONNECTION_ESTABLISHED = 1
    FRAGMENTATION_RECEIVED = 2
    PMTU_VERIFIED = 3


def encode_pmtu_verified(mtu: int) -> bytes:
    return _MTU.pack(mtu & 0xFFFF)


def decode_pmtu_verified(body: bytes) -> int:
    """The MTU a PMTUVerified message confirms (Go reads the first two bytes)."""
    if len(body) < _MTU.size:
        raise ControlMessageError(
            f"truncated PMTUVerified: {len(body)} bytes, at least {_MTU.size} expected")
    (mtu,) = _MTU.unpack_from(body)
    return int(mtu)


def wrap_for_switch(index: int, tag: int, body: bytes) -> bytes:
    """The tag-7 body carrying a sub-forwarder's message."""
    if not 0 <= index < MAX_SUB_FORWARDERS:
        raise ValueError(f"a sub-forwarder index is one byte, got {index}")
    if not 0 <= tag <= 0xFF:
        raise ValueError(f"a control tag is one byte, got {tag}")
    return bytes((index, tag)) + body


def unwrap_for_switch(body: bytes) -> tuple[int, int, bytes]:
    """(sub-forwarder index, sub-tag, body) of a tag-7 message."""
    if len(body) < 2:
        raise ControlMessageError(
            f"overlay control message of {len(body)} bytes lacks the sub-forwarder index "
            "and tag")
    return body[0], body[1], body[2:]


def encode_overlays_feature(names: Sequence[str]) -> str:
    return " ".join(names)


def parse_overlays_feature(value: str) -> tuple[str, ...]:
    """The peer's overlay names (Go splits on single spaces)."""
    return tuple(value.split(" "))


def common_overlays(ours: Sequence[str], theirs: Sequence[str]) -> list[str]:
    """The overlays both have, in our order, at most 256 (each gets an index byte)."""
    shared = set(theirs)
    return [name for name in ours if name in shared][:MAX_SUB_FORWARDERS]
