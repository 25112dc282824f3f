"""Sealing and opening sleeve datagrams: plain, or NaCl secretbox with the session key.

Background (weave 2.8.1 ``router/frame_crypto.go``; the mesh's note on overlay nonces):
when a connection is untrusted (a password is set and either end does not trust the
other), sleeve seals the frames of each datagram with the mesh connection's 32-byte
session key.  The datagram is then: sender name (6), an 8-byte big-endian word holding
the sequence number with the DF flag in its top bit, and the secretbox (16-byte tag, then
the ciphertext) of all the frames.  The 24-byte nonce is: first byte 0x80 when the sender
is the dialling ("outbound") end of the mesh connection, else 0; fifteen zero bytes; the
8-byte DF+sequence word.  (The mesh's TCP nonces set bit 0x40 of the first byte, so the
two never collide.)  Each end has two sealers, for datagrams sent with and without DF,
each with its own sequence from 0; the DF flag travels in clear because a router on the
way may rewrite the IP header's DF bit.

The receiver keeps one replay window per DF flag and accepts a sequence number only once:
the window spans 2 x 2^20 numbers in two halves; it slides, in steps of 2^20, so that its
upper half holds the highest number seen; numbers below the window are dropped.  The
window advances only after a datagram has opened, so a forged high number cannot stall
it.  A replay is dropped silently; a datagram that does not open is an error.

Design: small classes with Go's semantics and no I/O.  The sealers build complete
datagrams (sender name included); the openers take a datagram without its sender name.
The window keeps its two halves as bitmaps (128 KiB each, created when first needed).
"""

from __future__ import annotations

from typing import Final, Protocol

import nacl.bindings
import nacl.exceptions

from router.datapath.sleeve_frames import (
    ETHERNET_OVERHEAD,
    FRAME_HEADER_SIZE,
    NAME_SIZE,
    UDP_OVERHEAD,
    SleeveFormatError,
    encode_name,
)

KEY_SIZE: Final = 32
NONCE_SIZE: Final = 24
SEQUENCE_SIZE: Final = 8
SECRETBOX_OVERHEAD: Final = 16
DF_FLAG: Final = 1 << 63
SEQUENCE_LIMIT: Final = 1 << 63
NONCE_OUTBOUND_BIT: Final = 0x80
WINDOW_BITS: Final = 20
WINDOW_SIZE: Final = 1 << WINDOW_BITS


class SleeveDecryptionError(SleeveFormatError):
    """An encrypted datagram that does not open with the session key (stray traffic
    from an older connection, corruption, or a different key)."""


class DatagramSealer(Protocol):
    """Builds the datagrams of one sending direction (DF or not)."""

    @property
    def packet_overhead(self) -> int:
        """Bytes a datagram adds to its frames (Go's ``PacketOverhead``)."""
        ...

    def seal(self, frames: bytes) -> bytes:
        """The datagram carrying ``frames`` (the output of ``encode_frames``)."""
        ...


class DatagramOpener(Protocol):
    """Reads the datagrams one peer sends us."""

    def open(self, body: bytes) -> bytes | None:
        """The frames of a datagram given without its sender name; None for a replayed
        datagram, which is dropped silently.  Raises SleeveFormatError (or its subclass
        SleeveDecryptionError) for a datagram that cannot be read."""
        ...


def nonce(sent_by_outbound: bool, sequence_and_df: int) -> bytes:
    """The nonce of a sleeve datagram (see the module docstring)."""
    first = NONCE_OUTBOUND_BIT if sent_by_outbound else 0
    return bytes((first,)) + bytes(15) + sequence_and_df.to_bytes(SEQUENCE_SIZE, "big")


def dataplane_overhead(sealer: DatagramSealer) -> int:
    """Bytes between an IP packet on the overlay and its datagram on the underlay: IP and
    UDP headers, the packet overhead, one frame header and the inner Ethernet header (Go's
    ``overheadDF``: 62 plain, 86 encrypted)."""
    return UDP_OVERHEAD + sealer.packet_overhead + FRAME_HEADER_SIZE + ETHERNET_OVERHEAD


class PlainSealer:
    def __init__(self, local_name: int) -> None:
        self._prefix = encode_name(local_name)

    @property
    def packet_overhead(self) -> int:
        return NAME_SIZE

    def seal(self, frames: bytes) -> bytes:
        return self._prefix + frames


class PlainOpener:
    def open(self, body: bytes) -> bytes | None:
        return body


class NaClSealer:
    """Seals datagrams of one DF flag; ``outbound`` is whether WE dialled the connection."""

    def __init__(self, local_name: int, session_key: bytes, outbound: bool, df: bool) -> None:
        _check_key(session_key)
        self._prefix = encode_name(local_name)
        self._key = session_key
        self._outbound = outbound
        self._df = df
        self.sequence = 0
        """The sequence number of the next datagram."""

    @property
    def packet_overhead(self) -> int:
        return NAME_SIZE + SEQUENCE_SIZE + SECRETBOX_OVERHEAD

    def seal(self, frames: bytes) -> bytes:
        if self.sequence >= SEQUENCE_LIMIT:
            raise OverflowError("the sleeve sequence numbers of this connection are used up")
        word = self.sequence | (DF_FLAG if self._df else 0)
        sealed: bytes = nacl.bindings.crypto_secretbox(
            frames, nonce(self._outbound, word), self._key)
        self.sequence += 1
        return self._prefix + word.to_bytes(SEQUENCE_SIZE, "big") + sealed


class ReplayWindow:
    """The sequence numbers already accepted, for one DF flag of one peer."""

    def __init__(self) -> None:
        self._window = 0
        """Which 2^20-wide slice the upper half of the window is."""
        self._upper: bytearray | None = None
        self._lower: bytearray | None = None
        """None stands for an empty half (allocated when first written)."""

    def admit(self, sequence: int) -> bool:
        """Record ``sequence`` and say whether it is new (False: a replay, or too old)."""
        offset = sequence & (WINDOW_SIZE - 1)
        window = sequence >> WINDOW_BITS
        delta = window - self._window
        if delta < -1:
            return False
        if delta == -1:
            self._lower = half = self._lower or _new_half()
        else:
            if delta == 1:
                self._lower, self._upper = self._upper, None
            elif delta > 1:
                self._lower = self._upper = None
            if delta > 0:
                self._window = window
            self._upper = half = self._upper or _new_half()
        byte, bit = divmod(offset, 8)
        if half[byte] >> bit & 1:
            return False
        half[byte] |= 1 << bit
        return True


def _new_half() -> bytearray:
    return bytearray(WINDOW_SIZE // 8)


class NaClOpener:
    """Opens one peer's datagrams; ``outbound`` is whether WE dialled the connection."""

    def __init__(self, session_key: bytes, outbound: bool) -> None:
        _check_key(session_key)
        self._key = session_key
        self._peer_outbound = not outbound
        self._windows = {False: ReplayWindow(), True: ReplayWindow()}

    def open(self, body: bytes) -> bytes | None:
        if len(body) < SEQUENCE_SIZE:
            raise SleeveDecryptionError(
                f"encrypted sleeve datagram too short: {len(body)} bytes after the sender "
                f"name, at least {SEQUENCE_SIZE} expected")
        word = int.from_bytes(body[:SEQUENCE_SIZE], "big")
        try:
            frames: bytes = nacl.bindings.crypto_secretbox_open(
                body[SEQUENCE_SIZE:], nonce(self._peer_outbound, word), self._key)
        except (nacl.exceptions.CryptoError, ValueError) as error:
            raise SleeveDecryptionError(
                "sleeve datagram decryption failed (a stray datagram of an older "
                "connection, corruption, or a different session key)") from error
        df = bool(word & DF_FLAG)
        if not self._windows[df].admit(word & (SEQUENCE_LIMIT - 1)):
            return None
        return frames


def _check_key(session_key: bytes) -> None:
    if len(session_key) != KEY_SIZE:
        raise ValueError(f"a session key is {KEY_SIZE} bytes, got {len(session_key)}")
