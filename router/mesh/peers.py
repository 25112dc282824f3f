"""The peer table (Go's ``Peers`` plus the local peer's own bookkeeping).

Background (``peers.go``, ``local_peer.go``): each peer keeps a table of every
peer it knows, itself included, with each peer's latest summary and connection
list. The table changes in three ways:

* **Gossip** (:meth:`PeerTable.apply_update`). Peers not yet in the table are
  added as the update describes them; a name that appears only inside some
  connection list becomes a *placeholder* (name only, UID 0, Version 0, no short
  ID), even when the summary naming it is then rejected. Known peers take the new
  summary only if it :func:`~router.mesh.summary.supersedes` theirs; the whole
  connection list is replaced, so a new incarnation (different UID) that wins
  drops all of its predecessor's connections at once, and one that does not yet
  win (its Version is still lower) changes nothing. A summary about ourselves
  with another UID comes from an older incarnation of us: we raise our Version
  above it so that our own summary wins everywhere. The result names every peer
  the update mentioned (relayed as is for broadcasts) and the peers that were
  new or improved (the delta ``OnGossip`` relays).
* **Our own connections** (:meth:`add_local_connection` and friends). Every
  change bumps our Version; removing a connection runs garbage collection at
  once, as Go does, so our next summary never names unreachable peers.
* **Garbage collection** (:meth:`garbage_collect`; the agent runs it one second
  after updates). Peers that cannot be reached from us over any connection,
  established or not, and that no local connection or handshake holds a
  reference to, are removed and reported (IPAM's ``PeerGone`` uses them).

Short ID collisions are tracked by :class:`~router.mesh.short_ids.ShortIdIndex`;
when we lose ours to a lower name, or when a collection frees IDs while we hold
none, we pick a free one (bumping our Version) before the operation returns.

Design: a mutable table with pure methods (no clock, no I/O; the random source
for short IDs is injected). Each mutating call returns a :class:`TableChanges`
saying what the caller must act on: peers removed, short IDs invalidated, our
own summary changed (gossip it). Version arithmetic wraps at 2**64 as Go's does.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from router.mesh.names import PeerName
from router.mesh.short_ids import ShortIdEvents, ShortIdIndex
from router.mesh.summary import (
    UINT64_MAX,
    ConnectionSummary,
    PeerSummary,
    TopologyError,
    canonical,
    placeholder,
    supersedes,
    with_connections,
)


@dataclass(frozen=True, slots=True)
class TableChanges:
    """What a table operation asks of its caller once it returns."""

    removed: tuple[PeerSummary, ...] = ()
    """Peers garbage-collected, by name (Go's OnGC callbacks)."""
    short_ids_invalidated: bool = False
    """The short ID → peer mapping changed (Go's OnInvalidateShortIDs)."""
    local_peer_changed: bool = False
    """Our own summary changed: schedule a topology update about ourselves."""


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """The outcome of merging one received topology update."""

    received: frozenset[PeerName]
    """Every peer the update described (what a broadcast relays onwards)."""
    new: frozenset[PeerName]
    """Peers that were added or improved (what ``OnGossip`` relays onwards)."""
    changes: TableChanges


@dataclass(frozen=True, slots=True)
class TopologyGossipData:
    """Topology gossip waiting to be sent: a set of peer names.

    It is encoded from the table when it is sent (:meth:`PeerTable.encode_summaries`),
    so pending data for one connection merges by union and always carries the
    latest summaries.
    """

    names: frozenset[PeerName]

    def merge(self, other: TopologyGossipData) -> TopologyGossipData:
        return TopologyGossipData(self.names | other.names)


@dataclass
class _Peer:
    """A table entry. Its summary is built once per change and then shared, so
    that encoders holding summaries of unchanged peers hold the same objects.
    Every change is an attribute assignment (``connections`` is never mutated in
    place), which drops the cached summary."""

    name: PeerName
    nickname: str
    uid: int
    version: int
    short_id: int
    has_short_id: bool
    connections: dict[PeerName, ConnectionSummary] = field(default_factory=dict)
    local_refs: int = 0
    _summary: PeerSummary | None = field(default=None, repr=False, compare=False)
    _links: dict[PeerName, bool] | None = field(default=None, repr=False, compare=False)

    def __setattr__(self, attribute: str, value: object) -> None:
        if attribute not in ("local_refs", "_summary", "_links"):
            object.__setattr__(self, "_summary", None)
            object.__setattr__(self, "_links", None)
        object.__setattr__(self, attribute, value)

    def adopt(self, summary: PeerSummary) -> None:
        """Hand ``summary`` out as this peer's (what it has cached, such as its
        fingerprint, goes with it) if it describes the peer exactly, in canonical form.
        (Not always so after a merge: Go keeps the header of one entry for a peer named
        twice in an update and the connections of another.)"""
        if ((summary.nickname, summary.uid, summary.version, summary.short_id,
             summary.has_short_id) == (self.nickname, self.uid, self.version,
                                       self.short_id, self.has_short_id)
                and canonical(summary) is summary
                and len(summary.connections) == len(self.connections)):
            self._summary = summary

    @classmethod
    def header_of(cls, summary: PeerSummary) -> _Peer:
        return cls(summary.name, summary.nickname, summary.uid, summary.version,
                   summary.short_id, summary.has_short_id)

    def summary(self) -> PeerSummary:
        if self._summary is None:
            header = PeerSummary(self.name, self.nickname, self.uid, self.version,
                                 self.short_id, self.has_short_id)
            self._summary = with_connections(header, self.connections)
        return self._summary

    def links(self) -> dict[PeerName, bool]:
        """Remote → established (what routes read; kept until the connections change)."""
        if self._links is None:
            self._links = {remote: conn.established for remote, conn in self.connections.items()}
        return self._links


class PeerTable:
    """Every peer we know, ourselves included. See the module notes for the rules."""

    def __init__(self, name: PeerName, nickname: str, uid: int, short_id: int,
                 rng: random.Random) -> None:
        """Start as Go's router does: Version 0, no connections, one local reference."""
        ourself = PeerSummary(name, nickname, uid, 0, short_id, True)  # range checks
        self._ourself = name
        self._rng = rng
        self._peers: dict[PeerName, _Peer] = {name: _Peer.header_of(ourself)}
        self._peers[name].local_refs = 1
        self._short_ids = ShortIdIndex(name)
        self._short_ids.add(name, short_id, ShortIdEvents())
        self._may_dangle = False
        """Whether some peer may name a remote no longer in the table (see topology)."""

    # ------------------------------------------------------------------ reading

    @property
    def ourself(self) -> PeerName:
        return self._ourself

    def __contains__(self, name: object) -> bool:
        return name in self._peers

    def __len__(self) -> int:
        return len(self._peers)

    def names(self) -> frozenset[PeerName]:
        return frozenset(self._peers)

    def get(self, name: PeerName) -> PeerSummary | None:
        """The peer's summary, connections sorted by remote; None if unknown."""
        peer = self._peers.get(name)
        return peer.summary() if peer else None

    def local_summary(self) -> PeerSummary:
        return self._peers[self._ourself].summary()

    def summaries(self) -> tuple[PeerSummary, ...]:
        """Every peer's summary, sorted by name."""
        return tuple(self._peers[name].summary() for name in sorted(self._peers))

    def encode_summaries(self, names: Iterable[PeerName]) -> tuple[PeerSummary, ...]:
        """The summaries of ``names`` that are still known, sorted (Go's ``encodePeers``)."""
        return tuple(self._peers[n].summary() for n in sorted(set(names)) if n in self._peers)

    def local_ref_count(self, name: PeerName) -> int:
        peer = self._peers.get(name)
        return peer.local_refs if peer else 0

    def fetch_by_short_id(self, short_id: int) -> PeerName | None:
        """The peer holding ``short_id`` (the lowest-named announcer), if any."""
        return self._short_ids.principal(short_id)

    def short_id_entries(self) -> dict[int, tuple[PeerName | None, frozenset[PeerName]]]:
        """Every short ID ever held: (principal, or None once cleared; other holders)."""
        return self._short_ids.entries()

    def connections_to(self, remotes: Iterable[PeerName]
                       ) -> Iterator[tuple[PeerName, ConnectionSummary]]:
        """Every connection some peer reports to one of ``remotes``, as (peer,
        connection), by peer name then remote: a lookup per peer and remote, where
        listing every connection (all N² of a full mesh) to find a few would not be."""
        wanted = sorted(set(remotes))
        if not wanted:
            return
        for name in sorted(self._peers):
            connections = self._peers[name].connections
            for remote in wanted:
                conn = connections.get(remote)
                if conn is not None:
                    yield name, conn

    def links(self, name: PeerName) -> Mapping[PeerName, bool]:
        """The peer's connections, remote → established (empty if unknown): the map
        routes read, built once per change of the peer's connections."""
        peer = self._peers.get(name)
        return peer.links() if peer is not None else {}

    def topology(self) -> dict[PeerName, Mapping[PeerName, bool]]:
        """Peer → remote → established, for route computation: a fresh map of maps that
        are shared, and replaced (never changed) when a peer's connections change.

        Closed: every remote it names is one of its peers (``Routes(closed=True)``).
        The table itself holds every remote its peers name (placeholders), except the
        peers a collection removed while a peer that named them stayed (one nothing
        reached but a local reference held): those come in with no connections."""
        topology: dict[PeerName, Mapping[PeerName, bool]] = {
            name: peer.links() for name, peer in self._peers.items()}
        if self._may_dangle:
            dangling = set().union(*(links.keys() for links in topology.values()))
            dangling -= topology.keys()
            for name in dangling:
                topology[name] = {}
            self._may_dangle = bool(dangling)
        return topology

    # ------------------------------------------------------------------ gossip

    def apply_update(self, update: Sequence[PeerSummary]) -> UpdateResult:
        """Merge a received topology update (Go's ``applyUpdate``)."""
        events = ShortIdEvents()
        last_new = {s.name: i for i, s in enumerate(update) if s.name not in self._peers}
        for name, index in last_new.items():
            self._peers[name] = _Peer.header_of(update[index])
        for summary in update:
            for conn in summary.connections:
                if conn.remote not in self._peers:
                    self._peers[conn.remote] = _Peer.header_of(placeholder(conn.remote))
        self._short_ids.add_all(((n, update[i].short_id) for n, i in last_new.items()
                                 if update[i].has_short_id), events)
        improved: set[PeerName] = set()
        local_modified = False
        for index, summary in enumerate(update):
            peer = self._peers[summary.name]
            if summary.name == self._ourself:
                if summary.uid != peer.uid:
                    local_modified = self._set_version_beyond(summary.version) or local_modified
            elif last_new.get(summary.name) == index:
                peer.connections = summary.connections_by_remote()
                peer.adopt(summary)
                improved.add(summary.name)
            elif supersedes(summary, peer):
                self._take_summary(peer, summary, events)
                peer.adopt(summary)
                improved.add(summary.name)
        changes = self._finish(events, (), local_modified)
        return UpdateResult(frozenset(s.name for s in update), frozenset(improved), changes)

    def _take_summary(self, peer: _Peer, summary: PeerSummary, events: ShortIdEvents) -> None:
        peer.version, peer.uid, peer.nickname = summary.version, summary.uid, summary.nickname
        peer.connections = summary.connections_by_remote()
        if (summary.short_id, summary.has_short_id) != (peer.short_id, peer.has_short_id):
            if peer.has_short_id:
                self._short_ids.remove(peer.name, peer.short_id, events)
            peer.short_id, peer.has_short_id = summary.short_id, summary.has_short_id
            if peer.has_short_id:
                self._short_ids.add(peer.name, peer.short_id, events)

    def garbage_collect(self) -> TableChanges:
        """Remove peers unreachable from us that nothing local refers to."""
        return self._collect(ShortIdEvents(), local_modified=False)

    def _collect(self, events: ShortIdEvents, local_modified: bool) -> TableChanges:
        reached = self._reachable_from_us()
        doomed = sorted(name for name, peer in self._peers.items()
                        if name not in reached and peer.local_refs == 0)
        removed = tuple(self._peers.pop(name).summary() for name in doomed)
        if removed and any(name not in reached for name in self._peers):
            self._may_dangle = True  # a kept unreached peer may name a removed one
        self._short_ids.remove_all(((s.name, s.short_id) for s in removed if s.has_short_id),
                                   events)
        ours = self._peers[self._ourself]
        if removed and self._short_ids.principal(ours.short_id) != self._ourself:
            events.reassign_local = True  # collection may have freed an ID for us
        return self._finish(events, removed, local_modified)

    def _reachable_from_us(self) -> set[PeerName]:
        """Every name reached from us over any connection; it stops once every peer
        of the table is (what a collection asks), so a full mesh costs one peer's
        connections, not all of them."""
        peers = self._peers
        reached = {self._ourself}
        unreached = len(peers) - 1
        pending = [self._ourself]
        while pending and unreached:
            peer = peers.get(pending.pop())
            for remote in peer.connections if peer else ():
                if remote not in reached:
                    reached.add(remote)
                    pending.append(remote)
                    unreached -= remote in peers
        return reached

    # ------------------------------------------------------------------ local peer

    def fetch_with_default(self, name: PeerName, nickname: str, uid: int,
                           short_id: int | None) -> tuple[PeerSummary, TableChanges]:
        """Take a reference to the peer a handshake introduced (``fetchWithDefault``).

        A known peer is returned as the table has it (the handshake's UID is not
        applied: a restarted peer's summary arrives by gossip). An unknown one is
        added with Version 0 and no connections.
        """
        events = ShortIdEvents()
        peer = self._peers.get(name)
        if peer is None:
            summary = PeerSummary(name, nickname, uid, 0, short_id or 0, short_id is not None)
            peer = self._peers[name] = _Peer.header_of(summary)
            if peer.has_short_id:
                self._short_ids.add(name, peer.short_id, events)
        peer.local_refs += 1
        return peer.summary(), self._finish(events, (), False)

    def add_reference(self, name: PeerName) -> PeerSummary | None:
        """Take a reference to a known peer (``fetchAndAddRef``); None if unknown."""
        peer = self._peers.get(name)
        if peer is None:
            return None
        peer.local_refs += 1
        return peer.summary()

    def dereference(self, name: PeerName) -> None:
        """Drop a reference taken by :meth:`fetch_with_default` or :meth:`add_reference`."""
        peer = self._peers.get(name)
        if peer is None or peer.local_refs == 0:
            raise TopologyError(f"no local reference to drop for {name}")
        peer.local_refs -= 1

    def add_local_connection(self, conn: ConnectionSummary) -> TableChanges:
        """Record a connection of ours (replacing one to the same remote); Version+1."""
        if conn.remote == self._ourself or conn.remote not in self._peers:
            raise TopologyError(f"local connection to {conn.remote}: not a known remote peer")
        ours = self._peers[self._ourself]
        ours.connections = {**ours.connections, conn.remote: conn}
        ours.version = (ours.version + 1) & UINT64_MAX
        return TableChanges(local_peer_changed=True)

    def set_local_connection_established(self, remote: PeerName) -> TableChanges:
        """Mark our connection to ``remote`` established; Version+1."""
        ours = self._peers[self._ourself]
        conn = ours.connections.get(remote)
        if conn is None:
            raise TopologyError(f"no local connection to {remote}")
        ours.connections = {**ours.connections, remote: ConnectionSummary(
            conn.remote, conn.remote_tcp_addr, conn.outbound, True)}
        ours.version = (ours.version + 1) & UINT64_MAX
        return TableChanges(local_peer_changed=True)

    def delete_local_connection(self, remote: PeerName) -> TableChanges:
        """Forget our connection to ``remote`` (Version+1), then collect garbage.

        Drop the connection's reference (:meth:`dereference`) first, as Go does,
        so that the remote can go if nothing else reaches it. Unknown: no-op.
        """
        ours = self._peers[self._ourself]
        if remote not in ours.connections:
            return TableChanges()
        ours.connections = {r: c for r, c in ours.connections.items() if r != remote}
        ours.version = (ours.version + 1) & UINT64_MAX
        return self._collect(ShortIdEvents(), local_modified=True)

    def _set_version_beyond(self, version: int) -> bool:
        ours = self._peers[self._ourself]
        if version >= ours.version:
            ours.version = (version + 1) & UINT64_MAX
            return True
        return False

    def _finish(self, events: ShortIdEvents, removed: tuple[PeerSummary, ...],
                local_modified: bool) -> TableChanges:
        """Go's ``unlockAndNotify``: re-pick our short ID if we lost it, then report."""
        reassigned = events.reassign_local and self._reassign_local_short_id(events)
        return TableChanges(removed, events.invalidated, reassigned or local_modified)

    def _reassign_local_short_id(self, events: ShortIdEvents) -> bool:
        new_id = self._short_ids.choose_free(self._rng)
        if new_id is None:
            return False  # every ID is held; a later collection retries
        ours = self._peers[self._ourself]
        self._short_ids.remove(self._ourself, ours.short_id, events)
        ours.short_id = new_id
        ours.version = (ours.version + 1) & UINT64_MAX
        self._short_ids.add(self._ourself, new_id, events)
        return True
