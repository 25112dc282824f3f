"""The IPAM ring: who owns which addresses of the allocation range, as a CRDT value.

Background (weave 2.8.1, ``ipam/ring``): the allocation range ``[start, end)`` is split
among peers by *entries*, sorted by token; an entry gives the addresses from its token
to the next token to one peer, with a version (bumped by every change) and the number
of addresses the owner says are free there (so that peers short of space know whom to
ask). The first ring is built by :meth:`Ring.claim_for_peers` from the peers paxos
agreed on (the *seeds*); afterwards ownership moves only by an owner granting part of
its space to another peer, by ``rmpeer`` taking a dead peer's entries over, and by
merging other peers' views. Tokens are never removed.

Design: a :class:`Ring` is an immutable value; every operation returns a new ring. It
holds the entries exactly as the wire (``messages.Entry``) has them. The merge (with
its conflict repair) is in :mod:`router.ipam.ring_merge`, the entry-list geometry in
:mod:`router.ipam.ring_entries`. Misuse by the caller (granting space we do not own,
reporting free space on someone else's entry) raises ``ValueError``, where Go panics;
an incoming ring we cannot merge raises :class:`RingError`.

Free counts may exceed the stretch an entry covers after a merge (see ring_merge);
:meth:`Ring.free`, :meth:`Ring.to_message` and everything that reads free space clamp
them to the stretch, so a Go peer never sees "reporting too much free space".
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from router.ipam import messages
from router.ipam.address import MAX_ADDRESS, Range
from router.ipam.messages import Entry
from router.ipam.ring_entries import (
    Circle,
    Entries,
    bump,
    check,
    covering_index,
    index_of,
    next_token,
    span,
    span_size,
)
from router.ipam.ring_merge import Conflict, InUse, join, peer_text, protect

TRANSFER_VERSION_STEP = 100
"""``rmpeer`` bumps versions by this much, so the takeover beats ordinary updates."""

__all__ = ["Conflict", "Entry", "MergeResult", "RangeInfo", "Ring", "RingError"]


class RingError(Exception):
    """A ring that cannot be merged into ours: another range, other seeds, or malformed."""


@dataclass(frozen=True, slots=True)
class RangeInfo:
    """One stretch of the ring, as ``weave status ipam`` lists them."""

    peer: int
    range: Range
    version: int


@dataclass(frozen=True, slots=True)
class MergeResult:
    ring: Ring
    conflicts: tuple[Conflict, ...]
    """Stretches of ours, with allocations, that the incoming view gave away and we kept."""
    changed: bool
    """Whether the merged ring differs from ours (then it is worth persisting and gossiping)."""


@dataclass(frozen=True, slots=True)
class Ring:
    """The ring over ``[start, end)`` as peer ``peer`` (us) sees it."""

    start: int
    end: int
    peer: int
    entries: Entries = ()
    seeds: tuple[int, ...] = ()
    _circle: Circle = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end <= MAX_ADDRESS:
            raise RingError(f"not a ring range: [{self.start}, {self.end})")
        object.__setattr__(self, "entries", tuple(self.entries))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "_circle", Circle(self.start, self.end))
        problem = check(self._circle, self.entries)
        if problem:
            raise RingError(problem)

    # ---- reading -------------------------------------------------------------------

    @property
    def range(self) -> Range:
        return Range(self.start, self.end)

    @property
    def empty(self) -> bool:
        return not self.entries

    def contains(self, addr: int) -> bool:
        return self.start <= addr < self.end

    def free(self, index: int) -> int:
        """Entry ``index``'s free count, never more than the addresses it covers."""
        return min(self.entries[index].free, span_size(self._circle, self.entries, index))

    def owner(self, addr: int) -> int | None:
        """The peer that owns ``addr`` (inside the range), None on an empty ring."""
        if not self.contains(addr):
            raise ValueError(f"address {addr} is outside the ring {self.range}")
        if not self.entries:
            return None
        return self.entries[covering_index(self.entries, addr)].peer

    def owned_ranges(self, peer: int | None = None) -> list[Range]:
        """What ``peer`` (by default us) owns, one range per entry, lowest first; an entry
        that wraps past the end counts as two. Neighbours are not joined (as Go)."""
        owner = self.peer if peer is None else peer
        found: list[Range] = []
        for index, entry in enumerate(self.entries):
            if entry.peer == owner:
                found.extend(span(self._circle, self.entries, index))
        return sorted(found)

    def all_range_info(self) -> list[RangeInfo]:
        """Every stretch with its owner and version, in token order; the wrapping last
        entry gives its low part first (Go's ``AllRangeInfo``, used by status)."""
        return [RangeInfo(entry.peer, part, entry.version)
                for index, entry in enumerate(self.entries)
                for part in span(self._circle, self.entries, index)]

    def owned_counts(self) -> dict[int, int]:
        """Addresses owned per peer (``weave status ipam``)."""
        counts: dict[int, int] = {}
        for index, entry in enumerate(self.entries):
            size = span_size(self._circle, self.entries, index)
            counts[entry.peer] = counts.get(entry.peer, 0) + size
        return counts

    def peer_names(self) -> frozenset[int]:
        return frozenset(entry.peer for entry in self.entries)

    def choose_peers_to_ask(self, start: int, end: int, random: Callable[[], float]) -> list[int]:
        """Other peers reporting free space in ``[start, end)``, in random order weighted by
        how much they report (each gets ``free * random()``, highest first). ``random``
        returns floats in [0, 1); pass ``random.Random(...).random``."""
        free_by_peer: dict[int, int] = {}
        last = len(self.entries) - 1
        for index, entry in enumerate(self.entries):
            if entry.token >= end:
                break
            # As Go: the last entry is never skipped for ending before `start`.
            if index < last and self.entries[index + 1].token <= start:
                continue
            free = self.free(index)
            if free and entry.peer != self.peer:
                free_by_peer[entry.peer] = free_by_peer.get(entry.peer, 0) + free
        weighted = [(free * random(), peer) for peer, free in sorted(free_by_peer.items())]
        weighted.sort(key=lambda pair: -pair[0])
        return [peer for _, peer in weighted]

    def pick_peer_for_transfer(self, is_valid: Callable[[int], bool]) -> int | None:
        """The first other owner, in token order, that ``is_valid`` accepts."""
        for entry in self.entries:
            if entry.peer != self.peer and is_valid(entry.peer):
                return entry.peer
        return None

    # ---- changing ------------------------------------------------------------------

    def claim_for_peers(self, peers: Sequence[int]) -> Ring:
        """The first ring: the whole range shared among ``peers`` in the order given (the
        caller sorts and de-duplicates them, as Go's allocator does).

        The range is halved, the lower half going to the first ``len // 2`` peers and the
        upper half to the rest, until one peer or one address is left; so on a power-of-
        two range every share is an aligned block. Halving an odd stretch leaves its
        middle address inside the lower half's last entry without counting it as free,
        and a stretch of one address goes to the first of its peers (Go does both).
        """
        if self.entries:
            raise ValueError("claim_for_peers needs an empty ring")
        if not peers:
            raise ValueError("claim_for_peers needs at least one peer")
        shares: list[Entry] = []
        self._share(self.start, self.end, list(peers), shares)
        return replace(self, entries=tuple(shares), seeds=tuple(peers))

    def _share(self, low: int, high: int, peers: list[int], into: list[Entry]) -> None:
        size = high - low
        if size == 0:
            return
        if size == 1 or len(peers) == 1:
            into.append(Entry(low, peers[0], 0, size))
            return
        half_peers = len(peers) // 2
        self._share(low, low + size // 2, peers[:half_peers], into)
        self._share(low + size // 2 + size % 2, high, peers[half_peers:], into)

    def grant_range_to_host(self, start: int, end: int, peer: int) -> Ring:
        """Give ``[start, end)``, which we own, to ``peer``; adds tokens at ``start`` and
        ``end`` where there are none.

        As Go: the given entries' versions are bumped and their free counts cut to the
        part given; new tokens start at version 0; the entry we keep before ``start`` is
        bumped and reported wholly free up to ``start`` (the next free report corrects it).
        """
        if not (self.start <= start < end <= self.end):
            raise ValueError(f"cannot grant [{start}, {end}) of the ring {self.range}")
        if not self.entries:
            raise ValueError("cannot grant from an empty ring")
        circle, entries = self._circle, self.entries
        before = covering_index(entries, start)
        inside = range(bisect.bisect_right(entries, start, key=lambda e: e.token),
                       bisect.bisect_left(entries, end, key=lambda e: e.token))
        if any(entries[i].peer != self.peer for i in (before, *inside)):
            raise ValueError(f"cannot grant [{start}, {end}): not all of it is ours")

        by_token = {entry.token: entry for entry in entries}
        start_free = min(circle.distance(start, next_token(entries, before)), end - start)
        previous = entries[before]
        if previous.token == start:
            by_token[start] = Entry(start, peer, bump(previous.version), start_free)
        else:
            by_token[start] = Entry(start, peer, 0, start_free)
            kept_free = circle.distance(previous.token, start)
            by_token[previous.token] = Entry(previous.token, self.peer,
                                             bump(previous.version), kept_free)
        for i in inside:
            entry = entries[i]
            by_token[entry.token] = Entry(entry.token, peer, bump(entry.version),
                                          min(entry.free, end - entry.token))
        end_token = self.start if end == self.end else end
        if end_token not in by_token:
            later = sorted(by_token)
            after = later[bisect.bisect_right(later, end_token) % len(later)]
            by_token[end_token] = Entry(end_token, self.peer, 0,
                                        circle.distance(end_token, after))
        return replace(self, entries=tuple(by_token[t] for t in sorted(by_token)))

    def report_free(self, free: Mapping[int, int]) -> Ring:
        """Record our free counts, keyed by the start of each of our owned ranges (as
        :meth:`owned_ranges` gives them); each entry that changes gets a new version."""
        if not self.entries:
            raise ValueError("cannot report free space on an empty ring")
        counts = dict(free)
        first, last = self.entries[0], self.entries[-1]
        if self.start in counts and first.token != self.start:
            # owned_ranges split the wrapping last entry in two; put it back together.
            counts[last.token] = counts.get(last.token, 0) + counts.pop(self.start)
        entries = list(self.entries)
        for token, count in counts.items():
            index = index_of(entries, token)
            if index is None or entries[index].peer != self.peer:
                raise ValueError(f"free space reported for {token}, which is not our entry")
            if not 0 <= count <= span_size(self._circle, entries, index):
                raise ValueError(f"free count {count} reported for {token} exceeds its range")
            entry = entries[index]
            if entry.free != count:
                entries[index] = Entry(token, entry.peer, bump(entry.version), count)
        return replace(self, entries=tuple(entries))

    def transfer(self, from_peer: int, to_peer: int,
                 free: int | None = None) -> tuple[Ring, list[Range]]:
        """Every entry of ``from_peer`` given to ``to_peer`` at version + 100 (``rmpeer``
        passes us as ``to_peer``; a departing peer passes its heir). The moved entries
        keep their free counts, or report ``free`` when given. Also returns the ranges
        moved, as :meth:`owned_ranges` would list them."""
        moved = self.owned_ranges(from_peer)
        entries = tuple(
            Entry(e.token, to_peer, bump(e.version, TRANSFER_VERSION_STEP),
                  e.free if free is None else free)
            if e.peer == from_peer else e
            for e in self.entries)
        return replace(self, entries=entries), moved

    def merge(self, theirs: Ring, in_use: InUse) -> MergeResult:
        """Our ring with ``theirs`` merged in (see :mod:`router.ipam.ring_merge`).

        ``in_use(r)`` says whether we hold allocations in ``r``; such ranges of ours stay
        ours. Raises :class:`RingError` for a ring over another range or seeded by other
        peers: nothing can be merged from those.
        """
        if (theirs.start, theirs.end) != (self.start, self.end):
            received, ours = theirs.range.as_cidr_string(), self.range.as_cidr_string()
            raise RingError(f"Incompatible IP allocation ranges (received: {received}, "
                            f"ours: {ours})")
        if theirs.seeds and self.seeds and theirs.seeds != self.seeds:
            raise RingError(f"IP allocation was seeded by different peers (received: "
                            f"{_names(theirs.seeds)}, ours: {_names(self.seeds)})")
        joined = join(self.entries, theirs.entries)
        entries, conflicts = protect(self._circle, self.peer, self.entries, theirs.entries,
                                     joined, in_use)
        merged = replace(self, entries=entries, seeds=self.seeds or theirs.seeds)
        return MergeResult(merged, conflicts, changed=merged != self)

    # ---- wire form -----------------------------------------------------------------

    def to_message(self) -> messages.Ring:
        """The gob schema's value, free counts clamped to each entry's stretch."""
        sent: list[Entry] = []
        for index, entry in enumerate(self.entries):
            free = self.free(index)
            sent.append(entry if entry.free == free else replace(entry, free=free))
        return messages.Ring(self.start, self.end, self.peer, tuple(sent), self.seeds)

    @classmethod
    def from_message(cls, message: messages.Ring) -> Ring:
        """A received ring; :class:`RingError` when it is malformed (Go's checks)."""
        return cls(message.start, message.end, message.peer, message.entries, message.seeds)


def _names(peers: Sequence[int]) -> str:
    return "[" + " ".join(peer_text(p) for p in peers) + "]"
