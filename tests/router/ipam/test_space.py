"""A peer's space: Go's space_test figures, the quarantine of freed addresses (#2744), and
generated checks against a plain set of addresses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.ipam.address import CIDR, Range, parse_cidr, parse_ip
from router.ipam.rangeset import RangeSet
from router.ipam.space import Space, SpaceError

T0 = 1000.0


def ip(text: str) -> int:
    return parse_ip(text)


def space_of(start: int, size: int, quarantine: float = 0.0) -> Space:
    space = Space(quarantine)
    space.add(Range.of_size(start, size))
    return space


WIDE = parse_cidr("10.0.0.0/8")
"""A subnet whose host range holds every address these tests own."""


def test_low_level_allocate_claim_free_donate() -> None:
    space = Space()
    assert space.free_count() == 0
    assert space.allocate(parse_cidr("0.0.0.0/22"), T0) is None

    space.add(Range.of_size(100, 100))
    assert space.free_count() == 100
    assert space.allocate(parse_cidr("0.0.0.0/22"), T0) == 100
    assert space.free_count() == 99
    space.claim(150)
    assert space.free_count() == 98
    space.free(100, T0)
    assert space.free_count() == 99
    with pytest.raises(SpaceError, match="not ours"):
        space.free(0, T0)
    with pytest.raises(SpaceError, match="not ours"):
        space.free(100, T0)
    assert space.donate(Range(0, 1000), T0) == Range.of_size(0xA0, 0x20)


def test_donate_when_addresses_are_scarce() -> None:
    space = Space()
    assert space.donate(Range(0, 1000), T0) is None
    space.add(Range(0, 3))
    space.claim(0)
    space.claim(2)
    assert space.donate(Range(0, 1000), T0) == Range.of_size(1, 1)
    assert space.donate(Range(0, 1000), T0) is None


def test_allocate_counts_and_frees() -> None:
    start = ip("10.0.3.4")
    space = space_of(start, 20)
    assert (space.free_count(), space.allocated_count()) == (20, 0)
    first = space.allocate(WIDE, T0)
    assert first == start and (space.free_count(), space.allocated_count()) == (19, 1)
    second = space.allocate(WIDE, T0)
    assert second is not None and second != first
    assert space.free_count(Range(start, ip("10.0.3.19"))) == 13
    assert space.free_count(Range(start, ip("10.0.9.19"))) == 18
    space.free(second, T0)
    for bad in (second, ip("10.0.3.19"), ip("10.0.9.19")):
        with pytest.raises(SpaceError):
            space.free(bad, T0)


def test_full_space_then_frees_shape_the_biggest_free_block() -> None:
    start, size = ip("10.0.3.16"), 16
    entire = Range.of_size(start, size)
    space = space_of(start, size)
    for _ in range(size):
        assert space.allocate(WIDE, T0) is not None
    assert space.allocate(WIDE, T0) is None
    assert space.donate(entire, T0) is None

    def donated_then_returned() -> Range | None:
        gift = space.donate(entire, T0)
        if gift is not None:
            space.add(gift)  # put it back: only which block is chosen matters here
        return gift

    space.free(ip("10.0.3.23"), T0)
    assert donated_then_returned() == Range.of_size(ip("10.0.3.23"), 1)
    space.free(ip("10.0.3.31"), T0)
    # Two single free addresses: the highest of equals, as Go.
    assert donated_then_returned() == Range.of_size(ip("10.0.3.31"), 1)
    for a in ("10.0.3.30", "10.0.3.29"):
        space.free(ip(a), T0)
    assert space.free_count() == 4
    assert donated_then_returned() == Range.of_size(ip("10.0.3.30"), 2)
    for a in ("10.0.3.24", "10.0.3.22", "10.0.3.21"):
        space.free(ip(a), T0)
    assert space.free_count() == 7
    # [21, 25) holds only an aligned pair (22, 23): the later pair of equals wins.
    assert donated_then_returned() == Range.of_size(ip("10.0.3.30"), 2)
    assert space.owned_ranges() == [entire]


def test_donate_simple_halves_then_gives_everything_up() -> None:
    start, size = ip("10.0.1.0"), 64
    space = space_of(start, size)
    gift = space.donate(Range.of_size(start, size), T0)
    assert gift == Range(ip("10.0.1.32"), ip("10.0.1.64"))
    assert space.free_count() == 32
    given_up = gift.size
    for _ in range(1000):
        gift = space.donate(Range.of_size(start, size), T0)
        if gift is None:
            break
        given_up += gift.size
    assert space.free_count() == 0 and given_up == size


def test_donate_hard() -> None:
    start, size = ip("10.0.1.0"), 48
    space = space_of(start, size)
    for _ in range(size):
        assert space.allocate(WIDE, T0) is not None
    for a in range(start, start + size - 1):
        space.free(a, T0)
    assert space.donate(Range.of_size(start, size), T0) == Range.of_size(ip("10.0.1.16"), 16)
    assert space.free_count() == 31
    assert space.allocated_count() == 1 and space.is_allocated(ip("10.0.1.47"))
    assert space.owned_ranges() == [Range(ip("10.0.1.0"), ip("10.0.1.16")),
                                    Range(ip("10.0.1.32"), ip("10.0.1.48"))]


def test_allocation_skips_network_and_broadcast() -> None:
    space = space_of(ip("10.0.0.0"), 256)
    subnet = parse_cidr("10.0.0.0/24")
    assert space.allocate(subnet, T0) == ip("10.0.0.1")
    for _ in range(253):
        space.allocate(subnet, T0)
    assert space.allocate(subnet, T0) is None and space.free_count() == 2


class TestQuarantine:
    subnet = parse_cidr("10.0.0.0/29")  # hosts .1 to .6

    def fresh(self) -> Space:
        return space_of(ip("10.0.0.0"), 8, quarantine=30.0)

    def test_a_just_freed_address_is_not_reused_while_others_are_free(self) -> None:
        space = self.fresh()
        first = space.allocate(self.subnet, T0)
        assert first == ip("10.0.0.1")
        space.free(first, T0)
        assert space.allocate(self.subnet, T0 + 1) == ip("10.0.0.2")
        assert space.allocate(self.subnet, T0 + 2) == ip("10.0.0.3")

    def test_after_the_quarantine_the_lowest_is_taken_again(self) -> None:
        space = self.fresh()
        first = space.allocate(self.subnet, T0)
        assert first is not None
        space.free(first, T0)
        assert space.allocate(self.subnet, T0 + 30) == first

    def test_when_only_quarantined_addresses_are_left_the_oldest_goes_first(self) -> None:
        space = self.fresh()
        taken = [space.allocate(self.subnet, T0) for _ in range(6)]
        assert None not in taken and space.allocate(self.subnet, T0) is None
        for offset, addr in ((3, ip("10.0.0.5")), (1, ip("10.0.0.2")), (2, ip("10.0.0.4"))):
            space.free(addr, T0 + offset)
        assert space.allocate(self.subnet, T0 + 5) == ip("10.0.0.2")
        assert space.allocate(self.subnet, T0 + 5) == ip("10.0.0.4")

    def test_quarantined_addresses_are_not_donated(self) -> None:
        space = self.fresh()
        for _ in range(6):
            space.allocate(self.subnet, T0)
        space.free(ip("10.0.0.4"), T0)
        space.free(ip("10.0.0.5"), T0)
        assert space.donate(Range.of_size(ip("10.0.0.0"), 8), T0 + 1) == \
            Range.of_size(ip("10.0.0.7"), 1)
        assert space.donate(Range.of_size(ip("10.0.0.0"), 8), T0 + 40) is not None

    def test_claiming_a_quarantined_address_is_allowed(self) -> None:
        space = self.fresh()
        first = space.allocate(self.subnet, T0)
        assert first is not None
        space.free(first, T0)
        space.claim(first)
        assert space.is_allocated(first)


def test_set_owned_adds_and_removes_free_space_but_keeps_allocations() -> None:
    space = space_of(ip("10.0.0.0"), 64)
    space.claim(ip("10.0.0.40"))
    left = space.set_owned([Range(ip("10.0.0.0"), ip("10.0.0.32")),
                            Range(ip("10.0.1.0"), ip("10.0.1.16"))])
    assert left == [Range.of_size(ip("10.0.0.40"), 1)]
    assert space.owned_ranges() == [Range(ip("10.0.0.0"), ip("10.0.0.32")),
                                    Range.of_size(ip("10.0.0.40"), 1),
                                    Range(ip("10.0.1.0"), ip("10.0.1.16"))]
    assert space.free_count() == 48


def test_in_use_is_anything_not_free_here() -> None:
    space = space_of(100, 10)
    assert not space.in_use(Range(100, 110))
    assert space.in_use(Range(95, 105))  # 95..99 are not ours at all
    space.claim(105)
    assert space.in_use(Range(104, 106)) and not space.in_use(Range(106, 110))


# ---- generated --------------------------------------------------------------------------

BASE = 1000
ranges = st.tuples(st.integers(0, 200), st.integers(0, 40)).map(
    lambda p: Range.of_size(BASE + p[0], p[1]))


def addresses_of(rangeset: RangeSet) -> set[int]:
    return {a for part in rangeset for a in range(part.start, part.end)}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), ranges), max_size=12), st.integers(BASE - 5, BASE + 250))
def test_rangeset_matches_a_set_of_addresses(ops: list[tuple[bool, Range]], probe: int) -> None:
    model: set[int] = set()
    rangeset = RangeSet()
    for adding, r in ops:
        rangeset = rangeset.add(r) if adding else rangeset.subtract(r)
        addresses = set(range(r.start, r.end))
        model = model | addresses if adding else model - addresses
    assert addresses_of(rangeset) == model
    bounds = rangeset.bounds
    assert list(bounds) == sorted(set(bounds))  # sorted, coalesced, no empty ranges
    assert rangeset.contains(probe) == (probe in model)
    window = Range(BASE + 50, BASE + 120)
    assert rangeset.count(window) == len([a for a in model if window.contains(a)])


@settings(max_examples=60, deadline=None)
@given(st.lists(ranges, max_size=6), st.lists(ranges, max_size=6))
def test_rangeset_algebra(left: list[Range], right: list[Range]) -> None:
    a, b = RangeSet.of(left), RangeSet.of(right)
    assert addresses_of(a.union(b)) == addresses_of(a) | addresses_of(b)
    assert addresses_of(a.intersection(b)) == addresses_of(a) & addresses_of(b)
    assert addresses_of(a.difference(b)) == addresses_of(a) - addresses_of(b)


space_ops = st.lists(st.tuples(st.sampled_from(["allocate", "free", "claim", "donate", "tick"]),
                               st.integers(0, 63)), max_size=60)


@settings(max_examples=60, deadline=None)
@given(space_ops, st.sampled_from([0.0, 5.0]))
def test_space_keeps_to_its_own_addresses(ops: list[tuple[str, int]], quarantine: float) -> None:
    """Allocation only within owned space, never twice; donation never more than half the
    donatable space (rounded up), and always free."""
    owned = {BASE + a for a in range(64) if a % 23 != 7}
    space = Space(quarantine)
    for a in sorted(owned):
        space.add(Range.of_size(a, 1))
    subnet = CIDR(BASE - 8, 25)  # host range covers everything
    allocated: set[int] = set()
    now = T0
    for op, arg in ops:
        addr = BASE + arg
        if op == "allocate":
            got = space.allocate(subnet, now)
            if got is None:
                assert not owned - allocated
            else:
                assert got in owned and got not in allocated
                allocated.add(got)
        elif op == "free" and addr in allocated:
            space.free(addr, now)
            allocated.discard(addr)
        elif op == "claim" and addr in owned - allocated:
            space.claim(addr)
            allocated.add(addr)
        elif op == "donate":
            before = space.free_count()
            gift = space.donate(Range(BASE, BASE + 64), now)
            if gift is not None:
                assert gift.size <= (before + 1) // 2
                gifted = set(range(gift.start, gift.end))
                assert gifted <= owned - allocated
                owned -= gifted
        else:
            now += 2
        assert space.allocated_count() == len(allocated)
        assert space.free_count() == len(owned - allocated)
