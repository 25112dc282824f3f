"""Which peer holds which short ID, and how collisions are resolved (``peers.go``).

Background: a peer picks a random 12-bit short ID at start (fastdp puts it in
VXLAN VNIs) and announces it in its summary. Several peers may announce the same
ID. The index keeps, per ID, a *principal* (the holder with the lowest name) and
the *others*. When an entry loses its last holder it is cleared but remembered,
so that reusing the ID later counts as an invalidation (fastdp drops the flows it
built for the old holder).

Two events matter to the table: the principal of some ID changes
(``short_ids_invalidated``), and we ourselves are pushed out of the principal slot
by a peer with a lower name (``reassign_local``): we then pick an ID nobody holds,
at random from an injected ``random.Random`` (ten tries, then a uniform pick among
the free ones, as ``chooseShortID`` does).

Go iterates a map when it adds the new peers of one update or removes the peers
of one garbage collection, so whether the principal slot *changed hands on the
way* can differ from run to run when two of those peers share an ID. We add in
descending and remove in ascending name order, the orders in which Go would
report the invalidation; a spurious invalidation only costs fastdp a cache refill.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from router.mesh.names import PeerName
from router.mesh.summary import SHORT_ID_BITS

_ID_SPACE = 1 << SHORT_ID_BITS
_UINT16_SPACE = 1 << 16
_RANDOM_TRIES = 10


@dataclass
class _Entry:
    principal: PeerName | None
    others: set[PeerName] = field(default_factory=set)


@dataclass
class ShortIdEvents:
    """What index changes the table must act on once an operation completes."""

    invalidated: bool = False
    reassign_local: bool = False


class ShortIdIndex:
    """Short ID → holders. Only the table mutates it; names are its peers' names."""

    def __init__(self, ourself: PeerName) -> None:
        self._ourself = ourself
        self._entries: dict[int, _Entry] = {}

    def principal(self, short_id: int) -> PeerName | None:
        """The peer that holds ``short_id`` (Go's ``FetchByShortID``), if any."""
        entry = self._entries.get(short_id)
        return entry.principal if entry else None

    def entries(self) -> dict[int, tuple[PeerName | None, frozenset[PeerName]]]:
        """Every ID ever held: (principal or None if cleared, the other holders)."""
        return {sid: (e.principal, frozenset(e.others)) for sid, e in self._entries.items()}

    def add(self, name: PeerName, short_id: int, events: ShortIdEvents) -> None:
        """Record that ``name`` holds ``short_id`` (``addByShortID``)."""
        entry = self._entries.get(short_id)
        if entry is None:
            self._entries[short_id] = _Entry(name)
        elif entry.principal is None:
            entry.principal = name
            events.invalidated = True
        elif name < entry.principal:
            if entry.principal == self._ourself:
                events.reassign_local = True
            entry.others.add(entry.principal)
            entry.principal = name
            events.invalidated = True
        else:
            entry.others.add(name)

    def add_all(self, holders: Iterable[tuple[PeerName, int]], events: ShortIdEvents) -> None:
        """Add several holders at once, highest name first (see the module notes)."""
        for name, short_id in sorted(holders, reverse=True):
            self.add(name, short_id, events)

    def remove(self, name: PeerName, short_id: int, events: ShortIdEvents) -> None:
        """Forget that ``name`` holds ``short_id`` (``deleteByShortID``)."""
        entry = self._entries.get(short_id)
        if entry is None:
            return
        if entry.principal != name:
            entry.others.discard(name)
        elif entry.others:
            entry.principal = min(entry.others)
            entry.others.remove(entry.principal)
            events.invalidated = True
        else:
            entry.principal = None

    def remove_all(self, holders: Iterable[tuple[PeerName, int]], events: ShortIdEvents) -> None:
        """Remove several holders at once, lowest name first (see the module notes)."""
        for name, short_id in sorted(holders):
            self.remove(name, short_id, events)

    def choose_free(self, rng: random.Random) -> int | None:
        """A short ID without a principal, or None if all 4096 are held."""
        for _ in range(_RANDOM_TRIES):
            candidate = rng.randrange(_ID_SPACE)
            if self.principal(candidate) is None:
                return candidate
        # Go counts every held entry, even IDs above 12 bits that a peer announced,
        # then walks upwards from 0 to the chosen free slot.
        held = {sid for sid, e in self._entries.items() if e.principal is not None}
        available = _ID_SPACE - len(held)
        if available <= 0:
            return None
        skip = rng.randrange(available)
        for candidate in range(_UINT16_SPACE):
            if candidate not in held:
                if skip == 0:
                    return candidate
                skip -= 1
        return None
