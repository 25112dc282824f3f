"""A test-only gob codec for map[string]string, checked against Go's bytes (mesh_protocol.json).

The real codec (router/mesh/gob.py) is written separately; the handshake
takes any FeaturesCodec, and these tests need one that is obviously right for
this single type: Go's type definition message for map[string]string is a
fixed byte string, and the value is a count followed by length-prefixed
key and value strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from router.mesh.v1stream import decode_int, decode_uint, encode_int, encode_uint

MAP_TYPE_ID: Final = 64
"""Go's first user type id, given to map[string]string in a fresh encoder."""
MAP_TYPE_DEFINITION: Final = bytes.fromhex("0d7f040102ff8000010c010c0000")
"""The message defining type 64 as map[string]string (copied from Go's output)."""


class GobMapCodec:
    """encode_features / decode_features for map[string]string, keys in the given order."""

    def encode_features(self, features: dict[str, str]) -> bytes:
        body = bytearray(encode_int(MAP_TYPE_ID) + b"\x00" + encode_uint(len(features)))
        for key, value in features.items():
            for text in (key, value):
                raw = text.encode()
                body += encode_uint(len(raw)) + raw
        return MAP_TYPE_DEFINITION + encode_uint(len(body)) + bytes(body)

    def decode_features(self, data: bytes) -> dict[str, str]:
        if not data.startswith(MAP_TYPE_DEFINITION):
            raise ValueError("no map[string]string type definition")
        offset = len(MAP_TYPE_DEFINITION)
        count, offset = _need(decode_uint(data, offset))
        if offset + count != len(data):
            raise ValueError("the value message length does not match the data")
        type_id, offset = _need(decode_int(data, offset))
        delta, offset = _need(decode_uint(data, offset))
        if type_id != MAP_TYPE_ID or delta != 0:
            raise ValueError(f"not a map[string]string value (type {type_id}, delta {delta})")
        entries, offset = _need(decode_uint(data, offset))
        result: dict[str, str] = {}
        for _ in range(entries):
            key, offset = _string(data, offset)
            value, offset = _string(data, offset)
            result[key] = value
        if offset != len(data):
            raise ValueError("trailing bytes after the map")
        return result


def _need(decoded: tuple[int, int] | None) -> tuple[int, int]:
    if decoded is None:
        raise ValueError("truncated gob data")
    return decoded


def _string(data: bytes, offset: int) -> tuple[str, int]:
    length, offset = _need(decode_uint(data, offset))
    if offset + length > len(data):
        raise ValueError("truncated gob string")
    return data[offset:offset + length].decode(), offset + length


class ReplayCodec:
    """Encodes one known map to the exact bytes Go produced for it (Go's map order
    is random, so only a recording reproduces a transcript); decodes with GobMapCodec."""

    def __init__(self, expected: Mapping[str, str], recorded: bytes) -> None:
        self.expected = dict(expected)
        self.recorded = recorded
        self.encoded: list[dict[str, str]] = []

    def encode_features(self, features: dict[str, str]) -> bytes:
        self.encoded.append(dict(features))
        if features != self.expected:
            raise AssertionError(f"asked to encode {features}, expected {self.expected}")
        return self.recorded

    def decode_features(self, data: bytes) -> dict[str, str]:
        return GobMapCodec().decode_features(data)
