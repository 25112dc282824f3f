"""The ``topology`` gossip channel: every peer's summary and connections (Go's Router as
its own Gossiper, and the local peer's batching of its updates).

* A received update is merged into the peer table (:class:`router.mesh.peers.PeerTable`,
  the original's rules); the peers it improved are relayed (gossip) or everything it named
  (broadcast); routes are recomputed and the connection maker told; a garbage collection
  follows one second later.
* Our own changes (connections added, established, gone) are batched (one update a
  second on average, the first few after a quiet spell almost at once) and sent as the
  summaries of the peers concerned, ourselves always included.
* What is sent is the *names* of the peers to describe; they are encoded when the message
  goes out (:class:`TopologyData`), so a message that waited carries the latest state,
  and merging two pending messages is a set union.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from common.service.logs import Logger
from router.agent.gossip import GossipData
from router.mesh.names import PeerName
from router.mesh.peers import PeerTable, TableChanges, UpdateResult
from router.mesh.summary import PeerSummary, TopologyError
from router.mesh.topology_codec import decode_update, encode_update
from router.mesh.topology_delta import Purpose

CHANNEL = "topology"
BATCH_DELAY = 1.0
"""Go's batching of our own changes: at most one update of ours per this long."""
FIRST_DELAY = 0.1
"""The least wait between a change of ours and the update that carries it."""
BURST = 3
"""Updates of ours that may go closer together than ``BATCH_DELAY`` after a quiet spell."""
ESTABLISH_WAIT = 3.0
"""The longest an update of ours waits for a connection of ours being established (a
sleeve's first heartbeats take a round trip or two; under load, seconds)."""
GC_DELAY = 1.0
"""Go's gcInterval: a collection runs this long after an update."""


@dataclass(frozen=True)
class TopologyData:
    """The summaries of some peers, encoded from the table when sent, each with why it
    is sent (which decides its incremental encoding: Go peers get every summary whole)."""

    table: PeerTable
    purposes: Mapping[PeerName, Purpose]
    pass_on: frozenset[PeerName] = frozenset()
    """Summaries the (incremental) neighbour is asked to pass on to all of its own."""
    to_all: bool = False
    """Sent to every neighbour of ours (what a hub passes on): said to the neighbour."""

    @property
    def names(self) -> frozenset[PeerName]:
        return frozenset(self.purposes)

    def encode(self) -> list[bytes]:
        return [encode_update(self.table.encode_summaries(sorted(self.purposes)))]

    def merge(self, other: GossipData) -> GossipData:
        assert isinstance(other, TopologyData)
        merged = dict(self.purposes)
        for name, purpose in other.purposes.items():
            merged[name] = max(purpose, merged.get(name, purpose))
        return TopologyData(self.table, merged, self.pass_on | other.pass_on,
                            self.to_all and other.to_all)


class TopologyGossiper:
    """The channel's gossiper.  ``changed`` is called after every change that may move
    routes (the mesh recomputes them and wakes its connection maker); ``applied`` with the
    table's changes (peers removed, our summary changed) for the mesh to act on."""

    def __init__(self, table: PeerTable, *, changed: Callable[[], None],
                 applied: Callable[[TableChanges], None], log: Logger) -> None:
        self.table = table
        self.changed = changed
        self.applied = applied
        self.log = log
        self._gc: asyncio.TimerHandle | None = None

    def data(self, names: Iterable[PeerName], purpose: Purpose = Purpose.NEWS
             ) -> TopologyData:
        return TopologyData(self.table, dict.fromkeys(names, purpose))

    def on_unicast(self, source: PeerName, payload: bytes) -> None:
        raise TopologyError(f"unexpected topology gossip unicast from {source}")

    def on_broadcast(self, source: PeerName, payload: bytes) -> GossipData | None:
        received, _ = self._apply(payload)
        return self.data(received) if received else None

    def gossip(self) -> TopologyData:
        return self.data(self.table.names(), Purpose.REPAIR)

    def on_gossip(self, payload: bytes) -> GossipData | None:
        _, new = self._apply(payload)
        return self.data(new) if new else None

    def _apply(self, payload: bytes) -> tuple[frozenset[PeerName], frozenset[PeerName]]:
        result = self.apply(decode_update(payload))
        return result.received, result.new

    def apply(self, summaries: Sequence[PeerSummary]) -> UpdateResult:
        """Merge summaries received in either format; act on what changed."""
        result = self.table.apply_update(summaries)
        self.applied(result.changes)
        if result.new:
            self.changed()
            self._schedule_gc()
        return result

    def _schedule_gc(self) -> None:
        if self._gc is None:
            self._gc = asyncio.get_running_loop().call_later(GC_DELAY, self._collect)

    def _collect(self) -> None:
        self._gc = None
        changes = self.table.garbage_collect()
        self.applied(changes)
        if changes.removed:
            self.changed()


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """What :class:`PendingUpdates` needs of the event loop."""

    def time(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> Cancellable: ...


class PendingUpdates:
    """Our own topology changes, batched (Go's ``broadcastPeerUpdate``): ``send`` gets the
    names to gossip, ourselves always among them.

    Go holds every change for a second.  Here sends are paced by a token bucket: one
    token per ``delay``, at most ``burst`` saved, each send spends one and waits at least
    ``first_delay`` after the change that started it (enough to catch the burst one event
    makes: a connection added, then established).  A peer joining a quiet mesh is known
    everywhere within a few tenths of a second; a storm of changes still costs one update
    per ``delay`` (after the first ``burst``).

    While ``held()`` says so (a connection of ours is added but not yet established), an
    update waits up to ``hold`` after the change that started it, and goes as soon as
    that passes: each peer of a mesh that someone joins then sends one update, not one
    for the connection and another for its establishment, so a join costs each peer N
    messages to receive, not 2N.  (Go holds every change for a second, established or
    not; at a hundred agents on two cores, a third of the connections took longer.)"""

    def __init__(self, ourself: PeerName, send: Callable[[frozenset[PeerName]], None],
                 delay: float = BATCH_DELAY, first_delay: float = FIRST_DELAY,
                 burst: int = BURST, loop: Scheduler | None = None,
                 held: Callable[[], bool] = lambda: False,
                 hold: float = ESTABLISH_WAIT) -> None:
        """``loop`` is the running event loop unless given (tests give a clock)."""
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.ourself = ourself
        self.loop = loop
        self.send = send
        self.delay = delay
        self.first_delay = min(first_delay, delay)
        self.burst = burst
        self.held = held
        self.hold = max(hold, self.first_delay)
        self._names: set[PeerName] = set()
        self._timer: Cancellable | None = None
        self._due: float | None = None
        self._started: float | None = None
        self._tokens = float(burst)
        self._counted_at: float | None = None

    def _refill(self, now: float) -> None:
        if self._counted_at is not None:
            self._tokens = min(float(self.burst),
                               self._tokens + (now - self._counted_at) / self.delay)
        self._counted_at = now

    def add(self, *names: PeerName) -> None:
        """A change (of these peers' summaries, or of ours only): send it when due."""
        self._names.update(names)
        loop = self.loop or asyncio.get_running_loop()
        now = loop.time()
        if self._started is None:
            self._started = now
        self._refill(now)
        due = max(self._started + self.first_delay, now + (1.0 - self._tokens) * self.delay)
        if self.held():
            due = max(due, self._started + self.hold)
        if self._timer is not None:
            if due == self._due:
                return
            self._timer.cancel()
        self._due = due
        self._timer = loop.call_later(max(0.0, due - now), self._flush)

    def _flush(self) -> None:
        self._timer = self._due = self._started = None
        self._refill((self.loop or asyncio.get_running_loop()).time())
        self._tokens -= 1.0
        names, self._names = frozenset({*self._names, self.ourself}), set()
        self.send(names)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._due = self._started = None
