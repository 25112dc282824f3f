"""Routes against an independent reference, and the properties routing relies on.

The reference computes plain BFS distances first and only then picks, for every
destination, the lowest-named peer one level closer as its parent: that is what
widening level by level in sorted order amounts to, said without the worklist.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Mapping

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.mesh.names import UNKNOWN_PEER_NAME, PeerName
from router.mesh.routes import (
    Routes,
    Topology,
    choose_gossip_neighbours,
    gossip_subset_size,
    widen,
)

PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
Adjacency = dict[PeerName, set[PeerName]]


def usable_edges(topology: Topology, symmetric: bool) -> Adjacency:
    """u → v when u may route over its connection to v."""
    adj: Adjacency = {}
    for u, conns in topology.items():
        for v, established in conns.items():
            back = topology.get(v, {}).get(u, False)
            if not symmetric or (established and back):
                adj.setdefault(u, set()).add(v)
    return adj


def distances(adj: Adjacency, start: PeerName) -> dict[PeerName, int]:
    dist = {start: 0}
    queue = deque([start])
    while queue:
        u = queue.popleft()
        for v in adj.get(u, ()):
            if v not in dist:
                dist[v] = dist[u] + 1
                queue.append(v)
    return dist


def reference_routes(topology: Topology, start: PeerName,
                     symmetric: bool) -> dict[PeerName, PeerName]:
    adj = usable_edges(topology, symmetric)
    dist = distances(adj, start)
    hops = {start: UNKNOWN_PEER_NAME}
    for node in sorted(dist, key=lambda n: (dist[n], n)):
        if node != start:
            parent = min(u for u in dist if dist[u] == dist[node] - 1 and node in adj.get(u, ()))
            hops[node] = node if parent == start else hops[parent]
    return hops


def reference_broadcast(topology: Topology, ourself: PeerName, source: PeerName,
                        symmetric: bool) -> tuple[PeerName, ...]:
    if source not in topology:
        return ()
    adj = usable_edges(topology, symmetric)
    dist = distances(adj, source)
    if ourself not in dist:
        return ()
    level = dist[ourself]
    reached = {n for n, d in dist.items() if d <= level}
    reached |= {v for u, d in dist.items() if d == level and u < ourself for v in adj.get(u, ())}
    return tuple(sorted(adj.get(ourself, set()) - reached))


NAMES = [PeerName(n) for n in (0x05, 0x11, 0x2A, 0x30, 0x31, 0x77, 0x90, 0xC3, 0xD0, 0xFE)]
GHOST = PeerName(0xABCDEF)


@st.composite
def topologies(draw: st.DrawFn,
               symmetric_only: bool = False) -> dict[PeerName, dict[PeerName, bool]]:
    """1–10 peers; each ordered pair absent, established or not; maybe a reference
    to a peer nobody describes (a placeholder, present with no connections)."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=10, unique=True))
    density = draw(st.floats(0.1, 0.9))
    topo: dict[PeerName, dict[PeerName, bool]] = {n: {} for n in names}
    rng = random.Random(draw(st.integers(0, 1 << 30)))
    for i, u in enumerate(names):
        for v in names[i + 1:]:
            if rng.random() >= density:
                continue
            if symmetric_only:
                topo[u][v] = topo[v][u] = True
                continue
            for a, b in ((u, v), (v, u)):
                if rng.random() < 0.85:
                    topo[a][b] = rng.random() < 0.8
    if not symmetric_only and draw(st.booleans()):
        topo[names[0]][GHOST] = True
        topo[GHOST] = {}
    return topo


@PROPERTY
@given(topologies())
def test_unicast_routes_match_the_reference(topo: Topology) -> None:
    for ourself in topo:
        routes = Routes(topo, ourself)
        assert routes.unicast_table == reference_routes(topo, ourself, True)
        assert routes.unicast_all_table == reference_routes(topo, ourself, False)


@PROPERTY
@given(topologies(), st.booleans())
def test_widening_stops_once_every_name_is_reached_with_the_same_answer(
        topo: Topology, dangling: bool) -> None:
    """``universe`` lets a widening end early and look for the names still missing
    only; the routes do not change.  Also with a remote no peer entry describes (not
    closed: ``Routes`` collects the names)."""
    if dangling:
        first = min(topo)
        topo = {**topo, first: {**topo[first], PeerName(0xFEDCBA): True}}
    names = topo.keys() | set().union(*(r.keys() for r in topo.values()))
    for ourself in topo:
        for symmetric in (True, False):
            assert (widen(topo, ourself, symmetric, universe=names)
                    == widen(topo, ourself, symmetric))
        routes = Routes(topo, ourself, closed=not dangling)
        assert routes.unicast_all_table == reference_routes(topo, ourself, False)
        assert routes.unicast_table == reference_routes(topo, ourself, True)


@PROPERTY
@given(topologies())
def test_broadcast_routes_match_the_reference(topo: Topology) -> None:
    for ourself in topo:
        routes = Routes(topo, ourself)
        for source in [*topo, PeerName(0x123456)]:
            assert routes.broadcast(source) == reference_broadcast(topo, ourself, source, True)
            assert routes.broadcast_all(source) == reference_broadcast(topo, ourself, source,
                                                                       False)


@PROPERTY
@given(topologies())
def test_every_route_is_a_shortest_path_through_a_neighbour(topo: Topology) -> None:
    for symmetric in (True, False):
        adj = usable_edges(topo, symmetric)
        for ourself in topo:
            routes = Routes(topo, ourself)
            table = routes.unicast_table if symmetric else routes.unicast_all_table
            ours = distances(adj, ourself)
            assert set(table) == set(ours)  # exactly the reachable peers
            for dst, hop in table.items():
                if dst == ourself:
                    assert hop == UNKNOWN_PEER_NAME
                    continue
                assert hop in adj.get(ourself, set())
                assert ours[dst] == 1 + distances(adj, hop)[dst]


@PROPERTY
@given(topologies(symmetric_only=True))
def test_a_broadcast_reaches_every_peer_exactly_once(topo: Topology) -> None:
    """What the tree is for: every peer relays by its own table, nobody gets it twice."""
    routes = {peer: Routes(topo, peer) for peer in topo}
    adj = usable_edges(topo, True)
    for source in topo:
        received: Counter[PeerName] = Counter()
        relaying = [source]
        while relaying:
            peer = relaying.pop()
            for hop in routes[peer].broadcast(source):
                received[hop] += 1
                relaying.append(hop)
        assert received == Counter(set(distances(adj, source)) - {source})


@PROPERTY
@given(topologies(), st.integers(0, 1 << 30))
def test_gossip_subset_size_and_members(topo: Topology, seed: int) -> None:
    for ourself in topo:
        routes = Routes(topo, ourself)
        for except_ in [ourself, *topo.get(ourself, {})]:
            candidates = {h for h in routes.unicast_all_table.values()
                          if h not in (UNKNOWN_PEER_NAME, except_)}
            chosen = routes.gossip_neighbours(except_, random.Random(seed))
            assert len(chosen) == len(set(chosen))
            assert set(chosen) <= candidates
            assert len(chosen) == gossip_subset_size(routes.unicast_all_table, len(candidates))


def test_gossip_subset_size_is_two_log2_peers_truncated() -> None:
    def table(n: int) -> Mapping[PeerName, PeerName]:
        return {PeerName(i): PeerName(i) for i in range(n)}
    assert [gossip_subset_size(table(n), 99) for n in (0, 1, 2, 3, 8, 9, 300)] == [
        0, 0, 2, 3, 6, 6, 16]
    assert gossip_subset_size(table(300), 4) == 4


def test_gossip_subset_favours_neighbours_behind_bottlenecks() -> None:
    """The first pick is proportional to how many destinations a neighbour leads to."""
    hub = PeerName(0x99)
    unicast_all = {PeerName(0x50): UNKNOWN_PEER_NAME}
    unicast_all |= {PeerName(i): PeerName(i) for i in range(1, 13)}      # 12 leaves
    unicast_all |= {PeerName(0x1000 + i): hub for i in range(18)} | {hub: hub}  # 19 via hub
    assert gossip_subset_size(unicast_all, 13) == 10
    rng = random.Random(11)
    firsts = Counter(choose_gossip_neighbours(unicast_all, PeerName(0x50), rng)[0]
                     for _ in range(3000))
    assert abs(firsts[hub] / 3000 - 19 / 31) < 0.03
    assert choose_gossip_neighbours(unicast_all, hub, rng).count(hub) == 0
    assert choose_gossip_neighbours({PeerName(1): UNKNOWN_PEER_NAME}, PeerName(2), rng) == []
