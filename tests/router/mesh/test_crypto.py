"""Session keys, nonces and secretbox sealing, byte for byte against mesh's Go output."""

from __future__ import annotations

from typing import Any

import nacl.bindings
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.public import PrivateKey

from router.mesh.crypto import (
    NONCE_OUTBOUND_BIT,
    NONCE_TCP_BIT,
    Opener,
    Sealer,
    form_session_key,
    generate_key_pair,
    tcp_nonce,
)
from router.mesh.protocol import (
    MAX_TCP_MSG_SIZE,
    DecryptionError,
    MessageTooLargeError,
    PublicKeyError,
    WrongPasswordError,
    frame,
)
from router.mesh.session import LengthPrefixFramer, Session
from tests.router.mesh.fixtures import go_fixtures
from tests.router.mesh.strategies import chunked, payload_lists

KEY = bytes(range(32))


def session_key_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = go_fixtures()["session_keys"]
    return cases


def sealed_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = go_fixtures()["sealed"]
    return cases


def encrypted_pair(key: bytes = KEY) -> tuple[Session, Session]:
    """(the dialling end, the accepting end) of one encrypted version-2 connection."""
    return (Session(2, LengthPrefixFramer(), Sealer(key, True), Opener(key, True)),
            Session(2, LengthPrefixFramer(), Sealer(key, False), Opener(key, False)))


@pytest.mark.parametrize("case", session_key_cases(), ids=lambda c: c["password"][:12] or "empty")
def test_session_key_matches_go_from_both_ends(case: dict[str, Any]) -> None:
    private_a = PrivateKey(bytes.fromhex(case["private_a"]))
    private_b = PrivateKey(bytes.fromhex(case["private_b"]))
    assert bytes(private_a.public_key).hex() == case["public_a"]
    assert bytes(private_b.public_key).hex() == case["public_b"]
    shared = nacl.bindings.crypto_box_beforenm(bytes(private_b.public_key), bytes(private_a))
    assert shared.hex() == case["shared_key"]
    password = bytes.fromhex(case["password"])
    from_a = form_session_key(bytes(private_b.public_key), private_a, password)
    from_b = form_session_key(bytes(private_a.public_key), private_b, password)
    assert from_a.hex() == from_b.hex() == case["session_key"]


def test_a_low_order_public_key() -> None:
    with pytest.raises(PublicKeyError, match="low-order Curve25519 point"):
        form_session_key(bytes(32), generate_key_pair(), b"pw")


def test_a_public_key_is_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes, got 31"):
        form_session_key(bytes(31), generate_key_pair(), b"pw")


def test_nonce_layout() -> None:
    assert NONCE_OUTBOUND_BIT == 1 << 7 and NONCE_TCP_BIT == 1 << 6
    assert tcp_nonce(True, 0) == b"\xc0" + bytes(23)
    assert tcp_nonce(False, 1) == b"\x40" + bytes(22) + b"\x01"
    assert tcp_nonce(False, 2**64 - 1) == b"\x40" + bytes(15) + b"\xff" * 8
    with pytest.raises(ValueError, match="64 bits"):
        tcp_nonce(True, 2**64)


@pytest.mark.parametrize("case", sealed_cases(),
                         ids=lambda c: f"{c['session_key'][:8]}-{'out' if c['outbound'] else 'in'}")
def test_sealed_frames_match_go(case: dict[str, Any]) -> None:
    key = bytes.fromhex(case["session_key"])
    sender = Session(2, LengthPrefixFramer(), Sealer(key, case["outbound"]),
                     Opener(key, case["outbound"]))
    messages = [bytes.fromhex(m) for m in case["messages"]]
    assert [sender.seal(m).hex() for m in messages] == case["frames"]
    receiver = Session(2, LengthPrefixFramer(), Sealer(key, not case["outbound"]),
                       Opener(key, not case["outbound"]))
    assert receiver.feed(bytes.fromhex("".join(case["frames"]))) == messages


def test_the_sender_polarity_matters() -> None:
    case = sealed_cases()[0]
    key = bytes.fromhex(case["session_key"])
    same_side = Opener(key, case["outbound"])  # expects the other end's polarity
    sealed = bytes.fromhex(case["frames"][0])[4:]
    with pytest.raises(WrongPasswordError):
        same_side.open(sealed)


def test_the_first_message_failing_means_a_wrong_password() -> None:
    dialler, _ = encrypted_pair(KEY)
    _, acceptor = encrypted_pair(bytes(32))
    with pytest.raises(WrongPasswordError, match=r"wrong password\?.*--password / WEAVE_PASSWORD"):
        acceptor.feed(dialler.seal(b"\x04features"))


def test_a_later_failure_is_corruption_not_a_password_problem() -> None:
    dialler, acceptor = encrypted_pair()
    wire = bytearray(b"".join(dialler.seal(m) for m in (b"a", b"b", b"c")))
    wire[-1] ^= 1
    with pytest.raises(DecryptionError,
                       match=r"message #2 .*corrupted, replayed or reordered") as info:
        acceptor.feed(bytes(wire))
    assert not isinstance(info.value, WrongPasswordError)


def test_a_replayed_message_is_refused() -> None:
    dialler, acceptor = encrypted_pair()
    first = dialler.seal(b"\x00")
    assert acceptor.feed(first) == [b"\x00"]
    with pytest.raises(DecryptionError, match="message #1 "):
        acceptor.feed(first)


def test_reordered_messages_are_refused() -> None:
    dialler, acceptor = encrypted_pair()
    zero, one, two = (dialler.seal(bytes([n])) for n in range(3))
    assert acceptor.feed(zero) == [b"\x00"]
    with pytest.raises(DecryptionError, match="message #1 "):
        acceptor.feed(two + one)


def test_a_message_shorter_than_the_tag() -> None:
    _, acceptor = encrypted_pair()
    with pytest.raises(DecryptionError, match="shorter than the 16-byte authentication tag"):
        acceptor.feed(frame(b"short"))


def test_an_oversized_payload_does_not_use_up_a_sequence_number() -> None:
    dialler, acceptor = encrypted_pair()
    with pytest.raises(MessageTooLargeError, match="outgoing message of 10485761 bytes"):
        dialler.seal(bytes(MAX_TCP_MSG_SIZE - 15))
    assert acceptor.feed(dialler.seal(b"next")) == [b"next"]


def test_the_largest_encrypted_payload() -> None:
    dialler, acceptor = encrypted_pair()
    payload = bytes(MAX_TCP_MSG_SIZE - 16)
    assert acceptor.feed(dialler.seal(payload)) == [payload]


def test_keys_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="session key is 32 bytes"):
        Sealer(b"short", True)
    with pytest.raises(ValueError, match="session key is 32 bytes"):
        Opener(b"short", True)


def test_a_session_is_either_encrypted_or_not() -> None:
    with pytest.raises(ValueError, match="both a sealer and an opener"):
        Session(2, LengthPrefixFramer(), Sealer(KEY, True))


@settings(max_examples=60, deadline=None)
@given(payloads=payload_lists(), from_dialler=st.booleans(), data=st.data())
def test_sealing_round_trips_whatever_the_chunking(payloads: list[bytes], from_dialler: bool,
                                                   data: st.DataObject) -> None:
    dialler, acceptor = encrypted_pair()
    sender, receiver = (dialler, acceptor) if from_dialler else (acceptor, dialler)
    wire = b"".join(sender.seal(p) for p in payloads)
    assert len(wire) == sum(4 + 16 + len(p) for p in payloads)
    received = [p for chunk in data.draw(chunked(wire)) for p in receiver.feed(chunk)]
    assert received == payloads
    receiver.check_clean_end()
