"""Allocators wired to each other through an in-memory mesh, for the pure tests.

Each :class:`SimPeer` is a real :class:`~router.ipam.allocator.Allocator` with a store
that keeps what it is given (as the SQLite store would) and a transport that puts what it
sends in the :class:`Network`'s queue.  The network delivers queued messages in the order
the test chooses (in order, shuffled, some dropped) and only between peers that can reach
each other (a partition cuts links), and the clock moves only when the test moves it.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from router.ipam import messages
from router.ipam.allocator import Allocator, Config, Owned
from router.ipam.errors import IpamError
from router.ipam.operations import Operation
from router.mesh.names import PeerName
from tests.support.doubles import RecordingLog

UNIVERSE = ipaddress.IPv4Network("10.32.0.0/22")


@dataclass
class MemoryStore:
    """What the allocator persists, as it would be found after a restart."""

    ring: messages.Ring | None = None
    owned: dict[str, Owned] = field(default_factory=dict)
    writes: int = 0

    def save_ring(self, ring: messages.Ring) -> None:
        self.ring = ring
        self.writes += 1

    def set_owned(self, ident: str, cidrs: Sequence[ipaddress.IPv4Interface],
                  is_container: bool) -> None:
        self.owned[ident] = Owned(is_container, [str(c) for c in cidrs])
        self.writes += 1

    def delete_owned(self, ident: str) -> None:
        self.owned.pop(ident, None)
        self.writes += 1


@dataclass
class Message:
    kind: str
    """broadcast, unicast or gossip."""
    source: int
    destination: int
    payload: bytes
    encode: Callable[[], bytes] | None = None
    """For broadcasts: made when delivered (the sender's state then), as the mesh does."""


class Network:
    def __init__(self, seed: int = 0) -> None:
        self.peers: dict[int, SimPeer] = {}
        self.queue: list[Message] = []
        self.cut: set[frozenset[int]] = set()
        self.rng = random.Random(seed)
        self.now = 0.0

    def reachable(self, a: int, b: int) -> bool:
        return (a != b and a in self.peers and b in self.peers and self.peers[b].alive
                and frozenset((a, b)) not in self.cut)

    def partition(self, *groups: Iterable[int]) -> None:
        sets = [set(g) for g in groups]
        self.cut = {frozenset((a, b)) for i, one in enumerate(sets) for other in sets[i + 1:]
                    for a in one for b in other}

    def heal(self) -> None:
        self.cut = set()

    def deliver(self, *, shuffle: bool = False, drop: float = 0.0, limit: int = 100_000) -> int:
        """Deliver until nothing is queued; how many messages went."""
        count = 0
        while self.queue and count < limit:
            index = self.rng.randrange(len(self.queue)) if shuffle else 0
            message = self.queue.pop(index)
            if drop and self.rng.random() < drop:
                continue
            if not self.reachable(message.source, message.destination):
                continue
            target = self.peers[message.destination].allocator
            payload = message.encode() if message.encode is not None else message.payload
            if message.kind == "broadcast":
                target.on_broadcast(PeerName(message.source), payload)
            elif message.kind == "gossip":
                target.on_gossip(payload)
            else:
                target.on_unicast(PeerName(message.source), payload)
            count += 1
        return count

    def gossip_round(self) -> None:
        """Every live peer gossips its state to every peer it reaches (the periodic
        gossip)."""
        for peer in self.peers.values():
            if peer.alive:
                for other in self.peers:
                    if self.reachable(peer.name, other):
                        self.queue.append(Message("gossip", peer.name, other, b"",
                                                  peer.allocator.encode))

    def tick(self, seconds: float = 5.0) -> None:
        self.now += seconds
        for peer in self.peers.values():
            if peer.alive:
                peer.allocator.tick()


class SimTransport:
    def __init__(self, network: Network, name: int) -> None:
        self.network = network
        self.name = name

    def broadcast(self, encode: Callable[[], bytes]) -> None:
        for other in self.network.peers:
            if other != self.name:
                self.network.queue.append(Message("broadcast", self.name, other, b"", encode))

    def unicast(self, destination: PeerName, payload: bytes) -> bool:
        if not self.network.reachable(self.name, int(destination)):
            return False
        self.network.queue.append(Message("unicast", self.name, int(destination), payload))
        return True


@dataclass
class Answer:
    value: str | None = None
    error: IpamError | None = None
    done: bool = False

    def __call__(self, value: str | None, error: IpamError | None) -> None:
        assert not self.done, "answered twice"
        self.value, self.error, self.done = value, error, True


class SimPeer:
    def __init__(self, network: Network, index: int, quorum: int, *,
                 universe: ipaddress.IPv4Network = UNIVERSE, seeds: tuple[int, ...] = (),
                 observer: bool = False, store: MemoryStore | None = None,
                 uid: int = 1) -> None:
        self.network = network
        self.index = index
        self.name = PeerName(0xCE0000000000 + index)
        self.log = RecordingLog()
        self.store = store or MemoryStore()
        self.alive = True
        self.quorum = quorum
        config = Config(name=self.name, uid=uid, nickname=f"node{index}",
                        universe=universe, quorum=lambda: self.quorum,
                        is_known_peer=lambda n: n in network.peers and network.peers[n].alive,
                        seeds=tuple(PeerName(s) for s in seeds), observer=observer)
        self.allocator = Allocator(config, SimTransport(network, self.name), self.store,
                                   self.log, clock=lambda: network.now,
                                   wall=lambda: 1_700_000_000 + network.now,
                                   rng=random.Random(index))
        network.peers[self.name] = self
        self.allocator.start(self.store.ring, dict(self.store.owned))

    def allocate(self, ident: str, subnet: ipaddress.IPv4Network = UNIVERSE) -> tuple[
            Answer, Operation]:
        answer = Answer()
        op = self.allocator.allocate(ident, subnet, True, answer)
        return answer, op

    def claim(self, ident: str, address: str, no_error_on_unknown: bool = False) -> Answer:
        answer = Answer()
        self.allocator.claim(ident, ipaddress.IPv4Interface(address), True,
                             no_error_on_unknown, answer)
        return answer

    def warnings(self) -> list[str]:
        return [m for level, m, _ in self.log.lines if level == "warning"]

    def entries(self) -> list[tuple[str, int, str]]:
        status: Any = self.allocator.status(UNIVERSE)
        return [(e["Token"], e["Size"], e["Peer"]) for e in status["Entries"] or []]


def held(peers: Iterable[SimPeer]) -> dict[str, tuple[int, str]]:
    """Every address held by the live peers: address → (peer index, ID); fails on a
    duplicate."""
    found: dict[str, tuple[int, str]] = {}
    for peer in peers:
        if not peer.alive:
            continue
        for ident, cidrs in peer.allocator.owned_addresses().items():
            for cidr in cidrs:
                address = cidr.split("/")[0]
                assert address not in found, (
                    f"{address} held by {found[address]} and {(peer.index, ident)}")
                found[address] = (peer.index, ident)
    return found
