"""The gob-encoded messages of weave's mesh (weaveworks/mesh as vendored by weave 2.8.1).

Three things travel as gob between mesh peers:

* **features**: the handshake's first value, a Go ``map[string]string``
  (``PeerNameFlavour``, ``Name``, ``NickName``, ``ShortID``, ``UID``,
  ``ConnID``, ``Trusted``, ``Overlays`` ...), one value in its own stream.
* **gossip bodies** (after the protocol tag byte of a Gossip,
  GossipBroadcast or GossipUnicast message): ONE gob stream holding the channel
  name (``string``), the source peer name, for unicast the destination peer
  name, then the payload (``[]byte``). Peer names are ``PeerName``, a
  ``uint64`` in the default "mac" flavour, so plain gob ``uint`` singletons.
  A receiver decodes the destination before the payload and relays the whole
  body untouched when the destination is not itself.
* **topology updates** (the payload of the ``"topology"`` channel): ONE gob
  stream holding, for each peer, a ``peerSummary`` struct then that peer's
  ``[]connectionSummary``, until the stream ends. The stream's first summary
  defines both types; later peers reuse them.

Each schema below mirrors the Go type field for field (names, order, Go
types), so our streams are byte-identical to the Go weaver's (types numbered
from 65, as weave's Go 1.15 numbers a fresh process's types; pass a shared
:class:`~router.mesh.gob.TypeIds` to number as one long-lived process does).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from .gob import (
    BOOL,
    BYTES,
    STRING,
    UINT16,
    UINT64,
    Decoder,
    Encoder,
    MapOf,
    SliceOf,
    Struct,
    TypeIds,
    decode,
    encode,
)
from .gob.wire import BYTES_ID, STRING_ID, UINT_ID, DecodeFailure, put_uint, read_uint, zigzag

PEER_NAME = UINT64.named("mesh.PeerName")
"""``mesh.PeerName`` in the "mac" flavour: the 48-bit MAC as a uint64."""
PEER_UID = UINT64.named("mesh.PeerUID")
PEER_SHORT_ID = UINT16.named("mesh.PeerShortID")

FEATURES: MapOf[str, str] = MapOf(STRING, STRING)


@dataclasses.dataclass(frozen=True, slots=True)
class PeerSummary:
    """``mesh.peerSummary``: what a topology update says about one peer."""

    name_byte: bytes
    nick_name: str
    uid: int
    version: int
    short_id: int
    has_short_id: bool


PEER_SUMMARY = Struct(
    "mesh.peerSummary",
    [
        ("NameByte", BYTES),
        ("NickName", STRING),
        ("UID", PEER_UID),
        ("Version", UINT64),
        ("ShortID", PEER_SHORT_ID),
        ("HasShortID", BOOL),
    ],
    PeerSummary,
)


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionSummary:
    """``mesh.connectionSummary``: one connection of a peer, as its topology entry lists it."""

    name_byte: bytes
    remote_tcp_addr: str
    outbound: bool
    established: bool


CONNECTION_SUMMARY = Struct(
    "mesh.connectionSummary",
    [
        ("NameByte", BYTES),
        ("RemoteTCPAddr", STRING),
        ("Outbound", BOOL),
        ("Established", BOOL),
    ],
    ConnectionSummary,
)
CONNECTION_SUMMARIES = SliceOf(CONNECTION_SUMMARY)


@dataclasses.dataclass(frozen=True, slots=True)
class TopologyPeer:
    """One peer of a topology update: its summary and its connections."""

    summary: PeerSummary
    connections: tuple[ConnectionSummary, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class GossipBody:
    """A gossip message body; ``destination`` is set for GossipUnicast only."""

    channel: str
    source: int
    payload: bytes
    destination: int | None = None


def encode_features(features: Mapping[str, str], *, type_ids: TypeIds | None = None) -> bytes:
    """The handshake's features map as its own gob stream."""
    return encode(FEATURES, dict(features), type_ids=type_ids)


def decode_features(data: bytes) -> dict[str, str]:
    """The features map a peer sent; GobError if ``data`` is not exactly one."""
    return decode(FEATURES, data)


def encode_gossip(body: GossipBody, *, type_ids: TypeIds | None = None) -> bytes:
    """A gossip body: channel, source, [destination,] payload on one encoder.

    Every part is a builtin gob type, so no type definition travels and the bytes do
    not depend on the encoder: they are written directly (what an ``Encoder`` writes,
    as ``tests/router/test_gob_codec.py`` checks), since every gossip message sent
    pays for this."""
    if type_ids is not None:
        return _encode_gossip_with(Encoder(type_ids), body)
    out = bytearray()
    raw = body.channel.encode("utf-8", "surrogateescape")
    _singleton(out, _STRING_HEAD, _counted(raw))
    _singleton(out, _UINT_HEAD, _uint(body.source))
    if body.destination is not None:
        _singleton(out, _UINT_HEAD, _uint(body.destination))
    _singleton(out, _BYTES_HEAD, _counted(body.payload))
    return bytes(out)


def _encode_gossip_with(encoder: Encoder, body: GossipBody) -> bytes:
    parts = [encoder.encode(STRING, body.channel), encoder.encode(PEER_NAME, body.source)]
    if body.destination is not None:
        parts.append(encoder.encode(PEER_NAME, body.destination))
    parts.append(encoder.encode(BYTES, body.payload))
    return b"".join(parts)


_STRING_HEAD = bytes((zigzag(STRING_ID), 0))
_UINT_HEAD = bytes((zigzag(UINT_ID), 0))
_BYTES_HEAD = bytes((zigzag(BYTES_ID), 0))
"""A singleton of a builtin type: its type id (as a gob int), then field delta 0."""


def _uint(value: int) -> bytes:
    out = bytearray()
    put_uint(out, value)
    return bytes(out)


def _counted(raw: bytes) -> bytes:
    return _uint(len(raw)) + raw


def _singleton(out: bytearray, head: bytes, value: bytes) -> None:
    put_uint(out, len(head) + len(value))
    out += head
    out += value


def decode_gossip(data: bytes, *, unicast: bool) -> GossipBody:
    """Read a gossip body; ``unicast`` says whether a destination precedes the payload.

    Like Go, this ignores anything after the payload.  A body as Go and we write it
    is read directly; anything else (a stream that defines types first, a malformed
    one) goes to the full decoder, which reads or rejects it as before.
    """
    fast = _read_plain_gossip(data, unicast)
    return fast if fast is not None else _decode_gossip_stream(data, unicast=unicast)


def _decode_gossip_stream(data: bytes, *, unicast: bool) -> GossipBody:
    decoder = Decoder(data)
    channel = decoder.decode(STRING)
    source = decoder.decode(PEER_NAME)
    destination = decoder.decode(PEER_NAME) if unicast else None
    payload = decoder.decode(BYTES)
    return GossipBody(channel, source, payload, destination)


def _read_plain_gossip(data: bytes, unicast: bool) -> GossipBody | None:
    """The body if it is the four (or three) plain singletons; None for anything else."""
    try:
        raw, at = _counted_singleton(data, 0, _STRING_HEAD)
        source, at = _uint_singleton(data, at)
        destination = None
        if unicast:
            destination, at = _uint_singleton(data, at)
        payload, at = _counted_singleton(data, at, _BYTES_HEAD)
    except (IndexError, DecodeFailure, _NotPlain):
        return None
    return GossipBody(raw.decode("utf-8", "surrogateescape"), source, payload, destination)


class _NotPlain(Exception):
    """Not the plain singleton expected: the full decoder judges the body."""


def _singleton_at(data: bytes, at: int, head: bytes) -> tuple[int, int]:
    """Where the value of the singleton message at ``at`` starts, and where it ends."""
    size, at = read_uint(data, at)
    end = at + size
    if end > len(data) or data[at:at + 2] != head:
        raise _NotPlain
    return at + 2, end


def _counted_singleton(data: bytes, at: int, head: bytes) -> tuple[bytes, int]:
    start, end = _singleton_at(data, at, head)
    length, start = read_uint(data, start)
    if start + length != end:
        raise _NotPlain
    return data[start:end], end


def _uint_singleton(data: bytes, at: int) -> tuple[int, int]:
    start, end = _singleton_at(data, at, _UINT_HEAD)
    value, start = read_uint(data, start)
    if start != end or value > 0xFFFFFFFFFFFFFFFF:
        raise _NotPlain
    return value, end


def encode_topology(peers: Iterable[TopologyPeer], *, type_ids: TypeIds | None = None) -> bytes:
    """A topology gossip payload: each peer's summary then its connections, one stream."""
    encoder = Encoder(type_ids)
    parts: list[bytes] = []
    for peer in peers:
        parts.append(encoder.encode(PEER_SUMMARY, peer.summary))
        parts.append(encoder.encode(CONNECTION_SUMMARIES, peer.connections))
    return b"".join(parts)


def decode_topology(data: bytes) -> list[TopologyPeer]:
    """The peers of a topology payload, in the order sent.

    GobError if the stream is malformed. A summary that the stream ends right
    after is dropped, as Go's ``decodeUpdate`` drops it (it meets io.EOF where
    the connection list should be and stops).
    """
    decoder = Decoder(data)
    peers: list[TopologyPeer] = []
    while not decoder.at_end():
        summary = decoder.decode(PEER_SUMMARY)
        if decoder.at_end():
            break
        peers.append(TopologyPeer(summary, decoder.decode(CONNECTION_SUMMARIES)))
    return peers
