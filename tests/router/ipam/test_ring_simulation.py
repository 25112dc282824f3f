"""Peers with rings and spaces, driven by generated sequences of allocations, frees,
donations, free-space reports, gossip and ``rmpeer``.

When peers follow the rules (only dead peers are removed, by an heir that has heard
everyone first), no address is ever held by two peers, no merge ever conflicts, and
gossip converges. When they do not (``rmpeer`` of a live peer, with a stale view), every
peer still keeps every address it holds: the merge repairs instead of giving it away.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from router.ipam.address import CIDR
from router.ipam.ring import Ring
from router.ipam.space import Space
from tests.router.ipam.strategies import END, START

SUBNET = CIDR(START, 26)
QUARANTINE = 2.0
FIRST_NAMES = (0x0A0000000001, 0x0A0000000002, 0x0A0000000003)


@dataclass
class Peer:
    name: int
    ring: Ring
    space: Space

    def allocated(self) -> set[int]:
        return {a for a in range(START, END) if self.space.is_allocated(a)}


class Cluster:
    def __init__(self, well_behaved: bool) -> None:
        self.well_behaved = well_behaved
        self.now = 0.0
        self.next_name = 0x0A0000000010
        self.conflicts = 0
        seed = Ring(START, END, FIRST_NAMES[0]).claim_for_peers(FIRST_NAMES)
        self.peers = [self.peer(name, seed) for name in FIRST_NAMES]
        self.peers.append(self.peer(self.new_name(), None))

    def new_name(self) -> int:
        self.next_name += 1
        return self.next_name

    def peer(self, name: int, seed: Ring | None) -> Peer:
        ring = Ring(START, END, name) if seed is None else Ring(
            START, END, name, seed.entries, seed.seeds)
        space = Space(QUARANTINE)
        space.set_owned(ring.owned_ranges())
        return Peer(name, ring, space)

    def pick(self, index: int) -> Peer:
        return self.peers[index % len(self.peers)]

    def step(self, op: int, first: int, second: int) -> None:
        self.now += 1
        p, q = self.pick(first), self.pick(second)
        if op <= 2:
            p.space.allocate(SUBNET, self.now)
        elif op == 3:
            held = sorted(p.allocated())
            if held:
                p.space.free(held[second % len(held)], self.now)
        elif op == 4 and p is not q:
            gift = p.space.donate(p.ring.range, self.now)
            if gift is not None:
                p.ring = p.ring.grant_range_to_host(gift.start, gift.end, q.name)
        elif op == 5 and p.ring.owned_ranges():
            p.ring = p.ring.report_free({r.start: p.space.free_count(r)
                                         for r in p.ring.owned_ranges()})
        elif op == 6 and p is not q and len(self.peers) > 2:
            self.remove(p, heir=q)
        elif p is not q:
            self.gossip(p, q)

    def gossip(self, sender: Peer, receiver: Peer) -> None:
        result = receiver.ring.merge(sender.ring, receiver.space.in_use)
        self.conflicts += len(result.conflicts)
        receiver.ring = result.ring
        assert receiver.space.set_owned(receiver.ring.owned_ranges()) == []

    def remove(self, gone: Peer, heir: Peer) -> None:
        """``rmpeer``: heir takes over gone's entries. Rule-abiding heirs hear everyone
        first and the removed peer is really gone; otherwise it stays alive."""
        if self.well_behaved:
            for other in self.peers:
                if other is not heir:
                    self.gossip(other, heir)
        heir.ring, _ = heir.ring.transfer(gone.name, heir.name)
        assert heir.space.set_owned(heir.ring.owned_ranges()) == []
        if self.well_behaved:
            self.peers.remove(gone)
            self.peers.append(self.peer(self.new_name(), None))

    def check(self) -> None:
        for peer in self.peers:
            held = peer.allocated()
            assert all(peer.ring.owner(a) == peer.name for a in held)
            assert all(SUBNET.host_range.contains(a) for a in held)
        if self.well_behaved:
            everyone = [a for peer in self.peers for a in peer.allocated()]
            assert len(everyone) == len(set(everyone)), "an address held twice"
            assert self.conflicts == 0

    def converge(self) -> None:
        for _ in range(2 * len(self.peers)):
            for sender in self.peers:
                for receiver in self.peers:
                    if sender is not receiver:
                        self.gossip(sender, receiver)
        first = self.peers[0].ring
        assert all(p.ring.entries == first.entries for p in self.peers)


steps = st.lists(st.tuples(st.integers(0, 9), st.integers(0, 7), st.integers(0, 7)),
                 min_size=25, max_size=60)


@settings(max_examples=40, deadline=None)
@given(steps)
def test_rule_abiding_peers_never_share_an_address(ops: list[tuple[int, int, int]]) -> None:
    cluster = Cluster(well_behaved=True)
    for op in ops:
        cluster.step(*op)
        cluster.check()
    cluster.converge()
    cluster.check()


@settings(max_examples=40, deadline=None)
@given(steps)
def test_peers_keep_what_they_hold_even_when_rmpeer_is_misused(
        ops: list[tuple[int, int, int]]) -> None:
    cluster = Cluster(well_behaved=False)
    for op in ops:
        cluster.step(*op)
        cluster.check()
