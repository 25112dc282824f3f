"""Geometry of a ring's entry list: which entry covers an address, and what each covers.

Background (weave's ``ipam/ring``): the allocation range ``[start, end)`` is treated as
a circle. Entries are sorted by token; an entry covers the addresses from its token
up to the next entry's token, and the last entry wraps round past ``end`` to the
first token. So when the first token is above ``start``, the last entry also covers
``[start, first token)``; a ring with one entry covers everything with it.

Both the ring's own operations and its merge need this, so it lives here, apart from
either. Everything takes the entries as a sorted tuple of distinct tokens (the ring
enforces that) and is pure.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from router.ipam.address import Range
from router.ipam.messages import Entry

MAX_UINT32: Final = 0xFFFFFFFF
"""Versions and free counts are ``uint32`` on the wire."""

Entries = tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class Circle:
    """The ring's address range, ``[start, end)``, read as a circle."""

    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start

    def distance(self, start: int, end: int) -> int:
        """Addresses from ``start`` going up (wrapping at ``end``) until ``end``; a full
        turn when they are equal, as a lone token covers the whole ring."""
        if end > start:
            return end - start
        return (self.end - start) + (end - self.start)

    def unwrap(self, start: int, end: int) -> list[Range]:
        """The addresses from ``start`` round to ``end`` as plain ranges, lowest first:
        two when the stretch passes ``end`` of the ring and comes back."""
        if end == self.start:
            return [Range(start, self.end)]
        if end <= start:
            return [Range(self.start, end), Range(start, self.end)]
        return [Range(start, end)]


def tokens(entries: Sequence[Entry]) -> list[int]:
    return [e.token for e in entries]


def covering_index(entries: Sequence[Entry], addr: int) -> int:
    """Index of the entry that covers ``addr``: the last token at or below it, or the
    last entry when every token is above it (it wraps round). ``entries`` is non-empty."""
    at = bisect.bisect_right(entries, addr, key=lambda e: e.token) - 1
    return at if at >= 0 else len(entries) - 1


def index_of(entries: Sequence[Entry], token: int) -> int | None:
    at = bisect.bisect_left(entries, token, key=lambda e: e.token)
    return at if at < len(entries) and entries[at].token == token else None


def next_token(entries: Sequence[Entry], index: int) -> int:
    """The token that ends entry ``index``'s stretch (the first token, for the last entry)."""
    return entries[(index + 1) % len(entries)].token


def span_size(circle: Circle, entries: Sequence[Entry], index: int) -> int:
    """How many addresses entry ``index`` covers."""
    return circle.distance(entries[index].token, next_token(entries, index))


def span(circle: Circle, entries: Sequence[Entry], index: int) -> list[Range]:
    """The addresses entry ``index`` covers, as one or two plain ranges."""
    return circle.unwrap(entries[index].token, next_token(entries, index))


def check(circle: Circle, entries: Sequence[Entry]) -> str | None:
    """What is wrong with an entry list, in the words of Go's ring errors, or None."""
    for before, after in itertools.pairwise(entries):
        if after.token < before.token:
            return "Ring not sorted"
        if after.token == before.token:
            return "Token appears twice in ring"
    if entries and not (circle.start <= entries[0].token and entries[-1].token < circle.end):
        return "Token is out of range"
    for e in entries:
        if not (0 <= e.version <= MAX_UINT32 and 0 <= e.free <= MAX_UINT32 and e.peer >= 0):
            return f"Entry at {e.token} has a field out of range"
    return None


def bump(version: int, by: int = 1) -> int:
    """A newer version. Go's ``uint32`` would wrap round to 0 after 4294967295, making a
    fresh update lose to everything; we stop at the top instead."""
    return min(version + by, MAX_UINT32)
