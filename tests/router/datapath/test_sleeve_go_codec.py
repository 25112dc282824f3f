"""Sleeve datagrams byte for byte against weave's own encryptors and decryptors."""

from __future__ import annotations

from typing import Any

import pytest

from router.datapath.sleeve_crypto import (
    DatagramSealer,
    NaClOpener,
    NaClSealer,
    PlainSealer,
    SleeveDecryptionError,
)
from router.datapath.sleeve_frames import (
    SleeveFormatError,
    decode_frames,
    encode_frames,
    split_sender,
)
from tests.router.datapath.sleeve_fixtures import cases, frames_of, key


def encode_id(case: dict[str, Any]) -> str:
    if not case["encrypted"]:
        return f"plain-{len(case['frames'])}-frames"
    direction = "outbound" if case["outbound"] else "inbound"
    return f"nacl-{direction}-{'df' if case['df'] else 'nodf'}-seq{case['seq']}"


@pytest.mark.parametrize("case", cases("encode"), ids=encode_id)
def test_our_datagrams_are_go_s(case: dict[str, Any]) -> None:
    sender = int(case["prefix"], 16)
    sealer: DatagramSealer
    if case["encrypted"]:
        nacl = NaClSealer(sender, key(), case["outbound"], case["df"])
        nacl.sequence = case["seq"]
        sealer = nacl
    else:
        sealer = PlainSealer(sender)
    datagram = sealer.seal(encode_frames(frames_of(case["frames"])))
    assert datagram.hex() == case["datagram"]


@pytest.mark.parametrize("case", cases("encode"), ids=encode_id)
def test_we_read_go_s_datagrams(case: dict[str, Any]) -> None:
    name, body = split_sender(bytes.fromhex(case["datagram"]))
    assert name == int(case["prefix"], 16)
    if case["encrypted"]:
        opened = NaClOpener(key(), outbound=not case["outbound"]).open(body)
        assert opened is not None
        body = opened
    assert decode_frames(body) == frames_of(case["frames"])


@pytest.mark.parametrize("case", cases("plain_decode"), ids=lambda case: case["case"])
def test_malformed_frames_as_go_reads_them(case: dict[str, Any]) -> None:
    body = bytes.fromhex(case["body"])
    expected = frames_of(case["frames"])
    if not case["error"]:
        assert decode_frames(body) == expected
        return
    with pytest.raises(SleeveFormatError) as raised:
        decode_frames(body)
    assert list(raised.value.frames) == expected
    # Go: "too short; expected frame of length N" / "N octets of trailing garbage"
    assert ("too short" in case["error"]) == ("too short" in str(raised.value))


def sequence_id(case: dict[str, Any]) -> str:
    return f"{case['case']}-receiver-{'outbound' if case['receiver_outbound'] else 'inbound'}"


@pytest.mark.parametrize("case", cases("decrypt_sequences"), ids=sequence_id)
def test_replay_window_and_failures_as_go_s(case: dict[str, Any]) -> None:
    opener = NaClOpener(key(), outbound=case["receiver_outbound"])
    for number, step in enumerate(case["steps"]):
        where = f"step {number} (seq {step['seq']}, df {step['df']})"
        body = bytes.fromhex(step["body"])
        if step["error"]:
            with pytest.raises(SleeveDecryptionError):
                opener.open(body)
            continue
        opened = opener.open(body)
        if step["accepted"]:
            assert opened is not None, f"{where}: Go accepted it"
            assert decode_frames(opened) == frames_of(step["frames"]), where
        else:
            assert opened is None, f"{where}: Go dropped it as a replay"


def test_the_fixtures_cover_drops_and_failures() -> None:
    steps = [step for case in cases("decrypt_sequences") for step in case["steps"]]
    assert any(step["error"] for step in steps)
    assert any(not step["error"] and not step["accepted"] for step in steps)
    assert sum(step["accepted"] for step in steps) >= 10
