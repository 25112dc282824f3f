"""The ring's own operations, with the figures weave 2.8.1's ring tests expect."""

from __future__ import annotations

import random

import pytest

from router.ipam.address import Range, parse_cidr, parse_ip
from router.ipam.messages import Entry
from router.ipam.ring import Ring, RingError
from router.mesh.names import PeerName
from tests.router.ipam.helpers import (
    DOT10,
    DOT245,
    DOT250,
    END,
    MIDDLE,
    P1,
    P2,
    P3,
    START,
    E,
    claim_all,
    never,
    ring,
)


@pytest.mark.parametrize(("entries", "problem"), [
    ((E(DOT245, P1), E(DOT10, P2)), "Ring not sorted"),
    ((E(DOT245, P1), E(DOT245, P2)), "Token appears twice in ring"),
], ids=["unsorted", "repeated"])
def test_invalid_entry_lists_are_refused(entries: tuple[Entry, ...], problem: str) -> None:
    with pytest.raises(RingError, match=problem):
        ring(P1, *entries)


@pytest.mark.parametrize("token", [START, END], ids=["below", "at-end"])
def test_tokens_must_lie_in_the_range(token: int) -> None:
    with pytest.raises(RingError, match="Token is out of range"):
        ring(P1, E(token, P1), start=DOT10, end=DOT245)


def test_claim_for_peers_on_a_slash_12() -> None:
    universe = parse_cidr("10.32.0.0/12").range
    claimed = Ring(universe.start, universe.end, P1).claim_for_peers([P1, P2, P3])
    assert claimed.owned_counts() == {P1: 524288, P2: 262144, P3: 262144}
    assert [e.token for e in claimed.entries] == [parse_ip(a) for a in
                                                 ("10.32.0.0", "10.40.0.0", "10.44.0.0")]
    assert claimed.seeds == (P1, P2, P3)


@pytest.mark.parametrize("count", range(1, 13))
def test_claim_for_more_peers_than_addresses(count: int) -> None:
    peers = [PeerName((i // 100) << 40 | (i % 100) << 32 | 0xFF) for i in range(count)]
    claimed = ring(peers[0], end=parse_ip("10.0.0.8")).claim_for_peers(peers)
    last = claimed.entries[-1]
    assert last.token + last.free == claimed.end
    assert sum(claimed.owned_counts().values()) == 8


def test_claim_needs_an_empty_ring() -> None:
    with pytest.raises(ValueError, match="empty"):
        claim_all(P1).claim_for_peers([P2])


def test_grant_simple() -> None:
    ring1 = claim_all(P1)
    assert ring1.entries == (E(START, P1, 0, 256),)
    ring1 = ring1.grant_range_to_host(START, END, P2)
    assert ring1.entries == (E(START, P2, 1, 256),)

    ring2 = ring(P2, *ring1.entries).grant_range_to_host(DOT10, END, P1)
    assert ring2.entries == (E(START, P2, 2, 10), E(DOT10, P1, 0, 246))

    ring1 = ring(P1, *ring2.entries).grant_range_to_host(DOT245, END, P2)
    assert ring1.entries == (E(START, P2, 2, 10), E(DOT10, P1, 1, 235), E(DOT245, P2, 0, 11))

    # A grant spanning a live token.
    ring1 = ring(P1, E(START, P1, 2, 10), E(DOT10, P1, 0, 235), E(DOT245, P1, 0, 10))
    assert ring1.grant_range_to_host(DOT10, END, P2).entries == (
        E(START, P1, 2, 10), E(DOT10, P2, 1, 235), E(DOT245, P2, 1, 10))


def test_grant_split() -> None:
    ring1 = ring(P1, E(START, P1, 0, 256)).grant_range_to_host(DOT10, DOT245, P2)
    assert ring1.entries == (E(START, P1, 1, 10), E(DOT10, P2, 0, 235), E(DOT245, P1, 0, 11))

    # Spanning a live token, and inserting a new one.
    ring1 = ring(P1, E(START, P1, 2, 10), E(DOT10, P1, 0, 118), E(MIDDLE, P1, 0, 127))
    assert ring1.grant_range_to_host(DOT10, DOT245, P2).entries == (
        E(START, P1, 2, 10), E(DOT10, P2, 1, 118), E(MIDDLE, P2, 1, 117), E(DOT245, P1, 0, 11))


def test_grant_only_what_we_own() -> None:
    shared = claim_all(P1).grant_range_to_host(MIDDLE, END, P2)
    with pytest.raises(ValueError, match="not all of it is ours"):
        shared.grant_range_to_host(DOT10, DOT245, P3)
    with pytest.raises(ValueError):
        ring(P1).grant_range_to_host(START, END, P2)


def test_merge_simple() -> None:
    ring1 = claim_all(P1).grant_range_to_host(MIDDLE, END, P2)
    ring2 = ring(P2).merge(ring1, never).ring
    assert ring1.entries == (E(START, P1, 1, 128), E(MIDDLE, P2, 0, 128)) == ring2.entries

    # Different operations on either side still merge.
    ring1 = ring1.grant_range_to_host(START, MIDDLE, P2)
    ring2 = ring2.grant_range_to_host(MIDDLE, END, P1)
    ring2 = ring2.merge(ring1, never).ring
    ring1 = ring1.merge(ring2, never).ring
    assert ring1.entries == (E(START, P2, 2, 128), E(MIDDLE, P1, 1, 128)) == ring2.entries


def test_merge_more() -> None:
    ring1, ring2 = claim_all(P1), ring(P2)
    ring2 = ring2.merge(ring1, never).ring
    assert ring2.entries == (E(START, P1, 0, 256),)

    ring1 = ring1.grant_range_to_host(START, END, P2)
    ring2 = ring2.merge(ring1, never).ring
    assert ring1.entries == ring2.entries == (E(START, P2, 1, 256),)

    ring2 = ring2.grant_range_to_host(MIDDLE, END, P1)
    expected = (E(START, P2, 2, 128), E(MIDDLE, P1, 0, 128))
    assert ring2.entries == expected
    ring1 = ring1.merge(ring2, never).ring
    assert ring1.entries == expected

    again = ring2.merge(ring1, never)
    assert again.ring.entries == expected and not again.changed


@pytest.mark.parametrize("extra", [(), (E(DOT250, P2, 0, 5),)], ids=["one-entry", "two-entries"])
def test_merge_split(extra: tuple[Entry, ...]) -> None:
    whole = (E(START, P2, 0, 250 if extra else 256), *extra)
    ring2 = ring(P2).merge(ring(P1, *whole), never).ring
    ring2 = ring2.grant_range_to_host(DOT10, DOT245, P1)
    expected = (E(START, P2, 1, 10), E(DOT10, P1, 0, 235),
                E(DOT245, P2, 0, 5 if extra else 11), *extra)
    assert ring2.entries == expected
    assert ring(P1, *whole).merge(ring2, never).ring.entries == expected


def test_merges_go_expects_to_succeed() -> None:
    assert not ring(P1).merge(ring(P2), never).changed  # empty gossip
    assert claim_all(P1).merge(ring(P2), never).ring == claim_all(P1)

    ring1 = claim_all(P1)
    ring2 = ring(P2).merge(ring1, never).ring
    ring1.grant_range_to_host(MIDDLE, END, P1).merge(ring2, never)  # an old message

    ring2 = ring(P2).merge(ring1, never).ring  # a split at the beginning
    assert ring2.merge(ring1.grant_range_to_host(START, MIDDLE, P2), never).ring.owner(START) == P2


def test_choose_peers_to_ask() -> None:
    def ask(r: Ring, start: int = START, end: int = END) -> list[int]:
        return r.choose_peers_to_ask(start, end, random.Random(1).random)

    assert ask(ring(P1)) == []
    assert ask(ring(P1, E(START, P1))) == []
    assert ask(ring(P1, E(START, P1)).report_free({START: 10})) == []  # never ourselves
    assert ask(ring(P1, E(START, P1, 0, 1), E(MIDDLE, P1, 0, 1))) == []
    assert ask(ring(P1, E(START, P2, 0, 1))) == [P2]
    two = ring(P1, E(START, P2, 0, 1), E(MIDDLE, P3, 0, 1))
    assert ask(two, START, MIDDLE) == [P2]
    assert ask(two, MIDDLE, END) == [P3]
    assert sorted(ask(two)) == [P2, P3]


def test_choose_peers_is_weighted_by_free_space() -> None:
    lopsided = ring(P1, E(START, P2, 0, 120), E(MIDDLE, P3, 0, 1))
    source = random.Random(7)
    firsts = [lopsided.choose_peers_to_ask(START, END, source.random)[0] for _ in range(200)]
    assert firsts.count(P2) > 180


def test_report_free() -> None:
    ring2 = ring(P2).merge(claim_all(P1).grant_range_to_host(MIDDLE, END, P2), never).ring
    reported = ring2.report_free({r.start: 0 for r in ring2.owned_ranges()})
    assert reported.entries[1] == E(MIDDLE, P2, 1, 0)
    assert reported.report_free({MIDDLE: 0}) == reported  # unchanged: no new version
    with pytest.raises(ValueError, match="not our entry"):
        ring2.report_free({START: 0})
    with pytest.raises(ValueError, match="exceeds"):
        ring2.report_free({MIDDLE: 129})


def test_report_free_of_an_entry_that_wraps() -> None:
    wrapped = ring(P1, E(DOT10, P2, 0, 0), E(MIDDLE, P1, 0, 0))
    assert wrapped.owned_ranges() == [Range(START, DOT10), Range(MIDDLE, END)]
    reported = wrapped.report_free({START: 3, MIDDLE: 4})
    assert reported.entries[1] == E(MIDDLE, P1, 1, 7)


def test_owned_ranges() -> None:
    ring1 = claim_all(P1)
    assert ring1.owned_ranges() == [Range(START, END)]
    ring1 = ring1.grant_range_to_host(MIDDLE, END, P2)
    assert ring1.owned_ranges() == [Range(START, MIDDLE)]
    assert ring(P2).merge(ring1, never).ring.owned_ranges() == [Range(MIDDLE, END)]
    assert ring(P2, E(MIDDLE, P2)).owned_ranges() == [Range(START, MIDDLE), Range(MIDDLE, END)]
    assert ring(P2, E(DOT10, P2), E(MIDDLE, P2)).owned_ranges() == [
        Range(START, DOT10), Range(DOT10, MIDDLE), Range(MIDDLE, END)]


def test_transfer() -> None:
    ring1 = claim_all(P1).grant_range_to_host(MIDDLE, END, P2)
    ring1, moved = ring1.transfer(P2, P1)
    assert moved == [Range(MIDDLE, END)]
    assert ring1.owned_ranges() == [Range(START, MIDDLE), Range(MIDDLE, END)]
    assert ring1.entries[1].version == 100

    # A token at the end of a transferred range comes back to life.
    ring1 = ring1.grant_range_to_host(DOT10, MIDDLE, P2)
    assert ring1.owned_ranges() == [Range(START, DOT10), Range(MIDDLE, END)]


def test_transfer_keeps_free_counts_or_sets_the_given_one() -> None:
    shared = ring(P1, E(START, P1, 3, 100), E(MIDDLE, P2, 7, 128))
    kept, _ = shared.transfer(P2, P1)
    zeroed, _ = shared.transfer(P2, P1, free=0)
    assert kept.entries[1] == E(MIDDLE, P1, 107, 128)
    assert zeroed.entries[1] == E(MIDDLE, P1, 107, 0)
    assert zeroed.entries[0] == shared.entries[0]


def test_owner() -> None:
    ring1 = ring(P1)
    assert ring1.contains(START) and not ring1.contains(END)
    assert ring1.owner(START) is None
    ring1 = claim_all(P1).grant_range_to_host(MIDDLE, END, P2)
    assert (ring1.owner(START), ring1.owner(MIDDLE)) == (P1, P2)
    with pytest.raises(ValueError):
        ring1.owner(END)


def test_an_entry_wrapping_round_owns_the_low_addresses() -> None:
    wrapped = ring(P1, E(DOT10, P2), E(MIDDLE, P3))
    assert wrapped.owner(START) == P3 and wrapped.owner(DOT10) == P2
    assert [(i.peer, i.range) for i in wrapped.all_range_info()] == [
        (P2, Range(DOT10, MIDDLE)), (P3, Range(START, DOT10)), (P3, Range(MIDDLE, END))]
    assert wrapped.owned_counts() == {P2: 118, P3: 138}


def test_pick_peer_for_transfer() -> None:
    shared = ring(P1, E(START, P1), E(DOT10, P2), E(MIDDLE, P3))
    assert shared.pick_peer_for_transfer(lambda p: True) == P2
    assert shared.pick_peer_for_transfer(lambda p: p == P3) == P3
    assert shared.pick_peer_for_transfer(lambda p: False) is None


def test_free_counts_are_clamped_when_read_and_sent() -> None:
    overstated = ring(P1, E(START, P2, 0, 200), E(MIDDLE, P3, 0, 1))
    assert overstated.free(0) == 128
    assert overstated.to_message().entries[0].free == 128
    assert overstated.entries[0].free == 200
