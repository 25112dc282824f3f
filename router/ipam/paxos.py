"""Paxos over gossip: how IPAM peers agree on which peers seed the first ring.

Background (weave 2.8.1, ``ipam/paxos``): while no ring exists, every elector
gossips its view of every participant's claims, a map from :class:`NodeID` (peer
name plus the UID of this process incarnation) to :class:`NodeClaims` (the
highest proposal it promised, the proposal it accepted and that proposal's
value). There are no request/response messages: each step of Paxos is a change to
one's own entry in that map, spread by gossip.

* **Prepare**: a proposer writes a promise one round above every round it has
  heard of, naming itself (:meth:`Node.propose`).
* **Promise**: every node copies the highest promise it has seen (:meth:`Node.think`).
* **Accept request**: a proposer whose own promise is held by a quorum accepts it,
  with the value of the highest proposal those promisers had accepted, or, if none
  had, the names of every node in its map.
* **Accepted**: a node whose promise some node has accepted accepts it too.
* **Consensus** (:meth:`Node.consensus`): a quorum has accepted one proposal. Here
  we differ from Go, which adds up acceptances of different proposals carrying the
  same value, and can then agree twice (the method says how).

The identity includes the UID because acceptors must never forget a promise: a
restarted process is a new acceptor, and its predecessor's claims stay frozen in
everyone's maps. An :class:`Observer` (``--ipalloc-init observer``) never votes
and gossips a nil map, which tells electors that have a ring to send it.

Quorum rules live here too: Go's (:func:`go_quorum`) and ours for Kubernetes
(:func:`kube_quorum`), which counts the local node so two nodes never get quorum 1.
No quorum rule protects against forgetful restarts: if a majority of nodes agree and
some of them restart before the agreement spreads (or a ring is persisted), their new
incarnations can form another majority.

Design: pure (no clock, no I/O); values are the frozen wire dataclasses of
:mod:`router.ipam.messages`, so :meth:`Node.gossip_state` is exactly what goes in
``gossipState.Paxos``. Iteration over the map follows insertion order, where Go's
is random; nothing here depends on it for correctness.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Protocol

from router.ipam.messages import AcceptedValue, NodeClaims, NodeID, ProposalID

PaxosState = dict[NodeID, NodeClaims]
"""``paxos.GossipState``: what every participant has claimed, as far as we know."""

NO_NODE = NodeID(0, 0)
NO_PROPOSAL = ProposalID(0, NO_NODE)
"""Round 0: the zero ProposalID, which precedes every real proposal."""
NO_VALUE = AcceptedValue((), NO_PROPOSAL)
NO_CLAIMS = NodeClaims(NO_PROPOSAL, NO_PROPOSAL, NO_VALUE)


def proposal_order(proposal: ProposalID) -> tuple[int, int, int]:
    """The total order of proposals: round, then proposer name, then proposer UID."""
    return (proposal.round, proposal.proposer.name, proposal.proposer.uid)


def precedes(a: ProposalID, b: ProposalID) -> bool:
    """True when ``a`` comes strictly before ``b``."""
    return proposal_order(a) < proposal_order(b)


def is_valid(proposal: ProposalID) -> bool:
    """A real proposal (rounds start at 1)."""
    return proposal.round > 0


def same_claims(a: NodeClaims, b: NodeClaims) -> bool:
    """Go's ``NodeClaims.equals``: the accepted value is compared by its origin only."""
    return (a.promise == b.promise and a.accepted == b.accepted
            and a.accepted_val.origin == b.accepted_val.origin)


def normalize_consensus(value: Iterable[int]) -> tuple[int, ...]:
    """The agreed peer names sorted and de-duplicated, as the ring is seeded from them
    (a value lists one name per node incarnation, in no particular order)."""
    return tuple(sorted(set(value)))


@dataclasses.dataclass(frozen=True, slots=True)
class PaxosStatus:
    """``paxos.Status`` as ``/report`` shows it under ``IPAM.Paxos``."""

    elector: bool
    known_nodes: int
    quorum: int

    def text(self) -> str:
        """The ``Status:`` line of ``weave status ipam`` while the ring is being agreed."""
        if not self.elector:
            return "priming"
        return f"awaiting consensus (quorum: {self.quorum}, known: {self.known_nodes})"

    def as_report(self) -> dict[str, bool | int]:
        """The JSON object of ``/report`` (Go field names)."""
        return {"Elector": self.elector, "KnownNodes": self.known_nodes, "Quorum": self.quorum}


class Participant(Protocol):
    """What the allocator drives: an electing :class:`Node` or an :class:`Observer`."""

    @property
    def is_elector(self) -> bool:
        """True for a node that votes."""
        ...

    def gossip_state(self) -> PaxosState | None:
        """What to put in ``gossipState.Paxos`` (None: Go's nil map, an observer)."""
        ...

    def update(self, incoming: Mapping[NodeID, NodeClaims] | None) -> bool:
        """Merge a received map; True when we learned something."""
        ...

    def set_quorum(self, quorum: int) -> None:
        """The number of nodes that must agree."""
        ...

    def propose(self) -> None:
        """Start (or restart) a proposal."""
        ...

    def think(self) -> bool:
        """Take every Paxos step our knowledge allows; True when our claims changed."""
        ...

    def consensus(self) -> tuple[bool, AcceptedValue]:
        """Whether a quorum has agreed, and on what."""
        ...

    def status(self) -> PaxosStatus:
        """For ``/report`` and ``weave status``."""
        ...


class Node:
    """An electing participant: acceptor and, when it proposes, proposer."""

    def __init__(self, name: int, uid: int, quorum: int = 0) -> None:
        """Quorum 0 means "not yet known": such a node still promises and accepts, but
        cannot propose and never reports consensus (Go sets it when the first request
        needs a ring)."""
        self.id = NodeID(name, uid)
        self.quorum = quorum
        self._knows: PaxosState = {}

    @property
    def is_elector(self) -> bool:
        return True

    def set_quorum(self, quorum: int) -> None:
        self.quorum = quorum

    def gossip_state(self) -> PaxosState:
        """A copy of the map (its values are immutable), safe to encode later."""
        return dict(self._knows)

    def claims(self, node: NodeID) -> NodeClaims:
        """What ``node`` has claimed as far as we know (the zero claims if nothing)."""
        return self._knows.get(node, NO_CLAIMS)

    def update(self, incoming: Mapping[NodeID, NodeClaims] | None) -> bool:
        """Merge another node's map: per node, keep the later promise and the later
        acceptance (each field only ever moves forward). True when anything changed."""
        changed = False
        for node, theirs in (incoming or {}).items():
            ours = self._knows.get(node)
            if ours is None:
                self._knows[node] = theirs
                changed = True
                continue
            merged = ours
            if precedes(ours.promise, theirs.promise):
                merged = dataclasses.replace(merged, promise=theirs.promise)
            if precedes(ours.accepted, theirs.accepted):
                merged = dataclasses.replace(merged, accepted=theirs.accepted,
                                             accepted_val=theirs.accepted_val)
            if merged is not ours:
                self._knows[node] = merged
                changed = True
        return changed

    def propose(self) -> None:
        """Promise a proposal of ours one round above every round we have heard of.
        With quorum 1 that is already enough to accept it, so think at once."""
        if self.quorum <= 0:
            raise ValueError("paxos: propose() needs a quorum")
        highest = max((max(c.promise.round, c.accepted.round) for c in self._knows.values()),
                      default=0)
        ours = self.claims(self.id)
        self._knows[self.id] = dataclasses.replace(
            ours, promise=ProposalID(highest + 1, self.id))
        if self.quorum == 1:
            self.think()

    def think(self) -> bool:
        """Promise, accept-request and accepted steps, in that order; True when our own
        claims changed (the allocator then broadcasts)."""
        before = self.claims(self.id)
        promise = max((c.promise for c in self._knows.values()), key=proposal_order,
                      default=before.promise)
        ours = dataclasses.replace(before, promise=promise)
        # Only our own current promise can still win: anyone who has heard of a later
        # promise will not accept ours, so proposing on would be pointless.
        if promise.proposer == self.id:
            ours = self._accept_if_promised(ours)
        for claims in self._knows.values():
            if claims.accepted == ours.promise:
                ours = dataclasses.replace(ours, accepted=claims.accepted,
                                           accepted_val=claims.accepted_val)
                break
        if same_claims(ours, before):
            return False
        self._knows[self.id] = ours
        return True

    def _accept_if_promised(self, ours: NodeClaims) -> NodeClaims:
        """Accept our own proposal once a quorum holds it as its promise, carrying the
        latest value any of those promisers accepted before (Paxos' safety rule)."""
        promisers = [c for c in self._knows.values() if c.promise == ours.promise]
        if len(promisers) < self.quorum:
            return ours
        latest = max(promisers, key=lambda c: proposal_order(c.accepted))
        if is_valid(latest.accepted):
            value = latest.accepted_val
        else:
            value = AcceptedValue(self._pick_value(), ours.promise)
        return dataclasses.replace(ours, accepted=ours.promise, accepted_val=value)

    def _pick_value(self) -> tuple[int, ...]:
        """The names of every node in our map: at least a quorum of electors, which is
        enough to seed the ring (others get space by donation). Go takes these, not
        the mesh's peer list, and so do we: every seed is then a peer that runs IPAM
        and votes, where an observer or a peer without IPAM would hold a range nobody
        allocates from. Sorted for determinism; a restarted peer's name appears once
        per incarnation, as in Go (:func:`normalize_consensus` removes repeats)."""
        return tuple(sorted(node.name for node in self._knows))

    def consensus(self) -> tuple[bool, AcceptedValue]:
        """True with the value once a quorum of nodes accepted the same proposal.

        Go counts nodes whose accepted values share an origin, whichever proposal they
        accepted them in. That is not Paxos' rule and is unsafe: with three nodes,
        slow gossip and four retry ticks, a value accepted in proposals 1 and 3 is
        reported agreed, and another is agreed later in proposal 4 (see
        ``test_acceptances_from_different_proposals_do_not_add_up``). Counting one
        proposal at a time only delays the answer until the latest proposal has
        spread, and changes nothing on the wire."""
        if self.quorum <= 0:
            return False, NO_VALUE
        counts: dict[ProposalID, int] = {}
        for claims in self._knows.values():
            if not is_valid(claims.accepted):
                continue
            counts[claims.accepted] = counts.get(claims.accepted, 0) + 1
            if counts[claims.accepted] >= self.quorum:
                return True, claims.accepted_val
        return False, NO_VALUE

    def status(self) -> PaxosStatus:
        return PaxosStatus(elector=True, known_nodes=len(self._knows), quorum=self.quorum)


class Observer:
    """A participant that never votes (``--ipalloc-init observer``): it gossips a nil
    map, which prompts electors that have a ring to send it ("priming")."""

    @property
    def is_elector(self) -> bool:
        return False

    def gossip_state(self) -> PaxosState | None:
        """Always None: Go's nil map, which is not the empty map an elector may send."""
        return None

    def update(self, incoming: Mapping[NodeID, NodeClaims] | None) -> bool:
        return False

    def set_quorum(self, quorum: int) -> None:
        pass

    def propose(self) -> None:
        pass

    def think(self) -> bool:
        return False

    def consensus(self) -> tuple[bool, AcceptedValue]:
        return False, NO_VALUE

    def status(self) -> PaxosStatus:
        return PaxosStatus(elector=False, known_nodes=0, quorum=0)


def consensus_quorum(peer_count: int) -> int:
    """Go's quorum for ``--ipalloc-init consensus=N`` (N > 0): a majority of N."""
    if peer_count <= 0:
        raise ValueError(f"paxos: consensus=N needs N > 0, not {peer_count}")
    return peer_count // 2 + 1


def go_quorum(consensus_count: int, target_count: int) -> int:
    """Go's ``determineQuorum``: ``consensus=N`` when N > 0, else a majority of the
    connection targets plus one for ourselves (the target list may or may not include
    us; Go assumes it does not)."""
    if consensus_count > 0:
        return consensus_quorum(consensus_count)
    return (target_count + 1) // 2 + 1


def kube_quorum(node_count_including_self: int) -> int:
    """Our Kubernetes quorum: a majority of all nodes, this one included.

    Go's DaemonSet passes ``consensus=<number of KUBE_PEERS>``, a list without the
    local node, so every even-sized cluster gets a non-majority quorum: 1 of 2, 2 of 4,
    which lets two halves agree on different rings. Counting ourselves, two nodes need
    both; the price is that the first allocation waits until both are up."""
    if node_count_including_self <= 0:
        raise ValueError(f"paxos: a cluster has at least one node, not "
                         f"{node_count_including_self}")
    return node_count_including_self // 2 + 1
