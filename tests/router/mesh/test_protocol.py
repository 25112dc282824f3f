"""Header, version negotiation, version-2 framing and message tags, against mesh's Go bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.mesh import protocol
from router.mesh.protocol import (
    HEADER_TIMEOUT,
    MAX_TCP_MSG_SIZE,
    PROTOCOL_MAX_VERSION,
    PROTOCOL_MIN_VERSION,
    PROTOCOL_NAME,
    TCP_HEARTBEAT_INTERVAL,
    TCP_READ_TIMEOUT,
    FrameReader,
    FramingError,
    HeaderError,
    MessageTooLargeError,
    ProtocolMessage,
    ProtocolTag,
    VersionMismatchError,
    encode_header,
    encode_message,
    frame,
    negotiate_version,
    parse_header,
    parse_message,
)
from tests.router.mesh.fixtures import go_fixtures
from tests.router.mesh.strategies import chunked, payload_lists


def test_constants_are_meshs() -> None:
    go = go_fixtures()["constants"]
    assert go["protocol"].encode() == PROTOCOL_NAME
    assert (go["min_version"], go["max_version"]) == (PROTOCOL_MIN_VERSION, PROTOCOL_MAX_VERSION)
    assert MAX_TCP_MSG_SIZE == go["max_tcp_msg_size"] == 10 * 1024 * 1024
    assert HEADER_TIMEOUT == go["header_timeout_seconds"] == 10
    assert TCP_HEARTBEAT_INTERVAL == go["tcp_heartbeat_seconds"] == 30
    assert TCP_READ_TIMEOUT == 60


def test_tags_are_meshs() -> None:
    go_tags = go_fixtures()["constants"]["tags"]
    assert {tag.name.lower(): tag.value for tag in ProtocolTag} == go_tags


def test_header_bytes() -> None:
    assert encode_header(1, 2) == b"weave\x01\x02"
    assert parse_header(b"weave\x01\x02") == (1, 2)


@pytest.mark.parametrize(("low", "high"), [(0, 2), (1, 3), (2, 1)])
def test_header_refuses_a_range_we_do_not_speak(low: int, high: int) -> None:
    with pytest.raises(ValueError, match=r"not within 1\.\.2"):
        encode_header(low, high)


def test_header_from_something_else() -> None:
    with pytest.raises(HeaderError,
                       match=r"did not start with the weave protocol header \(got b'HTTP/'"):
        parse_header(b"HTTP/1.")


def test_header_of_the_wrong_length() -> None:
    with pytest.raises(HeaderError, match="7 bytes, got 6"):
        parse_header(b"weave\x01")


def test_prefix_check_fails_at_the_first_wrong_byte() -> None:
    protocol.check_header_prefix(b"wea")
    with pytest.raises(HeaderError, match="got b'G'"):
        protocol.check_header_prefix(b"G")


@pytest.mark.parametrize(("ours", "theirs", "expected"), [
    ((1, 2), (1, 2), 2), ((1, 2), (1, 1), 1), ((2, 2), (1, 2), 2), ((1, 1), (1, 2), 1),
    ((1, 2), (2, 9), 2),
])
def test_highest_common_version(ours: tuple[int, int], theirs: tuple[int, int],
                                expected: int) -> None:
    assert negotiate_version(ours, theirs) == expected


def test_no_common_version_names_both_ranges() -> None:
    with pytest.raises(VersionMismatchError,
                       match=r"the peer speaks versions 3\.\.4, we speak 1\.\.2"):
        negotiate_version((1, 2), (3, 4))


def test_plain_frames_match_go() -> None:
    plain = go_fixtures()["plain"]
    messages = [bytes.fromhex(m) for m in plain["messages"]]
    stream = bytes.fromhex(plain["stream"])
    assert b"".join(frame(m) for m in messages) == stream
    assert FrameReader().feed(stream) == messages


def test_a_frame_of_exactly_the_maximum_is_accepted() -> None:
    reader = FrameReader()
    assert reader.feed(MAX_TCP_MSG_SIZE.to_bytes(4, "big")) == []
    body = bytes(MAX_TCP_MSG_SIZE)
    assert reader.feed(body) == [body]
    assert frame(body)[:4] == MAX_TCP_MSG_SIZE.to_bytes(4, "big")


def test_an_oversized_length_fails_before_the_body_arrives() -> None:
    reader = FrameReader()
    with pytest.raises(MessageTooLargeError,
                       match="incoming message of 10485761 bytes exceeds the mesh maximum"):
        reader.feed((MAX_TCP_MSG_SIZE + 1).to_bytes(4, "big"))


def test_an_oversized_payload_is_not_framed() -> None:
    with pytest.raises(MessageTooLargeError, match="outgoing message of 10485761 bytes"):
        frame(bytes(MAX_TCP_MSG_SIZE + 1))


def test_a_stream_cut_inside_a_frame() -> None:
    reader = FrameReader()
    assert reader.feed(frame(b"abcdef")[:7]) == []
    assert reader.buffered_length() == 7
    with pytest.raises(FramingError, match=r"closed in the middle of a message \(7 bytes"):
        reader.check_clean_end()


def test_a_clean_end() -> None:
    reader = FrameReader()
    reader.feed(frame(b"x") + frame(b""))
    reader.check_clean_end()


def test_take_buffered_returns_the_unfinished_frame_intact() -> None:
    reader = FrameReader()
    wire = frame(b"one") + frame(b"two")
    assert reader.feed(wire[:10]) == [b"one"]
    rest = reader.take_buffered()
    assert FrameReader().feed(rest + wire[10:]) == [b"two"]
    assert reader.buffered_length() == 0


@settings(max_examples=60, deadline=None)
@given(payloads=payload_lists(), data=st.data())
def test_framing_round_trips_whatever_the_chunking(payloads: list[bytes],
                                                   data: st.DataObject) -> None:
    wire = b"".join(frame(p) for p in payloads)
    reader = FrameReader()
    received = [body for chunk in data.draw(chunked(wire)) for body in reader.feed(chunk)]
    assert received == payloads
    reader.check_clean_end()


def test_messages() -> None:
    assert encode_message(ProtocolTag.GOSSIP, b"body") == b"\x04body"
    assert parse_message(b"\x04body") == ProtocolMessage(4, b"body")
    assert parse_message(b"\x07") == ProtocolMessage(ProtocolTag.OVERLAY_CONTROL, b"")
    heartbeat = parse_message(b"\x00")
    assert heartbeat is not None
    assert heartbeat.known_tag is ProtocolTag.HEARTBEAT


def test_a_blank_message_is_ignored_like_go_does() -> None:
    assert parse_message(b"") is None


def test_an_unknown_tag_survives_parsing() -> None:
    message = parse_message(b"\x09xyz")
    assert message == ProtocolMessage(9, b"xyz")
    assert message is not None
    assert message.known_tag is None


def test_a_tag_is_one_byte() -> None:
    with pytest.raises(ValueError, match="one byte, got 256"):
        encode_message(256)
