"""Version-1 gob stream framing against the bytes of Go's gob encoder."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.mesh.crypto import Opener, Sealer
from router.mesh.protocol import MAX_TCP_MSG_SIZE, FramingError, MessageTooLargeError
from router.mesh.session import GobFramer, Session
from router.mesh.v1stream import (
    V1_MAX_GOB_MESSAGE,
    GobMessageReader,
    decode_int,
    decode_uint,
    encode_bytes_message,
    encode_int,
    encode_uint,
)
from tests.router.mesh.fixtures import go_fixtures
from tests.router.mesh.strategies import chunked, payload_lists


@pytest.mark.parametrize(("value", "wire"), [
    (0, "00"), (7, "07"), (127, "7f"), (128, "ff80"), (256, "fe0100"), (2**64 - 1, "f8" + "ff" * 8),
])
def test_unsigned_integers_as_the_gob_spec_writes_them(value: int, wire: str) -> None:
    assert encode_uint(value).hex() == wire
    assert decode_uint(bytes.fromhex(wire), 0) == (value, len(wire) // 2)


@pytest.mark.parametrize(("value", "wire"), [(0, "00"), (5, "0a"), (-1, "01"), (-129, "fe0101"),
                                             (-64, "7f"), (64, "ff80")])
def test_signed_integers_as_the_gob_spec_writes_them(value: int, wire: str) -> None:
    assert encode_int(value).hex() == wire
    assert decode_int(bytes.fromhex(wire), 0) == (value, len(wire) // 2)


@given(st.integers(0, 2**64 - 1))
def test_unsigned_round_trip(value: int) -> None:
    assert decode_uint(encode_uint(value), 0) == (value, len(encode_uint(value)))


@given(st.integers(-(2**63), 2**63 - 1))
def test_signed_round_trip(value: int) -> None:
    assert decode_int(encode_int(value), 0) == (value, len(encode_int(value)))


def test_unsigned_out_of_range() -> None:
    with pytest.raises(ValueError, match="64 bits"):
        encode_uint(2**64)


def test_incomplete_integers_wait_for_more() -> None:
    assert decode_uint(b"", 0) is None
    assert decode_uint(b"\xfe\x01", 0) is None
    assert decode_int(b"\xfe", 0) is None


def test_an_integer_claiming_nine_bytes() -> None:
    with pytest.raises(FramingError, match="claims 9 bytes"):
        decode_uint(b"\xf7" + bytes(9), 0)


def test_plain_stream_matches_go() -> None:
    plain = go_fixtures()["plain"]
    messages = [bytes.fromhex(m) for m in plain["messages"]]
    stream = bytes.fromhex(plain["v1_gob_stream"])
    session = Session(1, GobFramer())
    assert b"".join(session.seal(m) for m in messages) == stream
    assert Session(1, GobFramer()).feed(stream) == messages


@pytest.mark.parametrize("case", go_fixtures()["sealed"],
                         ids=lambda c: f"{c['session_key'][:8]}-{'out' if c['outbound'] else 'in'}")
def test_encrypted_stream_matches_go(case: dict[str, Any]) -> None:
    key = bytes.fromhex(case["session_key"])
    outbound = case["outbound"]
    messages = [bytes.fromhex(m) for m in case["messages"]]
    sender = Session(1, GobFramer(), Sealer(key, outbound), Opener(key, outbound))
    assert b"".join(sender.seal(m) for m in messages).hex() == case["v1_gob_stream"]
    receiver = Session(1, GobFramer(), Sealer(key, not outbound), Opener(key, not outbound))
    assert receiver.feed(bytes.fromhex(case["v1_gob_stream"])) == messages


def test_a_type_definition_where_a_message_belongs() -> None:
    definition = bytes.fromhex("0d7f040102ff8000010c010c0000")
    with pytest.raises(FramingError,
                       match=r"expected a \[\]byte value \(gob type 5\), got gob type -64"):
        Session(1, GobFramer()).feed(definition)


@pytest.mark.parametrize(("wire", "cause"), [
    ("00", "a message of length 0"),
    ("010a", r"a \[\]byte value without its zero delta"),
    ("020a01", r"a \[\]byte value without its zero delta"),
    ("020a00", r"a \[\]byte value ends inside its length"),
    ("040a000200", r"declares 2 bytes but its message holds 1"),
    ("040a000000", r"declares 0 bytes but its message holds 1"),
    ("01fe", "a message ends inside its type id"),
])
def test_malformed_gob_messages(wire: str, cause: str) -> None:
    with pytest.raises(FramingError, match=cause):
        Session(1, GobFramer()).feed(bytes.fromhex(wire))


def test_an_oversized_message_fails_on_its_count() -> None:
    with pytest.raises(MessageTooLargeError, match=f"limit of {V1_MAX_GOB_MESSAGE} bytes"):
        GobMessageReader().feed(encode_uint(V1_MAX_GOB_MESSAGE + 1))


def test_an_oversized_payload_is_not_sent() -> None:
    with pytest.raises(MessageTooLargeError, match="outgoing message"):
        Session(1, GobFramer()).seal(bytes(MAX_TCP_MSG_SIZE + 1))


def test_a_stream_cut_inside_a_message() -> None:
    session = Session(1, GobFramer())
    assert session.feed(encode_bytes_message(b"abc")[:-1]) == []
    with pytest.raises(FramingError, match=r"closed in the middle of a message \(6 bytes"):
        session.check_clean_end()


def test_take_buffered() -> None:
    reader = GobMessageReader()
    assert reader.feed(encode_bytes_message(b"abc")[:3]) == []
    assert reader.take_buffered() == encode_bytes_message(b"abc")[:3]
    reader.check_clean_end()


@settings(max_examples=50, deadline=None)
@given(payloads=payload_lists(), data=st.data())
def test_gob_framing_round_trips_whatever_the_chunking(payloads: list[bytes],
                                                       data: st.DataObject) -> None:
    wire = b"".join(encode_bytes_message(p) for p in payloads)
    session = Session(1, GobFramer())
    assert [p for chunk in data.draw(chunked(wire)) for p in session.feed(chunk)] == payloads
    session.check_clean_end()
