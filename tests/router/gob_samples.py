"""What the gob tests share: the Go fixtures, the schemas they are read with, and
hypothesis strategies that generate values for any schema.

The fixtures (``fixtures/gob_fixtures.json``, written by the Go program in
``fixtures/gen``) name each value's schema; ``SCHEMAS`` maps those names to the
schemas of the mesh and IPAM messages and to schemas mirroring the Go types in
``fixtures/gen/codec``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from router.ipam import messages as ipam
from router.mesh import messages as mesh
from router.mesh.gob import (
    BOOL,
    BYTES,
    FLOAT64,
    INT,
    INT8,
    INT64,
    STRING,
    UINT,
    UINT16,
    ArrayOf,
    GobType,
    MapOf,
    Ptr,
    Scalar,
    SliceOf,
    Struct,
)
from router.mesh.gob.schema import Kind, zero_value
from router.mesh.gob.wire import uint_to_float

FIXTURES = Path(__file__).parent / "fixtures" / "gob_fixtures.json"

INNER = Struct("codec.Inner", [("A", INT), ("B", STRING)])
KITCHEN = Struct(
    "codec.Kitchen",
    [
        ("B", BOOL),
        ("I", INT),
        ("I8", INT8),
        ("I64", INT64),
        ("U", UINT),
        ("U16", UINT16),
        ("F", FLOAT64),
        ("S", STRING),
        ("Bs", BYTES),
        ("Ints", SliceOf(INT)),
        ("Strs", SliceOf(STRING)),
        ("Nested", SliceOf(SliceOf(STRING))),
        ("Arr", ArrayOf(UINT16, 3)),
        ("M", MapOf(STRING, SliceOf(INT))),
        ("In", INNER, "inner"),
        ("PIn", Ptr(INNER)),
        ("PInt", Ptr(INT)),
        ("Ins", SliceOf(INNER)),
        ("PIns", SliceOf(Ptr(INNER))),
        ("MS", MapOf(INT, INNER)),
    ],
)
# Receivers that know only part of the sender's struct: the rest is skipped.
NARROW_WIDE = Struct("codec.Wide", [("Keep", STRING), ("Keep2", UINT), ("Missing", INT)])
NARROW_TREE = Struct("codec.Tree", [("Val", INT)])

SCHEMAS: dict[str, GobType[Any]] = {
    "features": mesh.FEATURES,
    "channel": STRING,
    "peer_name": mesh.PEER_NAME,
    "payload": BYTES,
    "peerSummary": mesh.PEER_SUMMARY,
    "connections": mesh.CONNECTION_SUMMARIES,
    "gossip_state": ipam.GOSSIP_STATE,
    "range": ipam.RANGE,
    "kitchen": KITCHEN,
    "inner": INNER,
    "wide": NARROW_WIDE,
    "tree": NARROW_TREE,
    "int": INT,
    "uint": UINT,
    "float": FLOAT64,
    "bool": BOOL,
    "string": STRING,
    "bytes": BYTES,
    "int_slice": SliceOf(INT),
    "string_array": ArrayOf(STRING, 2),
    "string_slices": SliceOf(SliceOf(STRING)),
    "int_to_inner": MapOf(INT, INNER),
}
DECODE_ONLY = frozenset({"wide", "tree"})
"""Schemas that are a receiver's partial view: our encoder cannot reproduce the sender's bytes."""

IPAM_UNICAST_CASES = {
    "ipam_space_request": ipam.MSG_SPACE_REQUEST,
    "ipam_space_request_denied": ipam.MSG_SPACE_REQUEST_DENIED,
    "ipam_ring_update": ipam.MSG_RING_UPDATE,
}


def load_fixtures() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(FIXTURES.read_text())
    return cases


def stream_bytes(case: dict[str, Any], stream: dict[str, Any]) -> bytes:
    """A stream's gob bytes (an IPAM unicast stream is preceded by its kind byte)."""
    data = bytes.fromhex(stream["hex"])
    return data[1:] if case["name"] in IPAM_UNICAST_CASES else data


def from_json(t: GobType[Any], tree: Any) -> Any:
    """The value a Go receiver would hold after gob, from the generator's JSON of the sent value.

    gob loses one distinction: a pointer to a zero scalar or an empty slice is
    not sent, so it arrives as nil (None).
    """
    if isinstance(t, Ptr):
        if tree is None:
            return None
        value = from_json(t.elem, tree)
        base = t.elem
        omitted = isinstance(base, Scalar | SliceOf) and not value
        return None if omitted else value
    if isinstance(t, Scalar):
        return _scalar_from_json(t, tree)
    if isinstance(t, SliceOf | ArrayOf):
        return tuple(from_json(t.elem, item) for item in tree)
    if isinstance(t, MapOf):
        if tree is None:
            return None
        return {from_json(t.key, k): from_json(t.elem, v) for k, v in tree}
    assert isinstance(t, Struct)
    values: list[Any] = [None] * len(t.fields)
    for field, slot in zip(t.fields, t.init_slot, strict=True):
        if field.go_name in tree:
            values[slot] = from_json(field.type, tree[field.go_name])
        else:  # a field only the receiver has
            values[slot] = zero_value(field.type)
    return t.cls(*values)


def _scalar_from_json(t: Scalar[Any], tree: Any) -> Any:
    if t.kind is Kind.BYTES:
        return bytes.fromhex(tree)
    if t.kind is Kind.FLOAT:
        return uint_to_float(int.from_bytes(bytes.fromhex(tree), "little"))
    if t.kind is Kind.STRING and isinstance(tree, dict):
        return bytes.fromhex(tree["invalid_utf8_hex"]).decode("utf-8", "surrogateescape")
    return tree


def has_multi_entry_map(tree: Any) -> bool:
    """Whether a JSON value holds a map with 2+ entries (Go wrote it in random order)."""
    if isinstance(tree, dict):
        return any(has_multi_entry_map(v) for v in tree.values())
    if isinstance(tree, list):
        if tree and all(isinstance(p, list) and len(p) == 2 for p in tree) and len(tree) > 1:
            return True
        return any(has_multi_entry_map(v) for v in tree)
    return False


# --- hypothesis -----------------------------------------------------------------------


def values(t: GobType[Any]) -> st.SearchStrategy[Any]:
    """Values of ``t`` that survive a gob round trip unchanged (no NaN, no pointer to zero)."""
    if isinstance(t, Ptr):
        inner = values(t.elem)
        if isinstance(t.elem, Scalar | SliceOf):
            inner = inner.filter(bool)
        return st.none() | inner
    if isinstance(t, Scalar):
        return _scalar_values(t)
    if isinstance(t, SliceOf):
        return st.lists(_element_values(t.elem), max_size=4).map(tuple)
    if isinstance(t, ArrayOf):
        return st.tuples(*[_element_values(t.elem)] * t.length)
    if isinstance(t, MapOf):
        return st.dictionaries(_element_values(t.key), _element_values(t.elem), max_size=4)
    assert isinstance(t, Struct)
    return st.builds(t.cls, **{f.attr: _field_values(f.type) for f in t.fields})


def _element_values(t: GobType[Any]) -> st.SearchStrategy[Any]:
    """Elements are always sent: a pointer element must point somewhere, even at zero."""
    return values(t.elem) if isinstance(t, Ptr) else values(t)


def _field_values(t: GobType[Any]) -> st.SearchStrategy[Any]:
    """A struct field: a map may also be nil (None)."""
    if isinstance(t, MapOf):
        return st.none() | values(t)
    return values(t)


def _scalar_values(t: Scalar[Any]) -> st.SearchStrategy[Any]:
    if t.kind is Kind.BOOL:
        return st.booleans()
    if t.kind is Kind.INT:
        return st.integers(-(1 << (t.bits - 1)), (1 << (t.bits - 1)) - 1)
    if t.kind is Kind.UINT:
        return st.integers(0, (1 << t.bits) - 1)
    if t.kind is Kind.FLOAT:
        return st.floats(allow_nan=False)
    if t.kind is Kind.STRING:
        return st.text(max_size=12)
    return st.binary(max_size=12)
