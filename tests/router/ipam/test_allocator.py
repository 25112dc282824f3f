"""The allocator as a state machine: allocators exchanging their real messages through an
in-memory mesh (tests/router/ipam/simulation.py), in order, shuffled, with drops and
partitions."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from router.ipam import messages
from router.ipam.allocator import TAKEOVER_SETTLE
from router.ipam.errors import Cancelled, Refused, TimedOut
from router.mesh.gob import decode, encode
from tests.router.ipam.simulation import UNIVERSE, Network, SimPeer, held


def cluster(count: int, quorum: int | None = None, seed: int = 0) -> tuple[Network, list[SimPeer]]:
    network = Network(seed)
    peers = [SimPeer(network, i, quorum or count // 2 + 1) for i in range(count)]
    return network, peers


def with_ring(count: int) -> tuple[Network, list[SimPeer]]:
    """``count`` peers that agreed on a ring (each allocated one address) and gossiped it."""
    network, peers = cluster(count)
    for peer in peers:
        peer.allocate("seed")
    network.deliver()
    network.gossip_round()
    network.deliver()
    return network, peers


def test_three_peers_reach_consensus_and_share_the_range() -> None:
    network, peers = cluster(3)
    answers = [peer.allocate(f"pod-{peer.index}")[0] for peer in peers]
    assert "awaiting consensus (quorum: 2, known: 1)" in peers[0].allocator.waiting_for()
    network.deliver()
    assert all(a.done and a.error is None for a in answers), answers
    assert len({a.value for a in answers}) == 3
    network.gossip_round()
    network.deliver()
    assert peers[0].entries() == peers[1].entries() == peers[2].entries()
    sizes = sorted(size for _, size, _ in peers[0].entries())
    assert sum(sizes) == UNIVERSE.num_addresses and sizes == [256, 256, 512]
    assert any("Paxos consensus" in " ".join(m for _, m, _ in p.log.lines) for p in peers)


def test_allocation_is_idempotent_lowest_first_and_skips_a_just_freed_address() -> None:
    network, (peer,) = cluster(1)
    first, _ = peer.allocate("a")
    again, _ = peer.allocate("a")
    assert first.value == again.value == "10.32.0.1/22"
    second, _ = peer.allocate("b")
    assert second.value == "10.32.0.2/22"
    peer.allocator.delete("a")
    third, _ = peer.allocate("c")
    assert third.value == "10.32.0.3/22"  # .1 was freed a moment ago
    network.now += 10
    fourth, _ = peer.allocate("d")
    assert fourth.value == "10.32.0.1/22"


def test_a_missing_quorum_is_what_a_timed_out_request_says() -> None:
    network, peers = cluster(2, quorum=2)
    peers[1].alive = False
    answer, op = peers[0].allocate("x")
    network.deliver()
    assert not answer.done
    reason = peers[0].allocator.waiting_for()
    assert reason == "awaiting consensus (quorum: 2, known: 1)"
    assert peers[0].allocator.not_ready() == reason
    status = peers[0].allocator.status(UNIVERSE)
    assert status["Paxos"] == {"Elector": True, "KnownNodes": 1, "Quorum": 2}
    assert status["PendingAllocates"] == ["x 10.32.0.0/22"]
    peers[0].allocator.withdraw(op, TimedOut(f"timed out: {reason}"))
    assert isinstance(answer.error, TimedOut) and answer.value is None
    assert peers[0].allocator.status(UNIVERSE)["PendingAllocates"] is None
    peers[1].alive = True
    network.tick()
    network.deliver()
    late, _ = peers[1].allocate("y")
    network.deliver()
    assert late.value is not None and not peers[0].allocator.ring_empty


def test_a_peer_outside_the_seeds_gets_a_donation() -> None:
    network = Network()
    seeds = (0xCE0000000000, 0xCE0000000001)
    peers = [SimPeer(network, i, 2, seeds=seeds) for i in range(3)]
    network.deliver()
    assert peers[2].allocator.ring_empty is False or network.deliver() >= 0
    network.gossip_round()
    network.deliver()
    answer, _ = peers[2].allocate("late")
    network.deliver()
    network.tick()
    network.deliver()
    assert answer.value is not None, peers[2].allocator.waiting_for()
    owners = {peer for _, size, peer in peers[2].entries() if size}
    assert str(peers[2].name) in owners
    held(peers)


def test_claims_in_our_range_in_anothers_and_outside_the_ring() -> None:
    network, peers = with_ring(2)
    token, _, owner = peers[0].entries()[-1]
    assert owner == str(peers[1].name)
    address = f"{ipaddress.IPv4Address(token) + 5}/22"
    answer = peers[0].claim("wants", address)
    assert not answer.done
    network.deliver()
    network.tick()
    assert answer.done and answer.error is None, answer
    assert peers[0].allocator.owned_addresses()["wants"] == [address]
    refused = peers[1].claim("other", address)
    network.deliver()
    network.tick()
    network.deliver()
    assert isinstance(refused.error, Refused)
    outside = peers[1].claim("_", "192.168.1.9/24")
    assert outside.error is None and "192.168.1.9" in peers[1].allocator.owned_addresses()
    clash = peers[1].claim("someone", "192.168.1.9/24")
    assert str(clash.error) == "address 192.168.1.9/24 already in use by 192.168.1.9"
    held(peers)


def test_rmpeer_takes_over_and_leave_hands_over() -> None:
    network, peers = with_ring(3)
    dead = peers[2]
    dead.alive = False
    gained = peers[0].allocator.rmpeer("node2")
    assert gained > 0
    assert peers[0].allocator.rmpeer("node2") == 0
    assert peers[0].allocator.rmpeer("nobody") == 0
    network.deliver()
    assert str(dead.name) not in {p for _, _, p in peers[1].entries()}
    pending, _ = peers[1].allocate("waits")
    peers[1].allocator.leave()
    network.deliver()
    assert pending.done
    assert str(peers[1].name) not in {p for _, size, p in peers[0].entries() if size}
    refused, _ = peers[1].allocate("after-leave")
    assert isinstance(refused.error, Cancelled)


def seeded(count: int) -> tuple[Network, list[SimPeer]]:
    """``count`` peers whose ring is seeded (no paxos), gossiped until all agree."""
    network = Network()
    names = tuple(0xCE0000000000 + i for i in range(count))
    peers = [SimPeer(network, i, count // 2 + 1, seeds=names) for i in range(count)]
    network.deliver()
    network.gossip_round()
    network.deliver()
    return network, peers


def sent_entries(peer: SimPeer) -> dict[int, messages.Entry]:
    """The ring entries ``peer`` gossips now, by token."""
    ring = messages.decode_gossip_state(peer.allocator.encode()).ring
    assert ring is not None
    return {e.token: e for e in ring.entries}


def sizes(peer: SimPeer) -> dict[int, int]:
    entries = sorted(sent_entries(peer).values(), key=lambda e: e.token)
    ring = peer.allocator.ring
    return {e.token: ((entries[(i + 1) % len(entries)].token - e.token) % (ring.end - ring.start)
                      or ring.end - ring.start) for i, e in enumerate(entries)}


def test_ranges_taken_over_report_no_free_space_and_keep_their_version_until_settled() -> None:
    network, peers = seeded(3)
    ours, dead = peers[0], peers[2]
    before = {t: e for t, e in sent_entries(ours).items() if e.peer == dead.name}
    dead.alive = False
    assert ours.allocator.rmpeer("node2") > 0
    for _ in range(3):  # steps within the settling time change nothing
        taken = {t: sent_entries(ours)[t] for t in before}
        assert all(e.peer == ours.name and e.version == before[t].version + 100 and e.free == 0
                   for t, e in taken.items()), taken
        ours.allocate(f"meanwhile-{network.now}")
        network.tick(TAKEOVER_SETTLE / 4)
    network.tick(TAKEOVER_SETTLE / 4)
    span = sizes(ours)
    settled = {t: sent_entries(ours)[t] for t in before}
    assert all(e.version == before[t].version + 101 and e.free == span[t]
               for t, e in settled.items()), settled


def go_keeps_its_own(mine: messages.Entry, theirs: messages.Entry) -> bool:
    """Whether the Go weaver keeps its own entry ``mine`` against ``theirs`` for the same
    token when it holds no allocations there (ring.go ``merge``: a newer version wins,
    on a tie the larger free count, and on a tie of both its own)."""
    return theirs.version < mine.version or (
        theirs.version == mine.version and theirs.free <= mine.free)


def test_a_go_survivors_takeover_of_the_same_dead_peer_wins_over_ours() -> None:
    """rmpeer of one dead peer on one of ours and on a Go peer at once. The Go peer's
    takeover is version + 100, then + 1 more when it reports the free space it now has
    (all of it) unless the dead peer reported that already. Ours must never send an entry
    that beats it under Go's merge: Go would take it, leave the range in its space and
    panic on its next invariant check (seen in tests/interop/ipam_interop.py, run E),
    not even when the Go peer's takeover reaches us only with its next periodic gossip.
    And ours must take the Go peer's entry, and never allocate from those ranges."""
    network, peers = seeded(3)
    ours, go, dead = peers
    before = {t: e for t, e in sent_entries(ours).items() if e.peer == dead.name}
    span = sizes(ours)
    assert any(e.free == span[t] for t, e in before.items())  # the no-bump case is here
    go_view = {t: messages.Entry(t, go.name, e.version + 100 + (e.free != span[t]), span[t])
               for t, e in before.items()}
    dead.alive = False
    go.alive = False  # the Go peer's side is modelled by go_view
    ours.allocator.rmpeer("node2")
    # Its broadcast is lost (the connection broke); its periodic gossip comes 30 s later.
    for step in range(7):
        sent = sent_entries(ours)
        assert all(go_keeps_its_own(go_view[t], sent[t]) for t in before), (step, sent)
        ours.allocate(f"pod-{step}")
        network.tick(5.0)
    ring = ours.allocator.ring.to_message()
    entries = tuple(go_view.get(e.token, e) for e in ring.entries)
    state = messages.GossipState(now=0, nicknames=None, paxos=None,
                                 ring=messages.Ring(ring.start, ring.end, go.name, entries,
                                                    ring.seeds))
    ours.allocator.on_broadcast(go.name, messages.encode_gossip_state(state))
    assert {t: sent_entries(ours)[t].peer for t in before} == {t: go.name for t in before}
    assert ours.allocator.counters.ring_conflicts == 0
    network.tick(TAKEOVER_SETTLE)
    answers = [ours.allocate(f"later-{i}")[0] for i in range(40)]
    gone = [(t, t + span[t]) for t in before]
    assert all(a.done and a.error is None for a in answers)
    for answer in answers:
        address = int(ipaddress.IPv4Interface(answer.value).ip)
        assert not any(start <= address < end for start, end in gone), answer.value


def test_free_and_delete_say_what_is_missing() -> None:
    _, (peer,) = cluster(1)
    peer.allocate("a")
    try:
        peer.allocator.delete("nobody")
    except Refused as exc:
        assert str(exc) == "Delete: no addresses for nobody"
    else:
        raise AssertionError("no error")
    try:
        peer.allocator.free("a", ipaddress.IPv4Address("10.32.0.9"))
    except Refused as exc:
        assert str(exc) == "Free: address 10.32.0.9 not found for a"
    else:
        raise AssertionError("no error")
    peer.allocator.free("a", ipaddress.IPv4Address("10.32.0.1"))
    assert peer.allocator.owned_addresses() == {}
    assert peer.store.owned == {}


def test_malformed_and_foreign_messages_are_dropped_counted_and_logged() -> None:
    network, peers = cluster(2)
    for peer in peers:
        peer.allocate("x")
    network.deliver()
    target = peers[0].allocator
    before = list(peers[0].entries())
    target.on_gossip(b"\x00garbage")
    target.on_broadcast(peers[1].name, b"")
    target.on_unicast(peers[1].name, b"")
    target.on_unicast(peers[1].name, b"\x09whatever")
    target.on_unicast(peers[1].name, b"\x00\xff\xff")
    assert target.counters.malformed == 5
    other_range = messages.Ring(0x0A000000, 0x0A000100, int(peers[1].name), (), ())
    state = messages.GossipState(1, None, None, other_range)
    target.on_gossip(encode(messages.GOSSIP_STATE, state))
    target.on_gossip(encode(messages.GOSSIP_STATE, state))
    assert target.counters.ring_refusals == 2
    refusals = [w for w in peers[0].warnings() if "refused the ring" in w]
    assert len(refusals) == 1 and "Incompatible IP allocation ranges" in refusals[0]
    assert peers[0].entries() == before


def test_restart_from_the_store_keeps_every_allocation() -> None:
    network, peers = cluster(2)
    answers = [peers[i % 2].allocate(f"p{i}")[0] for i in range(20)]
    network.deliver()
    store = peers[0].store
    network.peers.pop(peers[0].name)
    again = SimPeer(network, 0, 2, store=store, uid=2)
    assert again.allocator.owned_addresses() == peers[0].allocator.owned_addresses()
    more = [again.allocate(f"q{i}")[0] for i in range(20)]
    network.deliver()
    assert all(a.value for a in answers + more)
    held([again, peers[1]])


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=2, max_value=5), st.integers(0, 2**16),
       st.lists(st.tuples(st.sampled_from(["alloc", "alloc", "alloc", "free", "split",
                                            "heal", "gossip", "tick", "deliver"]),
                          st.integers(0, 4)), min_size=5, max_size=60))
def test_no_address_is_ever_held_twice(count: int, seed: int,
                                       steps: list[tuple[str, int]]) -> None:
    """Whatever the order of requests, messages (shuffled, some lost) and partitions,
    no address is held by two peers or two IDs."""
    network, peers = cluster(count, seed=seed)
    serial = 0
    for action, n in steps:
        peer = peers[n % count]
        if action == "alloc":
            peer.allocate(f"id-{serial}")
            serial += 1
        elif action == "free":
            owned = peer.allocator.owned_addresses()
            if owned:
                peer.allocator.delete(sorted(owned)[n % len(owned)])
        elif action == "split":
            network.partition([p.name for p in peers[:n % count + 1]],
                              [p.name for p in peers[n % count + 1:]])
        elif action == "heal":
            network.heal()
        elif action == "gossip":
            network.gossip_round()
        elif action == "tick":
            network.tick()
        network.deliver(shuffle=True, drop=0.1 if action != "deliver" else 0.0)
        held(peers)
    network.heal()
    for _ in range(3):
        network.gossip_round()
        network.tick()
        network.deliver()
    held(peers)
    views = {tuple(p.entries()) for p in peers if not p.allocator.ring_empty}
    assert len(views) <= 1, views


def test_rmpeer_of_one_dead_peer_on_two_survivors_at_once_gives_no_address_twice() -> None:
    """Both survivors take the dead peer's ranges at the same moment and go on allocating
    until their own space is gone: the rings settle on one owner before either allocates
    from the taken ranges, so no address is given by both and no conflict remains."""
    network, peers = with_ring(3)
    own = {peer.index: sum(size for _, size, owner in peer.entries() if owner == str(peer.name))
           for peer in peers[:2]}
    peers[2].alive = False
    assert peers[0].allocator.rmpeer("node2") > 0
    assert peers[1].allocator.rmpeer("node2") > 0
    answers = [peer.allocate(f"pod-{peer.index}-{i}")[0]
               for peer in peers[:2] for i in range(own[peer.index] + 20)]
    network.deliver(shuffle=True)
    for _ in range(3):
        network.tick(TAKEOVER_SETTLE / 2)
        network.gossip_round()
        network.deliver(shuffle=True)
    assert all(a.done and a.error is None for a in answers)
    held(peers)
    assert peers[0].entries() == peers[1].entries()
    assert str(peers[2].name) not in {p for _, _, p in peers[0].entries()}
    assert peers[0].allocator.counters.ring_conflicts == 0
    assert peers[1].allocator.counters.ring_conflicts == 0


def test_waiting_allocations_share_one_space_request() -> None:
    """Forty allocations wait on a peer with no space: one request goes out at a time (the
    original sent one per allocation, and each donor gave up to half its free space to
    every one), so the newcomer ends up with a modest share of the range."""
    network = Network()
    seeds = (0xCE0000000000, 0xCE0000000001)
    peers = [SimPeer(network, i, 2, seeds=seeds) for i in range(3)]
    network.deliver()
    network.gossip_round()
    network.deliver()
    answers = [peers[2].allocate(f"pod-{i}")[0] for i in range(40)]
    requests = sum(1 for m in network.queue
                   if m.kind == "unicast" and m.payload[:1] == bytes([messages.MSG_SPACE_REQUEST]))
    assert requests == 1
    for _ in range(3):
        network.deliver()
        network.tick()
    assert all(a.done and a.error is None for a in answers)
    owned = sum(size for _, size, peer in peers[2].entries() if peer == str(peers[2].name))
    assert owned <= UNIVERSE.num_addresses // 4, owned
    held(peers)


def test_the_gossip_state_is_encoded_again_only_when_it_changed() -> None:
    network, (peer, other) = with_ring(2)
    alloc = peer.allocator

    def state() -> messages.GossipState:
        return decode(messages.GOSSIP_STATE, alloc.encode())

    first = alloc.encode()
    assert alloc.encode() is first  # unchanged: the same bytes, not encoded again
    before = state()
    peer.allocate("pod-x")
    after = state()
    assert after.ring != before.ring and after.now == before.now  # free counts reported
    alloc.nicknames[int(other.allocator.config.name)] = "renamed"
    assert state().nicknames == {**(after.nicknames or {}),
                                 int(other.allocator.config.name): "renamed"}
    unchanged = alloc.encode()
    network.now += 1.0  # the state says when it was sent, to the second
    assert state().now == after.now + 1 and alloc.encode() is not unchanged
