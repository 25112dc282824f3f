"""Peers, addresses and ring builders shared by the ring tests (the values of Go's
``ring_test.go``)."""

from __future__ import annotations

from router.ipam.address import Range, parse_ip
from router.ipam.messages import Entry
from router.ipam.ring import Ring
from router.ipam.ring_entries import Circle, span, span_size
from router.ipam.ring_merge import InUse
from router.mesh.names import PeerName

P1 = PeerName.parse("01:00:00:00:02:00")
P2 = PeerName.parse("02:00:00:00:02:00")
P3 = PeerName.parse("03:00:00:00:02:00")
START, END = parse_ip("10.0.0.0"), parse_ip("10.0.1.0")
DOT10, DOT245, DOT250 = parse_ip("10.0.0.10"), parse_ip("10.0.0.245"), parse_ip("10.0.0.250")
MIDDLE = parse_ip("10.0.0.128")


def E(token: int, peer: int, version: int = 0, free: int = 0) -> Entry:
    return Entry(token, peer, version, free)


def ring(peer: int, *entries: Entry, start: int = START, end: int = END) -> Ring:
    return Ring(start, end, peer, entries)


def claim_all(peer: int) -> Ring:
    return ring(peer).claim_for_peers([peer])


def never(r: Range) -> bool:
    return False


def allocations_of(ours: Ring) -> InUse:
    """In use, as Go's ring tests decide it: the range touches an entry of ours that
    reports fewer free addresses than it covers."""
    circle = Circle(ours.start, ours.end)
    used = [part for index, entry in enumerate(ours.entries)
            if entry.peer == ours.peer and entry.free < span_size(circle, ours.entries, index)
            for part in span(circle, ours.entries, index)]
    return lambda r: any(u.overlaps(r) for u in used)
