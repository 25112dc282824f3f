"""The mesh connection handshake ("protocol intro") as a sans-IO state machine.

Background (``protocol.go`` doIntro, ``connection.go`` run/parseFeatures):
the handshake is symmetric; the dialling ("outbound") end differs only in
its nonce bit. Each step is written without waiting for the peer to read
(Go writes from a goroutine while it reads), so both ends send at once:

1. header: ``b"weave" + min + max``; read the peer's; use the highest common
   version (10 s deadline for this step, then 60 s for the rest).
2. version 2: one flag byte (1 = encrypted) plus, if 1, our ephemeral
   Curve25519 public key. A flag that disagrees with our own password
   setting fails at once, before the key is read.
3. version 2: the features map (gob), as the first framed message, sealed
   at sequence 0 when encrypted — so a wrong password shows up as the first
   decryption failure.
   version 1 (instead of 2 and 3): the features as the first value of a
   gob stream, unencrypted, limited to five entries plus "PublicKey" (hex).
4. the features are checked; connection UID = our ConnID XOR theirs.

Go reports a password mismatch as "password specified, but peer requested
an unencrypted connection" (or the reverse), and a wrong password only as
"Unable to decrypt TCP msg"; here each cause has its own error and message.

Design: the caller owns the socket. ``start()`` gives the header to send;
each ``receive(data)`` returns the bytes to send next and, once the peer's
features have arrived and checked out, a HandshakeResult holding the Session
for the rest of the connection. Any bytes that arrived after the features
are already decoded into ``HandshakeResult.pending``. The features encoding
is injected (FeaturesCodec); the ephemeral key may be injected too (it is
randomness, like a clock).
"""

from __future__ import annotations

import binascii
import enum
from dataclasses import dataclass, field
from typing import Final, NoReturn

from nacl.public import PrivateKey

from router.mesh import crypto
from router.mesh.features import (
    V1_PUBLIC_KEY_FEATURE,
    FeaturesCodec,
    LocalFeatures,
    RemoteFeatures,
    parse_remote_features,
    v1_subset,
)
from router.mesh.protocol import (
    HEADER_LENGTH,
    PROTOCOL_MAX_VERSION,
    PROTOCOL_MIN_VERSION,
    EncryptionMismatchError,
    FeaturesError,
    FramingError,
    MeshProtocolError,
    PeerClosedError,
    check_header_prefix,
    check_version_range,
    encode_header,
    negotiate_version,
    parse_header,
)
from router.mesh.session import GobFramer, LengthPrefixFramer, Session
from router.mesh.v1stream import GobMessageReader

FLAG_PLAIN: Final = 0
FLAG_ENCRYPTED: Final = 1

PASSWORD_HERE_ONLY: Final = (
    "encryption mismatch: we have a password but the peer has none and asked for an "
    "unencrypted connection; set the same --password / WEAVE_PASSWORD on both peers")
PASSWORD_THERE_ONLY: Final = (
    "encryption mismatch: the peer has a password and asked for an encrypted connection, "
    "but we have none; set the same --password / WEAVE_PASSWORD on both peers")


class HandshakeStateError(RuntimeError):
    """The Handshake was used out of order (a bug in the caller, not the peer)."""


class Phase(enum.Enum):
    NOT_STARTED = "not started"
    HEADER = "the protocol header"
    ENCRYPTION_FLAG = "the encryption flag"
    PUBLIC_KEY = "the public key"
    FEATURES = "the features message"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class HandshakeConfig:
    """Our side of one connection."""

    local: LocalFeatures
    outbound: bool
    """Whether we dialled the connection."""
    password: bytes | None = None
    """None: unencrypted. Weave treats an empty password as none, so b"" is refused."""
    min_version: int = PROTOCOL_MIN_VERSION
    max_version: int = PROTOCOL_MAX_VERSION

    def __post_init__(self) -> None:
        check_version_range(self.min_version, self.max_version)
        if self.password == b"":
            raise ValueError("an empty password: pass None for an unencrypted connection")


@dataclass(frozen=True)
class HandshakeResult:
    version: int
    session: Session
    remote: RemoteFeatures
    features: dict[str, str]
    """The peer's features map as received (version 1: the five entries it keeps)."""
    session_key: bytes | None
    """The 32-byte session key when encrypted; the overlay reuses it."""
    connection_uid: int
    """Our ConnID XOR the peer's: the same number at both ends."""
    pending: tuple[bytes, ...] = ()
    """Payloads that arrived after the features in the same data (already opened)."""


@dataclass(frozen=True)
class HandshakeProgress:
    """What one receive() call produced. Write ``send`` first; then, if ``error``
    is set, close the connection and report it; if ``result`` is set, the
    handshake is complete. Neither set: wait for more data."""

    send: bytes
    """Bytes to write to the peer now (possibly empty)."""
    result: HandshakeResult | None = None
    """Set once, when the handshake completes."""
    error: MeshProtocolError | None = None
    """Set once, when the handshake fails (the handshake is then finished)."""


@dataclass
class _Negotiated:
    version: int = 0
    session: Session | None = None
    session_key: bytes | None = None
    v1_reader: GobMessageReader = field(default_factory=GobMessageReader)
    v1_features_messages: list[bytes] = field(default_factory=list)


class Handshake:
    """One end of the handshake. Call start() and write its bytes; then feed
    every received chunk to receive() and act on the HandshakeProgress it
    returns, until that carries a result or an error (both final). At end of
    stream before that, call eof()."""

    def __init__(self, config: HandshakeConfig, codec: FeaturesCodec,
                 ephemeral_key: PrivateKey | None = None) -> None:
        self.config = config
        self._codec = codec
        self._key = None
        if config.password is not None:
            self._key = ephemeral_key if ephemeral_key is not None else crypto.generate_key_pair()
        self._phase = Phase.NOT_STARTED
        self._buffer = bytearray()
        self._state = _Negotiated()

    @property
    def phase(self) -> Phase:
        return self._phase

    def start(self) -> bytes:
        """The header to send first (both ends send theirs without waiting)."""
        if self._phase is not Phase.NOT_STARTED:
            raise HandshakeStateError("start() was already called")
        self._phase = Phase.HEADER
        return encode_header(self.config.min_version, self.config.max_version)

    def receive(self, data: bytes) -> HandshakeProgress:
        """Take bytes from the peer; return what to send and, at the end, the
        result or the error (a MeshProtocolError naming the cause). Raises only
        HandshakeStateError, when called before start() or after the end."""
        if self._phase in (Phase.NOT_STARTED, Phase.DONE, Phase.FAILED):
            raise HandshakeStateError(
                f"receive() called while the handshake is {self._phase.value}")
        self._buffer += data
        out = bytearray()
        try:
            result = self._advance(out)
        except MeshProtocolError as error:
            # Bytes we owed the peer still go out (as Go's concurrent writes do),
            # so its log names the same cause instead of an early EOF.
            self._phase = Phase.FAILED
            return HandshakeProgress(bytes(out), error=error)
        return HandshakeProgress(bytes(out), result)

    def eof(self) -> NoReturn:
        """Call when the peer closes the connection mid-handshake: raises
        PeerClosedError naming the step the peer never completed."""
        if self._phase in (Phase.NOT_STARTED, Phase.DONE, Phase.FAILED):
            raise HandshakeStateError(f"eof() called while the handshake is {self._phase.value}")
        step = self._phase
        self._phase = Phase.FAILED
        raise PeerClosedError(self._closed_message(step))

    def _closed_message(self, step: Phase) -> str:
        # Go closes a refused connection at once (with a reset), often before
        # its own pending write went out, so the step we were waiting for is
        # the best clue to what the peer refused.
        if step is Phase.HEADER:
            return (f"the peer closed the connection during the protocol header "
                    f"({len(self._buffer)} of {HEADER_LENGTH} bytes received)")
        if step is Phase.FEATURES and self._key is not None and self._state.version == 2:
            return ("the peer closed the connection before sending its features: it could not "
                    "read ours, most likely because the passwords differ (the peer then logs "
                    "'Unable to decrypt TCP msg')")
        if step is Phase.FEATURES:
            return ("the peer closed the connection before sending its features: it could not "
                    "read ours (its log says why)")
        if step is Phase.ENCRYPTION_FLAG:
            return ("the peer closed the connection before sending its encryption flag: it "
                    "refused our protocol header or our encryption setting (is a password set "
                    "on one end only? its log says why)")
        return "the peer closed the connection before sending its public key (its log says why)"

    def _advance(self, out: bytearray) -> HandshakeResult | None:
        if self._phase is Phase.HEADER:
            check_header_prefix(bytes(self._buffer[:HEADER_LENGTH]))
            if len(self._buffer) < HEADER_LENGTH:
                return None
            self._accept_header(self._take(HEADER_LENGTH), out)
        if self._phase is Phase.ENCRYPTION_FLAG:
            if not self._buffer:
                return None
            self._accept_flag(self._buffer[0], out)
        if self._phase is Phase.PUBLIC_KEY:
            if len(self._buffer) < 1 + crypto.KEY_SIZE:
                return None
            self._accept_public_key(self._take(1 + crypto.KEY_SIZE)[1:], out)
        if self._phase is Phase.FEATURES:
            if self._state.version == 1:
                return self._receive_v1_features()
            return self._receive_v2_features()
        return None

    def _take(self, count: int) -> bytes:
        taken = bytes(self._buffer[:count])
        del self._buffer[:count]
        return taken

    def _accept_header(self, header: bytes, out: bytearray) -> None:
        ours = (self.config.min_version, self.config.max_version)
        self._state.version = negotiate_version(ours, parse_header(header))
        if self._state.version == 1:
            self._phase = Phase.FEATURES
            out += self._codec.encode_features(self._v1_features_to_send())
            return
        self._phase = Phase.ENCRYPTION_FLAG
        if self._key is None:
            out.append(FLAG_PLAIN)
        else:
            out.append(FLAG_ENCRYPTED)
            out += bytes(self._key.public_key)

    def _accept_flag(self, flag: int, out: bytearray) -> None:
        if flag == FLAG_PLAIN:
            if self._key is not None:
                raise EncryptionMismatchError(PASSWORD_HERE_ONLY)
            self._take(1)
            self._start_v2_session(out)
        elif flag == FLAG_ENCRYPTED:
            if self._key is None:
                raise EncryptionMismatchError(PASSWORD_THERE_ONLY)
            self._phase = Phase.PUBLIC_KEY
        else:
            raise FramingError(
                f"invalid encryption flag {flag} from the peer (expected 0 or 1): "
                "the stream is corrupted or the peer is not a weave router")

    def _accept_public_key(self, public_key: bytes, out: bytearray) -> None:
        self._state.session_key = self._session_key(public_key)
        self._start_v2_session(out)

    def _session_key(self, remote_public: bytes) -> bytes:
        assert self._key is not None and self.config.password is not None
        return crypto.form_session_key(remote_public, self._key, self.config.password)

    def _start_v2_session(self, out: bytearray) -> None:
        self._state.session = self._new_session(LengthPrefixFramer())
        self._phase = Phase.FEATURES
        out += self._state.session.seal(self._codec.encode_features(self.config.local.to_wire()))

    def _new_session(self, framer: LengthPrefixFramer | GobFramer) -> Session:
        key = self._state.session_key
        if key is None:
            return Session(self._state.version, framer)
        outbound = self.config.outbound
        return Session(self._state.version, framer, crypto.Sealer(key, outbound),
                       crypto.Opener(key, outbound))

    def _receive_v2_features(self) -> HandshakeResult | None:
        assert self._state.session is not None
        payloads = self._state.session.feed(self._take(len(self._buffer)))
        if not payloads:
            return None
        features = self._decode_features(payloads[0])
        return self._finish(features, tuple(payloads[1:]))

    def _v1_features_to_send(self) -> dict[str, str]:
        features = v1_subset(self.config.local.to_wire())
        if self._key is not None:
            features[V1_PUBLIC_KEY_FEATURE] = bytes(self._key.public_key).hex()
        return features

    def _receive_v1_features(self) -> HandshakeResult | None:
        reader = self._state.v1_reader
        messages = reader.feed(self._take(len(self._buffer)))
        for index, message in enumerate(messages):
            self._state.v1_features_messages.append(message.raw)
            if message.is_type_definition:
                continue
            features = self._decode_features(b"".join(self._state.v1_features_messages))
            self._check_v1_encryption(features)
            self._state.session = session = self._new_session(GobFramer())
            rest = b"".join(later.raw for later in messages[index + 1:]) + reader.take_buffered()
            return self._finish(v1_subset(features), tuple(session.feed(rest)))
        return None

    def _check_v1_encryption(self, features: dict[str, str]) -> None:
        remote_key_hex = features.get(V1_PUBLIC_KEY_FEATURE)
        if self._key is None:
            if remote_key_hex is not None:
                raise EncryptionMismatchError(PASSWORD_THERE_ONLY)
            return
        if remote_key_hex is None:
            raise EncryptionMismatchError(PASSWORD_HERE_ONLY)
        try:
            remote_key = binascii.a2b_hex(remote_key_hex)
        except (binascii.Error, ValueError):
            raise FeaturesError(
                f"the peer's PublicKey feature is not hex: {remote_key_hex[:80]!r}") from None
        if len(remote_key) != crypto.KEY_SIZE:
            raise FeaturesError(
                f"the peer's PublicKey feature is {len(remote_key)} bytes, expected "
                f"{crypto.KEY_SIZE}")
        self._state.session_key = self._session_key(remote_key)

    def _decode_features(self, data: bytes) -> dict[str, str]:
        try:
            return self._codec.decode_features(data)
        except ValueError as error:
            raise FeaturesError(f"cannot decode the peer's features message: {error}") from None

    def _finish(self, features: dict[str, str], pending: tuple[bytes, ...]) -> HandshakeResult:
        remote = parse_remote_features(features)
        session = self._state.session
        assert session is not None
        self._phase = Phase.DONE
        return HandshakeResult(
            version=self._state.version,
            session=session,
            remote=remote,
            features=features,
            session_key=self._state.session_key,
            connection_uid=self.config.local.conn_id ^ remote.conn_id,
            pending=pending,
        )
