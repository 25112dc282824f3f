"""A set of addresses held as sorted, disjoint, coalesced ranges.

A peer's space is a few large ranges with holes punched in them; listing ranges
rather than addresses keeps it small however many addresses a /12 holds. The set is
an immutable value: a sorted tuple of boundaries, where even positions start a range
and odd positions end one (``(10, 20, 30, 40)`` is ``[10, 20) ∪ [30, 40)``), so
membership is one binary search and union or difference with a range is a splice.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from router.ipam.address import Range


@dataclass(frozen=True, slots=True)
class RangeSet:
    bounds: tuple[int, ...] = ()

    @classmethod
    def of(cls, ranges: Iterable[Range]) -> RangeSet:
        result = cls()
        for r in ranges:
            result = result.add(r)
        return result

    def __bool__(self) -> bool:
        return bool(self.bounds)

    def add(self, r: Range) -> RangeSet:
        """The union with ``r``."""
        if r.start >= r.end:
            return self
        low = bisect.bisect_left(self.bounds, r.start)
        high = bisect.bisect_right(self.bounds, r.end)
        # A new boundary is needed only where it falls outside every range (an even count
        # of boundaries below it); inside or touching a range, that range extends.
        middle = (r.start,) * (low % 2 == 0) + (r.end,) * (high % 2 == 0)
        return RangeSet(self.bounds[:low] + middle + self.bounds[high:])

    def subtract(self, r: Range) -> RangeSet:
        """The difference with ``r``."""
        if r.start >= r.end:
            return self
        low = bisect.bisect_left(self.bounds, r.start)
        high = bisect.bisect_right(self.bounds, r.end)
        # Cutting inside a range (an odd count of boundaries below) leaves a new edge.
        middle = (r.start,) * (low % 2 == 1) + (r.end,) * (high % 2 == 1)
        return RangeSet(self.bounds[:low] + middle + self.bounds[high:])

    def union(self, other: RangeSet) -> RangeSet:
        result = self
        for r in other:
            result = result.add(r)
        return result

    def difference(self, other: RangeSet) -> RangeSet:
        result = self
        for r in other:
            result = result.subtract(r)
        return result

    def intersection(self, other: RangeSet) -> RangeSet:
        return RangeSet.of(part for r in other for part in self.within(r))

    def contains(self, addr: int) -> bool:
        return bisect.bisect_right(self.bounds, addr) % 2 == 1

    def __iter__(self) -> Iterator[Range]:
        for at in range(0, len(self.bounds), 2):
            yield Range(self.bounds[at], self.bounds[at + 1])

    def within(self, r: Range) -> Iterator[Range]:
        """The set's ranges cut to ``r``, lowest first."""
        first = max(bisect.bisect_right(self.bounds, r.start) - 1, 0) & ~1
        for at in range(first, len(self.bounds), 2):
            start, end = self.bounds[at], self.bounds[at + 1]
            if start >= r.end:
                break
            if end > r.start:
                yield Range(max(start, r.start), min(end, r.end))

    def count(self, r: Range | None = None) -> int:
        """Addresses in the set (within ``r``, when given)."""
        parts = self if r is None else self.within(r)
        return sum(part.size for part in parts)
