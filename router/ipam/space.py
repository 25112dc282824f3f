"""One peer's own address space: which of the addresses it owns are allocated, which free.

Background (weave 2.8.1, ``ipam/space``): the ring says which ranges a peer owns; the
space tracks, inside them, what the peer has handed out. Allocation takes the lowest
free address of the subnet's host range (network and broadcast addresses excluded);
when another peer asks for space, the peer donates its largest free block aligned to
its own size, cut to its upper half when it is more than half the free space.

Changes from Go:

* Quarantine (issue #2744): taking the lowest free address hands a just-freed address
  to the next pod while the old pod may still be terminating with it. An address freed
  less than ``quarantine`` seconds ago is skipped while any other address is free; when
  only quarantined ones are left, the one freed longest ago is reused. Quarantined
  addresses are not donated either (the receiving peer would reuse them at once). The
  caller passes ``now`` (a monotonic clock); ``quarantine=0`` behaves as Go.
* :meth:`Space.set_owned` also removes free space the ring no longer gives us; Go only
  ever adds (``UpdateRanges``), so after a merge handed one of its free ranges to
  another peer, Go could allocate from it, or trip an assertion donating it.
"""

from __future__ import annotations

from collections.abc import Iterable

from router.ipam.address import CIDR, Range, format_ip
from router.ipam.rangeset import RangeSet


class SpaceError(ValueError):
    """Freeing an address that is not allocated here, or claiming one that is not free."""


class Space:
    """Allocated and free addresses of one peer. Mutable; owned by the allocator."""

    def __init__(self, quarantine: float = 0.0) -> None:
        if quarantine < 0:
            raise ValueError(f"quarantine must not be negative: {quarantine}")
        self.quarantine = quarantine
        self._allocated = RangeSet()
        self._free = RangeSet()
        self._freed_at: dict[int, float] = {}
        """Free addresses still in quarantine, with when they were freed."""

    # ---- what we own ---------------------------------------------------------------

    def add(self, r: Range) -> None:
        """Take ``r`` as ours; the parts not yet ours become free."""
        self._free = self._free.union(RangeSet.of([r]).difference(self._allocated))

    def set_owned(self, ranges: Iterable[Range]) -> list[Range]:
        """Own exactly ``ranges`` (what the ring says we own): new parts become free, free
        parts outside are dropped. Allocated addresses are never dropped: those outside
        ``ranges`` are returned (there should be none; the ring merge keeps them ours)."""
        owned = RangeSet.of(ranges)
        self._free = self._free.union(owned.difference(self._allocated)).intersection(owned)
        self._freed_at = {a: t for a, t in self._freed_at.items() if self._free.contains(a)}
        return list(self._allocated.difference(owned))

    def clear(self) -> None:
        """Forget everything (our ranges went to an heir)."""
        self._allocated, self._free, self._freed_at = RangeSet(), RangeSet(), {}

    def owned_ranges(self) -> list[Range]:
        """Everything we own, allocated or free, as coalesced ranges."""
        return list(self._allocated.union(self._free))

    # ---- counting ------------------------------------------------------------------

    def free_count(self, r: Range | None = None) -> int:
        return self._free.count(r)

    def allocated_count(self) -> int:
        """Addresses handed out (Go's ``NumOwnedAddresses``)."""
        return self._allocated.count()

    def is_allocated(self, addr: int) -> bool:
        return self._allocated.contains(addr)

    def allocated_in(self, r: Range) -> int:
        """How many addresses of ``r`` are allocated here."""
        return self._allocated.count(r)

    def in_use(self, r: Range) -> bool:
        """Whether any address of ``r`` is not free here: the ring merge's predicate.
        As Go's ``hasAllocations``, addresses we do not hold at all count as in use."""
        return self._free.count(r) != r.size

    # ---- changing ------------------------------------------------------------------

    def allocate(self, subnet: CIDR, now: float) -> int | None:
        """The lowest free host address of ``subnet`` out of quarantine (or else the
        longest-quarantined one), now allocated; None when none is free."""
        return self.allocate_in(subnet.host_range, now)

    def allocate_in(self, r: Range, now: float) -> int | None:
        """As :meth:`allocate`, over any range (Go's ``Allocate``)."""
        self._expire(now)
        chosen: int | None = None
        for chunk in self._free.within(r):
            addr = chunk.start
            while addr < chunk.end and addr in self._freed_at:
                addr += 1
            if addr < chunk.end:
                chosen = addr
                break
        if chosen is None:
            waiting = [(t, a) for a, t in self._freed_at.items() if r.contains(a)]
            if not waiting:
                return None
            chosen = min(waiting)[1]
        self._take(chosen)
        return chosen

    def claim(self, addr: int) -> None:
        """Allocate exactly ``addr``, which must be free here (quarantined or not)."""
        if not self._free.contains(addr):
            raise SpaceError(f"Address {format_ip(addr)} is not free to claim")
        self._take(addr)

    def free(self, addr: int, now: float) -> None:
        if not self._allocated.contains(addr):
            raise SpaceError(f"Address {format_ip(addr)} is not ours")
        one = Range(addr, addr + 1)
        self._allocated = self._allocated.subtract(one)
        self._free = self._free.add(one)
        if self.quarantine > 0:
            self._freed_at[addr] = now

    def donate(self, r: Range, now: float) -> Range | None:
        """Give away free space in ``r``: the largest aligned free block (the highest of
        equals, as Go), cut to its upper half when larger than half the donatable space.
        So never more than half, rounded up: the last free address can go. Quarantined
        addresses are not donatable. None when nothing is."""
        self._expire(now)
        donatable = self._free.difference(RangeSet.of(Range(a, a + 1) for a in self._freed_at))
        best: Range | None = None
        for chunk in donatable.within(r):
            block = chunk.biggest_cidr_block()
            if best is None or block.size >= best.size:
                best = block
        if best is None:
            return None
        if best.size > donatable.count(r) // 2:
            best = Range(best.start + best.size // 2, best.end)
        self._free = self._free.subtract(best)
        return best

    def _take(self, addr: int) -> None:
        one = Range(addr, addr + 1)
        self._free = self._free.subtract(one)
        self._allocated = self._allocated.add(one)
        self._freed_at.pop(addr, None)

    def _expire(self, now: float) -> None:
        if self._freed_at:
            self._freed_at = {a: t for a, t in self._freed_at.items()
                              if now - t < self.quarantine}

    def __repr__(self) -> str:
        allocated = ", ".join(map(str, self._allocated))
        free = ", ".join(map(str, self._free))
        return f"Space(allocated=[{allocated}], free=[{free}])"
