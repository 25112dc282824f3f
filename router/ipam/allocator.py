"""The allocator: the ring, our space, paxos and the owned addresses, in one state machine.

It runs in the agent's event loop and does no I/O itself: what it sends goes through a
:class:`Transport` (the ``IPallocation`` gossip channel), what it must keep through a
:class:`Persistence` (committed before the request is answered), the time comes from a
clock.  So the same object is driven by real agents and by tests that deliver its
messages in any order.

As the original (``ipam/allocator.go``), with these differences:

* a ring merge never closes the connection: what can be repaired is repaired (the ring
  keeps our allocations ours), each conflict is logged once with both views and counted,
  and rings that cannot be merged (other seeds, other range) are refused with one log line
  per peer and cause, and counted;
* requests that wait are withdrawn by the caller at their deadline with the reason
  (:meth:`Allocator.waiting_for`);
* a just-freed address is not handed out again while others are free (#2744);
* ranges taken over by ``rmpeer`` are used only after :data:`TAKEOVER_SETTLE`, and lose
  every tie meanwhile, so that rmpeer of one dead peer on two survivors at once (ours or
  a Go peer) gives no address twice;
* the quorum is never below a majority of the peers we know of and ourselves.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from common.service.logs import Logger
from router.ipam import messages
from router.ipam.address import CIDR, Range, format_ip, parse_cidr
from router.ipam.errors import IpamError, Refused
from router.ipam.operations import Allocate, Claim, Done, Operation, Prime, cancel
from router.ipam.paxos import Node, Observer, Participant
from router.ipam.rangeset import RangeSet
from router.ipam.ring import Conflict, Ring, RingError
from router.ipam.space import Space, SpaceError
from router.mesh.gob import GobError, decode, encode
from router.mesh.names import PeerName, PeerNameError

FREED_QUARANTINE = 5.0
"""Seconds a freed address is held back while other addresses are free (#2744)."""
ASK_AGAIN_AFTER = 5.0
"""Seconds an unanswered space request waits before another is sent for the same subnet
(the tick's interval: a lost request or answer is retried then)."""
TAKEOVER_SETTLE = 40.0
"""Seconds ranges taken over by rmpeer wait before we allocate from them: if another
survivor took the same dead peer's ranges at the same moment, the rings settle on one
owner first (the original's "clique"), with no address given by both.

Meanwhile their entries stay as the takeover made them (version + 100, no free space
reported), so that they lose every tie: among ours the join then settles on one owner by
peer name, and a Go survivor's own takeover of the same peer (version + 100, + 1 more
once it reports its free space) always beats ours, as the original keeps its own entry on
a version tie. Reporting our free count then (zero: the range is not ours to allocate
from yet) would bump the version past the Go peer's, and the original accepts a newer
entry for a range of its own that holds no allocations but never takes the range out of
its space: its next invariant check panics ("Assertion failure") and the weaver exits.

Longer than one gossip interval (30 s; the original's is exact, ours varies by a tenth):
the broadcast of a rival takeover is lost when the connection carrying it breaks, and the
mesh does not send the channels' state again over a new connection to a peer that was
reachable through others meanwhile; then the next periodic gossip is what tells us,
before we allocate from the range or report its free space."""


class Transport(Protocol):
    def broadcast(self, encode: Callable[[], bytes]) -> None:
        """Send our whole state to every peer (``encode`` makes it when it goes)."""
        ...

    def unicast(self, destination: PeerName, payload: bytes) -> bool:
        """Send to one peer; False when no route reaches it."""
        ...


class Persistence(Protocol):
    def save_ring(self, ring: messages.Ring) -> None: ...

    def set_owned(self, ident: str, cidrs: Sequence[ipaddress.IPv4Interface],
                  is_container: bool) -> None: ...

    def delete_owned(self, ident: str) -> None: ...


@dataclass
class Owned:
    is_container: bool
    cidrs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Config:
    name: PeerName
    uid: int
    nickname: str
    universe: ipaddress.IPv4Network
    quorum: Callable[[], int]
    """Asked each time consensus starts (the peers we know of can change)."""
    is_known_peer: Callable[[int], bool]
    seeds: tuple[PeerName, ...] = ()
    observer: bool = False


@dataclass
class Counters:
    ring_conflicts: int = 0
    ring_refusals: int = 0
    malformed: int = 0


class Allocator:
    def __init__(self, config: Config, transport: Transport, store: Persistence,
                 log: Logger, clock: Callable[[], float], wall: Callable[[], float],
                 rng: random.Random) -> None:
        self.config = config
        self.name = config.name
        self.universe = config.universe
        self.transport = transport
        self.store = store
        self.log = log
        self.clock = clock
        self.wall = wall
        self.rng = rng
        start = int(config.universe.network_address)
        self.ring = Ring(start, start + config.universe.num_addresses, config.name)
        self.space = Space(quarantine=FREED_QUARANTINE)
        self.owned: dict[str, Owned] = {}
        self.nicknames: dict[int, str] = {int(config.name): config.nickname}
        self.paxos: Participant | None = (
            Observer() if config.observer else Node(config.name, config.uid, 0))
        self.awaiting_consensus = False
        self.pending_allocates: list[Operation] = []
        self.pending_claims: list[Operation] = []
        self.pending_primes: list[Operation] = []
        self.shutting_down = False
        self._encoded: tuple[messages.GossipState | None, bytes] = (None, b"")
        self.counters = Counters()
        self._conflicts_seen: set[str] = set()
        self._refusals_seen: set[tuple[int, str]] = set()
        self._asked: dict[Range, float] = {}
        """Space requests in flight, by the range asked in, and when they were sent."""
        self._settling: dict[Range, float] = {}
        """Ranges rmpeer gave us, and when we may allocate from them."""

    def _info(self, text: str) -> None:
        self.log.info(f"[allocator {self.name}] {text}")

    def _warn(self, text: str) -> None:
        self.log.warning(f"[allocator {self.name}] {text}")

    # ---- start -------------------------------------------------------------------------
    def start(self, ring: messages.Ring | None, owned: dict[str, Owned]) -> None:
        """Start from what was persisted (already checked to be ours and our range)."""
        if ring is not None and ring.entries:
            if self.config.seeds:
                self._info("Found persisted IPAM data, ignoring supplied IPAM seed")
            else:
                self._info("Initialising with persisted data")
            self.ring = Ring.from_message(ring)
            self.space.set_owned(self.ring.owned_ranges())
            self.owned = {ident: Owned(data.is_container, list(data.cidrs))
                          for ident, data in owned.items()}
            for data in self.owned.values():
                for cidr in data.cidrs:
                    address = ip_of(cidr)
                    if self.ring.contains(address) and self.ring.owner(address) == self.name:
                        self.space.claim(address)
            self.paxos = None
        elif self.config.seeds:
            self._info("Initialising with supplied IPAM seed")
            self.owned = {i: Owned(d.is_container, list(d.cidrs)) for i, d in owned.items()}
            self._create_ring(list(self.config.seeds))
        elif self.config.observer:
            self._info("Initialising as observer - awaiting IPAM data from another peer")
        else:
            self._info("Initialising via deferred consensus")
        self._after_step()

    # ---- requests ------------------------------------------------------------------------
    def allocate(self, ident: str, subnet: ipaddress.IPv4Network, is_container: bool,
                 done: Done) -> Operation:
        return self._do(Allocate(done, ident, subnet, is_container), self.pending_allocates)

    def claim(self, ident: str, address: ipaddress.IPv4Interface, is_container: bool,
              no_error_on_unknown: bool, done: Done) -> Operation:
        return self._do(Claim(done, ident, address, is_container, no_error_on_unknown),
                        self.pending_claims)

    def prime(self, done: Done) -> Operation:
        return self._do(Prime(done), self.pending_primes)

    def _do(self, op: Operation, queue: list[Operation]) -> Operation:
        if self.shutting_down:
            cancel(op)
        elif not op.attempt(self):
            queue.append(op)
        self._after_step()
        return op

    def withdraw(self, op: Operation, error: Exception) -> None:
        """Take a waiting operation off its queue (its deadline passed)."""
        for queue in (self.pending_allocates, self.pending_claims, self.pending_primes):
            if op in queue:
                queue.remove(op)
        op.finish(None, error if isinstance(error, IpamError) else Refused(str(error)))

    def lookup(self, ident: str, subnet: ipaddress.IPv4Network) -> list[str]:
        return self.owned_in(ident, subnet)

    def owned_addresses(self) -> dict[str, list[str]]:
        return {ident: list(data.cidrs) for ident, data in self.owned.items()}

    def free(self, ident: str, address: ipaddress.IPv4Address) -> None:
        data = self.owned.get(ident)
        match = next((c for c in data.cidrs if ip_of(c) == int(address)), None) if data else None
        if data is None or match is None:
            raise Refused(f"Free: address {address} not found for {ident}")
        data.cidrs.remove(match)
        self._persist_owned(ident)
        self._release(int(address))
        self._after_step()

    def delete(self, ident: str) -> None:
        data = self.owned.pop(ident, None)
        if data is None or not data.cidrs:
            raise Refused(f"Delete: no addresses for {ident}")
        self.store.delete_owned(ident)
        for cidr in data.cidrs:
            self._release(ip_of(cidr))
        self._after_step()

    def _release(self, address: int) -> None:
        if self.space.is_allocated(address):
            self.space.free(address, self.clock())

    def leave(self) -> None:
        """``DELETE /peer``: cancel what waits and give our ranges to an heir."""
        self._info("Shutdown")
        self.shutting_down = True
        for queue in (self.pending_claims, self.pending_allocates, self.pending_primes):
            for op in queue:
                cancel(op)
            queue.clear()
        heir = self._pick_heir()
        if heir is None:
            return
        self.ring, _ = self.ring.transfer(self.name, heir)
        self.space.clear()
        self._persist_ring()
        self.transport.broadcast(self.encode)

    def _pick_heir(self) -> int | None:
        known = self.config.is_known_peer

        def nickname_holder(valid: Callable[[int], bool]) -> int | None:
            for name in self.nicknames:
                if name != self.name and valid(name):
                    return name
            return None

        return (self.ring.pick_peer_for_transfer(known) or nickname_holder(known)
                or self.ring.pick_peer_for_transfer(lambda _: True)
                or nickname_holder(lambda _: True))

    def rmpeer(self, peer: str) -> int:
        """``DELETE /peer/{peer}``: take over the ranges of a dead peer (name or nickname);
        how many addresses we gained."""
        name = self._lookup_peer(peer)
        if name is None:
            self._warn(f"attempt to take over range from unknown peer '{peer}'")
            return 0
        if name == self.name:
            self._warn("attempt to take over range from ourself")
            return 0
        self.ring, moved = self.ring.transfer(name, self.name, free=0)
        if not moved:
            return 0
        settled_at = self.clock() + TAKEOVER_SETTLE
        for r in moved:
            self._settling[r] = settled_at
        self._ring_updated()
        self.transport.broadcast(self.encode)
        self._after_step()
        return sum(r.size for r in moved)

    def _lookup_peer(self, text: str) -> PeerName | None:
        for name, nickname in self.nicknames.items():
            if nickname == text:
                return PeerName(name)
        try:
            return PeerName.parse(text)
        except PeerNameError:
            return None

    def peer_gone(self, name: PeerName) -> None:
        """The mesh forgot ``name``: forget its nickname unless it still owns ring space."""
        if int(name) not in self.ring.peer_names():
            self.nicknames.pop(int(name), None)

    def routes_changed(self) -> None:
        """Peers came or went: while consensus is awaited, propose again now rather than
        at the next tick, so a quorum that just became reachable agrees at once (the
        original waited for its 5-second tick, and a broadcast sent before the routes to
        a new peer existed reached no one)."""
        if self.awaiting_consensus and self.ring.empty:
            self._propose()

    def tick(self) -> None:
        """Every 5 s: retry what waits, in case messages were lost."""
        now = self.clock()
        if any(at <= now for at in self._settling.values()):
            self._settling = {r: at for r, at in self._settling.items() if at > now}
            self._update_space()
        if self.awaiting_consensus:
            self._propose()
        elif self._have_pending():
            if self.ring.empty:
                self.establish_ring()
            else:
                self._try_pending()
        self._after_step()

    # ---- what the operations use ---------------------------------------------------------
    @property
    def ring_empty(self) -> bool:
        return self.ring.empty

    def owned_in(self, ident: str, subnet: ipaddress.IPv4Network) -> list[str]:
        data = self.owned.get(ident)
        if data is None:
            return []
        host = _host_range(subnet)
        return [c for c in data.cidrs if host.contains(ip_of(c))]

    def in_universe(self, address: ipaddress.IPv4Address) -> bool:
        return address in self.universe

    def who_owns(self, address: ipaddress.IPv4Address) -> str | None:
        wanted = int(address)
        for ident, data in self.owned.items():
            if any(ip_of(c) == wanted for c in data.cidrs):
                return ident
        return None

    def ring_owner(self, address: ipaddress.IPv4Address) -> int | None:
        return self.ring.owner(int(address))

    def take_free_address(self, subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Address | None:
        address = self.space.allocate_in(_host_range(subnet), self.clock())
        return None if address is None else ipaddress.IPv4Address(address)

    def claim_address(self, address: ipaddress.IPv4Address) -> str | None:
        try:
            self.space.claim(int(address))
        except SpaceError as exc:
            return str(exc)
        return None

    def add_owned(self, ident: str, cidr: str, is_container: bool) -> None:
        data = self.owned.setdefault(ident, Owned(is_container))
        data.is_container = is_container
        data.cidrs.append(cidr)
        self._persist_owned(ident)

    def ask_for_space(self, subnet: ipaddress.IPv4Network) -> None:
        """Ask one peer with free space in ``subnet`` for some (weighted by free space),
        unless a request for that subnet is still unanswered: the original sent one per
        waiting allocation and retry, and each donor gave up to half its free space to
        every one of them (forty waiting pods could take most of the range)."""
        wanted = Range(int(subnet.network_address),
                       int(subnet.network_address) + subnet.num_addresses)
        now = self.clock()
        sent = self._asked.get(wanted)
        if sent is not None and now - sent < ASK_AGAIN_AFTER:
            return
        for donor in self.ring.choose_peers_to_ask(wanted.start, wanted.end, self.rng.random):
            if self._send(PeerName(donor), messages.MSG_SPACE_REQUEST,
                          encode(messages.RANGE, messages.Range(wanted.start, wanted.end))):
                self._asked[wanted] = now
                return

    def request_address(self, owner: int, address: ipaddress.IPv4Address) -> bool:
        """Ask ``owner`` for one address (a claim in its range); False: cannot reach it."""
        start = int(address)
        return self._send(PeerName(owner), messages.MSG_SPACE_REQUEST,
                          encode(messages.RANGE, messages.Range(start, start + 1)))

    def establish_ring(self) -> None:
        """Make progress toward a ring: propose, and with a quorum of one, make it."""
        if not self.ring.empty or self.awaiting_consensus or self.paxos is None:
            return
        self.awaiting_consensus = True
        self.paxos.set_quorum(self.config.quorum())
        self._propose()
        agreed, value = self.paxos.consensus()
        if agreed:
            self._create_ring(list(value.value))

    # ---- ring life --------------------------------------------------------------------
    def _create_ring(self, peers: list[int]) -> None:
        names = sorted(set(peers))
        self._info(f"Paxos consensus: {', '.join(self._annotated(names))}")
        self.ring = self.ring.claim_for_peers(names)
        self._ring_updated()
        self.transport.broadcast(self.encode)

    def _ring_updated(self) -> None:
        if self.awaiting_consensus:
            self.awaiting_consensus = False
        self.paxos = None
        self._persist_ring()
        self._update_space()
        self._try_pending()

    def _update_space(self) -> None:
        """Our space: what the ring gives us, less ranges still settling after rmpeer."""
        owned = RangeSet.of(self.ring.owned_ranges())
        if self._settling:
            owned = owned.difference(RangeSet.of(self._settling))
        stranded = self.space.set_owned(owned)
        if stranded:
            self._warn("allocated addresses outside the ranges the ring gives us: "
                       + ", ".join(map(str, stranded)))

    def _in_use(self, r: Range) -> bool:
        """For the ring merge: whether ``r`` holds allocations of ours, or addresses we do
        not know to be free (as the original); settling ranges are known to be free."""
        if self.space.allocated_in(r):
            return True
        known = self.space.free_count(r) + RangeSet.of(self._settling).count(r)
        return known < r.size

    def _propose(self) -> None:
        if self.paxos is not None:
            self.paxos.propose()
            self.transport.broadcast(self.encode)

    def _have_pending(self) -> bool:
        return bool(self.pending_primes or self.pending_claims or self.pending_allocates)

    def _try_pending(self) -> None:
        for queue in (self.pending_primes, self.pending_claims, self.pending_allocates):
            queue[:] = [op for op in queue if not op.attempt(self)]

    def _after_step(self) -> None:
        """Report our free space into the ring (gossiped with it), as after every step;
        not for ranges still settling after rmpeer (see :data:`TAKEOVER_SETTLE`)."""
        if self.ring.empty:
            return
        settling = RangeSet.of(self._settling)
        free = {r.start: self.space.free_count(r) for r in self.ring.owned_ranges()
                if not settling.count(r)}
        if not free:
            return
        reported = self.ring.report_free(free)
        if reported != self.ring:
            self.ring = reported
            self._persist_ring()

    def _persist_ring(self) -> None:
        self.store.save_ring(self.ring.to_message())

    def _persist_owned(self, ident: str) -> None:
        data = self.owned.get(ident)
        if data is None or not data.cidrs:
            self.owned.pop(ident, None)
            self.store.delete_owned(ident)
        else:
            self.store.set_owned(ident, [ipaddress.IPv4Interface(c) for c in data.cidrs],
                                 data.is_container)

    def _annotated(self, names: Iterable[int]) -> list[str]:
        return [f"{PeerName(n)}({self.nicknames[n]})" if n in self.nicknames
                else str(PeerName(n)) for n in names]

    # ---- gossip ---------------------------------------------------------------------------
    def encode(self) -> bytes:
        """Our gossip state: the ring, or while there is none our paxos state.

        The bytes of an unchanged state are kept: a peer that just dialled a hundred
        others sends it down each new connection, and every periodic gossip sends it to
        several neighbours, mostly within the same second."""
        state = messages.GossipState(
            now=int(self.wall()), nicknames=dict(self.nicknames),
            paxos=(self.paxos.gossip_state() if self.ring.empty and self.paxos is not None
                   else None),
            ring=None if self.ring.empty else self.ring.to_message())
        if state != self._encoded[0]:
            self._encoded = (state, encode(messages.GOSSIP_STATE, state))
        return self._encoded[1]

    def on_gossip(self, payload: bytes) -> None:
        self._update(None, payload)
        self._after_step()

    def on_broadcast(self, sender: PeerName, payload: bytes) -> None:
        self._update(sender, payload)
        self._after_step()

    def on_unicast(self, sender: PeerName, payload: bytes) -> None:
        if not payload:
            self._malformed(sender, "an empty message")
            return
        kind, body = payload[0], payload[1:]
        if kind == messages.MSG_RING_UPDATE:
            self._asked.clear()  # a donor's answer: whatever waits may ask again
            self._update(sender, body)
        elif kind in (messages.MSG_SPACE_REQUEST, messages.MSG_SPACE_REQUEST_DENIED):
            try:
                wanted = decode(messages.RANGE, body)
            except GobError as exc:
                self._malformed(sender, f"a bad range ({exc})")
                return
            rng = Range(wanted.start, wanted.end)
            if kind == messages.MSG_SPACE_REQUEST:
                if not self.ring.empty:
                    self._donate(rng, sender)
            else:
                self._denied(sender, rng)
        else:
            self._malformed(sender, f"unknown message kind {kind}")
        self._after_step()

    def _malformed(self, sender: PeerName | None, what: str) -> None:
        self.counters.malformed += 1
        self._warn(f"ignored {what} from {sender or 'a peer'}")

    def _send(self, destination: PeerName, kind: int, body: bytes) -> bool:
        return self.transport.unicast(destination, bytes([kind]) + body)

    def _send_ring_update(self, destination: PeerName) -> None:
        self._send(destination, messages.MSG_RING_UPDATE, self.encode())

    def _update(self, sender: PeerName | None, payload: bytes) -> None:
        try:
            state = decode(messages.GOSSIP_STATE, payload)
        except GobError as exc:
            self._malformed(sender, f"undecodable IPAM state ({exc})")
            return
        for peer, nickname in (state.nicknames or {}).items():
            self.nicknames[int(peer)] = nickname
        if state.ring is not None:
            self._merge(sender, state.ring)
        elif not self.ring.empty:
            if sender is not None:
                self._send_ring_update(sender)
        elif state.paxos is not None:
            if self.paxos is not None and self.paxos.update(state.paxos):
                if self.paxos.think():
                    self.transport.broadcast(self.encode)
                agreed, value = self.paxos.consensus()
                if agreed:
                    self._create_ring(list(value.value))
        elif self.paxos is not None and self.paxos.is_elector and sender is not None:
            self.establish_ring()  # an observer asks for a ring

    def _merge(self, sender: PeerName | None, incoming: messages.Ring) -> None:
        try:
            merged = self.ring.merge(Ring.from_message(incoming), self._in_use)
        except RingError as exc:
            self.counters.ring_refusals += 1
            key = (int(sender or 0), str(exc))
            if key not in self._refusals_seen:
                self._refusals_seen.add(key)
                self._warn(f"refused the ring from {sender or 'a peer'}: {exc}")
            return
        for conflict in merged.conflicts:
            self._conflict(sender, conflict)
        if merged.changed:
            self.ring = merged.ring
            self._prune_nicknames()
            self._ring_updated()
            if merged.conflicts:
                self.transport.broadcast(self.encode)  # our repaired view, so others converge

    def _conflict(self, sender: PeerName | None, conflict: Conflict) -> None:
        self.counters.ring_conflicts += 1
        text = conflict.describe()
        if text not in self._conflicts_seen:
            self._conflicts_seen.add(text)
            self._warn(f"ring conflict with {sender or 'a peer'}'s view: {text}")

    def _prune_nicknames(self) -> None:
        in_ring = self.ring.peer_names()
        for name in list(self.nicknames):
            if name not in in_ring and not self.config.is_known_peer(name):
                del self.nicknames[name]

    def _donate(self, wanted: Range, to: PeerName) -> None:
        chunk = self.space.donate(wanted, self.clock())
        if chunk is None:
            self._send(to, messages.MSG_SPACE_REQUEST_DENIED,
                       encode(messages.RANGE, messages.Range(wanted.start, wanted.end)))
        else:
            self._info(f"Giving range {chunk} to {to}")
            self.ring = self.ring.grant_range_to_host(chunk.start, chunk.end, to)
            self._persist_ring()
            self.transport.broadcast(self.encode)
        self._send_ring_update(to)

    def _denied(self, sender: PeerName, wanted: Range) -> None:
        self._asked.clear()
        kept: list[Operation] = []
        for op in self.pending_claims:
            if isinstance(op, Claim) and wanted.start <= int(op.address.ip) < wanted.end:
                op.denied(self, sender)
            else:
                kept.append(op)
        self.pending_claims[:] = kept

    # ---- status ---------------------------------------------------------------------------
    def waiting_for(self) -> str:
        """What a waiting request waits for, in the words of ``weave status ipam``."""
        if self.ring.empty:
            if self.paxos is None or not self.awaiting_consensus:
                return "idle"
            if not self.paxos.is_elector:
                return "priming: waiting for a peer that has the ring"
            return self.paxos.status().text()
        owners = {info.peer for info in self.ring.all_range_info() if info.range.size > 0}
        if owners and not any(o == int(self.name) or self.config.is_known_peer(o)
                              for o in owners):
            return ("all IP ranges owned by unreachable peers - use 'rmpeer' if they are "
                    "dead")
        return "waiting for IP(s) to become available"

    def not_ready(self) -> str | None:
        """None while requests can be answered (or nothing asked yet: "idle"); else what
        requests wait for (consensus once asked for, even after a request gave up)."""
        if self.ring.empty and (self.awaiting_consensus or self._have_pending()):
            return self.waiting_for()
        if not self.ring.empty and self.pending_allocates:
            return self.waiting_for()
        return None

    def status(self, default_subnet: ipaddress.IPv4Network) -> dict[str, object]:
        """Go's ``ipam.Status`` in its JSON form (``/report``'s ``IPAM``)."""
        paxos: dict[str, bool | int] | None = None
        if self.paxos is not None and self.ring.empty and self.awaiting_consensus:
            paxos = self.paxos.status().as_report()
        entries = [{"Token": format_ip(e.range.start), "Size": e.range.size,
                    "Peer": str(PeerName(e.peer)), "Nickname": self.nicknames.get(e.peer, ""),
                    "IsKnownPeer": e.peer == int(self.name)
                    or self.config.is_known_peer(e.peer),
                    "Version": e.version}
                   for e in self.ring.all_range_info()] if not self.ring.empty else None
        claims = [{"Ident": op.ident, "CIDR": {"Addr": str(op.address.ip),
                                                "PrefixLen": op.address.network.prefixlen}}
                  for op in self.pending_claims if isinstance(op, Claim)]
        allocates = [op.describe() for op in self.pending_allocates]
        return {"Paxos": paxos, "Range": str(self.universe),
                "RangeNumIPs": self.universe.num_addresses,
                "ActiveIPs": self.space.allocated_count(),
                "DefaultSubnet": str(default_subnet), "Entries": entries,
                "PendingClaims": claims or None, "PendingAllocates": allocates or None}


def _host_range(subnet: ipaddress.IPv4Network) -> Range:
    """The subnet without its first and last address (RFC 1122, as the original)."""
    return CIDR(int(subnet.network_address), subnet.prefixlen).host_range


def ip_of(cidr: str) -> int:
    """The address of ``a.b.c.d/len``."""
    return parse_cidr(cidr).addr


__all__ = ["FREED_QUARANTINE", "Allocator", "Config", "Owned", "Persistence", "Transport"]
