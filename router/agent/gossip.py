"""Gossip channels: what travels on the mesh besides its own handshake and heartbeats.

Each channel has a name (``topology``, ``IPallocation``...) and a :class:`Gossiper` that
owns its state.  Three ways to send (weaveworks/mesh ``gossip.go``, ``gossip_channel.go``):

* **gossip** (tag 4): to a random subset of our neighbours (weighted toward those that are
  the next hop for many peers); each receiver applies it and relays only what was new to
  it (``on_gossip`` returns the delta);
* **broadcast** (tag 6): along the source's broadcast tree, so each peer gets it once;
  each relays what ``on_broadcast`` returns;
* **unicast** (tag 5): to one peer, relayed hop by hop along the unicast routes.

What waits to go down one connection is kept per channel by a :class:`GossipSender` and
*merged* (``GossipData.merge``) while the connection is busy: a slow link sends coalesced
state, never a backlog.  A channel we have no gossiper for gets a
:class:`SurrogateGossiper`: it relays broadcasts and gossip (dropping repeats seen within
one gossip interval) so that a peer without IPAM still forwards IPAM traffic.

Everything runs in the agent's one event loop: no locks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from router.mesh.names import PeerName


class GossipData(Protocol):
    """State to send: encoded when it is sent (so it is current then), mergeable."""

    def encode(self) -> list[bytes]:
        """The payloads to send, one message each."""
        ...

    def merge(self, other: GossipData) -> GossipData:
        """This and ``other`` as one (``other`` is of the same channel)."""
        ...


class Gossiper(Protocol):
    """A channel's state (Go's ``mesh.Gossiper``).  Errors raised by these methods are
    logged by the channel and the message dropped; the connection stays."""

    def on_unicast(self, source: PeerName, payload: bytes) -> None: ...

    def on_broadcast(self, source: PeerName, payload: bytes) -> GossipData | None:
        """Apply a broadcast; what to relay onwards (None: nothing)."""
        ...

    def gossip(self) -> GossipData | None:
        """The complete state (sent every gossip interval, and to a new neighbour)."""
        ...

    def on_gossip(self, payload: bytes) -> GossipData | None:
        """Apply gossip; the part that was new to us, to relay (None: nothing)."""
        ...


@dataclass(frozen=True)
class Messages:
    """Gossip data that is a list of opaque payloads (what a surrogate relays)."""

    payloads: tuple[bytes, ...]

    def encode(self) -> list[bytes]:
        return list(self.payloads)

    def merge(self, other: GossipData) -> GossipData:
        assert isinstance(other, Messages)
        return Messages(self.payloads + other.payloads)


class SurrogateGossiper:
    """Relays a channel we do not know (Go's ``surrogateGossiper``): broadcasts as they
    are, gossip unless the same payload came within the last gossip interval."""

    def __init__(self, clock: Callable[[], float], interval: float) -> None:
        self.clock = clock
        self.interval = interval
        self._recent: list[tuple[float, bytes]] = []  # (arrival, digest), oldest first

    def on_unicast(self, source: PeerName, payload: bytes) -> None:
        pass  # addressed to us, in a channel we do not speak: dropped

    def on_broadcast(self, source: PeerName, payload: bytes) -> GossipData | None:
        return Messages((payload,))

    def gossip(self) -> GossipData | None:
        return None

    def on_gossip(self, payload: bytes) -> GossipData | None:
        now = self.clock()
        digest = hashlib.blake2b(payload, digest_size=16).digest()
        self._recent = [(t, d) for t, d in self._recent if t > now - self.interval]
        if any(d == digest for _, d in self._recent):
            return None
        self._recent.append((now, digest))
        return Messages((payload,))


class GossipSender:
    """What one channel has waiting to go down one connection: plain gossip, and
    broadcasts per source, each merged as more comes (Go's ``gossipSender``).  The
    connection's writer takes from it with :meth:`pick` when it can send."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self.gossip: GossipData | None = None
        self.broadcasts: dict[PeerName, GossipData] = {}

    def send(self, data: GossipData) -> None:
        self.gossip = data if self.gossip is None else self.gossip.merge(data)
        self._wake()

    def broadcast(self, source: PeerName, data: GossipData) -> None:
        held = self.broadcasts.get(source)
        self.broadcasts[source] = data if held is None else held.merge(data)
        self._wake()

    @property
    def empty(self) -> bool:
        return self.gossip is None and not self.broadcasts

    def pick(self) -> tuple[GossipData, PeerName | None] | None:
        """The next data to send, and the broadcast source (None: plain gossip, which
        comes first); None when nothing waits."""
        if self.gossip is not None:
            data, self.gossip = self.gossip, None
            return data, None
        if self.broadcasts:
            source = next(iter(self.broadcasts))
            return self.broadcasts.pop(source), source
        return None
