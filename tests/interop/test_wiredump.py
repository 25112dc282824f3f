"""The capture annotators on hand-made gob bytes and on the committed Go capture (no Go needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.interop.gobdump import GobDumpError, Reader, decode_stream
from tests.interop.wiredump import annotate, split_stream

DATA = Path(__file__).resolve().parent / "data"


@pytest.mark.parametrize(
    ("raw", "unsigned", "signed"),
    [
        (b"\x00", 0, 0),
        (b"\x7f", 127, -64),
        (b"\xff\x80", 128, 64),
        (b"\xfe\x01\x00", 256, 128),
        (b"\xff\x91", 145, -73),
        (b"\xfa\xce\x00\x00\x00\x00\x01", 0xCE0000000001, ~(0xCE0000000001 >> 1)),
    ],
    ids=["zero", "127", "128", "256", "type-id-73", "peer-name"],
)
def test_integer_encodings(raw: bytes, unsigned: int, signed: int) -> None:
    assert Reader(raw).uint() == unsigned
    assert Reader(raw).int() == signed


def test_string_singleton_stream() -> None:
    # one message: length 11, type id 6 (string), singleton 0, "topology"
    messages = decode_stream(b"\x0b\x0c\x00\x08topology")
    assert [(m.type_id, m.value) for m in messages] == [(6, "topology")]


@pytest.mark.parametrize(
    "raw",
    [b"\x0b\x0c\x00\x08topo", b"\x05\x0c\x01\x01a\x00", b"\x03\xff\xa0\x00"],
    ids=["truncated", "no-singleton-zero", "unknown-type"],
)
def test_malformed_gob_raises_one_error_type(raw: bytes) -> None:
    with pytest.raises(GobDumpError):
        decode_stream(raw)


def test_short_stream_is_rejected() -> None:
    with pytest.raises(ValueError, match="shorter than header"):
        split_stream(b"weave\x01")


def _stream(direction: str) -> bytes:
    capture = json.loads((DATA / "go-wire-plain.json").read_text())
    chunks = [c for c in capture["chunks"] if c["dir"] == direction and c["conn"] == 0]
    return b"".join(bytes.fromhex(c["hex"]) for c in chunks)


@pytest.mark.parametrize("direction", ["c2s", "s2c"])
def test_go_capture_decodes_completely(direction: str) -> None:
    parts = annotate(_stream(direction))
    assert parts["header_hex"] == b"weave\x01\x02".hex()
    assert parts["encryption_flag"] == 0
    assert parts["trailing_hex"] == ""
    frames = parts["frames"]
    features = dict(frames[0]["gob"][-1]["value"])
    assert set(features) == {
        "PeerNameFlavour", "Name", "NickName", "ShortID", "UID", "ConnID", "Trusted", "Overlays"
    }
    assert features["PeerNameFlavour"] == "mac"
    kinds = {(f["kind"], f.get("channel")) for f in frames[1:]}
    assert ("Gossip", "topology") in kinds
    assert ("Gossip", "IPallocation") in kinds
    assert ("Heartbeat", None) in kinds
    assert not any("error" in json.dumps(f) for f in frames)


def test_go_capture_topology_names_both_peers() -> None:
    frames = annotate(_stream("c2s"))["frames"]
    topology = next(f for f in frames if f.get("channel") == "topology")
    summaries = [m["value"] for m in topology["payload_gob"] if isinstance(m.get("value"), dict)]
    assert {s["NameByte"]["hex"] for s in summaries} == {"ce0000000001", "ce0000000002"}
    assert topology["source_mac"] == "ce:00:00:00:00:01"
