"""Hypothesis strategies for peer summaries and topologies, and table comparisons."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import strategies as st

from router.mesh.names import PeerName
from router.mesh.peers import PeerTable
from router.mesh.summary import ConnectionSummary, PeerSummary

OURSELF = PeerName(0x50)
OUR_SHORT_ID = 4000
"""Outside the generated short IDs, so we never have to re-pick ours (that is random)."""
POOL = [PeerName(n) for n in (0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80)]
GHOSTS = [PeerName(n) for n in (0xA1, 0xA2)]
"""Named in connection lists only: they become placeholders."""

connections = st.builds(
    ConnectionSummary,
    remote=st.sampled_from(POOL + GHOSTS),
    remote_tcp_addr=st.sampled_from(["", "10.0.0.1:6783", "10.0.0.2:41234"]),
    outbound=st.booleans(),
    established=st.booleans(),
)


@st.composite
def summaries(draw: st.DrawFn, names: tuple[PeerName, ...] = tuple(POOL)) -> PeerSummary:
    """Any summary about a pool peer (ourselves included), UIDs never 0 (as Go's)."""
    has_short_id = draw(st.integers(0, 5)) > 0
    return PeerSummary(
        name=draw(st.sampled_from(names)),
        nickname=draw(st.sampled_from(["a", "b"])),
        uid=draw(st.sampled_from([1, 2, 1 << 63])),
        version=draw(st.integers(0, 4)),
        short_id=draw(st.integers(0, 5)) if has_short_id else 0,
        has_short_id=has_short_id,
        connections=tuple(draw(st.lists(connections, max_size=5))),
    )


@st.composite
def consistent_updates(draw: st.DrawFn, count: int) -> list[list[PeerSummary]]:
    """``count`` updates in which (name, UID, Version) always means the same content,
    as it does for real peers, so that the order of arrival cannot matter."""
    universe: dict[tuple[PeerName, int, int], PeerSummary] = {}
    updates = []
    for _ in range(count):
        update = []
        for candidate in draw(st.lists(summaries(), max_size=5, unique_by=lambda s: s.name)):
            key = (candidate.name, candidate.uid, candidate.version)
            update.append(universe.setdefault(key, candidate))
        updates.append(update)
    return updates


def fresh_table(seed: int = 0) -> PeerTable:
    return PeerTable(OURSELF, "us", 1000, OUR_SHORT_ID, random.Random(seed))


def referenced(table: PeerTable) -> set[PeerName]:
    return {c.remote for s in table.summaries() for c in s.connections}


def state(table: PeerTable, drop_orphans: bool = False) -> dict[str, Any]:
    """What two tables must agree on: every entry, references, held short IDs.

    With ``drop_orphans``, placeholders nothing refers to are left out: a rejected
    full summary leaves them behind where a skipped delta does not, and the next
    garbage collection removes them anyway.
    """
    refs = referenced(table)
    rows = [(s, table.local_ref_count(s.name)) for s in table.summaries()
            if not (drop_orphans and s.is_placeholder and not s.connections
                    and s.name not in refs and table.local_ref_count(s.name) == 0)]
    held = {sid: (p, others) for sid, (p, others) in table.short_id_entries().items()
            if p is not None}
    return {"rows": rows, "held_short_ids": held}


@st.composite
def evolving_deliveries(draw: st.DrawFn) -> list[tuple[str, list[PeerSummary]]]:
    """Batches from peers whose summaries evolve as real ones do: a connection
    added, dropped or established per Version, now and then a restart (new UID,
    low Version). A batch carries current or stale summaries and comes either
    incrementally from our neighbour, in full from another neighbour, or is an
    "echo" (the neighbour gossiped those peers to us)."""
    current: dict[PeerName, PeerSummary] = {}
    history: list[PeerSummary] = []
    for name in draw(st.lists(st.sampled_from(POOL), min_size=2, max_size=6, unique=True)):
        conns = tuple(ConnectionSummary(r, "10.0.0.1:6783", True, True)
                      for r in POOL + GHOSTS if r != name and draw(st.booleans()))
        current[name] = PeerSummary(name, "n", draw(st.integers(1, 3)), 1, POOL.index(name),
                                    True, conns)
        history.append(current[name])
    deliveries = []
    for _ in range(draw(st.integers(3, 12))):
        for name in draw(st.lists(st.sampled_from(sorted(current)), min_size=1, max_size=3)):
            current[name] = draw(_evolved(current[name]))
            history.append(current[name])
        batch = {s.name: s for s in draw(st.lists(
            st.one_of(st.sampled_from(sorted(current.values(), key=lambda s: s.name)),
                      st.sampled_from(history)), min_size=1, max_size=4))}
        how = draw(st.sampled_from(["incremental", "incremental", "full", "echo"]))
        deliveries.append((how, list(batch.values())))
    return deliveries


@st.composite
def _evolved(draw: st.DrawFn, summary: PeerSummary) -> PeerSummary:
    if draw(st.integers(0, 9)) == 0:  # restart
        return PeerSummary(summary.name, summary.nickname, summary.uid + 7,
                           draw(st.integers(0, 2)), summary.short_id, True, ())
    conns = summary.connections_by_remote()
    remote = draw(st.sampled_from([r for r in POOL + GHOSTS if r != summary.name]))
    if remote in conns and draw(st.booleans()):
        del conns[remote]
    else:
        conns[remote] = ConnectionSummary(remote, "10.0.0.2:6783", False, draw(st.booleans()))
    return PeerSummary(summary.name, summary.nickname, summary.uid, summary.version + 1,
                       summary.short_id, True, tuple(conns[r] for r in sorted(conns)))
