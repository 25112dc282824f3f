"""IPv4 addresses as integers, half-open address ranges and CIDR blocks (weave's ``net/address``).

Background: weave's IPAM does all its arithmetic on 32-bit unsigned integers. A
``Range`` is ``[start, end)``; a ``CIDR`` is an address and a prefix length, where the
address need not be aligned (``10.32.0.5/12`` keeps its ``.5``; :attr:`CIDR.is_subnet`
says whether it is aligned). The texts match Go's: a range prints as its first and
last address (``10.0.0.0-10.0.0.255``), a CIDR as ``addr/len``.

Two splitting rules matter for wire behaviour and are reproduced exactly:
:meth:`Range.biggest_cidr_block` (what a peer donates: the largest block aligned to
its own size, the lowest such block when there are several) and :meth:`Range.cidrs`
(the greedy cover of a range by aligned blocks, lowest first).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

ADDRESS_BITS: Final = 32
MAX_ADDRESS: Final = (1 << ADDRESS_BITS) - 1
"""The highest IPv4 address; a range may end one past it (``end == 1 << 32``)."""


class AddressError(ValueError):
    """Text that is not an IPv4 address or CIDR, or a range that is not one."""


def parse_ip(text: str) -> int:
    """The integer form of a dotted-quad IPv4 address."""
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError as err:
        raise AddressError(f"invalid IP Address: {text}") from err


def format_ip(addr: int) -> str:
    """Dotted-quad text of an address (Go's ``Address.String``)."""
    return str(ipaddress.IPv4Address(addr))


@dataclass(frozen=True, slots=True, order=True)
class Range:
    """``address.Range``: the addresses ``start <= a < end``. Empty when ``start == end``."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end <= MAX_ADDRESS + 1:
            raise AddressError(f"not an address range: [{self.start}, {self.end})")

    @classmethod
    def of_size(cls, start: int, size: int) -> Range:
        return cls(start, start + size)

    @property
    def size(self) -> int:
        return self.end - self.start

    def contains(self, addr: int) -> bool:
        return self.start <= addr < self.end

    def overlaps(self, other: Range) -> bool:
        return self.start < other.end and other.start < self.end

    def intersection(self, other: Range) -> Range | None:
        """The common part, or None when the ranges do not overlap."""
        start, end = max(self.start, other.start), min(self.end, other.end)
        return Range(start, end) if start < end else None

    def __str__(self) -> str:
        return f"{format_ip(self.start)}-{format_ip(self.end - 1)}"

    def as_cidr_string(self) -> str:
        """``addr/len`` when the size is a power of two (alignment is not checked, as in
        Go), the ``first-last`` text otherwise."""
        size = self.size
        if size == 0 or size & (size - 1) == 0:
            # Go's loop never runs for sizes 0 and 1: both print as /32.
            prefix_len = ADDRESS_BITS - max(size, 1).bit_length() + 1
            return f"{format_ip(self.start)}/{prefix_len}"
        return str(self)

    def biggest_cidr_block(self) -> Range:
        """The largest block inside this (non-empty) range that is aligned to its own
        size; of several such blocks, the lowest. This is the block a peer donates."""
        if self.size == 0:
            raise AddressError("an empty range holds no CIDR block")
        block = 1 << (self.size.bit_length() - 1)
        while True:
            first_aligned = -(-self.start // block) * block
            if first_aligned + block <= self.end:
                return Range.of_size(first_aligned, block)
            block //= 2

    def cidrs(self) -> list[CIDR]:
        """The aligned blocks that exactly cover this range, lowest first, each as large
        as its start's alignment and the remaining length allow."""
        blocks: list[CIDR] = []
        start = self.start
        while start < self.end:
            # Alignment of start: its lowest set bit (a start of 0 is aligned to anything).
            size = start & -start if start else 1 << ADDRESS_BITS
            while size > self.end - start:
                size //= 2
            blocks.append(CIDR(start, ADDRESS_BITS - size.bit_length() + 1))
            start += size
        return blocks


@dataclass(frozen=True, slots=True)
class CIDR:
    """``address.CIDR``: an address and a prefix length; the address may be unaligned."""

    addr: int
    prefix_len: int

    def __post_init__(self) -> None:
        if not 0 <= self.addr <= MAX_ADDRESS or not 0 <= self.prefix_len <= ADDRESS_BITS:
            raise AddressError(f"not a CIDR: {self.addr}/{self.prefix_len}")

    @property
    def size(self) -> int:
        return 1 << (ADDRESS_BITS - self.prefix_len)

    @property
    def start(self) -> int:
        return self.addr

    @property
    def end(self) -> int:
        return self.addr + self.size

    @property
    def range(self) -> Range:
        return Range(self.addr, min(self.end, MAX_ADDRESS + 1))

    @property
    def host_range(self) -> Range:
        """The range without its first (network) and last (broadcast) address, as RFC 1122
        asks and Go allocates. Empty for /31 and /32, which have no such addresses."""
        if self.size <= 2:
            return Range(self.addr, self.addr)
        return Range(self.addr + 1, self.end - 1)

    @property
    def is_subnet(self) -> bool:
        """True when the address is aligned to the prefix (``10.32.0.0/12``, not ``.5/12``)."""
        return self.addr % self.size == 0

    def __str__(self) -> str:
        return f"{format_ip(self.addr)}/{self.prefix_len}"


def parse_cidr(text: str) -> CIDR:
    """``addr/len``, keeping the address as written (Go's ``ParseCIDR``)."""
    addr_text, slash, len_text = text.partition("/")
    if not slash or not len_text.isdigit() or len(len_text) > 2 or int(len_text) > ADDRESS_BITS:
        raise AddressError(f"invalid CIDR address: {text}")
    try:
        addr = parse_ip(addr_text)
    except AddressError as err:
        raise AddressError(f"invalid CIDR address: {text}") from err
    return CIDR(addr, int(len_text))


def merge_adjacent(ranges: Iterable[Range]) -> list[Range]:
    """Sorted ranges with each run of touching neighbours joined into one (Go's ``Merge``)."""
    merged: list[Range] = []
    for r in ranges:
        if merged and merged[-1].end == r.start:
            merged[-1] = Range(merged[-1].start, r.end)
        else:
            merged.append(r)
    return merged
