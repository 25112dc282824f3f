"""A small gossip network of paxos nodes, for the simulation tests of ``router.ipam.paxos``.

Each physical node runs one :class:`Node` incarnation at a time; a restart replaces it
with a fresh one (same peer name, new UID), as a restarted weaver does. Messages are
whole gossip states in flight to one destination; the test decides which are
delivered, dropped or delivered twice, and in what order. A receiver reacts as the
allocator does: merge, think, broadcast if its own claims changed.

Every consensus any incarnation ever reports is recorded, so a test can check that
there was at most one.
"""

from __future__ import annotations

import dataclasses

from router.ipam.messages import AcceptedValue, NodeID
from router.ipam.paxos import Node, PaxosState


@dataclasses.dataclass
class Message:
    """A gossip state on its way to node ``dest``."""

    dest: int
    state: PaxosState


class Network:
    """``count`` nodes named 1..count, all with the same quorum."""

    def __init__(self, count: int, quorum: int) -> None:
        self.quorum = quorum
        self.next_uid = 1
        self.nodes = [self._incarnation(index) for index in range(count)]
        self.in_flight: list[Message] = []
        self.reports: dict[NodeID, set[AcceptedValue]] = {}
        self.restarts = 0

    def _incarnation(self, index: int) -> Node:
        uid = self.next_uid
        self.next_uid += 1
        return Node(name=index + 1, uid=uid * 7919, quorum=self.quorum)

    # -- what the test makes happen ------------------------------------------------

    def propose(self, index: int) -> None:
        """The allocator's retry tick: propose and broadcast."""
        self.nodes[index].propose()
        self.broadcast(index)
        self._observe(index)

    def gossip(self, source: int, dest: int) -> None:
        """Periodic gossip from one node to another."""
        if source != dest:
            self.in_flight.append(Message(dest, self.nodes[source].gossip_state()))

    def broadcast(self, source: int) -> None:
        for dest in range(len(self.nodes)):
            self.gossip(source, dest)

    def deliver(self, position: int, *, keep: bool = False) -> None:
        """Deliver one message in flight; ``keep`` leaves a copy to deliver again."""
        message = self.in_flight[position] if keep else self.in_flight.pop(position)
        self.receive(message.dest, message.state)

    def drop(self, position: int) -> None:
        del self.in_flight[position]

    def restart(self, index: int) -> None:
        """The node's process restarts: a new UID, and its paxos state is lost."""
        self.nodes[index] = self._incarnation(index)
        self.restarts += 1

    def receive(self, dest: int, state: PaxosState) -> bool:
        """As the allocator's ``update``: True when the receiver learned something."""
        node = self.nodes[dest]
        if not node.update(state):
            return False
        if node.think():
            self.broadcast(dest)
        self._observe(dest)
        return True

    def exchange_until_quiet(self, members: list[int]) -> None:
        """Fair, lossless gossip among ``members`` until nobody learns anything more
        (messages to or from anyone else are not delivered)."""
        self.in_flight.clear()
        learned = True
        while learned:
            learned = False
            for source in members:
                for dest in members:
                    if source != dest:
                        learned |= self.receive(dest, self.nodes[source].gossip_state())
            self.in_flight.clear()

    # -- what the test checks --------------------------------------------------------

    def _observe(self, index: int) -> None:
        node = self.nodes[index]
        agreed, value = node.consensus()
        if agreed:
            self.reports.setdefault(node.id, set()).add(value)

    def agreed_values(self) -> set[AcceptedValue]:
        """Every value any incarnation ever reported as the consensus."""
        return set().union(*self.reports.values()) if self.reports else set()

    def has_consensus(self, index: int) -> bool:
        return self.nodes[index].consensus()[0]
