"""A ring survives the gob wire form, alone and inside the allocator's gossip state."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.ipam.messages import (
    GOSSIP_STATE,
    RING,
    Entry,
    GossipState,
    decode_gossip_state,
    encode_gossip_state,
)
from router.ipam.messages import Ring as WireRing
from router.ipam.ring import Ring, RingError
from router.mesh.gob import decode, encode
from tests.router.gob_samples import load_fixtures, stream_bytes
from tests.router.ipam.strategies import rings


def clamped(ring: Ring) -> Ring:
    """The ring as its receiver holds it: free counts cut to each entry's stretch."""
    return Ring.from_message(ring.to_message())


@settings(max_examples=80, deadline=None)
@given(rings())
def test_ring_round_trip(ring: Ring) -> None:
    assert Ring.from_message(decode(RING, encode(RING, ring.to_message()))) == clamped(ring)


@settings(max_examples=40, deadline=None)
@given(rings(), st.integers(-(2**63), 2**63 - 1))
def test_gossip_state_round_trip(ring: Ring, now: int) -> None:
    state = GossipState(now, {ring.peer: "nick"}, None, ring.to_message())
    back = decode_gossip_state(encode_gossip_state(state))
    assert back.ring is not None and Ring.from_message(back.ring) == clamped(ring)
    assert back.now == now and back.nicknames == {ring.peer: "nick"}


def test_the_go_gossip_fixture_decodes_to_a_ring() -> None:
    [case] = [c for c in load_fixtures() if c["name"] == "ipam_gossip_ring"]
    state = decode(GOSSIP_STATE, stream_bytes(case, case["streams"][0]))
    assert state.ring is not None
    ring = Ring.from_message(state.ring)
    assert len(ring.entries) == 3 and ring.seeds == state.ring.seeds
    # The fixture's last entry claims 4294967295 free addresses; we send what fits.
    assert ring.to_message().entries[-1].free == ring.end - ring.entries[-1].token


@pytest.mark.parametrize(("entries", "problem"), [
    ((Entry(20, 1, 0, 0), Entry(10, 1, 0, 0)), "Ring not sorted"),
    ((Entry(10, 1, 0, 0), Entry(10, 2, 0, 0)), "Token appears twice"),
    ((Entry(300, 1, 0, 0),), "Token is out of range"),
], ids=["unsorted", "repeated", "out-of-range"])
def test_malformed_rings_from_the_wire_are_refused(entries: tuple[Entry, ...],
                                                   problem: str) -> None:
    wire = decode(RING, encode(RING, WireRing(0, 256, 1, entries, ())))
    with pytest.raises(RingError, match=problem):
        Ring.from_message(wire)
