"""Merging another peer's view of the ring into ours, repairing conflicts instead of failing.

Background (weave 2.8.1, ``ring.go``): each token's entry carries a version, bumped by
whoever changes it; a merge walks both sorted lists, keeps tokens either side has, and
for a token both have keeps the higher version (on a tie, the entry with more free
space). Where the incoming view would take away part of *our* range while we hold
allocations in it, Go refuses the whole merge ("Inconsistent entries for T", "Received
update for IP range I own", "Peer X says it owns the IP range from T, which I think I
own"); the gossip handler then drops the mesh connection, the peers reconnect, fail
again, and the cluster splits into cliques (issues #3310, #3632, #3677, #3767).

Design: the merge is two steps.

1. :func:`join`, a pure CRDT join: the union of both token sets, each token taking the
   entry that ranks highest by (version, free, peer name). That order is total, so the
   join is commutative, associative and idempotent; it agrees with Go wherever Go's own
   choice is deterministic (higher version; equal versions with different free counts),
   and settles the cases Go leaves to "keep mine" (equal version and free) by peer name
   instead, so that every peer of ours picks the same winner. Free counts are kept as
   reported even when a newly learnt token shortens the entry's stretch (Go's
   "reporting too much free space"): clamping them here would make the result depend on
   merge order; the ring clamps when it reads or sends them.
2. :func:`protect`, local to the receiving peer: for every stretch of the joined ring
   that was ours before the merge and in which we hold allocations (the caller's
   ``in_use`` predicate), the merge must not hand it to another peer. Each such stretch
   is kept as ours with a version one above the highest we have seen for its token, so
   that our view also wins at every other peer, Go's included. The same bump applies
   when the other side holds a different owner at the same version as ours (Go keeps its
   own entry on such ties). Each repair is returned as a :class:`Conflict` for the caller
   to log and count. Stretches where we hold nothing follow the join.

A genuine double allocation (two peers both holding addresses in the same stretch)
cannot be repaired by the ring: both sides keep protecting, their versions climb by one
per exchange, and the conflict records keep coming; that needs an operator.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from router.ipam.address import Range, format_ip
from router.ipam.messages import Entry
from router.ipam.ring_entries import Circle, Entries, bump, covering_index, span, span_size
from router.mesh.names import PeerName, PeerNameError

InUse = Callable[[Range], bool]
"""True when we hold allocations somewhere in the range (so it must stay ours)."""


class ConflictKind(enum.StrEnum):
    """Which of Go's merge failures this repair stands in for."""

    INCONSISTENT_ENTRY = "inconsistent-entry"
    """Same token and version, another owner ("Inconsistent entries for T")."""
    NEWER_VERSION = "newer-version"
    """A newer version of our token names another owner ("Received update for IP range I own")."""
    SPLIT = "split"
    """A token inside our range names another owner ("Peer X says it owns the IP range from T")."""


@dataclass(frozen=True, slots=True)
class Conflict:
    """One stretch of ours, with allocations, that the incoming view gave to another peer."""

    kind: ConflictKind
    token: int
    ours: Entry
    """Our entry covering ``token`` before the merge."""
    theirs: Entry
    """The incoming entry that claimed it."""
    kept: Entry
    """What the merged ring now holds at ``token``: ours, at a newer version."""

    def describe(self) -> str:
        """A log line in the words of Go's error, and what we did instead."""
        at = format_ip(self.token)
        them = peer_text(self.theirs.peer)
        if self.kind is ConflictKind.INCONSISTENT_ENTRY:
            what = (f"Inconsistent entries for {at}: owned by {peer_text(self.ours.peer)} "
                    f"but incoming message says {them}")
        elif self.kind is ConflictKind.NEWER_VERSION:
            what = (f"Received update for IP range I own at {at} v{self.ours.version}: "
                    f"incoming message says owner {them} v{self.theirs.version}")
        else:
            what = f"Peer {them} says it owns the IP range from {at}, which I think I own"
        return f"{what}; kept it (allocations in use) as v{self.kept.version}"


def peer_text(peer: int) -> str:
    """A peer name as Go prints it; a number that is no 48-bit name, as a number."""
    try:
        return str(PeerName(peer))
    except PeerNameError:
        return str(peer)


def precedence(entry: Entry) -> tuple[int, int, int]:
    """The order in which entries for the same token supersede each other."""
    return (entry.version, entry.free, entry.peer)


def join(mine: Sequence[Entry], theirs: Sequence[Entry]) -> Entries:
    """Every token of either list, each with its highest-ranking entry, sorted by token."""
    chosen = {entry.token: entry for entry in mine}
    for entry in theirs:
        current = chosen.get(entry.token)
        if current is None or precedence(entry) > precedence(current):
            chosen[entry.token] = entry
    return tuple(sorted(chosen.values(), key=lambda e: e.token))


def protect(circle: Circle, us: int, mine: Entries, theirs: Entries, joined: Entries,
            in_use: InUse) -> tuple[Entries, tuple[Conflict, ...]]:
    """``joined`` with every stretch we owned in ``mine`` and still use taken back."""
    if not mine:
        return joined, ()
    theirs_by_token = {entry.token: entry for entry in theirs}
    result = list(joined)
    conflicts: list[Conflict] = []
    for index, winner in enumerate(joined):
        ours = mine[covering_index(mine, winner.token)]
        if ours.peer != us:
            continue
        claim = _rival_claim(ours, winner, theirs_by_token.get(winner.token), us)
        if claim is None or not any(in_use(r) for r in span(circle, joined, index)):
            continue
        kind, rival = claim
        if winner.peer == us:
            kept = Entry(winner.token, us, bump(winner.version), winner.free)
        else:
            free = min(ours.free, span_size(circle, joined, index))
            kept = Entry(winner.token, us, bump(winner.version), free)
        result[index] = kept
        conflicts.append(Conflict(kind, winner.token, ours, rival, kept))
    return tuple(result), tuple(conflicts)


def _rival_claim(ours: Entry, winner: Entry, theirs: Entry | None,
                 us: int) -> tuple[ConflictKind, Entry] | None:
    """Whether the incoming view gives this stretch of ours to someone else, and how.

    ``ours`` is our old entry covering the stretch, ``winner`` the joined entry at its
    token, ``theirs`` the incoming entry at exactly that token, if any.
    """
    if winner.peer != us:
        # Our own entry names us, so a winner naming someone else came from them.
        if ours.token != winner.token:
            return ConflictKind.SPLIT, winner
        if winner.version == ours.version:
            return ConflictKind.INCONSISTENT_ENTRY, winner
        return ConflictKind.NEWER_VERSION, winner
    if theirs is not None and theirs.peer != us and theirs.version == winner.version:
        # We won the tie-break, but a Go peer keeps its own entry on a tie.
        return ConflictKind.INCONSISTENT_ENTRY, theirs
    return None
