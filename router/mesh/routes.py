"""Unicast and broadcast routes over the gossiped topology (``peer.go``, ``routes.go``).

Background: every peer computes its routes from the same gossiped topology, and
a mixed mesh of Go and Python peers only forwards correctly if all of them get
the same answer, so this follows Go step by step:

* **Breadth-first widening** from a start peer. Each level is sorted by peer
  name (numerically) before it is expanded; a peer reached for the first time
  gets the next hop of the peer that reached it (or itself, when reached from
  the start). So the lowest-named peer of a level wins every tie.
* **Which connections count.** *unicast* follows only connections that are
  established *and* symmetric: peer A uses its connection to B when A reports it
  established and B reports a connection back to A that is established too.
  *unicast_all* follows every connection a peer reports, in one direction only,
  whatever its state (gossip and garbage collection use that one).
* **Broadcast** from source S, at ourselves: widen from S and stop when we come
  up in the worklist; the answer is our neighbours (connections counted as
  above) that the widening has not reached yet, including those reached by
  lower-named peers of our own level. Empty if S is unknown or never reaches us.
  Go returns those in map order; here they are sorted.
* **Gossip neighbour subset** (``randomNeighbours``): weight each neighbour by
  how many destinations of *unicast_all* it is the next hop for (ignoring the
  route to ourselves and any through the peer the gossip came from), and draw
  ``min(2·log2(len(unicast_all)), candidates)`` of them without replacement,
  each draw proportional to weight. Go uses its global random source and map
  order; here the draw comes from an injected ``random.Random`` and walks
  candidates in name order, which keeps the distribution and makes tests
  repeatable.

Design: pure functions over a :data:`Topology` snapshot (peer → remote →
established, as :meth:`router.mesh.peers.PeerTable.topology` gives it) and a
:class:`Routes` value that computes unicast tables eagerly and broadcast sets on
first use, as Go caches them. Names missing from the snapshot count as peers with
no connections.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping

from router.mesh.names import UNKNOWN_PEER_NAME, PeerName

Topology = Mapping[PeerName, Mapping[PeerName, bool]]
"""Peer → remote peer → whether that connection is established (as the peer says)."""
UnicastRoutes = Mapping[PeerName, PeerName]
"""Destination → next hop; ourselves → :data:`UNKNOWN_PEER_NAME`."""

_NO_CONNECTIONS: Mapping[PeerName, bool] = {}


def connected_peers(topology: Topology, peer: PeerName, established_and_symmetric: bool,
                    exclude: Mapping[PeerName, object] | frozenset[PeerName] = _NO_CONNECTIONS,
                    ) -> Iterator[PeerName]:
    """The remotes of ``peer`` that routing may use (Go's ``forEachConnectedPeer``)."""
    for remote, established in topology.get(peer, _NO_CONNECTIONS).items():
        if remote in exclude:
            continue
        if not established_and_symmetric or (
                established and topology.get(remote, _NO_CONNECTIONS).get(peer, False)):
            yield remote


def widen(topology: Topology, start: PeerName, established_and_symmetric: bool,
          stop_at: PeerName | None = None, universe: Collection[PeerName] | None = None
          ) -> tuple[bool, dict[PeerName, PeerName]]:
    """Breadth-first next hops from ``start`` (Go's ``Peer.routes``).

    Returns whether ``stop_at`` came up (widening stops there) and the routes found
    so far: destination → next hop from ``start``, ``start`` → UNKNOWN_PEER_NAME.

    ``universe``, when given, is every name the topology holds (its peers and every
    remote they name).  A widening without ``stop_at`` then keeps the names not reached
    yet: it ends once there are none (in a full mesh, after the first level), and a
    peer is searched for the few still missing rather than all its remotes (in a mesh
    that one peer is joining, the others' connections to it are established a while
    before ours, and every peer would be looked through for that one name).
    """
    routes: dict[PeerName, PeerName] = {start: UNKNOWN_PEER_NAME}
    unreached: set[PeerName] | None = None
    if universe is not None and stop_at is None:
        unreached = set(universe)
        unreached.discard(start)
    next_level = [start]
    while next_level:
        level = sorted(next_level)
        next_level = []
        for current in level:
            if current == stop_at:
                return True, routes
            remotes = topology.get(current, _NO_CONNECTIONS)
            hop = routes[current]
            # Only remotes not reached yet; which of them goes first does not matter,
            # since a level is sorted before it is expanded.
            fresh: Iterable[PeerName]
            if unreached is not None and len(unreached) < len(remotes):
                fresh = [name for name in unreached if name in remotes]
            else:
                fresh = remotes.keys() - routes.keys()
            for remote in fresh:
                if established_and_symmetric and not (
                        remotes[remote]
                        and topology.get(remote, _NO_CONNECTIONS).get(current, False)):
                    continue
                next_level.append(remote)
                routes[remote] = remote if current == start else hop
                if unreached is not None:
                    unreached.discard(remote)
            if unreached is not None and not unreached:
                return False, routes
    return False, routes


def broadcast_hops(topology: Topology, ourself: PeerName, source: PeerName,
                   established_and_symmetric: bool) -> tuple[PeerName, ...]:
    """Our neighbours that a broadcast from ``source`` must be passed to, sorted."""
    if source not in topology:
        return ()
    found, reached = widen(topology, source, established_and_symmetric, stop_at=ourself)
    if not found:
        return ()
    return tuple(sorted(connected_peers(topology, ourself, established_and_symmetric, reached)))


def gossip_subset_size(unicast_all: UnicastRoutes, candidates: int) -> int:
    """``min(2·log2(len(unicast_all)), candidates)``, truncated as Go's ``int()`` does."""
    if not unicast_all:
        return 0
    return int(min(2 * math.log2(len(unicast_all)), candidates))


def choose_gossip_neighbours(unicast_all: UnicastRoutes, except_: PeerName,
                             rng: random.Random) -> list[PeerName]:
    """Neighbours to send topology-style gossip to (Go's ``randomNeighbours``).

    ``except_`` is the peer the gossip came from (ourselves for our own).
    """
    weights = Counter(hop for hop in unicast_all.values()
                      if hop != UNKNOWN_PEER_NAME and hop != except_)
    needed = gossip_subset_size(unicast_all, len(weights))
    total = sum(weights.values())
    chosen: list[PeerName] = []
    while len(chosen) < needed:
        point = rng.randrange(total)
        for hop in sorted(weights):
            if point < weights[hop]:
                chosen.append(hop)
                total -= weights.pop(hop)
                break
            point -= weights[hop]
    return chosen


class Routes:
    """All routes from ``ourself`` over one topology snapshot (Go's ``routes``).

    The snapshot is kept, not copied: pass a fresh one (``PeerTable.topology()``)
    and build a new ``Routes`` when the topology changes.
    """

    def __init__(self, topology: Topology, ourself: PeerName, closed: bool = False) -> None:
        """``closed``: every remote the topology names is one of its peers too (as
        :meth:`~router.mesh.peers.PeerTable.topology` guarantees), so its peers are
        all the names it holds; otherwise they are collected here."""
        self._topology = topology
        self._ourself = ourself
        names: Collection[PeerName] = topology.keys() if closed else (
            topology.keys() | set().union(*(remotes.keys() for remotes in topology.values())))
        self._unicast = widen(topology, ourself, True, universe=names)[1]
        self._unicast_all = widen(topology, ourself, False, universe=names)[1]
        self._broadcast: dict[PeerName, tuple[PeerName, ...]] = {}
        self._broadcast_all: dict[PeerName, tuple[PeerName, ...]] = {}
        self.broadcast(ourself)  # computed at once, as Go does; the others on first use
        self.broadcast_all(ourself)

    @property
    def ourself(self) -> PeerName:
        return self._ourself

    @property
    def unicast_table(self) -> UnicastRoutes:
        """Destination → next hop over established, symmetric connections."""
        return self._unicast

    @property
    def unicast_all_table(self) -> UnicastRoutes:
        """Destination → next hop over every connection."""
        return self._unicast_all

    def unicast(self, name: PeerName) -> PeerName | None:
        """Next hop to ``name`` (UNKNOWN_PEER_NAME for ourselves); None if unreachable."""
        return self._unicast.get(name)

    def unicast_all(self, name: PeerName) -> PeerName | None:
        """As :meth:`unicast`, over every connection."""
        return self._unicast_all.get(name)

    def broadcast(self, source: PeerName) -> tuple[PeerName, ...]:
        """Neighbours to relay a broadcast from ``source`` to (established, symmetric)."""
        hops = self._broadcast.get(source)
        if hops is None:
            hops = self._broadcast[source] = broadcast_hops(
                self._topology, self._ourself, source, True)
        return hops

    def broadcast_all(self, source: PeerName) -> tuple[PeerName, ...]:
        """As :meth:`broadcast`, over every connection (what gossip broadcasts use)."""
        hops = self._broadcast_all.get(source)
        if hops is None:
            hops = self._broadcast_all[source] = broadcast_hops(
                self._topology, self._ourself, source, False)
        return hops

    def computed_broadcasts(self) -> dict[PeerName, tuple[PeerName, ...]]:
        """The broadcast routes computed so far (what Go's status lists)."""
        return dict(self._broadcast)

    def gossip_neighbours(self, except_: PeerName, rng: random.Random) -> list[PeerName]:
        """The neighbour subset for ``GossipNeighbourSubset`` / ``Send``."""
        return choose_gossip_neighbours(self._unicast_all, except_, rng)
