"""The gob-encoded messages of weave's IPAM (``ipam/``, gossip channel ``IPallocation``).

The allocator gossips its whole state, ``ipam.gossipState``: a timestamp
(``Now``, seconds, kept for compatibility), the peer nicknames it knows
(``map[mesh.PeerName]string``), and either its paxos state while no ring
exists (``paxos.GossipState``, a map from ``NodeID`` to ``NodeClaims``; nil
for an observer, which the receiver tells apart from an empty map) or the
ring (``*ring.Ring``: Start/End addresses, owning peer, ``[]*entry`` sorted by
token, seed peers). ``ring.Ring`` has no GobEncoder: it is sent field by field
and its unexported ``onUpdate`` callback is not sent. The broadcast/gossip
payload is that struct alone in its own gob stream.

Unicast payloads start with a message-kind byte, then a fresh gob stream:
0 SpaceRequest (an ``address.Range``), 1 RingUpdate (a ``gossipState``),
2 SpaceRequestDenied (an ``address.Range``).

The schemas mirror the Go types field for field (names, order, Go types,
package-qualified spellings), so our bytes equal the Go weaver's.
"""

from __future__ import annotations

import dataclasses

from router.mesh.gob import (
    INT64,
    STRING,
    UINT,
    UINT32,
    GobError,
    MapOf,
    Ptr,
    SliceOf,
    Struct,
    TypeIds,
    decode,
    encode,
)
from router.mesh.messages import PEER_NAME, PEER_UID

ADDRESS = UINT32.named("address.Address")
COUNT = UINT32.named("address.Count")

MSG_SPACE_REQUEST = 0
MSG_RING_UPDATE = 1
MSG_SPACE_REQUEST_DENIED = 2


@dataclasses.dataclass(frozen=True, slots=True)
class Range:
    """``address.Range``: addresses [start, end)."""

    start: int
    end: int


RANGE = Struct("address.Range", [("Start", ADDRESS), ("End", ADDRESS)], Range)


@dataclasses.dataclass(frozen=True, slots=True)
class NodeID:
    """``paxos.NodeID``: a peer incarnation taking part in paxos."""

    name: int
    uid: int


NODE_ID = Struct("paxos.NodeID", [("Name", PEER_NAME), ("UID", PEER_UID)], NodeID)


@dataclasses.dataclass(frozen=True, slots=True)
class ProposalID:
    """``paxos.ProposalID``; round 0 means no proposal."""

    round: int
    proposer: NodeID


PROPOSAL_ID = Struct("paxos.ProposalID", [("Round", UINT), ("Proposer", NODE_ID)], ProposalID)
PAXOS_VALUE = SliceOf(PEER_NAME, named="paxos.Value")


@dataclasses.dataclass(frozen=True, slots=True)
class AcceptedValue:
    """``paxos.AcceptedValue``: the peers proposed to seed the ring, and whose proposal."""

    value: tuple[int, ...]
    origin: ProposalID


ACCEPTED_VALUE = Struct(
    "paxos.AcceptedValue", [("Value", PAXOS_VALUE), ("Origin", PROPOSAL_ID)], AcceptedValue
)


@dataclasses.dataclass(frozen=True, slots=True)
class NodeClaims:
    """``paxos.NodeClaims``: a node's promise and what it accepted."""

    promise: ProposalID
    accepted: ProposalID
    accepted_val: AcceptedValue


NODE_CLAIMS = Struct(
    "paxos.NodeClaims",
    [("Promise", PROPOSAL_ID), ("Accepted", PROPOSAL_ID), ("AcceptedVal", ACCEPTED_VALUE)],
    NodeClaims,
)
PAXOS_GOSSIP_STATE = MapOf(NODE_ID, NODE_CLAIMS, named="paxos.GossipState")


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """``ring.entry``: the range starting at ``token`` belongs to ``peer``."""

    token: int
    peer: int
    version: int
    free: int


ENTRY = Struct(
    "ring.entry",
    [("Token", ADDRESS), ("Peer", PEER_NAME), ("Version", UINT32), ("Free", COUNT)],
    Entry,
)
ENTRIES = SliceOf(Ptr(ENTRY), named="ring.entries")


@dataclasses.dataclass(frozen=True, slots=True)
class Ring:
    """``ring.Ring``: the allocation ring over [start, end), as owned by ``peer``."""

    start: int
    end: int
    peer: int
    entries: tuple[Entry, ...]
    seeds: tuple[int, ...]


RING = Struct(
    "ring.Ring",
    [
        ("Start", ADDRESS),
        ("End", ADDRESS),
        ("Peer", PEER_NAME),
        ("Entries", ENTRIES),
        ("Seeds", SliceOf(PEER_NAME)),
    ],
    Ring,
)


@dataclasses.dataclass(frozen=True, slots=True)
class GossipState:
    """``ipam.gossipState``. None for ``nicknames``/``paxos`` is Go's nil map (not sent)."""

    now: int
    nicknames: dict[int, str] | None
    paxos: dict[NodeID, NodeClaims] | None
    ring: Ring | None


GOSSIP_STATE = Struct(
    "ipam.gossipState",
    [
        ("Now", INT64),
        ("Nicknames", MapOf(PEER_NAME, STRING)),
        ("Paxos", PAXOS_GOSSIP_STATE),
        ("Ring", Ptr(RING)),
    ],
    GossipState,
)


@dataclasses.dataclass(frozen=True, slots=True)
class SpaceRequest:
    """Unicast 0: the sender asks for addresses in ``range``."""

    range: Range


@dataclasses.dataclass(frozen=True, slots=True)
class SpaceRequestDenied:
    """Unicast 2: the receiver of a SpaceRequest for ``range`` has none to give."""

    range: Range


@dataclasses.dataclass(frozen=True, slots=True)
class RingUpdate:
    """Unicast 1: the sender's whole state, sent to one peer."""

    state: GossipState


UnicastMessage = SpaceRequest | SpaceRequestDenied | RingUpdate


def encode_gossip_state(state: GossipState, *, type_ids: TypeIds | None = None) -> bytes:
    """The allocator's gossip (and broadcast) payload."""
    return encode(GOSSIP_STATE, state, type_ids=type_ids)


def decode_gossip_state(data: bytes) -> GossipState:
    return decode(GOSSIP_STATE, data)


def encode_unicast(message: UnicastMessage, *, type_ids: TypeIds | None = None) -> bytes:
    """A unicast payload: the message-kind byte, then the message's own gob stream."""
    if isinstance(message, RingUpdate):
        return bytes([MSG_RING_UPDATE]) + encode(GOSSIP_STATE, message.state, type_ids=type_ids)
    kind = MSG_SPACE_REQUEST if isinstance(message, SpaceRequest) else MSG_SPACE_REQUEST_DENIED
    return bytes([kind]) + encode(RANGE, message.range, type_ids=type_ids)


def decode_unicast(data: bytes) -> UnicastMessage:
    """Read a unicast payload; GobError for an empty one or an unknown kind byte."""
    if not data:
        raise GobError("gob: empty IPAM unicast message")
    kind, body = data[0], data[1:]
    if kind == MSG_SPACE_REQUEST:
        return SpaceRequest(decode(RANGE, body))
    if kind == MSG_SPACE_REQUEST_DENIED:
        return SpaceRequestDenied(decode(RANGE, body))
    if kind == MSG_RING_UPDATE:
        return RingUpdate(decode(GOSSIP_STATE, body))
    raise GobError(f"gob: unknown IPAM unicast message kind {kind}")
