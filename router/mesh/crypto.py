"""The NaCl parts of an encrypted mesh TCP connection: session key and per-direction sealing.

Background (``protocol_crypto.go``): with a password, each end makes a fresh
Curve25519 key pair per connection and sends the public half. The session
key is SHA-256 over the 32-byte NaCl box shared key (``crypto_box_beforenm``
of the peer's public key and our private key) immediately followed by the
password bytes. Every message is sealed with NaCl secretbox
(XSalsa20-Poly1305, 16 bytes of tag first) under a 24-byte nonce: byte 0
has bit 7 set when the sending end dialled the connection ("outbound") and
bit 6 always set (it marks TCP, keeping these nonces apart from the overlay's,
which share the key); the last 8 bytes hold the sender's message count,
big-endian, starting at 0. The receiver expects the other polarity and the
next count, so a replayed, dropped or reordered message fails to open. The
same session key is later handed to the overlay (sleeve, fastdp IPsec).

Design: PyNaCl does the cryptography; this module only arranges the bytes
and counts. A Sealer/Opener pair is the whole per-direction state, so a
Session can own one of each without any locking of its own.
"""

from __future__ import annotations

import hashlib
from typing import Final

import nacl.bindings
import nacl.exceptions
from nacl.public import PrivateKey, PublicKey

from router.mesh.protocol import DecryptionError, PublicKeyError, WrongPasswordError

KEY_SIZE: Final = 32
NONCE_SIZE: Final = 24
SEAL_OVERHEAD: Final = 16
"""secretbox's Poly1305 tag, which leads every sealed message."""
NONCE_OUTBOUND_BIT: Final = 0x80
"""Set in nonce byte 0 on messages sent by the end that dialled the connection."""
NONCE_TCP_BIT: Final = 0x40
"""Set in nonce byte 0 on every mesh TCP message (overlay traffic leaves it clear)."""
SEQUENCE_LIMIT: Final = 1 << 64


def generate_key_pair() -> PrivateKey:
    """A fresh ephemeral Curve25519 key pair for one connection."""
    return PrivateKey.generate()


def form_session_key(remote_public: bytes, local_private: PrivateKey, password: bytes) -> bytes:
    """SHA-256(box shared key of (remote public, local private) || password).

    Both ends compute the same key from their own private and the other's public key."""
    if len(remote_public) != KEY_SIZE:
        raise ValueError(f"a Curve25519 public key is {KEY_SIZE} bytes, got {len(remote_public)}")
    try:
        shared = nacl.bindings.crypto_box_beforenm(
            bytes(PublicKey(remote_public)), bytes(local_private))
    except nacl.exceptions.CryptoError:
        # libsodium refuses low-order points (the all-zero key, for one), which
        # would make the shared key predictable. Go's x/crypto of weave 2.8.1
        # accepted them; no honest peer sends one.
        raise PublicKeyError(
            "the peer's public key is a low-order Curve25519 point, which would make the "
            "session key guessable; refusing the connection") from None
    return hashlib.sha256(shared + password).digest()


def tcp_nonce(sent_by_outbound: bool, sequence: int) -> bytes:
    """The nonce of message number ``sequence`` sent by the outbound (dialling)
    end (``sent_by_outbound``) or by the inbound end."""
    if not 0 <= sequence < SEQUENCE_LIMIT:
        raise ValueError(f"a TCP message sequence number is 64 bits, got {sequence}")
    flags = NONCE_TCP_BIT | (NONCE_OUTBOUND_BIT if sent_by_outbound else 0)
    return bytes((flags,)) + bytes(15) + sequence.to_bytes(8, "big")


class Sealer:
    """Seals our messages in order; ``outbound`` is whether we dialled the connection."""

    def __init__(self, session_key: bytes, outbound: bool) -> None:
        _check_key(session_key)
        self._key = session_key
        self._outbound = outbound
        self.sequence = 0
        """The sequence number the next sealed message gets."""

    def seal(self, payload: bytes) -> bytes:
        """Tag and ciphertext of ``payload`` (len(payload) + 16 bytes); advances the sequence."""
        sealed: bytes = nacl.bindings.crypto_secretbox(
            payload, tcp_nonce(self._outbound, self.sequence), self._key)
        self.sequence += 1
        return sealed


class Opener:
    """Opens the peer's messages in order; ``outbound`` is whether WE dialled the
    connection (the peer's messages carry the opposite polarity)."""

    def __init__(self, session_key: bytes, outbound: bool) -> None:
        _check_key(session_key)
        self._key = session_key
        self._peer_outbound = not outbound
        self.sequence = 0
        """The sequence number the next message must have been sealed with."""

    def open(self, sealed: bytes) -> bytes:
        """The payload of the next message; raises instead of skipping or reordering.

        The first message of a connection is the features map, so failing to
        open message 0 means the passwords differ (WrongPasswordError); any
        later failure is corruption, replay or reordering (DecryptionError)."""
        nonce = tcp_nonce(self._peer_outbound, self.sequence)
        try:
            payload: bytes = nacl.bindings.crypto_secretbox_open(sealed, nonce, self._key)
        except (nacl.exceptions.CryptoError, ValueError) as error:
            raise self._failure(len(sealed)) from error
        self.sequence += 1
        return payload

    def _failure(self, length: int) -> DecryptionError:
        if length < SEAL_OVERHEAD:
            return DecryptionError(
                f"encrypted message #{self.sequence} from the peer is {length} bytes, shorter "
                f"than the {SEAL_OVERHEAD}-byte authentication tag: the stream is corrupted")
        if self.sequence == 0:
            return WrongPasswordError(
                "cannot decrypt the peer's first encrypted message: wrong password? "
                "Both ends use encryption but derived different session keys, which means "
                "their --password / WEAVE_PASSWORD values differ")
        return DecryptionError(
            f"cannot decrypt message #{self.sequence} from the peer (earlier ones decrypted "
            "fine): the stream was corrupted, replayed or reordered")


def _check_key(session_key: bytes) -> None:
    if len(session_key) != KEY_SIZE:
        raise ValueError(f"a session key is {KEY_SIZE} bytes, got {len(session_key)}")
