"""Go's JSON and number formatting: against what Go wrote (api_go_fixtures.json) and, for
values no fixture lists, as properties (what we write reads back as the value)."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.api.gofmt import format_float, format_value
from router.api.gojson import UnsupportedValue, format_json_float, marshal, quote_string
from router.api.govalue import GoMap, GoNil, GoSlice, GoTime, Shape, from_json
from tests.router.api.captures import go_fixtures

ANY = Shape("any")


def from_bits(bits: str) -> float:
    return float(struct.unpack(">d", bytes.fromhex(bits))[0])


@pytest.mark.parametrize("case", go_fixtures()["floats"], ids=lambda c: c["bits"])
def test_floats_as_go_writes_them(case: dict[str, str]) -> None:
    x = from_bits(case["bits"])
    assert format_float(x, "g") == case["g"]
    assert format_value(x) == case["v"]
    assert format_json_float(x) == case["json"]


def test_strings_as_go_escapes_them() -> None:
    fixtures = go_fixtures()
    for text, expected in zip(fixtures["strings"], fixtures["strings_json"], strict=True):
        assert quote_string(text) == expected


def test_nested_values_compact_and_indented() -> None:
    value = {"b": [1, "x<y", None, [], {}], "a": {"z": 1.5, "y": True},
             "c": 12345678901234567890.0}
    tree = from_json(ANY, value)
    assert marshal(tree) == go_fixtures()["nested"]
    assert marshal(tree, "    ") == go_fixtures()["nested_indent"]


def test_nil_and_empty_collections_differ() -> None:
    assert marshal(GoSlice(nil=True)) == "null"
    assert marshal(GoSlice()) == "[]"
    assert marshal(GoMap(nil=True)) == "null"
    assert marshal(GoMap()) == "{}"
    assert format_value(GoSlice(nil=True)) == format_value(GoSlice()) == "[]"
    assert format_value(GoMap(nil=True)) == "map[]"
    assert format_value(GoNil("*x.T")) == "<nil>"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_json_refuses_nan_and_infinities(bad: float) -> None:
    with pytest.raises(UnsupportedValue, match="unsupported value"):
        marshal(bad)


@pytest.mark.parametrize(("text", "rfc", "printed"), [
    ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "0001-01-01 00:00:00 +0000 UTC"),
    ("2026-12-06T20:23:00.0725155Z", "2026-12-06T20:23:00.0725155Z",
     "2026-12-06 20:23:00.0725155 +0000 UTC"),
    ("2026-12-06T20:22:52.365076447+02:00", "2026-12-06T20:22:52.365076447+02:00",
     "2026-12-06 20:22:52.365076447 +0200 +0200"),
])
def test_times(text: str, rfc: str, printed: str) -> None:
    moment = GoTime.parse(text)
    assert moment.rfc3339() == rfc
    assert moment.string() == printed


@pytest.mark.parametrize("bad", ["yesterday", "2026-12-06T20:22:52", "2026-13-06T20:22:52Z"])
def test_bad_times_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        GoTime.parse(bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**64, 2**64)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=4),
    max_leaves=12)


def _same(original: Any, loaded: Any) -> bool:
    """Equal as JSON values (Go writes an integral float without a point, ``1e+16`` as
    ``10000000000000000``: it reads back as an int of the same value)."""
    if isinstance(original, float):
        return isinstance(loaded, int | float) and float(loaded) == original
    if isinstance(original, list):
        return isinstance(loaded, list) and len(loaded) == len(original) and all(
            _same(o, v) for o, v in zip(original, loaded, strict=True))
    if isinstance(original, dict):
        return isinstance(loaded, dict) and loaded.keys() == original.keys() and all(
            _same(original[k], loaded[k]) for k in original)
    return type(original) is type(loaded) and original == loaded


def _no_surrogates(value: Any) -> bool:
    if isinstance(value, str):
        return not any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, list):
        return all(_no_surrogates(v) for v in value)
    if isinstance(value, dict):
        return all(_no_surrogates(k) and _no_surrogates(v) for k, v in value.items())
    return True


@settings(max_examples=150)
@given(json_values)
def test_json_reads_back_as_the_value(value: Any) -> None:
    if not _no_surrogates(value):
        return
    tree = from_json(ANY, value)
    assert _same(value, json.loads(marshal(tree)))
    indented = marshal(tree, "    ")
    assert _same(value, json.loads(indented))
    assert "<" not in indented and ">" not in indented and "&" not in indented


@settings(max_examples=300)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_layouts_read_back(x: float) -> None:
    for verb in "efg":
        assert float(format_float(x, verb)) == x
    assert float(format_json_float(x)) == x
