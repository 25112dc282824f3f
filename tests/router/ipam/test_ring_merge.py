"""The merge's conflict repair: where weave 2.8.1 fails (and drops the connection), we keep
what we use and say so; only incompatible rings are refused.

The cases are those of Go's ``TestMergeWithConflicts`` and ``TestMergeErrors``; "in use"
follows Go's test helper: an entry of ours reporting less free space than it covers holds
allocations.
"""

from __future__ import annotations

import pytest

from router.ipam.ring import RingError
from router.ipam.ring_merge import ConflictKind
from tests.router.ipam.helpers import DOT10, MIDDLE, P1, P2, P3, START, E, allocations_of, ring


def test_equal_versions_without_allocations_settle_by_free_then_name() -> None:
    ours = ring(P1, E(START, P1, 1, 256))
    result = ours.merge(ring(P2, E(START, P2, 1, 256)), allocations_of(ours))
    # Go keeps its own entry on such a tie; we let the higher peer name win, as every
    # peer of ours does, so that the two sides agree.
    assert result.conflicts == () and result.ring.owner(START) == P2
    more_free = ring(P2, E(START, P2, 1, 256))
    assert ring(P1, E(START, P1, 1, 100)).merge(more_free, lambda r: False).ring.owner(START) == P2


def test_inconsistent_entry_with_allocations_is_kept_at_a_newer_version() -> None:
    ours = ring(P1, E(START, P1, 1, 128))
    theirs = ring(P2, E(START, P2, 1, 256))
    result = ours.merge(theirs, allocations_of(ours))
    [conflict] = result.conflicts
    assert conflict.kind is ConflictKind.INCONSISTENT_ENTRY
    assert (conflict.ours, conflict.theirs) == (E(START, P1, 1, 128), E(START, P2, 1, 256))
    assert result.ring.entries == (E(START, P1, 2, 128),) == (conflict.kept,)
    assert "Inconsistent entries for 10.0.0.0: owned by 01:00:00:00:02:00 but incoming " \
           "message says 02:00:00:00:02:00" in conflict.describe()
    # Our view now wins at the other side too.
    assert theirs.merge(result.ring, lambda r: False).ring.owner(START) == P1


def test_a_newer_version_naming_us_is_taken() -> None:
    result = ring(P1, E(START, P1)).merge(ring(P2, E(START, P1, 1)), lambda r: True)
    assert result.conflicts == () and result.ring.entries == (E(START, P1, 1),)


def test_a_newer_version_giving_away_an_unused_range_is_taken() -> None:
    ours = ring(P1, E(START, P1, 0, 256))
    result = ours.merge(ring(P2, E(START, P2, 1, 256)), allocations_of(ours))
    assert result.conflicts == () and result.ring.owner(START) == P2


def test_a_newer_version_giving_away_a_range_in_use_is_refused() -> None:
    ours = ring(P1, E(START, P1, 0, 128))
    result = ours.merge(ring(P2, E(START, P2, 1)), allocations_of(ours))
    [conflict] = result.conflicts
    assert conflict.kind is ConflictKind.NEWER_VERSION
    assert result.ring.entries == (E(START, P1, 2, 128),)
    assert "Received update for IP range I own at 10.0.0.0 v0" in conflict.describe()


def test_a_split_of_an_unused_range_is_taken() -> None:
    ours = ring(P1, E(START, P1, 1, 256))
    theirs = ring(P2, E(START, P1, 2, 128), E(MIDDLE, P2, 0, 128))
    result = ours.merge(theirs, allocations_of(ours))
    assert result.conflicts == () and result.ring.entries == theirs.entries


def test_a_split_of_a_range_in_use_is_refused_only_where_used() -> None:
    ours = ring(P1, E(START, P1, 0, 0))
    theirs = ring(P2, E(DOT10, P3), E(MIDDLE, P2))
    used = {START + 200}  # only above MIDDLE
    result = ours.merge(theirs, lambda r: any(r.contains(a) for a in used))
    [conflict] = result.conflicts
    assert conflict.kind is ConflictKind.SPLIT and conflict.token == MIDDLE
    assert conflict.ours == E(START, P1, 0, 0) and conflict.theirs == E(MIDDLE, P2)
    assert result.ring.entries == (E(START, P1), E(DOT10, P3), E(MIDDLE, P1, 1, 0))
    assert "Peer 02:00:00:00:02:00 says it owns the IP range from 10.0.0.128" \
        in conflict.describe()


def test_a_tie_we_win_is_still_bumped_so_go_peers_take_it() -> None:
    ours = ring(P2, E(START, P2, 3, 10))
    theirs = ring(P1, E(START, P1, 3, 10))  # lower name: we win the tie
    result = ours.merge(theirs, lambda r: True)
    [conflict] = result.conflicts
    assert conflict.kind is ConflictKind.INCONSISTENT_ENTRY
    assert result.ring.entries == (E(START, P2, 4, 10),)


def test_repairs_are_stable() -> None:
    ours = ring(P1, E(START, P1, 0, 0))
    theirs = ring(P2, E(START, P2, 5), E(MIDDLE, P3, 2))
    first = ours.merge(theirs, lambda r: True)
    assert len(first.conflicts) == 2
    again = first.ring.merge(theirs, lambda r: True)
    assert again.conflicts == () and not again.changed


def test_stale_entries_of_ours_need_no_repair() -> None:
    ours = ring(P1, E(START, P1, 4, 0))
    result = ours.merge(ring(P2, E(START, P2, 3)), lambda r: True)
    assert result.conflicts == () and not result.changed


def test_different_ranges_are_refused() -> None:
    with pytest.raises(RingError, match=r"Incompatible IP allocation ranges \(received: "
                                        r"10.0.0.0/25, ours: 10.0.0.0/24\)"):
        ring(P1).merge(ring(P2, end=MIDDLE), lambda r: False)


def test_different_seeds_are_refused() -> None:
    ours = ring(P1).claim_for_peers([P1, P2])
    theirs = ring(P3).claim_for_peers([P3])
    with pytest.raises(RingError, match="IP allocation was seeded by different peers "
                                        r"\(received: \[03:00:00:00:02:00\], ours: "):
        ours.merge(theirs, lambda r: False)


def test_seeds_are_learnt_from_the_first_ring() -> None:
    theirs = ring(P2).claim_for_peers([P1, P2])
    assert ring(P1).merge(theirs, lambda r: False).ring.seeds == (P1, P2)


def test_a_token_after_our_last_is_taken_where_we_hold_nothing() -> None:
    """Go fails for a token after our last one whenever the stretch is ours ("Cannot Merge
    an entry into a range I own"), allocations or not; we take it when we hold nothing."""
    ours = ring(P1, E(START, P1, 0, 256))
    assert ours.merge(ring(P2, E(MIDDLE, P2)), lambda r: False).ring.owner(MIDDLE) == P2
    kept = ours.merge(ring(P2, E(DOT10, P2)), lambda r: True)
    assert kept.ring.owner(DOT10) == P1 and kept.conflicts[0].kind is ConflictKind.SPLIT
