"""Generated rings: the merge is a CRDT join where no allocations of ours are at stake, and
never hands a stretch we use to another peer where they are."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from router.ipam.messages import Entry
from router.ipam.ring import Ring
from router.ipam.ring_entries import Circle, check, span_size
from tests.router.ipam.strategies import (
    PEERS,
    SIZE,
    US,
    entry_lists,
    in_use_by,
    never_in_use,
    owners,
    rings,
)

EXAMPLES = settings(max_examples=80, deadline=None)


def joined(a: Ring, b: Ring) -> Ring:
    return a.merge(b, never_in_use).ring


def content(ring: Ring) -> tuple[object, ...]:
    return (ring.entries, ring.seeds)


def assert_valid(ring: Ring) -> None:
    circle = Circle(ring.start, ring.end)
    sent = ring.to_message().entries
    assert check(circle, sent) is None
    assert all(e.free <= span_size(circle, sent, i) for i, e in enumerate(sent))


@EXAMPLES
@given(rings(), rings())
def test_merge_is_commutative(a: Ring, b: Ring) -> None:
    assert content(joined(a, b)) == content(joined(b, a))


@EXAMPLES
@given(rings(), rings(), rings())
def test_merge_is_associative(a: Ring, b: Ring, c: Ring) -> None:
    assert content(joined(joined(a, b), c)) == content(joined(a, joined(b, c)))


@EXAMPLES
@given(rings(), rings())
def test_merge_is_idempotent(a: Ring, b: Ring) -> None:
    assert joined(a, a) == a
    once = joined(a, b)
    again = once.merge(b, never_in_use)
    assert again.ring == once and not again.changed


@EXAMPLES
@given(rings(), rings())
def test_merge_result_is_a_valid_ring_holding_every_token(a: Ring, b: Ring) -> None:
    merged = joined(a, b)
    assert_valid(merged)
    assert {e.token for e in merged.entries} == {e.token for e in a.entries + b.entries}


@st.composite
def ours_and_theirs(draw: st.DrawFn) -> tuple[Ring, Ring, set[int]]:
    """Our ring, another peer's, and addresses we hold in our own stretches."""
    ours = draw(rings(peer=US))
    theirs = draw(st.one_of(rings(), rivals(ours)))
    mine = [a for a, owner in owners(ours).items() if owner == US] if ours.entries else []
    used = draw(st.sets(st.sampled_from(mine), min_size=1, max_size=6)) if mine else set()
    return ours, theirs, used


@st.composite
def rivals(draw: st.DrawFn, ours: Ring) -> Ring:
    """Our ring as another peer may have changed it: entries given to other peers at the
    same or a newer version, and tokens added."""
    changed = [Entry(e.token, draw(st.sampled_from(PEERS)), e.version + draw(st.integers(0, 1)),
                     draw(st.integers(0, SIZE)))
               if draw(st.booleans()) else e for e in ours.entries]
    added = {e.token: e for e in draw(entry_lists(max_tokens=3))}
    merged = {**added, **{e.token: e for e in changed}}
    return Ring(ours.start, ours.end, draw(st.sampled_from(PEERS)),
                tuple(merged[t] for t in sorted(merged)), ours.seeds)


@settings(max_examples=150, deadline=None)
@given(ours_and_theirs())
def test_a_stretch_we_use_never_changes_owner(case: tuple[Ring, Ring, set[int]]) -> None:
    ours, theirs, used = case
    result = ours.merge(theirs, in_use_by(used))
    assert_valid(result.ring)
    after = owners(result.ring)
    assert all(after[a] == US for a in used)
    # Away from what we use, the result is the plain join.
    plain = owners(joined(ours, theirs))
    repaired = {c.token for c in result.conflicts}
    for token in repaired:
        assert result.ring.owner(token) == US
    differing = {a for a in after if after[a] != plain[a]}
    assert all(after[a] == US for a in differing)
    assert bool(differing) <= bool(result.conflicts)


@settings(max_examples=150, deadline=None)
@given(ours_and_theirs())
def test_our_repaired_view_wins_at_the_other_peer(case: tuple[Ring, Ring, set[int]]) -> None:
    ours, theirs, used = case
    result = ours.merge(theirs, in_use_by(used))
    back = theirs.merge(result.ring, never_in_use).ring
    assert all(back.owner(a) == US for a in used)
    settled = result.ring.merge(back, in_use_by(used))
    assert settled.conflicts == () and settled.ring == result.ring
