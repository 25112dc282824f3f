"""Split one direction of a captured plain (no password) mesh TCP stream into annotated parts.

Layout of a protocol-version-2 connection, as sent by each side:

* 7 bytes: ``b"weave"``, min version, max version;
* 1 byte: encryption flag (0 = plain; 1 = followed by a 32-byte public key, and
  then every frame payload is sealed, so only lengths are annotated);
* frames: a 4-byte big-endian length and a payload.  The first payload is the
  gob-encoded features ``map[string]string``; every later one is a tag byte and
  a body.  Gossip bodies (tags 4, 5, 6) are one gob stream: channel name,
  source peer name, [destination peer name for unicast,] payload bytes; the
  payload of the ``topology`` channel is another gob stream of peer summaries,
  each followed by its connection summaries.

This module is pure (bytes in, plain data out); :mod:`tests.interop.gobdump`
decodes the gob parts.  Used to write ``tests/interop/data/go-wire-*.json``.
"""

from __future__ import annotations

from typing import Any

from tests.interop.gobdump import GobDumpError, decode_stream, jsonable

TAGS = {
    0: "Heartbeat",
    1: "Reserved1",
    2: "Reserved2",
    3: "Reserved3",
    4: "Gossip",
    5: "GossipUnicast",
    6: "GossipBroadcast",
    7: "OverlayControlMsg",
}
HEADER_LEN = 7


def split_stream(data: bytes) -> dict[str, Any]:
    """Header, flag and frames of one direction (``frames``: offset, length, payload hex)."""
    if len(data) < HEADER_LEN + 1:
        raise ValueError(f"stream of {len(data)} bytes is shorter than header and flag")
    header = data[:HEADER_LEN]
    out: dict[str, Any] = {
        "header_hex": header.hex(),
        "protocol": header[:5].decode("ascii", errors="replace"),
        "min_version": header[5],
        "max_version": header[6],
        "encryption_flag": data[HEADER_LEN],
    }
    pos = HEADER_LEN + 1
    if data[HEADER_LEN] == 1:
        out["public_key_hex"] = data[pos : pos + 32].hex()
        pos += 32
    frames: list[dict[str, Any]] = []
    while pos + 4 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        if pos + 4 + length > len(data):
            break
        payload = data[pos + 4 : pos + 4 + length]
        frames.append({"offset": pos, "length": length, "payload": payload})
        pos += 4 + length
    out["frames"] = frames
    out["trailing_hex"] = data[pos:].hex()
    return out


def describe_frame(index: int, payload: bytes) -> dict[str, Any]:
    """What a frame's payload holds, decoded as far as this module knows how."""
    if index == 0:
        return {"kind": "features", "gob": _gob_values(payload)}
    tag = payload[0] if payload else -1
    info: dict[str, Any] = {"kind": TAGS.get(tag, f"unknown tag {tag}"), "tag": tag}
    body = payload[1:]
    if tag in (4, 5, 6):
        info.update(_describe_gossip(tag, body))
    elif body:
        info["body_hex"] = body.hex()
    return info


def _describe_gossip(tag: int, body: bytes) -> dict[str, Any]:
    try:
        values = [m.value for m in decode_stream(body) if m.type_id > 0]
    except GobDumpError as exc:
        return {"error": str(exc)}
    names = ["channel", "source"] + (["destination"] if tag == 5 else []) + ["payload"]
    if len(values) != len(names):
        return {"envelope": jsonable(values)}
    envelope = dict(zip(names, values, strict=True))
    info: dict[str, Any] = {k: v for k, v in envelope.items() if k != "payload"}
    source = envelope["source"]
    if isinstance(source, int):
        info["source_mac"] = _mac(source)
    payload = envelope["payload"]
    if isinstance(payload, bytes):
        info["payload_len"] = len(payload)
        info["payload_gob"] = _gob_values(payload)
    return info


def _gob_values(data: bytes) -> object:
    """The decoded messages of a gob stream (type definitions named, values in JSON form)."""
    try:
        messages = decode_stream(data)
    except GobDumpError as exc:
        return {"error": str(exc), "hex": data.hex()}
    out: list[object] = []
    for msg in messages:
        entry: dict[str, object] = {"offset": msg.offset, "type_id": msg.type_id}
        if msg.definition is not None:
            entry["defines"] = {
                "kind": msg.definition.kind,
                "name": msg.definition.name,
                "fields": [list(f) for f in msg.definition.fields],
                "elem": msg.definition.elem,
                "key": msg.definition.key,
            }
        else:
            entry["value"] = jsonable(msg.value)
        out.append(entry)
    return out


def _mac(name: int) -> str:
    raw = name.to_bytes(6, "big")
    return ":".join(f"{b:02x}" for b in raw)


def annotate(data: bytes) -> dict[str, Any]:
    """:func:`split_stream` plus :func:`describe_frame` for each frame, JSON-ready."""
    parts = split_stream(data)
    encrypted = parts["encryption_flag"] == 1
    frames = []
    for index, frame in enumerate(parts["frames"]):
        payload: bytes = frame["payload"]
        if encrypted:  # NaCl secretbox: 16 bytes of tag more than the plaintext
            info: dict[str, Any] = {"kind": "ciphertext", "plaintext_length": len(payload) - 16}
        else:
            info = describe_frame(index, payload)
        frames.append(
            {"offset": frame["offset"], "length": frame["length"], "hex": payload.hex(), **info}
        )
    parts["frames"] = frames
    return parts
