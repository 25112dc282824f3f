"""Peer and connection summaries: what topology gossip says about one peer.

Background (``peers.go``, ``peer.go``): every topology update is a sequence of
(peer summary, connection list) pairs. A peer summary carries the peer's name,
nickname, ``UID`` (random 64 bits per process start, telling incarnations apart),
``Version`` (64 bits, bumped by the peer on every change to its own connections
or short ID), ``ShortID`` (12 bits in practice, a ``uint16`` on the wire) with
``HasShortID``. Each connection names the remote peer, the remote TCP address as
the peer sees it, whether the peer dialled it (outbound) and whether it is
established. A receiver keys a connection list by remote name; when a list names
the same remote twice the later entry wins.

Which summary wins when two describe the same peer (``applyDecodedUpdate``): the
higher Version; on equal Versions the higher UID; on equal UIDs as well, the one
with a ShortID, if the current one has none. Anything else keeps what we have.
:func:`supersedes` is that order.

Design: frozen values; range checks happen at construction, so a decoded update
with, say, a 65-bit UID is refused with :class:`TopologyError` before it reaches
the peer table. Connection lists keep their wire order (a codec round trip is
exact); :meth:`PeerSummary.connections_by_remote` gives the receiver's view.
"""

from __future__ import annotations

import hashlib
import itertools
import operator
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from router.mesh.names import PeerName

UINT64_MAX = (1 << 64) - 1
UINT16_MAX = (1 << 16) - 1
SHORT_ID_BITS = 12
"""Short IDs a peer picks for itself have 12 bits (fastdp VXLAN VNIs)."""


class TopologyError(ValueError):
    """A topology value or update that breaks the rules (range, reference, base)."""


def _check_range(what: str, value: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise TopologyError(f"{what} out of range 0..{maximum}: {value!r}")


@dataclass(frozen=True, slots=True)
class ConnectionSummary:
    """One connection as a peer reports it."""

    remote: PeerName
    remote_tcp_addr: str
    outbound: bool
    established: bool
    _digest: int | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.remote, PeerName):
            raise TopologyError(f"connection remote is not a PeerName: {self.remote!r}")

    @property
    def digest(self) -> int:
        """64-bit BLAKE2b of the connection's content; computed once per object (a
        summary's new version shares the connections that did not change)."""
        if self._digest is None:
            data = b"".join((self.remote.to_bytes6(), *_text(self.remote_tcp_addr),
                             bytes((self.outbound | self.established << 1,))))
            object.__setattr__(self, "_digest", _hash64(data))
        assert self._digest is not None
        return self._digest


@dataclass(frozen=True, slots=True)
class PeerSummary:
    """What a topology update says about one peer: its header and its connections."""

    name: PeerName
    nickname: str
    uid: int
    version: int
    short_id: int
    has_short_id: bool
    connections: tuple[ConnectionSummary, ...] = field(default=())
    _fingerprint: int | None = field(default=None, init=False, repr=False, compare=False)
    _canonical: bool | None = field(default=None, init=False, repr=False, compare=False)
    _by_remote: dict[PeerName, ConnectionSummary] | None = field(
        default=None, init=False, repr=False, compare=False)
    """The connections by remote when they were built that way (a delta's result, see
    :func:`changed`): never changed, only copied out."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, PeerName):
            raise TopologyError(f"peer name is not a PeerName: {self.name!r}")
        _check_range("UID", self.uid, UINT64_MAX)
        _check_range("Version", self.version, UINT64_MAX)
        _check_range("ShortID", self.short_id, UINT16_MAX)
        if not isinstance(self.connections, tuple):
            raise TopologyError("connections must be a tuple")

    def connections_by_remote(self) -> dict[PeerName, ConnectionSummary]:
        """The connection list as a receiver stores it: by remote, the last entry wins.
        A fresh dict, the caller's to change."""
        if self._by_remote is not None:
            return dict(self._by_remote)  # a copy: a fifth of the cost of building it
        return dict(zip(map(_REMOTE, self.connections), self.connections, strict=True))

    @property
    def fingerprint(self) -> int:
        """64 bits naming the canonical content (header, and connections by remote): the
        header's BLAKE2b plus each connection's, modulo 2**64.  A sum, so that the new
        version of a summary with N connections costs N additions of digests its
        unchanged connections already hold, not N encodings.  Computed once per object,
        since summaries travel and are compared often."""
        if self._fingerprint is None:
            object.__setattr__(self, "_fingerprint", _fingerprint_of(self))
        assert self._fingerprint is not None
        return self._fingerprint

    @property
    def is_placeholder(self) -> bool:
        """A peer only known because another peer's connection names it."""
        return self.uid == 0 and self.version == 0 and not self.has_short_id


_REMOTE = operator.attrgetter("remote")


def _fingerprint_of(summary: PeerSummary) -> int:
    conns = summary.connections if canonical(summary) is summary else tuple(
        summary.connections_by_remote().values())
    return (_header_hash(summary, len(conns)) + sum(conn.digest for conn in conns)) & UINT64_MAX


def _header_hash(summary: PeerSummary, connections: int) -> int:
    return _hash64(b"".join((summary.name.to_bytes6(),
                             struct.pack(">QQHB", summary.uid, summary.version,
                                         summary.short_id, summary.has_short_id),
                             *_text(summary.nickname), struct.pack(">I", connections))))


def changed(base: PeerSummary, header: PeerSummary, removed: Iterable[PeerName],
            added: Iterable[ConnectionSummary]) -> PeerSummary:
    """``header`` with ``base``'s connections, less those to ``removed`` and with
    ``added`` put in (replacing any to the same remote), sorted by remote.  Its
    fingerprint comes from ``base``'s, corrected by the connections that changed
    (what a delta costs is the size of the delta, not of the summary)."""
    conns = base.connections_by_remote()
    total = base.fingerprint - _header_hash(base, len(conns))
    for remote in removed:
        gone = conns.pop(remote, None)
        if gone is not None:
            total -= gone.digest
    for conn in added:
        replaced = conns.get(conn.remote)
        if replaced is not None:
            total -= replaced.digest
        conns[conn.remote] = conn
        total += conn.digest
    result = with_connections(header, conns)
    object.__setattr__(result, "_fingerprint",
                       (total + _header_hash(result, len(conns))) & UINT64_MAX)
    object.__setattr__(result, "_by_remote", conns)  # for the table, and the next delta
    return result


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _text(text: str) -> tuple[bytes, bytes]:
    data = text.encode("utf-8", "surrogatepass")
    return struct.pack(">I", len(data)), data


def placeholder(name: PeerName) -> PeerSummary:
    """Go's ``newPeerPlaceholder``: name only, UID 0, Version 0, no short ID."""
    return PeerSummary(name=name, nickname="", uid=0, version=0, short_id=0, has_short_id=False)


class VersionedHeader(Protocol):
    """The fields the merge order looks at (a summary, or a table's entry)."""

    @property
    def version(self) -> int: ...
    @property
    def uid(self) -> int: ...
    @property
    def has_short_id(self) -> bool: ...


def supersedes(new: VersionedHeader, current: VersionedHeader) -> bool:
    """Whether ``new`` replaces ``current`` (same peer) under Go's merge order."""
    if new.version != current.version:
        return new.version > current.version
    if new.uid != current.uid:
        return new.uid > current.uid
    return new.has_short_id and not current.has_short_id


def canonical(summary: PeerSummary) -> PeerSummary:
    """The same summary with its connection list deduplicated and sorted by remote."""
    if summary._canonical is None:  # computed once per object, like the fingerprint
        object.__setattr__(summary, "_canonical", all(
            a.remote < b.remote for a, b in itertools.pairwise(summary.connections)))
    if summary._canonical:
        return summary  # already so (as the peer table hands summaries out)
    return with_connections(summary, summary.connections_by_remote())


def _replace_connections(summary: PeerSummary,
                         connections: tuple[ConnectionSummary, ...]) -> PeerSummary:
    return PeerSummary(summary.name, summary.nickname, summary.uid, summary.version,
                       summary.short_id, summary.has_short_id, connections)


def with_connections(summary: PeerSummary,
                     connections: Mapping[PeerName, ConnectionSummary]) -> PeerSummary:
    """``summary``'s header with ``connections`` (sorted by remote) as its list."""
    result = _replace_connections(summary, tuple(sorted(connections.values(), key=_REMOTE)))
    object.__setattr__(result, "_canonical", True)  # one per remote, sorted
    return result
