"""An established mesh TCP connection as a pure byte transformer: payloads in, wire bytes out.

Background: after the handshake, version 2 carries each payload as a
length-prefixed frame, version 1 as a gob []byte value; with a password
the frame holds the secretbox of the payload, sealed and opened in strict
per-direction order (crypto.py). Go ignores a blank payload and hands the
first byte (the tag) to its dispatcher (protocol.parse_message).

Design: a Session owns the framing and, if encrypted, one Sealer and one
Opener; it does no I/O. The I/O seam writes what ``seal`` returns, feeds
what it reads to ``feed``, and calls ``check_clean_end`` at end of stream.
Sending and receiving state are separate, so one task may send while
another receives; each direction must stay in one task at a time.
"""

from __future__ import annotations

from typing import Protocol

from router.mesh.crypto import SEAL_OVERHEAD, Opener, Sealer
from router.mesh.protocol import FrameReader, check_frame_length, frame
from router.mesh.v1stream import GobMessageReader, encode_bytes_message, parse_bytes_message


class Framer(Protocol):
    """How one protocol version delimits message bodies on the stream."""

    def frame(self, body: bytes) -> bytes:
        """The wire bytes carrying ``body``."""
        ...

    def feed(self, data: bytes) -> list[bytes]:
        """Every body completed by ``data``; raises FramingError for a malformed stream."""
        ...

    def check_clean_end(self) -> None:
        """Raise FramingError if the stream ended inside a message."""
        ...


class LengthPrefixFramer:
    """Version 2: 4-byte big-endian length, then the body."""

    def __init__(self) -> None:
        self._reader = FrameReader()

    def frame(self, body: bytes) -> bytes:
        return frame(body)

    def feed(self, data: bytes) -> list[bytes]:
        return self._reader.feed(data)

    def check_clean_end(self) -> None:
        self._reader.check_clean_end()


class GobFramer:
    """Version 1: each body is one gob []byte value."""

    def __init__(self) -> None:
        self._reader = GobMessageReader()

    def frame(self, body: bytes) -> bytes:
        check_frame_length(len(body), "outgoing")
        return encode_bytes_message(body)

    def feed(self, data: bytes) -> list[bytes]:
        return [parse_bytes_message(message) for message in self._reader.feed(data)]

    def check_clean_end(self) -> None:
        self._reader.check_clean_end()


class Session:
    """Seals and frames our payloads, unframes and opens the peer's."""

    def __init__(self, version: int, framer: Framer, sealer: Sealer | None = None,
                 opener: Opener | None = None) -> None:
        if (sealer is None) != (opener is None):
            raise ValueError("an encrypted session needs both a sealer and an opener")
        self.version = version
        self._framer = framer
        self._sealer = sealer
        self._opener = opener

    @property
    def encrypted(self) -> bool:
        return self._sealer is not None

    def seal(self, payload: bytes) -> bytes:
        """The wire bytes for ``payload`` (usually protocol.encode_message(tag, body)).

        Raises MessageTooLargeError, without consuming a sequence number, when
        the frame body (the ciphertext if encrypted) would exceed MAX_TCP_MSG_SIZE."""
        if self._sealer is None:
            return self._framer.frame(payload)
        check_frame_length(len(payload) + SEAL_OVERHEAD, "outgoing")
        return self._framer.frame(self._sealer.seal(payload))

    def feed(self, data: bytes) -> list[bytes]:
        """Every payload completed by ``data``, in order (possibly none).

        Raises FramingError / MessageTooLargeError for a malformed stream and
        DecryptionError (WrongPasswordError for the first encrypted message)
        when a message does not open; the connection must then be closed.
        Payloads of the same call before the failing one are dropped with it
        (Go would have handled them first; gossip is resent, so nothing is lost
        that matters)."""
        bodies = self._framer.feed(data)
        if self._opener is None:
            return bodies
        return [self._opener.open(body) for body in bodies]

    def check_clean_end(self) -> None:
        """Call at end of stream: raises FramingError if it ended inside a message."""
        self._framer.check_clean_end()
