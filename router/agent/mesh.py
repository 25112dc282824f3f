"""The mesh router (Go's ``mesh.Router`` and ``localPeer``): our peer, its connections,
the gossip channels, routes; one instance per agent, in the agent's event loop.

* **Connections** (:mod:`.connection`) register here once their handshake is done.
  Registration applies the original's rules: a peer with our name and another UID is a
  *name collision* (two machines cloned with the same machine-id: said in one log line
  naming both UIDs and the address, never retried), a connection to ourselves is refused,
  a second connection to the same peer is resolved by the connection UID (both ends agree
  which one survives), and the connection limit is checked.  A peer we learn about for
  the first time, or one that restarted, gets all our gossip at once; a peer of ours
  that speaks incremental topology gets a digest of the topology instead, and asks for
  what it lacks (:mod:`router.mesh.topology_delta`).
* **Gossip channels** register with :meth:`Mesh.new_gossip` (the one place where the
  agent's services plug in: topology here, IPAM next); an unknown channel gets a
  surrogate that relays it.  Received gossip is decoded and dispatched by tag.
* **Routes** are recomputed 100 ms after a change (changes come in bursts), from the
  topology the peer table holds.
* **Timers**: every gossip interval (give or take a tenth, from a random phase) each
  channel's complete state goes to a neighbour subset; our own topology changes are
  batched, one update a second on average (:mod:`.topology`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from common.service.logs import Logger
from router.agent.connection import ConnectionClosed, MeshConnection
from router.agent.gossip import GossipData, Gossiper, SurrogateGossiper
from router.agent.overlay import Overlay
from router.agent.topology import (
    BATCH_DELAY,
    CHANNEL,
    ESTABLISH_WAIT,
    PendingUpdates,
    TopologyData,
    TopologyGossiper,
)
from router.mesh import messages
from router.mesh.gob import GobError
from router.mesh.handshake import HandshakeResult
from router.mesh.names import PeerName
from router.mesh.peers import PeerTable, TableChanges
from router.mesh.protocol import ProtocolTag, encode_message
from router.mesh.routes import Routes
from router.mesh.summary import ConnectionSummary, PeerSummary, TopologyError, supersedes
from router.mesh.topology_codec import decode_update
from router.mesh.topology_delta import (
    INCREMENTAL_TOPOLOGY_CHANNEL as INCREMENTAL,
)
from router.mesh.topology_delta import (
    DigestEntry,
    FullSummaryRequest,
    IncrementalUpdate,
    PullTracker,
    Purpose,
    SummaryHistory,
    SummaryRequest,
    TopologyDigest,
    digest_of,
    resolve_items,
    wanted_from,
)
from router.mesh.topology_delta_codec import decode_message as decode_incremental
from router.mesh.topology_delta_codec import encode_message as encode_incremental

ROUTE_DELAY = 0.1
"""Go's recalcDeferTime: route recomputations within this window are one."""
PASS_ON_WINDOW = 0.1
"""How long a hub holds news it was asked to pass on, gathering others' (see
``Mesh._send_own_topology``)."""
PULL_DEFER = ESTABLISH_WAIT + BATCH_DELAY
"""How long a pull of a newer version of a peer we hold waits for news of it (see
``Mesh._pull``): as long as a peer's news may wait for its connections being
established, then for its batch."""
GOSSIP_INTERVAL = 30.0


@dataclass
class GossipCounter:
    messages: int = 0
    bytes: int = 0

    def add(self, size: int) -> None:
        self.messages += 1
        self.bytes += size


@dataclass
class GossipStats:
    """Gossip messages and bytes (protocol message sizes) by channel, sent and received
    (what ``weave_gossip_*_total`` show): how much the mesh's chatter costs."""

    sent: dict[str, GossipCounter] = field(default_factory=dict)
    received: dict[str, GossipCounter] = field(default_factory=dict)

    def copy(self) -> GossipStats:
        return GossipStats({k: GossipCounter(v.messages, v.bytes) for k, v in self.sent.items()},
                           {k: GossipCounter(v.messages, v.bytes)
                            for k, v in self.received.items()})

    def count(self, table: dict[str, GossipCounter], channel: str, size: int) -> None:
        counter = table.get(channel)
        if counter is None:
            counter = table[channel] = GossipCounter()
        counter.add(size)


@dataclass(frozen=True)
class MeshConfig:
    name: PeerName
    nickname: str
    port: int = 6783
    host: str = ""
    password: bytes | None = None
    conn_limit: int = 200
    peer_discovery: bool = True
    trusted_subnets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    gossip_interval: float = GOSSIP_INTERVAL
    incremental_topology: bool = True
    """Offer incremental topology updates to peers that speak them (ours); off, this
    agent gossips topology as the original does (for comparisons)."""


class EncodedUpdates:
    """The last few incremental updates encoded, by their items (the same objects: the
    summary history hands out one delta per pair of summaries): a change of ours goes
    to every neighbour, mostly as the same items, encoded once."""

    KEPT = 64

    def __init__(self) -> None:
        self._kept: dict[tuple[int, ...], tuple[tuple[object, ...], bytes]] = {}

    def get(self, items: tuple[object, ...], to_all: bool) -> bytes | None:
        found = self._kept.get((to_all, *map(id, items)))
        if found is None or len(found[0]) != len(items) or any(
                a is not b for a, b in zip(found[0], items, strict=True)):
            return None
        return found[1]

    def put(self, items: tuple[object, ...], to_all: bool, message: bytes) -> None:
        if len(self._kept) >= self.KEPT:
            self._kept.clear()
        self._kept[(to_all, *map(id, items))] = (items, message)  # the items pin their ids


class NameCollision(ConnectionClosed):
    """A peer with our name but another UID: another machine calls itself what we do."""


class ConnectToSelf(ConnectionClosed):
    """We dialled ourselves (one of our own addresses was a target)."""


class GossipChannel:
    """A registered channel, as its service sees it (Go's ``mesh.Gossip``)."""

    def __init__(self, mesh: Mesh, name: str, gossiper: Gossiper) -> None:
        self.mesh = mesh
        self.name = name
        self.gossiper = gossiper

    def gossip_unicast(self, destination: PeerName, payload: bytes) -> None:
        """Send ``payload`` to one peer, hop by hop (raises if no route reaches it)."""
        body = messages.encode_gossip(messages.GossipBody(
            self.name, int(self.mesh.name), payload, int(destination)))
        self.mesh.relay_unicast(destination, body)

    def gossip_broadcast(self, data: GossipData) -> None:
        self.mesh.relay_broadcast(self.name, self.mesh.name, data)

    def gossip_neighbour_subset(self, data: GossipData) -> None:
        self.mesh.relay(self.name, self.mesh.name, data)

    send = gossip_neighbour_subset


class Mesh:
    def __init__(self, config: MeshConfig, overlay: Overlay, log: Logger,
                 rng: random.Random | None = None, *, uid: int | None = None,
                 short_id: int | None = None) -> None:
        self.config = config
        self.name = config.name
        self.overlay = overlay
        self.log = log
        self.rng = rng or random.Random()
        self.uid = self.rng.getrandbits(64) if uid is None else uid
        self.table = PeerTable(config.name, config.nickname, self.uid,
                               self.rng.randrange(4096) if short_id is None else short_id,
                               self.rng)
        self.routes = Routes(self.table.topology(), config.name, closed=True)
        self.connections: dict[PeerName, MeshConnection] = {}
        """Our registered connections, by remote peer."""
        self.handshaking: set[MeshConnection] = set()
        self.channels: dict[str, GossipChannel] = {}
        self.on_peer_gone: list[Callable[[PeerSummary], None]] = []
        """Called with each peer garbage collection removes (IPAM reclaims its space)."""
        self.on_connection_change: list[Callable[[MeshConnection, bool, Exception | None],
                                                 None]] = []
        """Called with a connection when it is added (True, None) and when it ends (False,
        and why)."""
        self.on_routes_changed: list[Callable[[], None]] = []
        """Called after routes were recomputed (the connection maker looks again)."""
        self.stats = GossipStats()
        self.summary_history = SummaryHistory()
        """The last few summaries of each peer, the bases of incremental updates."""
        self.pulls = PullTracker()
        """Summaries asked of neighbours after their digests, not yet received."""
        self.topology = TopologyGossiper(self.table, changed=self._topology_changed,
                                         applied=self._apply_changes, log=log)
        self.topology_channel = self.new_gossip(CHANNEL, self.topology)
        self.pending_updates = PendingUpdates(config.name, self._send_own_topology,
                                              held=self._establishing)
        self._encoded_updates = EncodedUpdates()
        self._route_timer: asyncio.TimerHandle | None = None
        self._passing: set[PeerName] = set()
        """Peers' news about themselves that they asked us to pass on, not sent yet."""
        self._pass_timer: asyncio.TimerHandle | None = None
        self._passing_awaited: set[PeerName] = set()
        """News to pass on whose whole summary we asked for (its delta's base was
        missing)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._gossip_task: asyncio.Task[None] | None = None

    # ---- services --------------------------------------------------------------------
    def new_gossip(self, name: str, gossiper: Gossiper) -> GossipChannel:
        """Register a gossip channel (the topology's, IPAM's...)."""
        existing = self.channels.get(name)
        if existing is not None and not isinstance(existing.gossiper, SurrogateGossiper):
            raise ValueError(f"[gossip] duplicate channel {name}")
        channel = self.channels[name] = GossipChannel(self, name, gossiper)
        return channel

    def _channel(self, name: str) -> GossipChannel:
        channel = self.channels.get(name)
        if channel is None:
            loop = asyncio.get_running_loop()
            channel = self.new_gossip(name, SurrogateGossiper(
                loop.time, self.config.gossip_interval))
            self.log.info(f"[gossip {name}]: created surrogate channel")
        return channel

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self._gossip_task = asyncio.create_task(self._gossip_periodically())

    async def stop(self) -> None:
        if self._gossip_task is not None:
            self._gossip_task.cancel()
        self.pending_updates.cancel()
        if self._pass_timer is not None:
            self._pass_timer.cancel()
        for conn in [*self.connections.values(), *self.handshaking]:
            conn.shutdown(ConnectionClosed("shutting down"))
        await asyncio.gather(*(t for t in self._tasks), return_exceptions=True)
        await self.overlay.stop()

    def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
              outbound: bool, address: str, accept_new_peer: bool = True) -> MeshConnection:
        """Run a connection on an open TCP stream (accepted, or dialled by us)."""
        conn = MeshConnection(self, reader, writer, outbound=outbound, address=address,
                              accept_new_peer=accept_new_peer, log=self.log, rng=self.rng)
        self.handshaking.add(conn)
        task = asyncio.create_task(conn.run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return conn

    async def _gossip_periodically(self) -> None:
        """Every gossip interval, each channel's complete state to a neighbour subset.
        Go ticks at a fixed interval from start, so agents started together (a
        DaemonSet rolled out, a lab) gossip in bursts all at once; ours start at a
        random phase and drift by up to a tenth of the interval."""
        interval = self.config.gossip_interval
        await asyncio.sleep(interval * self.rng.random())
        while True:
            await asyncio.sleep(interval * self.rng.uniform(0.9, 1.1))
            for channel in list(self.channels.values()):
                if channel.name == CHANNEL:
                    self._gossip_topology()
                    continue
                data = channel.gossiper.gossip()
                if data is not None:
                    channel.send(data)

    def _gossip_topology(self) -> None:
        """The periodic topology gossip, to a neighbour subset: the whole topology to Go
        peers, as Go sends it; a digest to ours (what we hold of each peer, about 25
        bytes a peer), from which they ask for what they lack, as when a connection
        starts.  A summary per peer would cost a connection count and a header each, to
        encode and to decode, every interval, in a mesh where nothing changed."""
        digest: TopologyDigest | None = None
        data = self.topology.gossip()
        for hop in self.routes.gossip_neighbours(self.name, self.rng):
            conn = self.connections.get(hop)
            if conn is None:
                continue
            if conn.topology_encoder is None:
                conn.sender(CHANNEL).send(data)
                continue
            if digest is None:
                digest = digest_of(self.table.summaries(), self.summary_history)
            self._send_incremental(conn, digest)

    # ---- registering connections ---------------------------------------------------------
    def short_id(self) -> int:
        return self.table.local_summary().short_id

    def overlay_names(self) -> tuple[str, ...] | None:
        features: dict[str, str] = {}
        self.overlay.add_features(features)
        overlays = features.get("Overlays")
        return tuple(overlays.split()) if overlays is not None else None

    def trusts(self, address: str) -> bool:
        host = address.rsplit(":", 1)[0].strip("[]")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(ip in subnet for subnet in self.config.trusted_subnets)

    async def register(self, conn: MeshConnection, result: HandshakeResult) -> None:
        """Admit a connection whose handshake is done (Go's registerRemote, then the
        overlay's forwarder, then doAddConnection); raises to refuse it."""
        remote = result.remote
        name = PeerName(remote.name)
        if conn.accept_new_peer:
            known, changes = self.table.fetch_with_default(name, remote.nickname, remote.uid,
                                                           remote.short_id)
            self._apply_changes(changes)
        else:
            found = self.table.add_reference(name)
            if found is None:
                raise ConnectionClosed(f"Found unknown remote name: {name} at {conn.address}")
            known = found
        conn.referenced = True
        if name == self.name and remote.uid != self.uid:
            self.log.error(
                f"peer name collision: the peer at {conn.address} calls itself {name} "
                f"({remote.nickname}), as we do, with another UID ({remote.uid}, ours "
                f"{self.uid}); two machines share a name, e.g. cloned with the same "
                "/etc/machine-id: give one of them another --name (the original weave "
                "handed out duplicate pod addresses instead)")
            raise NameCollision(f"Peer name collision with {name}({remote.nickname}) at "
                                f"{conn.address}")
        if name == self.name:
            raise ConnectToSelf("Cannot connect to ourself")
        restarted = known.uid != remote.uid
        self.log.info(f"{conn}: connection ready; using protocol version {result.version}")
        conn.overlay = await self.overlay.prepare_connection(
            conn.overlay_params(conn.send_message))
        self._add_connection(conn, name, restarted)
        self.handshaking.discard(conn)
        conn.overlay.confirm()

    def _add_connection(self, conn: MeshConnection, name: PeerName, restarted: bool) -> None:
        duplicate = self.connections.get(name)
        if duplicate is not None and duplicate is not conn:
            text = (f"Multiple connections to {name}({conn.remote_nickname}) added to "
                    f"{self.name}({self.config.nickname})")
            if conn.uid < duplicate.uid:  # we win: the other goes
                duplicate.shutdown(ConnectionClosed(text))
                self._forget(duplicate)
            else:  # lost, or tied: both go
                if conn.uid == duplicate.uid:
                    duplicate.shutdown(ConnectionClosed(text))
                    self._forget(duplicate)
                raise ConnectionClosed(text)
        if self.config.conn_limit and len(self.connections) >= self.config.conn_limit:
            raise ConnectionClosed(f"Connection limit reached ({self.config.conn_limit})")
        connected = self.routes.unicast(name) is not None
        self.connections[name] = conn
        self._apply_changes(self.table.add_local_connection(
            ConnectionSummary(name, conn.address, conn.outbound, False)))
        if restarted:
            self.log.info(f"{conn}: connection added (restarted peer)")
        elif connected:
            self.log.info(f"{conn}: connection added")
        else:
            self.log.info(f"{conn}: connection added (new peer)")
        if conn.topology_encoder is not None:
            self._send_incremental(conn, digest_of(self.table.summaries(), self.summary_history))
        if restarted or not connected:
            self._send_all_gossip_down(conn)
        self._topology_changed()
        self.pending_updates.add(name)
        for callback in self.on_connection_change:
            callback(conn, True, None)

    def _establishing(self) -> bool:
        """Whether a connection of ours is added but not yet established (our next
        topology update waits a little for it)."""
        return not all(self.table.links(self.name).values())

    def connection_established(self, conn: MeshConnection) -> None:
        assert conn.remote is not None
        if self.connections.get(conn.remote) is not conn:
            conn.shutdown(ConnectionClosed("Cannot set unknown connection active"))
            return
        self._apply_changes(self.table.set_local_connection_established(conn.remote))
        self.log.info(f"{conn}: connection fully established")
        self._topology_changed()
        self.pending_updates.add()

    def connection_ended(self, conn: MeshConnection, error: Exception) -> None:
        self.handshaking.discard(conn)
        self.pulls.dropped(conn)
        self._forget(conn)
        if conn.referenced and conn.remote is not None:
            conn.referenced = False
            self.table.dereference(conn.remote)
        for callback in self.on_connection_change:
            callback(conn, False, error)

    def _forget(self, conn: MeshConnection) -> None:
        """Take a registered connection out of our peer (Go's handleDeleteConnection)."""
        if conn.remote is None or self.connections.get(conn.remote) is not conn:
            return
        del self.connections[conn.remote]
        self.log.info(f"{conn}: connection deleted")
        if conn.referenced:
            conn.referenced = False
            self.table.dereference(conn.remote)
        self._apply_changes(self.table.delete_local_connection(conn.remote))
        self._topology_changed()
        self.pending_updates.add()

    # ---- table changes and routes ----------------------------------------------------------
    def _apply_changes(self, changes: TableChanges) -> None:
        if changes.removed:
            gone = [peer.name for peer in changes.removed]
            self.summary_history.forget_peers(gone)
            self._passing_awaited.difference_update(gone)
            for conn in self.connections.values():
                if conn.topology_encoder is not None:
                    conn.topology_encoder.forget(gone)
        for peer in changes.removed:
            self.log.info(f"Removed unreachable peer {peer.name}({peer.nickname})")
            for callback in self.on_peer_gone:
                callback(peer)
        if changes.local_peer_changed:
            self.pending_updates.add()

    def _topology_changed(self) -> None:
        if self._route_timer is None:
            self._route_timer = asyncio.get_running_loop().call_later(
                ROUTE_DELAY, self.recalculate_routes)

    def recalculate_routes(self) -> None:
        self._route_timer = None
        topology = self.table.topology()
        self.routes = Routes(topology, self.name, closed=True)
        connections = sum(len(remotes) for remotes in topology.values())
        established = sum(sum(remotes.values()) for remotes in topology.values())
        self.log.debug(f"routes recomputed: peers={len(topology)} connections={connections} "
                       f"established={established} reachable={len(self.routes.unicast_table)}")
        for callback in self.on_routes_changed:
            callback()

    # ---- gossip ---------------------------------------------------------------------------
    def on_gossip_message(self, conn: MeshConnection, tag: ProtocolTag, body: bytes) -> None:
        """A gossip message from ``conn``; a malformed one is logged and dropped."""
        try:
            gossip = messages.decode_gossip(body, unicast=tag is ProtocolTag.GOSSIP_UNICAST)
            self.stats.count(self.stats.received, gossip.channel, len(body) + 1)
            source = PeerName(gossip.source)
            if tag is ProtocolTag.GOSSIP and gossip.channel in (CHANNEL, INCREMENTAL):
                self._on_topology(conn, source, gossip.channel, gossip.payload)
                return
            channel = self._channel(gossip.channel)
            if tag is ProtocolTag.GOSSIP_UNICAST:
                assert gossip.destination is not None
                if gossip.destination == self.name:
                    channel.gossiper.on_unicast(source, gossip.payload)
                else:
                    self.relay_unicast(PeerName(gossip.destination), body)
            elif tag is ProtocolTag.GOSSIP_BROADCAST:
                data = channel.gossiper.on_broadcast(source, gossip.payload)
                if data is not None:
                    self.relay_broadcast(channel.name, source, data)
            else:
                data = channel.gossiper.on_gossip(gossip.payload)
                if data is not None:
                    self.relay(channel.name, source, data)
        except (GobError, TopologyError, ValueError, KeyError) as exc:
            self.log.warning(f"{conn}: dropped a {tag.name.lower()} message: {exc}")

    def _on_topology(self, conn: MeshConnection, source: PeerName, channel: str,
                     payload: bytes) -> None:
        """Topology gossip from a neighbour, in Go's format or (from a peer of ours that
        speaks it) the incremental one: merged, and what was new relayed onwards."""
        encoder = conn.topology_encoder
        passing: frozenset[PeerName] = frozenset()
        to_all = False
        if channel == CHANNEL:
            summaries = decode_update(payload)
        else:
            message = decode_incremental(payload)
            if encoder is None:
                raise TopologyError("incremental topology update on a connection that did "
                                    "not negotiate it")
            if isinstance(message, TopologyDigest):
                encoder.note_digest(message)
                self._pull(conn, wanted_from(self.table, message), defer=True)
                return
            if isinstance(message, SummaryRequest | FullSummaryRequest):
                encoder.note_request(message)  # whole, or on the bases it holds
                conn.sender(CHANNEL).send(self.topology.data(message.names, Purpose.ANSWER))
                return
            summaries, missing = resolve_items(self.table, message.items,
                                               self.summary_history)
            passing = message.pass_on & {source}  # only its own news
            to_all = message.to_all
            if missing:
                self._send_incremental(conn, FullSummaryRequest(missing, self._held(missing)))
        if encoder is not None:
            encoder.note_received(summaries)
        new = self.topology.apply(summaries).new
        again = self.pulls.received(self.table, (s.name for s in summaries),
                                    asyncio.get_running_loop().time())
        for key, names in again.items():
            if (isinstance(key, MeshConnection) and key.remote is not None
                    and self.connections.get(key.remote) is key):
                self._send_incremental(key, SummaryRequest(names, self._held(names)))
        if passing or self._passing_awaited:
            passing = self._passing_now(passing, summaries)
            new -= passing  # on to every neighbour of ours, not by the rules below
        if not new:
            return
        if encoder is None:  # from a Go peer: relayed as Go does
            self.relay(CHANNEL, source, self.topology.data(new))
            return
        # From a peer of ours, which sent it to every neighbour of its own that it did
        # not get it from, or that its own sender had not reached: on to ours that
        # are not among them (see _send_own_topology).  What it sent to all its
        # neighbours (its news about itself; what it passed on as a hub), of those
        # that could pass it on to one of ours only the lowest-named does (see
        # _relays_own_news).
        theirs = self.table.links(source)
        data = self.topology.data(new)
        others = self.topology.data(new - {source}) if source in new else data
        if to_all:
            others = TopologyData(self.table, {})
        for hop, neighbour in self.connections.items():
            if hop == source or hop in theirs:
                continue
            if (others is data and not to_all) or self._relays_own_news(source, theirs, hop):
                neighbour.sender(CHANNEL).send(data)
            elif others.purposes:
                neighbour.sender(CHANNEL).send(others)

    def _relays_own_news(self, source: PeerName, theirs: Mapping[PeerName, bool],
                         hop: PeerName) -> bool:
        """Whether we pass news from ``source`` that it sent to every neighbour of its
        own (``theirs``: its news about itself; what it passed on as a hub) on to
        ``hop``, a neighbour of ours that is not one of its.  Each of its neighbours
        that is a neighbour of ``hop`` too could pass it on: only the lowest-named does,
        so ``hop`` gets it once, not once from each of them (a peer joining a full mesh
        is known to every member before it is connected to them all: each member
        relayed each update to every member it was not yet connected to, N² messages
        an update, and a hub's news to a newcomer came from every member).

        Only peers of ours that are our own neighbours are counted on (we know they
        speak this rule, and a Go peer relays to a random few), with an established
        connection to ``hop`` as their summary says.  Should that summary be out of
        date (the connection just went), ``hop`` misses the news until the next update
        or the periodic gossip repairs it."""
        for other in sorted(theirs):
            if other >= self.name:
                return True
            if other in (hop, source):
                continue
            conn = self.connections.get(other)
            if (conn is not None and conn.topology_encoder is not None
                    and self.table.links(other).get(hop, False)):
                return False
        return True

    def _send_own_topology(self, names: frozenset[PeerName]) -> None:
        """Our own topology changes (batched).

        Go sends them to a random neighbour subset, and every peer relays what is new
        to it to a random subset of its own: each peer gets each update about log N
        times.  With incremental topology on, our news about ourselves goes to one
        neighbour of ours, the *hub* (the lowest-named that speaks it), asking it to
        pass the news on to every neighbour of its own; it waits there up to
        :data:`PASS_ON_WINDOW` for the news of others, so that a change many peers make
        at once (a peer joining or leaving a full mesh: each member's connection to
        it) costs each peer a few messages carrying many members' news, not one
        message from every member (N² messages).  Our neighbours that are not the
        hub's get it from us directly, as do Go peers.

        Every peer still gets it in any connected mesh of ours: a peer relays news
        only to its neighbours that are not the sender's (the hub sent it to all of
        its own), and along the path the news took, the first peer that is a neighbour
        of a given peer sent it there, since that peer was not a neighbour of the one
        before (the sender's connections are in its summary, which travels with or
        before its news).  News from a Go peer, and all of a Go peer's relaying,
        follow Go's rule; the periodic gossip repairs what a view that was out of date
        missed (the hub's connections as our table had them, or a hub that went away
        before passing the news on).

        Go's update also carries the summary of the peer a new connection goes to, so
        that everyone learns of it soon; a peer of ours sends its own, so ours are told
        only of Go peers that way."""
        data = self.topology.data(names)
        if not self.config.incremental_topology:
            self.topology_channel.gossip_neighbour_subset(data)
            return
        theirs = frozenset(name for name in names if name == self.name or not (
            (conn := self.connections.get(name)) and conn.topology_encoder is not None))
        ours = self.topology.data(theirs)
        hub = min((name for name, conn in self.connections.items()
                   if conn.topology_encoder is not None), default=None)
        covered = self.table.links(hub) if hub is not None else {}
        if not covered.keys() - {self.name}:
            hub = None  # it would pass our news on to none we do not send it to
        for name, neighbour in self.connections.items():
            if neighbour.topology_encoder is None:
                neighbour.sender(CHANNEL).send(data)
            elif name == hub:
                neighbour.sender(CHANNEL).send(TopologyData(
                    self.table, ours.purposes, frozenset({self.name})))
            elif name not in covered:
                neighbour.sender(CHANNEL).send(ours)

    def _pull(self, conn: MeshConnection, wanted: Sequence[DigestEntry], *,
              defer: bool) -> None:
        """Ask ``conn`` for the summaries of a digest of its that are better than ours.
        Newer versions of peers we hold (not other incarnations) are asked for only if
        they still are after :data:`PULL_DEFER`: news of them is most likely on its way
        (a digest comes with every new connection, and in a full mesh a newcomer's
        digest is ahead of every member's table by the news of its own arrival)."""
        if defer:
            later = {entry: current.version for entry in wanted
                     if (current := self.table.get(entry.name)) is not None
                     and not current.is_placeholder and current.uid == entry.uid}
            if later:
                asyncio.get_running_loop().call_later(PULL_DEFER, self._pull_later, conn,
                                                      later)
                wanted = [entry for entry in wanted if entry not in later]
        names = self.pulls.choose(wanted, conn, asyncio.get_running_loop().time())
        if names:
            self._send_incremental(conn, SummaryRequest(names, self._held(names)))

    def _pull_later(self, conn: MeshConnection, entries: dict[DigestEntry, int]) -> None:
        """The deferred part of a pull: what is still better than ours.  Peers whose news
        came meanwhile (their Version moved: news of them is flowing, the rest is
        likely on its way) wait again; the others are asked for."""
        if conn.remote is None or self.connections.get(conn.remote) is not conn:
            return
        now: list[DigestEntry] = []
        again: dict[DigestEntry, int] = {}
        for entry, version in entries.items():
            current = self.table.get(entry.name)
            if current is not None and not supersedes(entry, current):
                continue
            if current is not None and current.version != version:
                again[entry] = current.version
            else:
                now.append(entry)
        if again:
            asyncio.get_running_loop().call_later(PULL_DEFER, self._pull_later, conn, again)
        if now:
            self._pull(conn, now, defer=False)

    def _held(self, names: frozenset[PeerName]) -> tuple[tuple[PeerName, int], ...]:
        """What we hold of these peers, by fingerprint: the bases a neighbour asked for
        their summaries may send deltas on."""
        return tuple((name, current.fingerprint) for name in sorted(names)
                     if (current := self.table.get(name)) is not None
                     and not current.is_placeholder)

    def _passing_now(self, asked: frozenset[PeerName], summaries: Sequence[PeerSummary]
                     ) -> frozenset[PeerName]:
        """Which of the news we were asked to pass on (now, or before when its delta's
        base was missing and we asked for the whole summary) we now hold: it goes."""
        arrived = {summary.name for summary in summaries}
        self._passing_awaited |= asked - arrived
        ready = (asked | self._passing_awaited) & arrived
        self._passing_awaited -= ready
        for name in ready:
            self._pass_on(name)
        return frozenset(ready)

    def _pass_on(self, source: PeerName) -> None:
        """``source`` asked us (its hub) to pass its news about itself on."""
        self._passing.add(source)
        if self._pass_timer is None:
            self._pass_timer = asyncio.get_running_loop().call_later(
                PASS_ON_WINDOW, self._flush_passing)

    def _flush_passing(self) -> None:
        """Pass on the news held: to every neighbour (each connection's encoder leaves
        out what its peer holds, such as its own news)."""
        self._pass_timer = None
        names, self._passing = frozenset(self._passing), set()
        news = self.topology.data(names & self.table.names())
        data = TopologyData(self.table, news.purposes, to_all=True)
        if data.purposes:
            for neighbour in self.connections.values():
                neighbour.sender(CHANNEL).send(data)

    def _send_incremental(self, conn: MeshConnection,
                          message: TopologyDigest | SummaryRequest | FullSummaryRequest
                          ) -> None:
        """A message of the incremental topology's own (not news): ahead of gossip."""
        body = messages.encode_gossip(messages.GossipBody(INCREMENTAL, int(self.name),
                                                          encode_incremental(message)))
        conn.send_message(ProtocolTag.GOSSIP, body)
        self.stats.count(self.stats.sent, INCREMENTAL, len(body) + 1)

    def relay_unicast(self, destination: PeerName, body: bytes) -> None:
        hop = self.routes.unicast_all(destination)
        if hop is None:
            raise KeyError(f"unknown relay destination: {destination}")
        conn = self.connections.get(hop)
        if conn is None:
            raise KeyError(f"unable to find connection to relay peer {hop}")
        conn.send_message(ProtocolTag.GOSSIP_UNICAST, body)
        self.stats.count(self.stats.sent, "(unicast)", len(body) + 1)

    def relay_broadcast(self, channel: str, source: PeerName, data: GossipData) -> None:
        for hop in self.routes.broadcast_all(source):
            conn = self.connections.get(hop)
            if conn is not None:
                conn.sender(channel).broadcast(source, data)

    def relay(self, channel: str, source: PeerName, data: GossipData) -> None:
        for hop in self.routes.gossip_neighbours(source, self.rng):
            conn = self.connections.get(hop)
            if conn is not None:
                conn.sender(channel).send(data)

    def _send_all_gossip_down(self, conn: MeshConnection) -> None:
        for channel in self.channels.values():
            if channel.name == CHANNEL and conn.topology_encoder is not None:
                continue  # it got our digest and asks for what it lacks
            data = channel.gossiper.gossip()
            if data is not None:
                conn.sender(channel.name).send(data)

    def encode_gossip(self, conn: MeshConnection, channel: str, data: GossipData,
                      source: PeerName | None) -> list[bytes]:
        """The protocol messages that send ``data`` of ``channel`` down ``conn``: gossip
        from us, or a broadcast from ``source``."""
        tag = ProtocolTag.GOSSIP if source is None else ProtocolTag.GOSSIP_BROADCAST
        origin = int(self.name if source is None else source)
        if (channel == CHANNEL and source is None and conn.topology_encoder is not None
                and isinstance(data, TopologyData)):
            update = conn.topology_encoder.encode(
                self.table.encode_summaries(sorted(data.purposes)), data.purposes)
            if not update.items:
                return []  # the neighbour holds all of it
            if data.pass_on:  # to the hub alone: not worth keeping
                update = IncrementalUpdate(update.items, data.pass_on & {
                    item.name for item in update.items})
                kept = None
            else:
                update = IncrementalUpdate(update.items, to_all=data.to_all)
                kept = self._encoded_updates.get(update.items, update.to_all)
            if kept is None:
                kept = encode_message(tag, messages.encode_gossip(messages.GossipBody(
                    INCREMENTAL, origin, encode_incremental(update))))
                if not update.pass_on:
                    self._encoded_updates.put(update.items, update.to_all, kept)
            self.stats.count(self.stats.sent, INCREMENTAL, len(kept))
            return [kept]
        encoded = [encode_message(tag, messages.encode_gossip(
            messages.GossipBody(channel, origin, payload))) for payload in data.encode()]
        for message in encoded:
            self.stats.count(self.stats.sent, channel, len(message))
        return encoded
