"""Addresses, ranges and CIDR blocks behave as weave's ``net/address``."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.ipam.address import (
    CIDR,
    MAX_ADDRESS,
    AddressError,
    Range,
    format_ip,
    merge_adjacent,
    parse_cidr,
    parse_ip,
)


def ip(text: str) -> int:
    return parse_ip(text)


@pytest.mark.parametrize(("start", "size", "expected"), [
    (0, 1, Range.of_size(0, 1)),
    (1, 2, Range.of_size(1, 1)),
    (1, 3, Range.of_size(2, 2)),
    (0, 0x7FFFFFFF, Range.of_size(0, 0x40000000)),
    (0xFFFFFFFE, 1, Range.of_size(0xFFFFFFFE, 1)),
], ids=["one", "odd-start", "middle", "huge", "top"])
def test_biggest_cidr_block_go_cases(start: int, size: int, expected: Range) -> None:
    assert Range.of_size(start, size).biggest_cidr_block() == expected


def test_cidrs_cover_a_range_greedily() -> None:
    r = Range(ip("10.0.0.1"), ip("10.0.0.9"))
    assert [str(c) for c in r.cidrs()] == ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/30",
                                           "10.0.0.8/32"]


def test_cidr_start_end_and_text() -> None:
    cidr = parse_cidr("10.0.0.0/24")
    assert (cidr.start, cidr.end) == (ip("10.0.0.0"), ip("10.0.1.0"))
    assert str(parse_cidr("10.2.3.0/24")) == "10.2.3.0/24"
    assert format_ip(ip("10.2.3.0")) == "10.2.3.0"


def test_a_cidr_keeps_its_unaligned_address() -> None:
    cidr = parse_cidr("10.32.0.5/12")
    assert cidr.addr == ip("10.32.0.5") and not cidr.is_subnet
    assert parse_cidr("10.32.0.0/12").is_subnet


def test_host_range_leaves_out_network_and_broadcast() -> None:
    assert parse_cidr("10.0.0.0/24").host_range == Range(ip("10.0.0.1"), ip("10.0.0.255"))
    assert parse_cidr("10.0.0.0/31").host_range.size == 0
    assert parse_cidr("10.0.0.0/32").host_range.size == 0


@pytest.mark.parametrize("text", ["10.0.0.0", "10.0.0.0/33", "10.0.0/8", "x/8", "10.0.0.0/-1",
                                  "::1/64"])
def test_bad_cidrs_are_refused(text: str) -> None:
    with pytest.raises(AddressError):
        parse_cidr(text)


def test_range_texts() -> None:
    assert str(Range(ip("10.0.0.0"), ip("10.0.1.0"))) == "10.0.0.0-10.0.0.255"
    assert Range(ip("10.32.0.0"), ip("10.48.0.0")).as_cidr_string() == "10.32.0.0/12"
    assert Range(ip("10.0.0.0"), ip("10.0.0.3")).as_cidr_string() == "10.0.0.0-10.0.0.2"


def test_merge_joins_touching_neighbours() -> None:
    a, b, c = (parse_cidr(t).range for t in ("10.0.0.0/25", "10.0.0.128/25", "10.0.2.0/24"))
    assert merge_adjacent([a, b, c]) == [parse_cidr("10.0.0.0/24").range, c]


def test_ranges_refuse_bad_bounds() -> None:
    with pytest.raises(AddressError):
        Range(5, 4)
    with pytest.raises(AddressError):
        Range(0, MAX_ADDRESS + 2)
    with pytest.raises(AddressError):
        CIDR(0, 33)


def aligned_blocks(r: Range) -> list[Range]:
    """Every block inside r aligned to its own size, by brute force."""
    found = []
    size = 1
    while size <= r.size:
        first = -(-r.start // size) * size
        found += [Range.of_size(s, size) for s in range(first, r.end - size + 1, size)]
        size *= 2
    return found


small_ranges = st.tuples(st.integers(0, 600), st.integers(1, 300)).map(
    lambda p: Range.of_size(*p))
any_ranges = st.tuples(st.integers(0, MAX_ADDRESS), st.integers(1, 1 << 31)).filter(
    lambda p: p[0] + p[1] <= MAX_ADDRESS + 1).map(lambda p: Range.of_size(*p))


@settings(max_examples=150, deadline=None)
@given(small_ranges)
def test_biggest_block_is_the_lowest_largest_aligned_block(r: Range) -> None:
    blocks = aligned_blocks(r)
    largest = max(b.size for b in blocks)
    assert r.biggest_cidr_block() == min(b for b in blocks if b.size == largest)


@settings(max_examples=150, deadline=None)
@given(any_ranges)
def test_biggest_block_properties_as_go_checks_them(r: Range) -> None:
    block = r.biggest_cidr_block()
    assert r.start <= block.start and block.end <= r.end
    assert block.size & (block.size - 1) == 0 and block.start % block.size == 0
    assert block.size > r.size // 4


@settings(max_examples=150, deadline=None)
@given(any_ranges)
def test_cidrs_tile_the_range_with_aligned_blocks(r: Range) -> None:
    blocks = r.cidrs()
    assert blocks[0].start == r.start and blocks[-1].end == r.end
    for before, after in itertools.pairwise(blocks):
        assert before.end == after.start
    assert all(b.is_subnet for b in blocks)
