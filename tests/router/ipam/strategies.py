"""Hypothesis strategies and helpers for the ring tests.

Rings are generated over a small range (64 addresses) with few peers and small
versions, so that generated rings share tokens, tie on versions and overlap in
ownership: the cases a merge has to settle.
"""

from __future__ import annotations

from hypothesis import strategies as st

from router.ipam.address import Range, parse_ip
from router.ipam.messages import Entry
from router.ipam.ring import Ring
from router.ipam.ring_merge import InUse

START = parse_ip("10.0.0.0")
SIZE = 64
END = START + SIZE
PEERS = (0x0A0000000001, 0x0A0000000002, 0x0A0000000003, 0x0A0000000004)
US = PEERS[0]
SEEDS = PEERS[:2]


@st.composite
def entry_lists(draw: st.DrawFn, max_tokens: int = 8) -> tuple[Entry, ...]:
    """A valid sorted entry list over [START, END); free counts may exceed the stretch
    (as after a merge), up to the ring's size."""
    offsets = draw(st.sets(st.integers(0, SIZE - 1), min_size=1, max_size=max_tokens))
    return tuple(
        Entry(START + offset, draw(st.sampled_from(PEERS)), draw(st.integers(0, 3)),
              draw(st.integers(0, SIZE)))
        for offset in sorted(offsets))


@st.composite
def rings(draw: st.DrawFn, peer: int | None = None, allow_empty: bool = True) -> Ring:
    """A ring as seen by ``peer`` (a random one when None), seeded by SEEDS or unseeded."""
    owner = draw(st.sampled_from(PEERS)) if peer is None else peer
    if allow_empty and draw(st.integers(0, 9)) == 0:
        return Ring(START, END, owner)
    seeds = draw(st.sampled_from([(), SEEDS]))
    return Ring(START, END, owner, draw(entry_lists()), seeds)


def owners(ring: Ring) -> dict[int, int | None]:
    """Every address's owner."""
    return {a: ring.owner(a) for a in range(ring.start, ring.end)}


def in_use_by(addresses: set[int]) -> InUse:
    def in_use(r: Range) -> bool:
        return any(r.contains(a) for a in addresses)
    return in_use


def never_in_use(r: Range) -> bool:
    return False
