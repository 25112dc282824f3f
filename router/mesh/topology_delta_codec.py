"""Bytes for the incremental topology messages (Python peers only).

The payload of a gossip message on :data:`~router.mesh.topology_delta.INCREMENTAL_TOPOLOGY_CHANNEL`.
Go peers never receive it, so it is free of gob; it is compact and strict::

    message  = kind:u8 body               kind 1 = IncrementalUpdate, 2 = FullSummaryRequest,
                                          3 = TopologyDigest, 4 = SummaryRequest
    update   = FORMAT:u8 flags:u8 count:uv item*   FORMAT is 1; flags bit 0: sent to every
                                          neighbour of the sender
    item     = kind:u8 (summary | delta)   kind: bit 0 delta (else summary), bit 1 pass on
    summary  = name:6 uid:8 short_id:2 has_short_id:u8 version:uv nickname:str
               count:uv connection*
    delta    = name:6 base_fingerprint:8 uid:8 short_id:2 has_short_id:u8
               base_version:uv version:uv nickname:str count:uv connection*
               count:uv removed_name:6*
    connection = remote:6 flags:u8 addr:str   (bit 0 outbound, bit 1 established)
    request  = count:uv name:6* count:uv (name:6 fingerprint:8)*   (kinds 2 and 4: the
                                           names, then the bases held of some of them)
    digest   = count:uv entry*
    entry    = name:6 uid:8 version:8 has_short_id:u8 fingerprint:8   (fixed size: a
                                          digest names every peer, read in one pass)
    str      = length:uv UTF-8 bytes           uv = unsigned LEB128, at most 64 bits
    Numbers of fixed size are big-endian: what every item has is read with one
    ``struct`` call (a Python peer reads a hundred of these a join).

Design: every length is checked against what is left before anything is sliced,
flags and booleans must be 0/1 (or the two flag bits), nothing may trail, and any
violation raises :class:`~router.mesh.summary.TopologyError` naming the cause.
"""

from __future__ import annotations

import struct

from router.mesh.names import NAME_SIZE, PeerName
from router.mesh.summary import UINT64_MAX, ConnectionSummary, PeerSummary, TopologyError
from router.mesh.topology_delta import (
    DigestEntry,
    FullSummaryRequest,
    IncrementalUpdate,
    PeerDelta,
    SummaryRequest,
    TopologyDigest,
)

Message = IncrementalUpdate | FullSummaryRequest | TopologyDigest | SummaryRequest

_KIND_UPDATE = 1
_KIND_REQUEST = 2
_KIND_DIGEST = 3
_KIND_PULL = 4
_FORMAT = 1
_DIGEST_ENTRY = struct.Struct(">HIQQBQ")
_SUMMARY_HEAD = struct.Struct(">HIQHB")
"""Name (high 16 bits, low 32), UID, ShortID, HasShortID (Versions are small: varints)."""
_DELTA_HEAD = struct.Struct(">HIQQHB")
"""Name, base fingerprint, UID, ShortID, HasShortID."""
_CONNECTION_HEAD = struct.Struct(">HIB")
"""Remote (high 16 bits, low 32), flags."""
"""A digest entry: the name's high 16 and low 32 bits, UID, Version, HasShortID,
fingerprint."""
_ITEM_DELTA = 1
_ITEM_PASS_ON = 2


def encode_message(message: Message) -> bytes:
    out = bytearray()
    if isinstance(message, TopologyDigest):
        out.append(_KIND_DIGEST)
        _uvarint(out, len(message.entries))
        for entry in message.entries:
            out += _DIGEST_ENTRY.pack(entry.name >> 32, entry.name & 0xFFFFFFFF, entry.uid,
                                      entry.version, entry.has_short_id, entry.fingerprint)
    elif isinstance(message, IncrementalUpdate):
        out += bytes([_KIND_UPDATE, _FORMAT, message.to_all])
        _uvarint(out, len(message.items))
        for item in message.items:
            flags = _ITEM_PASS_ON if item.name in message.pass_on else 0
            if isinstance(item, PeerSummary):
                out.append(flags)
                _summary(out, item)
            else:
                out.append(flags | _ITEM_DELTA)
                _delta(out, item)
    else:
        out.append(_KIND_REQUEST if isinstance(message, FullSummaryRequest) else _KIND_PULL)
        _uvarint(out, len(message.names))
        for name in sorted(message.names):
            out += name.to_bytes6()
        _uvarint(out, len(message.held))
        for name, fingerprint in message.held:
            out += name.to_bytes6()
            out += fingerprint.to_bytes(8, "big")
    return bytes(out)


def decode_message(data: bytes) -> Message:
    reader = _Reader(data)
    kind = reader.byte("message kind")
    message: Message
    if kind == _KIND_UPDATE:
        if reader.byte("format") != _FORMAT:
            raise TopologyError("incremental update: unknown format")
        flags = reader.byte("update flags")
        if flags > 1:
            raise TopologyError(f"incremental update: unknown flags {flags:#x}")
        count = reader.count("item count", 1 + NAME_SIZE)
        items: list[PeerSummary | PeerDelta] = []
        pass_on: list[PeerName] = []
        for _ in range(count):
            kind = reader.byte("item kind")
            if kind > _ITEM_DELTA | _ITEM_PASS_ON:
                raise TopologyError(f"incremental topology: unknown item kind {kind}")
            item = reader.delta() if kind & _ITEM_DELTA else reader.summary()
            items.append(item)
            if kind & _ITEM_PASS_ON:
                pass_on.append(item.name)
        message = IncrementalUpdate(tuple(items), frozenset(pass_on), flags == 1)
    elif kind in (_KIND_REQUEST, _KIND_PULL):
        count = reader.count("name count", NAME_SIZE)
        names = frozenset(reader.name() for _ in range(count))
        held = tuple((reader.name(), int.from_bytes(reader.take(8, "held fingerprint"), "big"))
                     for _ in range(reader.count("held count", NAME_SIZE + 8)))
        message = (FullSummaryRequest(names, held) if kind == _KIND_REQUEST
                   else SummaryRequest(names, held))
    elif kind == _KIND_DIGEST:
        count = reader.count("digest entry count", _DIGEST_ENTRY.size)
        message = TopologyDigest(reader.digest_entries(count))
    else:
        raise TopologyError(f"incremental topology: unknown message kind {kind}")
    if not reader.at_end():
        raise TopologyError("incremental topology: trailing bytes")
    return message


def _uvarint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)


def _text(out: bytearray, text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    _uvarint(out, len(data))
    out += data


def _connections(out: bytearray, connections: tuple[ConnectionSummary, ...]) -> None:
    _uvarint(out, len(connections))
    for conn in connections:
        name = conn.remote
        out += _CONNECTION_HEAD.pack(name >> 32, name & 0xFFFFFFFF,
                                     conn.outbound | conn.established << 1)
        _text(out, conn.remote_tcp_addr)


def _summary(out: bytearray, summary: PeerSummary) -> None:
    name = summary.name
    out += _SUMMARY_HEAD.pack(name >> 32, name & 0xFFFFFFFF, summary.uid, summary.short_id,
                              summary.has_short_id)
    _uvarint(out, summary.version)
    _text(out, summary.nickname)
    _connections(out, summary.connections)


def _delta(out: bytearray, delta: PeerDelta) -> None:
    name = delta.name
    out += _DELTA_HEAD.pack(name >> 32, name & 0xFFFFFFFF, delta.base_fingerprint, delta.uid,
                            delta.short_id, delta.has_short_id)
    _uvarint(out, delta.base_version)
    _uvarint(out, delta.version)
    _text(out, delta.nickname)
    _connections(out, delta.added)
    _uvarint(out, len(delta.removed))
    for removed in delta.removed:
        out += removed.to_bytes6()


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def at_end(self) -> bool:
        return self._at == len(self._data)

    def take(self, size: int, what: str) -> bytes:
        if size > len(self._data) - self._at:
            raise TopologyError(f"incremental topology: truncated {what}")
        chunk = self._data[self._at:self._at + size]
        self._at += size
        return chunk

    def byte(self, what: str) -> int:
        at = self._at
        if at >= len(self._data):
            raise TopologyError(f"incremental topology: truncated {what}")
        self._at = at + 1
        return self._data[at]

    def uvarint(self, what: str) -> int:
        at = self._at
        if at < len(self._data) and self._data[at] < 0x80:  # one byte: most of them
            self._at = at + 1
            return self._data[at]
        value = shift = 0
        while True:
            byte = self.byte(what)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 63:
                raise TopologyError(f"incremental topology: {what} varint too long")
        if value > UINT64_MAX:
            raise TopologyError(f"incremental topology: {what} exceeds 64 bits")
        return value

    def count(self, what: str, min_item_size: int) -> int:
        value = self.uvarint(what)
        if value * min_item_size > len(self._data) - self._at:
            raise TopologyError(f"incremental topology: {what} {value} exceeds the message")
        return value

    def text(self, what: str) -> str:
        raw = self.take(self.count(f"{what} length", 1), what)
        try:
            return raw.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as err:
            raise TopologyError(f"incremental topology: {what} is not UTF-8") from err

    def name(self) -> PeerName:
        return PeerName.from_bytes6(self.take(NAME_SIZE, "peer name"))

    def fixed(self, layout: struct.Struct, what: str) -> tuple[int, ...]:
        at = self._at
        if layout.size > len(self._data) - at:
            raise TopologyError(f"incremental topology: truncated {what}")
        self._at = at + layout.size
        return layout.unpack_from(self._data, at)

    def connections(self) -> tuple[ConnectionSummary, ...]:
        conns = []
        for _ in range(self.count("connection count", _CONNECTION_HEAD.size + 1)):
            high, low, flags = self.fixed(_CONNECTION_HEAD, "connection")
            if flags > 3:
                raise TopologyError(f"incremental topology: connection flags {flags:#x}")
            conns.append(ConnectionSummary(PeerName(high << 32 | low), self.text("remote address"),
                                           bool(flags & 1), bool(flags & 2)))
        return tuple(conns)

    def summary(self) -> PeerSummary:
        high, low, uid, short_id, has_short_id = self.fixed(_SUMMARY_HEAD, "summary")
        version = self.uvarint("Version")
        return PeerSummary(PeerName(high << 32 | low), self.text("nickname"), uid, version,
                           short_id, _flag(has_short_id, "HasShortID"), self.connections())

    def delta(self) -> PeerDelta:
        high, low, base_fingerprint, uid, short_id, has_short_id = self.fixed(_DELTA_HEAD,
                                                                              "delta")
        base_version, version = self.uvarint("base Version"), self.uvarint("Version")
        nickname = self.text("nickname")
        added = self.connections()
        removed = tuple(self.name() for _ in range(self.count("removed count", NAME_SIZE)))
        return PeerDelta(PeerName(high << 32 | low), base_version, base_fingerprint, nickname,
                         uid, version, short_id, _flag(has_short_id, "HasShortID"), added,
                         removed)

    def digest_entries(self, count: int) -> tuple[DigestEntry, ...]:
        size = count * _DIGEST_ENTRY.size
        chunk = self.take(size, "digest entries")
        entries = []
        for high, low, uid, version, has_short_id, fingerprint in _DIGEST_ENTRY.iter_unpack(
                chunk):
            entries.append(DigestEntry(PeerName(high << 32 | low), uid, version,
                                       _flag(has_short_id, "HasShortID"), fingerprint))
        return tuple(entries)


def _flag(value: int, what: str) -> bool:
    if value > 1:
        raise TopologyError(f"incremental topology: {what} must be 0 or 1, got {value}")
    return value == 1
