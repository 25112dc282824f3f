"""Merging topology updates: the rules by example, and the lattice properties.

Real peers never publish two different contents under one (name, UID, Version),
so over such updates the merge is a join: the order and grouping of arrivals do
not matter and a repeat changes nothing.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.mesh.names import PeerName
from router.mesh.peers import PeerTable, TopologyGossipData
from router.mesh.routes import Routes
from router.mesh.summary import ConnectionSummary, PeerSummary, TopologyError, supersedes
from tests.router.topology_strategies import (
    OURSELF,
    consistent_updates,
    fresh_table,
    state,
    summaries,
)

PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
A, B, C = PeerName(0x10), PeerName(0x60), PeerName(0x90)


def peer(name: PeerName, uid: int, version: int, *remotes: PeerName, short_id: int | None = 1,
         nickname: str = "n") -> PeerSummary:
    conns = tuple(ConnectionSummary(r, "10.0.0.1:6783", True, True) for r in remotes)
    return PeerSummary(name, nickname, uid, version, short_id or 0, short_id is not None, conns)


def join(left: PeerTable, right: PeerTable) -> PeerTable:
    """``left`` after merging everything ``right`` knows."""
    left.apply_update(right.summaries())
    return left


def table_after(*updates: list[PeerSummary]) -> PeerTable:
    table = fresh_table()
    for update in updates:
        table.apply_update(update)
    return table


# ------------------------------------------------------------------ the rules


@pytest.mark.parametrize(("new", "current", "wins"), [
    (peer(A, 1, 5), peer(A, 9, 4), True),                       # higher Version
    (peer(A, 9, 4), peer(A, 1, 5), False),
    (peer(A, 2, 5), peer(A, 1, 5), True),                       # tie: higher UID
    (peer(A, 1, 5), peer(A, 2, 5), False),
    (peer(A, 1, 5), peer(A, 1, 5, short_id=None), True),        # tie: having a short ID
    (peer(A, 1, 5, short_id=None), peer(A, 1, 5), False),
    (peer(A, 1, 5, B, short_id=7), peer(A, 1, 5), False),       # anything else: keep ours
], ids=["version", "lower-version", "uid", "lower-uid", "short-id", "no-short-id", "equal"])
def test_merge_order(new: PeerSummary, current: PeerSummary, wins: bool) -> None:
    assert supersedes(new, current) is wins
    table = table_after([current])
    result = table.apply_update([new])
    assert (A in result.new) is wins
    assert result.received == {A}
    assert table.get(A) == (new if wins else current)


def test_unknown_remotes_become_placeholders_even_from_rejected_summaries() -> None:
    table = table_after([peer(A, 1, 5)])
    result = table.apply_update([peer(A, 1, 4, C)])  # rejected: older
    assert result.new == frozenset()
    placeholder = table.get(C)
    assert placeholder is not None and placeholder.is_placeholder
    # Nothing connects us to either: both go at the next collection.
    assert [p.name for p in table.garbage_collect().removed] == [A, C]


def test_a_new_incarnation_replaces_the_whole_connection_list_once_it_wins() -> None:
    table = table_after([peer(A, 1, 8, B, C)])
    assert table.apply_update([peer(A, 2, 3, B)]).new == frozenset()  # restarted, Version low
    assert {c.remote for c in table.get(A).connections} == {B, C}  # type: ignore[union-attr]
    assert table.apply_update([peer(A, 2, 9, B)]).new == {A}
    assert [c.remote for c in table.get(A).connections] == [B]  # type: ignore[union-attr]


def test_news_of_an_older_incarnation_of_ourselves_raises_our_version() -> None:
    table = fresh_table()
    result = table.apply_update([peer(OURSELF, 999, 41)])
    assert table.local_summary().version == 42
    assert result.changes.local_peer_changed and result.new == frozenset()
    assert not table.apply_update([peer(OURSELF, 999, 3)]).changes.local_peer_changed
    assert not table.apply_update([peer(OURSELF, 1000, 77)]).changes.local_peer_changed
    assert table.local_summary().version == 42


def test_losing_our_short_id_to_a_lower_name_makes_us_pick_a_free_one() -> None:
    table = PeerTable(OURSELF, "us", 1000, 7, random.Random(3))
    table.apply_update([peer(C, 1, 1, short_id=7)])  # higher name: we keep 7
    assert table.fetch_by_short_id(7) == OURSELF
    result = table.apply_update([peer(A, 1, 1, short_id=7)])
    ours = table.local_summary()
    assert ours.short_id != 7 and ours.version == 1
    assert table.fetch_by_short_id(ours.short_id) == OURSELF
    assert table.fetch_by_short_id(7) == A
    assert result.changes.local_peer_changed and result.changes.short_ids_invalidated


def test_garbage_collection_spares_referenced_peers_and_reports_the_rest() -> None:
    table = fresh_table()
    table.fetch_with_default(B, "b", 5, 3)
    table.add_local_connection(ConnectionSummary(B, "10.0.0.6:6783", True, False))
    table.apply_update([peer(B, 5, 2, OURSELF, C), peer(A, 4, 1, C)])
    changes = table.garbage_collect()
    assert [p.name for p in changes.removed] == [A]  # C is reached through B
    table.dereference(B)
    changes = table.delete_local_connection(B)
    assert [p.name for p in changes.removed] == [B, C]
    assert changes.local_peer_changed and table.names() == {OURSELF}


def test_a_peer_collected_while_a_kept_peer_names_it_stays_in_the_topology() -> None:
    """B is held by a handshake but unreached, and names C; collection removes C, not B.
    Once our connection reaches B, routing reaches C through it: the topology that
    routes read still names C (a peer with no connections), so that widening may stop
    once it has reached every name there."""
    table = fresh_table()
    table.fetch_with_default(B, "b", 5, 3)
    table.apply_update([peer(B, 5, 2, C)])
    assert [p.name for p in table.garbage_collect().removed] == [C]
    assert C not in table and table.topology()[C] == {}
    table.add_local_connection(ConnectionSummary(B, "10.0.0.6:6783", True, True))
    closed = Routes(table.topology(), OURSELF, closed=True)
    assert closed.unicast_all(C) == B
    assert closed.unicast_all_table == Routes(table.topology(), OURSELF).unicast_all_table
    table.apply_update([peer(B, 5, 3)])  # B no longer names C: nothing is left over
    assert C not in table.topology()


def test_collection_reaches_every_peer_of_a_full_mesh() -> None:
    names = [PeerName(0x100 + i) for i in range(12)]
    table = fresh_table()
    table.apply_update([peer(n, 1, 1, OURSELF, *(m for m in names if m != n)) for n in names])
    for n in names:
        table.fetch_with_default(n, "n", 1, None)
        table.add_local_connection(ConnectionSummary(n, "10.0.0.6:6783", True, True))
        table.dereference(n)
    assert table.garbage_collect().removed == ()
    assert table.names() == {OURSELF, *names}


def test_local_connections_need_a_known_remote_and_a_reference_to_drop() -> None:
    table = fresh_table()
    with pytest.raises(TopologyError, match="not a known remote"):
        table.add_local_connection(ConnectionSummary(B, "", True, False))
    with pytest.raises(TopologyError, match="no local reference"):
        table.dereference(B)
    with pytest.raises(TopologyError, match="no local connection"):
        table.set_local_connection_established(B)
    assert table.delete_local_connection(B).removed == ()


@pytest.mark.parametrize("bad", [
    {"uid": -1}, {"uid": 1 << 64}, {"version": 1 << 64}, {"short_id": 1 << 16}, {"uid": True},
])
def test_summaries_refuse_out_of_range_fields(bad: dict[str, int]) -> None:
    fields = {"name": A, "nickname": "", "uid": 1, "version": 1, "short_id": 1,
              "has_short_id": True} | bad
    with pytest.raises(TopologyError, match="out of range"):
        PeerSummary(**fields)  # type: ignore[arg-type]


def test_pending_topology_gossip_merges_by_union() -> None:
    first, second = TopologyGossipData(frozenset({A})), TopologyGossipData(frozenset({A, B}))
    assert first.merge(second) == second.merge(first) == TopologyGossipData(frozenset({A, B}))


# ------------------------------------------------------------------ properties


@PROPERTY
@given(consistent_updates(2))
def test_merge_is_commutative(updates: list[list[PeerSummary]]) -> None:
    first, second = updates
    assert state(table_after(first, second)) == state(table_after(second, first))


@PROPERTY
@given(consistent_updates(3))
def test_merge_is_associative(updates: list[list[PeerSummary]]) -> None:
    a, b, c = (table_after(u) for u in updates)
    left = join(join(table_after(updates[0]), b), c)
    right = join(a, join(table_after(updates[1]), c))
    assert state(left) == state(right)


@PROPERTY
@given(consistent_updates(1))
def test_merge_is_idempotent(updates: list[list[PeerSummary]]) -> None:
    table = table_after(updates[0])
    before = state(table)
    again = table.apply_update(updates[0])
    assert again.new == frozenset()
    assert state(table) == before
    assert state(join(table, table_after(updates[0]))) == before


@PROPERTY
@given(st.lists(summaries(), max_size=6), st.lists(summaries(), max_size=6))
def test_new_names_exactly_the_peers_that_changed(prior: list[PeerSummary],
                                                  update: list[PeerSummary]) -> None:
    table = table_after(prior)
    before = {s.name: s for s in table.summaries()}
    result = table.apply_update(update)
    after = {s.name: s for s in table.summaries()}
    changed = {n for n, s in after.items() if before.get(n) != s and not s.is_placeholder}
    assert result.received == {s.name for s in update}
    assert result.new == changed - {OURSELF}


def test_unchanged_peers_hand_out_the_same_summary_object() -> None:
    """Encoders share these objects, so their memory does not grow per connection."""
    table = table_after([peer(A, 1, 5, B), peer(B, 2, 3, A)])
    first = table.get(A)
    assert table.get(A) is first and table.summaries()[0] is first
    table.apply_update([peer(A, 1, 6, B, C)])
    assert table.get(A) is not first and table.get(A) == peer(A, 1, 6, B, C)
    ours = table.local_summary()
    table.fetch_with_default(B, "b", 2, 1)
    assert table.local_summary() is ours  # a reference is not a change
    table.add_local_connection(ConnectionSummary(B, "10.0.0.6:6783", True, False))
    assert table.local_summary() is not ours
    assert [c.remote for c in table.local_summary().connections] == [B]
