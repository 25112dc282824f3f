"""Sleeve's frames, special frames, sealing and control messages: properties and edge cases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.datapath.control import (
    ControlMessageError,
    common_overlays,
    decode_pmtu_verified,
    encode_pmtu_verified,
    parse_overlays_feature,
    unwrap_for_switch,
    wrap_for_switch,
)
from router.datapath.sleeve_crypto import (
    WINDOW_BITS,
    NaClOpener,
    NaClSealer,
    PlainSealer,
    ReplayWindow,
    SleeveDecryptionError,
    dataplane_overhead,
    nonce,
)
from router.datapath.sleeve_frames import (
    FRAG_TEST_SIZE,
    HEARTBEAT_FRAME_SIZE,
    SleeveFormatError,
    SleeveFrame,
    SpecialKind,
    decode_frames,
    encode_frame,
    encode_frames,
    frag_test_frame,
    frag_test_intact,
    heartbeat_frame,
    heartbeat_uid,
    is_special,
    mtu_test_frame,
    mtu_tested_by,
    pmtu_discovery_frame,
    special_kind,
    split_sender,
)

KEY = bytes(range(32))
names = st.integers(0, (1 << 48) - 1)
frames = st.builds(SleeveFrame, names, names, st.binary(max_size=300))
FEW = settings(max_examples=60, deadline=None)


@FEW
@given(st.lists(frames, max_size=5))
def test_frames_round_trip(batch: list[SleeveFrame]) -> None:
    assert decode_frames(encode_frames(batch)) == batch


@FEW
@given(st.binary(max_size=200))
def test_any_bytes_either_decode_or_raise_the_one_error(data: bytes) -> None:
    try:
        decoded = decode_frames(data)
    except SleeveFormatError as error:
        assert encode_frames(error.frames) == data[:len(encode_frames(error.frames))]
    else:
        assert encode_frames(decoded) == data


def test_short_datagrams_and_oversized_frames_are_refused() -> None:
    with pytest.raises(SleeveFormatError, match="shorter than a peer name"):
        split_sender(b"\x01\x02\x03")
    with pytest.raises(ValueError, match="at most 65535"):
        encode_frame(SleeveFrame(1, 2, bytes(65536)))
    with pytest.raises(ValueError, match="48 bits"):
        encode_frame(SleeveFrame(1 << 48, 2, b""))


def test_special_frames_are_told_apart_by_length() -> None:
    heartbeat = heartbeat_frame(0x0123456789ABCDEF)
    assert len(heartbeat) == HEARTBEAT_FRAME_SIZE
    assert special_kind(heartbeat) is SpecialKind.HEARTBEAT
    assert heartbeat_uid(heartbeat) == 0x0123456789ABCDEF
    assert special_kind(frag_test_frame()) is SpecialKind.FRAG_TEST
    assert len(frag_test_frame()) == FRAG_TEST_SIZE
    assert special_kind(pmtu_discovery_frame()) is SpecialKind.MTU_TEST
    assert mtu_tested_by(mtu_test_frame(1438)) == 1438
    assert mtu_tested_by(pmtu_discovery_frame()) == 60000 - 14


def test_what_is_not_special() -> None:
    ethernet = bytes.fromhex("ffffffffffff0a0000000001") + b"\x08\x06" + bytes(28)
    assert not is_special(ethernet)
    assert not is_special(bytes(13))
    assert is_special(bytes(14))
    with pytest.raises(SleeveFormatError, match="not a special frame"):
        special_kind(ethernet)
    with pytest.raises(SleeveFormatError, match="not a heartbeat"):
        heartbeat_uid(bytes(30))


def test_a_fragmentation_test_counts_only_when_intact() -> None:
    assert frag_test_intact(frag_test_frame())
    damaged = bytearray(frag_test_frame())
    damaged[-1] = 1
    assert not frag_test_intact(bytes(damaged))
    assert not frag_test_intact(bytes(FRAG_TEST_SIZE - 1))


@FEW
@given(st.lists(frames, max_size=3), st.booleans(), st.booleans(), names)
def test_sealed_datagrams_open_at_the_other_end_only(batch: list[SleeveFrame], outbound: bool,
                                                     df: bool, sender: int) -> None:
    datagram = NaClSealer(sender, KEY, outbound, df).seal(encode_frames(batch))
    name, body = split_sender(datagram)
    assert name == sender
    opened = NaClOpener(KEY, outbound=not outbound).open(body)
    assert opened is not None and decode_frames(opened) == batch
    with pytest.raises(SleeveDecryptionError):
        NaClOpener(KEY, outbound=outbound).open(body)
    with pytest.raises(SleeveDecryptionError):
        NaClOpener(bytes(32), outbound=not outbound).open(body)


def test_sealing_advances_the_sequence_and_carries_df() -> None:
    sealer = NaClSealer(7, KEY, outbound=True, df=True)
    first, second = sealer.seal(b""), sealer.seal(b"")
    assert first[6:14] == bytes.fromhex("8000000000000000")
    assert second[6:14] == bytes.fromhex("8000000000000001")
    assert nonce(True, 5) == b"\x80" + bytes(15) + (5).to_bytes(8, "big")
    assert nonce(False, 5)[0] == 0


@FEW
@given(st.binary(max_size=64))
def test_opening_garbage_raises_the_one_error(body: bytes) -> None:
    with pytest.raises(SleeveDecryptionError):
        NaClOpener(KEY, outbound=False).open(body)


def test_overheads_are_go_s() -> None:
    assert dataplane_overhead(PlainSealer(1)) == 62
    assert dataplane_overhead(NaClSealer(1, KEY, True, True)) == 86
    with pytest.raises(ValueError, match="32 bytes"):
        NaClSealer(1, b"short", True, True)


def accepted_by_definition(sequence: list[int]) -> list[bool]:
    """The replay rule stated directly: a number is new if never accepted before and its
    2^20-slice is at most one below the highest slice seen so far (itself included)."""
    seen: set[int] = set()
    highest = 0
    verdicts = []
    for number in sequence:
        highest = max(highest, number >> WINDOW_BITS)
        fresh = number not in seen and number >> WINDOW_BITS >= highest - 1
        if fresh:
            seen.add(number)
        verdicts.append(fresh)
    return verdicts


near_windows = st.builds(lambda window, offset: window << WINDOW_BITS | offset,
                         st.integers(0, 6), st.integers(0, 7))


@settings(max_examples=150, deadline=None)
@given(st.lists(near_windows, max_size=40))
def test_replay_window_against_its_definition(sequence: list[int]) -> None:
    window = ReplayWindow()
    assert [window.admit(number) for number in sequence] == accepted_by_definition(sequence)


def test_control_messages() -> None:
    assert encode_pmtu_verified(1438) == bytes.fromhex("059e")
    assert decode_pmtu_verified(bytes.fromhex("059eff")) == 1438
    with pytest.raises(ControlMessageError, match="truncated PMTUVerified"):
        decode_pmtu_verified(b"\x05")
    assert wrap_for_switch(1, 3, b"\x05\x9e") == bytes.fromhex("0103059e")
    assert unwrap_for_switch(bytes.fromhex("0103059e")) == (1, 3, b"\x05\x9e")
    with pytest.raises(ControlMessageError, match="lacks the sub-forwarder index"):
        unwrap_for_switch(b"\x00")
    with pytest.raises(ValueError):
        wrap_for_switch(256, 1, b"")


@pytest.mark.parametrize(("ours", "theirs", "common"), [
    (["fastdp", "sleeve"], "sleeve", ["sleeve"]),
    (["fastdp", "sleeve"], "sleeve fastdp", ["fastdp", "sleeve"]),
    (["sleeve"], "fastdp sleeve", ["sleeve"]),
    (["sleeve"], "awsvpc", []),
    (["sleeve"], "", []),
], ids=["peer-sleeve-only", "our-order-wins", "we-sleeve-only", "nothing-shared", "empty"])
def test_common_overlays_follow_our_order(ours: list[str], theirs: str,
                                          common: list[str]) -> None:
    assert common_overlays(ours, parse_overlays_feature(theirs)) == common
