"""Peer names parse and print exactly as Go's mac flavour does (fixtures from Go)."""

from __future__ import annotations

from typing import Any

import pytest

from router.mesh.names import UNKNOWN_PEER_NAME, PeerName, PeerNameError
from tests.router.topology_fixtures import load

NAMES: dict[str, Any] = load("peer_names.json")


@pytest.mark.parametrize("case", NAMES["parse"], ids=lambda c: repr(c["input"]))
def test_parse_agrees_with_go(case: dict[str, Any]) -> None:
    if case["ok"]:
        parsed = PeerName.parse(case["input"])
        assert parsed == case["value"]
        assert str(parsed) == case["text"]
    else:
        with pytest.raises(PeerNameError, match="invalid peer name format"):
            PeerName.parse(case["input"])


def test_go_fixture_has_both_outcomes_and_the_lenient_forms() -> None:
    accepted = {c["input"] for c in NAMES["parse"] if c["ok"]}
    assert len(accepted) > 50
    assert len(NAMES["parse"]) - len(accepted) > 200
    # Forms Go accepts that a strict MAC parser would not:
    for text in (" 01:02:03:04:05:06", "01: 02:03:04:05:06", "1:2:3:4:5:6",
                 "01:02:03:04:05:06\x00junk", "\u00a01:2:3:4:5:6", "aB::Cd"):
        assert text in accepted, text
    # ... and forms it refuses although they look plausible:
    inputs = {c["input"] for c in NAMES["parse"]}
    for text in ("::", "01:02:03:04:05:06 ", "1:2::3:4::5", "\n1:2:3:4:5:6", "001:02:03:04:05:06"):
        assert text in inputs and text not in accepted, text


@pytest.mark.parametrize(("value", "text"), sorted(NAMES["format"].items()))
def test_format_agrees_with_go(value: str, text: str) -> None:
    assert str(PeerName(int(value))) == text
    assert PeerName.parse(text) == int(value)


def test_wire_form_round_trips() -> None:
    name = PeerName.parse("0a:1b:2c:3d:4e:5f")
    assert name.to_bytes6() == bytes.fromhex("0a1b2c3d4e5f")
    assert PeerName.from_bytes6(name.to_bytes6()) == name
    assert repr(name) == "PeerName('0a:1b:2c:3d:4e:5f')"
    assert UNKNOWN_PEER_NAME == 0


@pytest.mark.parametrize("bad", [b"", b"\x01" * 5, b"\x01" * 7])
def test_wire_names_must_be_six_bytes(bad: bytes) -> None:
    with pytest.raises(PeerNameError, match="6 bytes"):
        PeerName.from_bytes6(bad)


@pytest.mark.parametrize("bad", [-1, 1 << 48, True])
def test_names_are_48_bits(bad: int) -> None:
    with pytest.raises(PeerNameError, match="out of range"):
        PeerName(bad)


def test_names_order_numerically() -> None:
    names = [PeerName.parse(t) for t in ("ff::", "::1", "00:00:00:00:01:00", "::2")]
    assert [str(n) for n in sorted(names)] == [
        "00:00:00:00:00:01", "00:00:00:00:00:02", "00:00:00:00:01:00", "ff:00:00:00:00:00"]
