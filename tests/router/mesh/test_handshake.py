"""The handshake: Go transcripts replayed byte for byte, and two Handshakes talking together."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.public import PrivateKey

from router.mesh.features import LocalFeatures
from router.mesh.handshake import (
    PASSWORD_HERE_ONLY,
    PASSWORD_THERE_ONLY,
    Handshake,
    HandshakeConfig,
    HandshakeStateError,
    Phase,
)
from router.mesh.protocol import (
    EncryptionMismatchError,
    FeaturesError,
    FramingError,
    HeaderError,
    MeshProtocolError,
    MessageTooLargeError,
    PeerClosedError,
    PublicKeyError,
    VersionMismatchError,
    WrongPasswordError,
    encode_message,
    frame,
)
from router.mesh.session import Session
from router.mesh.v1stream import encode_bytes_message
from tests.router.mesh.fixtures import go_fixtures, transcript
from tests.router.mesh.gobmap import GobMapCodec
from tests.router.mesh.handshake_helpers import End, make_handshake, replay_side, run_pair
from tests.router.mesh.strategies import chunked

CODEC = GobMapCodec()
DIALLER = LocalFeatures(name=0x0A0000000001, nickname="dialler", uid=111, conn_id=0xF0F0,
                        short_id=1, trusts_remote=False, overlays=("fastdp", "sleeve"))
ACCEPTOR = LocalFeatures(name=0x0A0000000002, nickname="acceptor", uid=222, conn_id=0x0FF0,
                         short_id=2, trusts_remote=True, overlays=("sleeve",))

# The error our end must report in each failing transcript, per side.
EXPECTED_ERRORS: dict[tuple[str, str], tuple[type[MeshProtocolError], str]] = {
    ("v2-password-here-only", "a"): (EncryptionMismatchError, PASSWORD_HERE_ONLY),
    ("v2-password-here-only", "b"): (EncryptionMismatchError, PASSWORD_THERE_ONLY),
    ("v2-password-there-only", "a"): (EncryptionMismatchError, PASSWORD_THERE_ONLY),
    ("v2-password-there-only", "b"): (EncryptionMismatchError, PASSWORD_HERE_ONLY),
    ("v1-password-here-only", "a"): (EncryptionMismatchError, PASSWORD_HERE_ONLY),
    ("v1-password-here-only", "b"): (EncryptionMismatchError, PASSWORD_THERE_ONLY),
    ("v2-wrong-password", "a"): (WrongPasswordError, "wrong password?"),
    ("v2-wrong-password", "b"): (WrongPasswordError, "wrong password?"),
    ("version-mismatch", "a"): (VersionMismatchError,
                                "the peer speaks versions 1..1, we speak 2..2"),
    ("version-mismatch", "b"): (VersionMismatchError,
                                "the peer speaks versions 2..2, we speak 1..1"),
}

SIDES = [(case["name"], side) for case in go_fixtures()["transcripts"] for side in "ab"]


def in_one_piece(wire: bytes) -> Iterable[bytes]:
    return [wire]


def byte_by_byte(wire: bytes) -> Iterable[bytes]:
    return (wire[i:i + 1] for i in range(len(wire)))


@pytest.mark.parametrize("chunks", [in_one_piece, byte_by_byte], ids=["whole", "bytewise"])
@pytest.mark.parametrize(("name", "side"), SIDES, ids=[f"{n}-{s}" for n, s in SIDES])
def test_go_transcript_replays_byte_for_byte(name: str, side: str, chunks: Any) -> None:
    case = transcript(name)
    mine, theirs = case[f"{side}_result"], case["b_result" if side == "a" else "a_result"]
    outcome = replay_side(case, side, chunks)
    assert outcome.wrote.hex() == mine["wrote"]
    if (name, side) in EXPECTED_ERRORS:
        error_type, message = EXPECTED_ERRORS[(name, side)]
        assert outcome.result is None
        assert type(outcome.error) is error_type
        assert message in str(outcome.error)
        return
    assert outcome.error is None and outcome.result is not None
    result = outcome.result
    assert result.version == mine["version"]
    assert result.features == mine["received_features"]
    assert (result.session_key.hex() if result.session_key else "") == mine.get("session_key", "")
    assert result.session.encrypted == (result.session_key is not None)
    assert result.connection_uid == int(case["a"]["features"]["ConnID"]) ^ int(
        case["b"]["features"]["ConnID"])
    assert [p.hex() for p in outcome.received] == theirs["after_messages"]


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(["v2-encrypted", "v1-encrypted", "v2-plain"]),
       side=st.sampled_from("ab"), data=st.data())
def test_go_transcript_replays_whatever_the_chunking(name: str, side: str,
                                                     data: st.DataObject) -> None:
    case = transcript(name)
    outcome = replay_side(case, side, lambda wire: data.draw(chunked(wire)))
    assert outcome.wrote.hex() == case[f"{side}_result"]["wrote"]
    assert len(outcome.received) == 2


def check_connected(dialler: End, acceptor: End, version: int, encrypted: bool) -> None:
    assert dialler.error is None and acceptor.error is None
    assert dialler.result is not None and acceptor.result is not None
    for end, other in ((dialler, ACCEPTOR), (acceptor, DIALLER)):
        assert end.result is not None
        assert end.result.version == version
        assert end.result.remote.name == other.name
        assert end.result.remote.nickname == other.nickname
        assert end.result.connection_uid == DIALLER.conn_id ^ ACCEPTOR.conn_id
        assert end.result.session.encrypted == encrypted
    assert dialler.result.session_key == acceptor.result.session_key
    assert (dialler.result.session_key is not None) == encrypted
    # Version 1 keeps only the five mandatory entries: no Trusted, ShortID or Overlays.
    assert dialler.result.remote.trusted_by_remote is (version == 2)
    assert acceptor.result.remote.trusted_by_remote is False
    assert dialler.result.remote.overlays == (("sleeve",) if version == 2 else None)
    assert dialler.result.remote.short_id == (ACCEPTOR.short_id if version == 2 else None)
    exchange_messages(dialler.result.session, acceptor.result.session)


def exchange_messages(one: Session, other: Session) -> None:
    for sender, receiver in ((one, other), (other, one)):
        payloads = [encode_message(4, b"gossip"), encode_message(0), bytes(300)]
        assert receiver.feed(b"".join(sender.seal(p) for p in payloads)) == payloads


@pytest.mark.parametrize("password", [None, b"s3cret"], ids=["plain", "encrypted"])
@pytest.mark.parametrize(("dialler_versions", "acceptor_versions", "version"), [
    ((1, 2), (1, 2), 2), ((1, 1), (1, 2), 1), ((1, 2), (1, 1), 1), ((2, 2), (1, 2), 2),
])
def test_two_ends_connect(password: bytes | None, dialler_versions: tuple[int, int],
                          acceptor_versions: tuple[int, int], version: int) -> None:
    dialler, acceptor = run_pair(
        make_handshake(DIALLER, CODEC, outbound=True, password=password, versions=dialler_versions),
        make_handshake(ACCEPTOR, CODEC, outbound=False, password=password,
                       versions=acceptor_versions))
    check_connected(dialler, acceptor, version, password is not None)


@pytest.mark.parametrize("versions", [(1, 1), (2, 2)], ids=["v1", "v2"])
@pytest.mark.parametrize(
    ("dialler_password", "acceptor_password", "dialler_says", "acceptor_says"), [
    (b"pw", None, PASSWORD_HERE_ONLY, PASSWORD_THERE_ONLY),
    (None, b"pw", PASSWORD_THERE_ONLY, PASSWORD_HERE_ONLY),
], ids=["dialler-only", "acceptor-only"])
def test_password_on_one_end_only(versions: tuple[int, int], dialler_password: bytes | None,
                                  acceptor_password: bytes | None, dialler_says: str,
                                  acceptor_says: str) -> None:
    dialler, acceptor = run_pair(
        make_handshake(DIALLER, CODEC, outbound=True, password=dialler_password, versions=versions),
        make_handshake(ACCEPTOR, CODEC, outbound=False, password=acceptor_password,
                       versions=versions))
    assert isinstance(dialler.error, EncryptionMismatchError)
    assert isinstance(acceptor.error, EncryptionMismatchError)
    assert str(dialler.error) == dialler_says
    assert str(acceptor.error) == acceptor_says


def test_different_passwords_fail_at_the_first_decryption_on_both_ends() -> None:
    dialler, acceptor = run_pair(
        make_handshake(DIALLER, CODEC, outbound=True, password=b"one"),
        make_handshake(ACCEPTOR, CODEC, outbound=False, password=b"two"))
    for end in (dialler, acceptor):
        assert isinstance(end.error, WrongPasswordError)
        assert "wrong password?" in str(end.error)
        assert end.handshake.phase is Phase.FAILED


def test_different_passwords_in_version_1_fail_at_the_first_message() -> None:
    dialler, acceptor = run_pair(
        make_handshake(DIALLER, CODEC, outbound=True, password=b"one", versions=(1, 1)),
        make_handshake(ACCEPTOR, CODEC, outbound=False, password=b"two", versions=(1, 1)))
    assert dialler.result is not None and acceptor.result is not None
    with pytest.raises(WrongPasswordError, match=r"wrong password\?"):
        acceptor.result.session.feed(dialler.result.session.seal(encode_message(0)))


def test_no_common_version() -> None:
    dialler, acceptor = run_pair(
        make_handshake(DIALLER, CODEC, outbound=True, versions=(2, 2)),
        make_handshake(ACCEPTOR, CODEC, outbound=False, versions=(1, 1)))
    assert isinstance(dialler.error, VersionMismatchError)
    assert "the peer speaks versions 1..1, we speak 2..2" in str(dialler.error)
    assert isinstance(acceptor.error, VersionMismatchError)


class OtherFlavourCodec(GobMapCodec):
    """A peer built with another peer-name flavour."""

    def encode_features(self, features: dict[str, str]) -> bytes:
        return super().encode_features({**features, "PeerNameFlavour": "hash"})


def test_peer_name_flavour_mismatch() -> None:
    dialler, _ = run_pair(
        make_handshake(DIALLER, CODEC, outbound=True),
        make_handshake(ACCEPTOR, OtherFlavourCodec(), outbound=False))
    assert isinstance(dialler.error, FeaturesError)
    assert "we use 'mac' peer names, the peer uses 'hash'" in str(dialler.error)


@settings(max_examples=40, deadline=None)
@given(dialler_password=st.sampled_from([None, b"a", b"b"]),
       acceptor_password=st.sampled_from([None, b"a", b"b"]),
       dialler_versions=st.sampled_from([(1, 1), (1, 2), (2, 2)]),
       acceptor_versions=st.sampled_from([(1, 1), (1, 2), (2, 2)]),
       data=st.data())
def test_any_configuration_any_chunking(dialler_password: bytes | None,
                                        acceptor_password: bytes | None,
                                        dialler_versions: tuple[int, int],
                                        acceptor_versions: tuple[int, int],
                                        data: st.DataObject) -> None:
    dialler, acceptor = run_pair(
        make_handshake(DIALLER, CODEC, outbound=True, password=dialler_password,
                       versions=dialler_versions),
        make_handshake(ACCEPTOR, CODEC, outbound=False, password=acceptor_password,
                       versions=acceptor_versions),
        cut=lambda available: data.draw(st.integers(1, available)))
    version = min(dialler_versions[1], acceptor_versions[1])
    if max(dialler_versions[0], acceptor_versions[0]) > version:
        expected: type[MeshProtocolError] | None = VersionMismatchError
    elif (dialler_password is None) != (acceptor_password is None):
        expected = EncryptionMismatchError
    elif dialler_password != acceptor_password:
        expected = WrongPasswordError
    else:
        expected = None
    if expected is WrongPasswordError and version == 1:
        # Version 1 exchanges the features in clear: the first sealed message fails.
        assert dialler.result is not None and acceptor.result is not None
        with pytest.raises(WrongPasswordError):
            acceptor.result.session.feed(dialler.result.session.seal(b"\x00"))
    elif expected is None:
        check_connected(dialler, acceptor, version, dialler_password is not None)
    else:
        assert type(dialler.error) is expected and type(acceptor.error) is expected


def test_messages_sent_right_after_the_features_are_not_lost() -> None:
    acceptor = make_handshake(ACCEPTOR, CODEC, outbound=False)
    acceptor.start()
    acceptor.receive(b"weave\x01\x02")
    wire = b"\x00" + frame(CODEC.encode_features(DIALLER.to_wire())) + frame(b"\x04one")
    progress = acceptor.receive(wire + frame(b"\x04two")[:3])
    assert progress.result is not None
    assert progress.result.pending == (b"\x04one",)
    assert progress.result.session.feed(frame(b"\x04two")[3:]) == [b"\x04two"]


def started(password: bytes | None = None, versions: tuple[int, int] = (1, 2)) -> Handshake:
    handshake = make_handshake(ACCEPTOR, CODEC, outbound=False, password=password,
                               versions=versions)
    handshake.start()
    return handshake


def failure(handshake: Handshake, wire: bytes) -> MeshProtocolError:
    progress = handshake.receive(wire)
    assert progress.result is None and progress.error is not None
    assert handshake.phase is Phase.FAILED
    return progress.error


def test_not_a_weave_peer_fails_at_its_first_byte() -> None:
    error = failure(started(), b"G")
    assert isinstance(error, HeaderError)
    assert "something other than a weave router is on that port" in str(error)


def test_a_bad_encryption_flag() -> None:
    error = failure(started(), b"weave\x01\x02\x07")
    assert isinstance(error, FramingError)
    assert "invalid encryption flag 7 from the peer (expected 0 or 1)" in str(error)


def test_undecodable_features() -> None:
    error = failure(started(), b"weave\x01\x02\x00" + frame(b"not gob"))
    assert isinstance(error, FeaturesError)
    assert "cannot decode the peer's features message: no map[string]string" in str(error)


def test_an_oversized_features_frame() -> None:
    error = failure(started(), b"weave\x01\x02\x00" + (10 * 2**20 + 1).to_bytes(4, "big"))
    assert isinstance(error, MessageTooLargeError)


def test_missing_features_in_the_first_message() -> None:
    features = {k: v for k, v in DIALLER.to_wire().items() if k != "UID"}
    error = failure(started(), b"weave\x01\x02\x00" + frame(CODEC.encode_features(features)))
    assert isinstance(error, FeaturesError)
    assert "lack the mandatory entry 'UID'" in str(error)


@pytest.mark.parametrize(("public_key", "message"), [
    ("zz" * 32, "the peer's PublicKey feature is not hex"),
    ("ab" * 31, "the peer's PublicKey feature is 31 bytes, expected 32"),
])
def test_a_bad_version_1_public_key(public_key: str, message: str) -> None:
    features = {**DIALLER.to_wire(), "PublicKey": public_key}
    error = failure(started(b"pw", (1, 1)), b"weave\x01\x01" + CODEC.encode_features(features))
    assert isinstance(error, FeaturesError)
    assert message in str(error)


def test_version_1_features_then_garbage() -> None:
    wire = b"weave\x01\x01" + CODEC.encode_features(DIALLER.to_wire()) + b"\x02\x0b\x00"
    error = failure(started(versions=(1, 1)), wire)
    assert isinstance(error, FramingError)
    assert "expected a []byte value" in str(error)


def test_version_1_pending_messages() -> None:
    wire = (b"weave\x01\x01" + CODEC.encode_features(DIALLER.to_wire())
            + encode_bytes_message(b"\x00"))
    progress = started(versions=(1, 1)).receive(wire)
    assert progress.result is not None
    assert progress.result.pending == (b"\x00",)
    assert progress.result.features == {k: v for k, v in DIALLER.to_wire().items()
                                        if k in {"PeerNameFlavour", "Name", "NickName", "UID",
                                                 "ConnID"}}


@pytest.mark.parametrize(("wire", "password", "message"), [
    (b"wea", None, r"during the protocol header \(3 of 7 bytes received\)"),
    (b"weave\x01\x02", None, r"before sending its encryption flag: .*password set on one end"),
    (b"weave\x01\x02\x01" + bytes(5), b"pw", "before sending its public key"),
    (b"weave\x01\x02\x00" + frame(b"abc")[:5], None,
     r"before sending its features: it could not read ours \(its log says why\)"),
    (b"weave\x01\x02\x01" + bytes(PrivateKey.generate().public_key), b"pw",
     "most likely because the passwords differ"),
    (b"weave\x01\x01", b"pw", r"before sending its features: it could not read ours \(its log"),
])
def test_the_peer_closing_midway(wire: bytes, password: bytes | None, message: str) -> None:
    handshake = started(password)
    progress = handshake.receive(wire)
    assert progress.error is None and progress.result is None
    with pytest.raises(PeerClosedError, match=message):
        handshake.eof()
    assert handshake.phase is Phase.FAILED


def test_a_low_order_public_key_is_refused() -> None:
    error = failure(started(b"pw"), b"weave\x01\x02\x01" + bytes(32))
    assert isinstance(error, PublicKeyError)
    assert "low-order Curve25519 point" in str(error)


def test_calls_out_of_order() -> None:
    handshake = make_handshake(ACCEPTOR, CODEC, outbound=False)
    with pytest.raises(HandshakeStateError,
                       match=r"receive\(\) called while the handshake is not started"):
        handshake.receive(b"weave")
    handshake.start()
    with pytest.raises(HandshakeStateError, match="already called"):
        handshake.start()
    failure(handshake, b"nope")
    with pytest.raises(HandshakeStateError, match="while the handshake is failed"):
        handshake.receive(b"")
    with pytest.raises(HandshakeStateError, match=r"eof\(\) called while the handshake is failed"):
        handshake.eof()


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="empty password: pass None"):
        HandshakeConfig(ACCEPTOR, outbound=False, password=b"")
    with pytest.raises(ValueError, match=r"not within 1\.\.2"):
        HandshakeConfig(ACCEPTOR, outbound=False, min_version=2, max_version=3)


def test_a_fresh_key_per_handshake() -> None:
    one = make_handshake(DIALLER, CODEC, outbound=True, password=b"pw")
    two = make_handshake(DIALLER, CODEC, outbound=True, password=b"pw")
    one.start()
    two.start()
    assert one.receive(b"weave\x02\x02").send != two.receive(b"weave\x02\x02").send
