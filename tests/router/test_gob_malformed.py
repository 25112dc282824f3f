"""Hostile input: whatever the bytes, the decoder returns values or raises GobError.

Truncations of every fixture at every offset, random byte changes, garbage,
and hand-made streams that break one rule each (with the message naming it).
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.ipam import messages as ipam
from router.mesh import messages as mesh
from router.mesh.gob import (
    BYTES,
    INT,
    STRING,
    ArrayOf,
    Decoder,
    GobError,
    GobTruncated,
    MapOf,
    SliceOf,
    Struct,
    decode,
)
from router.mesh.gob.wire import WireType, encode_definition, put_int, put_uint
from tests.router.gob_samples import SCHEMAS, load_fixtures, stream_bytes

STREAMS = [
    (case["name"], stream_bytes(case, stream), [SCHEMAS[i["schema"]] for i in stream["items"]])
    for case in load_fixtures()
    for stream in case["streams"]
]


def decode_all(data: bytes, schemas: list[Any]) -> list[Any]:
    decoder = Decoder(data)
    return [decoder.decode(schema) for schema in schemas]


def decode_as_messages(data: bytes) -> None:
    """The message-level readers must also fail only with GobError."""
    for read in (
        mesh.decode_features,
        mesh.decode_topology,
        ipam.decode_gossip_state,
        ipam.decode_unicast,
        lambda d: mesh.decode_gossip(d, unicast=True),
    ):
        with contextlib.suppress(GobError):
            read(data)


@pytest.mark.parametrize(("name", "data", "schemas"), STREAMS, ids=[s[0] for s in STREAMS])
def test_every_truncation_is_reported_as_truncation(
    name: str, data: bytes, schemas: list[Any]
) -> None:
    for cut in range(len(data)):
        with pytest.raises(GobTruncated):
            decode_all(data[:cut], schemas)
        decode_as_messages(data[:cut])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(STREAMS),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_changed_bytes_decode_or_raise_gob_error(
    stream: tuple[str, bytes, list[Any]], changes: list[tuple[int, int]]
) -> None:
    _, data, schemas = stream
    mutated = bytearray(data)
    for where, byte in changes:
        mutated[where % len(mutated)] = byte
    with contextlib.suppress(GobError):
        decode_all(bytes(mutated), schemas)
    decode_as_messages(bytes(mutated))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(sorted(SCHEMAS)))
def test_garbage_decodes_or_raises_gob_error(data: bytes, schema: str) -> None:
    with contextlib.suppress(GobError):
        decode(SCHEMAS[schema], data)
    decode_as_messages(data)


# --- one broken rule at a time --------------------------------------------------------------


def message(*parts: bytes) -> bytes:
    body = b"".join(parts)
    out = bytearray()
    put_uint(out, len(body))
    return bytes(out) + body


def uint(x: int) -> bytes:
    out = bytearray()
    put_uint(out, x)
    return bytes(out)


def sint(x: int) -> bytes:
    out = bytearray()
    put_int(out, x)
    return bytes(out)


def define(type_id: int, wire: WireType) -> bytes:
    return message(encode_definition(type_id, wire))


INT_SLICE = define(65, WireType("slice", "", elem=2))
ONE_FIELD = define(65, WireType("struct", "T", fields=(("A", 2),)))
T_ONE = Struct("p.T", [("A", INT)])
_COMMON = b"\x01\x02" + sint(65) + b"\x00"  # CommonType{Id: 65}, as field 0
TWO_KINDS = message(
    sint(-65),
    b"\x02" + _COMMON + b"\x01" + sint(2) + b"\x00",  # SliceT{Elem: int}
    b"\x01" + _COMMON + b"\x00",  # and StructT{}
    b"\x00",
)


@pytest.mark.parametrize(
    ("schema", "data", "match"),
    [
        (INT, bytes([0x80]), "invalid message length byte"),
        (INT, bytes([0xF8]) + b"\x7f" + b"\xff" * 7, "exceeds"),
        (INT, b"\x00", "empty message"),
        (INT, message(sint(2), b"\x00\xf0"), "invalid integer length byte"),
        (INT, message(sint(2), b"\x05\x00"), "non-zero field delta"),
        (STRING, message(sint(6), b"\x00\x32abc"), "length 50 runs past"),
        (SliceOf(INT), INT_SLICE + message(sint(65), b"\x00", uint(1000), b"\x02"), "count 1000"),
        (
            SliceOf(INT),
            INT_SLICE + message(sint(65), b"\x00\xf8" + b"\xff" * 8),
            "count 18446744073709551615",
        ),
        (
            MapOf(STRING, STRING),
            define(65, WireType("map", "", key=6, elem=6)) + message(sint(65), b"\x00\x10abc"),
            "map count 16",
        ),
        (INT, INT_SLICE + INT_SLICE + message(sint(2), b"\x00\x02"), "second definition"),
        (INT, define(10, WireType("slice", "", elem=2)), "reserved type id 10"),
        (INT, TWO_KINDS, "sets 2 kinds"),
        (INT, message(encode_definition(65, WireType("slice", "", elem=2)), b"\x00"), "extra data"),
        (INT, message(sint(70), b"\x00\x02"), "undefined type 70"),
        (T_ONE, ONE_FIELD + message(sint(65), b"\x05\x02\x00"), "field number 4 out of range"),
        (
            Struct("p.T", [("B", INT)]),
            define(65, WireType("struct", "T", fields=(("A", 8), ("B", 2)))) + message(sint(65)),
            "interface values are not supported",
        ),
        (
            Struct("p.T", [("B", INT)]),
            define(65, WireType("struct", "T", fields=(("A", 99), ("B", 2)))) + message(sint(65)),
            "undefined type 99",
        ),
        (
            Struct("p.T", [("B", INT)]),
            define(65, WireType("struct", "T", fields=(("", 2), ("B", 2)))) + message(sint(65)),
            "has no name",
        ),
        (
            ArrayOf(INT, 2),
            define(65, WireType("array", "", elem=2, length=2))
            + message(sint(65), b"\x00\x01\x02"),
            "received with 1 items",
        ),
        (BYTES, message(sint(2), b"\x00\x02"), "expected \\[\\]uint8, received int"),
    ],
)
def test_broken_rule_is_named(schema: Any, data: bytes, match: str) -> None:
    with pytest.raises(GobError, match=match) as raised:
        decode(schema, data)
    assert "stream" in str(raised.value)


def test_message_size_limit_is_the_callers() -> None:
    data = message(sint(6), b"\x00\x0a" + b"x" * 10)
    assert decode(STRING, data) == "x" * 10
    with pytest.raises(GobError, match="exceeds 8"):
        decode(STRING, data, max_message_size=8)


def recursive_tree_stream(depth: int) -> bytes:
    """``type Tree struct { Val int; Kids []Tree }`` nested ``depth`` levels deep."""
    definitions = define(65, WireType("struct", "Tree", fields=(("Val", 2), ("Kids", 66))))
    definitions += define(66, WireType("slice", "[]Tree", elem=65))
    kid = b"\x00"  # the innermost tree: empty
    for _ in range(depth - 1):
        kid = b"\x02\x01" + kid + b"\x00"  # field Kids (delta 2), one kid, end
    # Val = 1 (delta 1), then Kids (delta 1) holding one kid, then the end.
    return definitions + message(sint(65), b"\x01\x02", b"\x01\x01", kid, b"\x00")


def test_recursive_types_are_skipped() -> None:
    narrow = Struct("p.Tree", [("Val", INT)])
    assert decode(narrow, recursive_tree_stream(20)) == narrow.cls(1)


def test_deeply_nested_values_are_refused_not_recursion_errors() -> None:
    narrow = Struct("p.Tree", [("Val", INT)])
    with pytest.raises(GobError, match="nest too deeply"):
        decode(narrow, recursive_tree_stream(5000))


def test_a_self_referencing_slice_is_no_schema_we_know() -> None:
    data = define(65, WireType("slice", "T", elem=65)) + message(sint(65), b"\x00\x01\x00")
    with pytest.raises(GobError, match="expected"):
        decode(SliceOf(SliceOf(INT)), data)
    decoder = Decoder(data)
    decoder.skip()  # skipping follows the recursion without trouble
    assert decoder.at_end()


def test_long_chains_of_definitions_are_refused() -> None:
    chain = b"".join(define(65 + i, WireType("slice", "", elem=66 + i)) for i in range(400))
    chain += define(465, WireType("slice", "", elem=2))
    holder = define(466, WireType("struct", "H", fields=(("Deep", 65), ("A", 2))))
    with pytest.raises(GobError, match="nest too deeply"):
        decode(T_ONE, chain + holder + message(sint(466), b"\x02\x02\x00"))
