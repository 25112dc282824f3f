"""The gob codec's rules, one at a time: integers, omission of zero fields, type
numbering and naming, Go's compatibility checks, streaming, encoder errors."""

from __future__ import annotations

import dataclasses

import pytest

from router.mesh.gob import (
    BOOL,
    BYTES,
    FLOAT64,
    INT,
    INT8,
    STRING,
    UINT,
    UINT8,
    UINT16,
    ArrayOf,
    Decoder,
    Encoder,
    GobError,
    GobTruncated,
    MapOf,
    Ptr,
    SliceOf,
    Struct,
    TypeIds,
    decode,
    encode,
)
from router.mesh.gob.schema import snake_case
from router.mesh.gob.wire import float_to_uint, put_int, put_uint, read_int, read_uint
from router.mesh.messages import FEATURES, PEER_NAME
from tests.router.gob_samples import INNER, KITCHEN


def uint_bytes(x: int) -> str:
    buf = bytearray()
    put_uint(buf, x)
    return buf.hex()


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (0, "00"),
        (127, "7f"),
        (128, "ff80"),
        (255, "ffff"),
        (256, "fe0100"),
        (0xFFFFFFFFFFFFFFFF, "f8ffffffffffffffff"),
    ],
)
def test_unsigned_integers(value: int, wire: str) -> None:
    assert uint_bytes(value) == wire
    assert read_uint(bytes.fromhex(wire), 0) == (value, len(wire) // 2)


@pytest.mark.parametrize(
    ("value", "wire"),
    [(0, "00"), (1, "02"), (-1, "01"), (-129, "fe0101"), (-(1 << 63), "f8ffffffffffffffff")],
)
def test_signed_integers_fold_the_sign_into_the_low_bit(value: int, wire: str) -> None:
    buf = bytearray()
    put_int(buf, value)
    assert buf.hex() == wire
    assert read_int(bytes(buf), 0) == (value, len(buf))


def test_floats_are_sent_byte_reversed() -> None:
    assert uint_bytes(float_to_uint(17.0)) == "fe3140"  # the example in Go's gob docs
    assert uint_bytes(float_to_uint(0.0)) == "00"
    assert decode(FLOAT64, encode(FLOAT64, -2.5)) == -2.5


def test_top_level_values_are_singletons_sent_even_when_zero() -> None:
    # length 3: type id int (2 -> 04), singleton delta 00, value 00
    assert encode(INT, 0).hex() == "03040000"
    assert encode(STRING, "").hex() == "030c0000"
    assert encode(BYTES, b"\x07").hex() == "040a000107"


@dataclasses.dataclass(frozen=True)
class Pair:
    a: int
    b: dict[str, int] | None


PAIR = Struct("t.Pair", [("A", INT), ("B", MapOf(STRING, INT))], Pair)


def value_body(stream: bytes) -> bytes:
    """The last message of a stream: for a one-value stream, the value (after any definitions)."""
    pos, last = 0, b""
    while pos < len(stream):
        length, pos = read_uint(stream, pos)
        last, pos = stream[pos : pos + length], pos + length
    return last


def test_zero_fields_are_left_out_but_empty_maps_are_sent() -> None:
    # id 65 -> 0xff82; then: terminator only
    assert value_body(encode(PAIR, Pair(0, None))).hex() == "ff8200"
    # field B (delta 2) with count 0
    assert value_body(encode(PAIR, Pair(0, {}))).hex() == "ff82020000"
    assert decode(PAIR, encode(PAIR, Pair(0, {}))) == Pair(0, {})
    assert decode(PAIR, encode(PAIR, Pair(0, None))) == Pair(0, None)


def test_nested_structs_are_always_sent() -> None:
    zero = KITCHEN.zero
    body = value_body(encode(KITCHEN, zero, type_ids=TypeIds(64)))
    # field 14 ("In", delta 15) holds an empty struct (terminator); then Arr is sent
    # too (field 12, all zeros) -- arrays are always written.
    assert body.hex() == "ff80" + "0d" + "03000000" + "02" + "00" + "00"
    assert decode(KITCHEN, encode(KITCHEN, zero)) == zero


def test_default_numbering_is_weaves_go() -> None:
    """weave 2.8.1 was built with Go 1.15, which numbers a process's first type 65."""
    stream = encode(FEATURES, {"a": "b"})
    definition_id = read_int(stream, 1)[0]
    assert definition_id == -65
    assert read_int(encode(FEATURES, {"a": "b"}, type_ids=TypeIds(64)), 1)[0] == -64


def test_definition_names_follow_go() -> None:
    type_ids = TypeIds()
    conns = SliceOf(Struct("mesh.conn", [("X", INT)]))
    holder = Struct("mesh.holder", [("Conns", conns), ("Named", SliceOf(INT, named="p.Ints"))])
    type_ids.id_of(holder)
    assert type_ids.definition(holder).name == "holder"  # type: ignore[union-attr]
    assert type_ids.definition(conns).name == "[]mesh.conn"  # type: ignore[union-attr]
    assert type_ids.definition(conns.elem).name == "conn"  # type: ignore[union-attr]
    assert type_ids.definition(SliceOf(INT, named="p.Ints")).name == "Ints"  # type: ignore[union-attr]
    # a top-level unnamed slice is unnamed
    fresh = TypeIds()
    fresh.id_of(conns)
    assert fresh.definition(conns).name == ""  # type: ignore[union-attr]


def test_struct_ids_come_before_their_fields_slice_ids_after_their_elements() -> None:
    type_ids = TypeIds()
    elem = Struct("p.E", [("X", INT)])
    outer = Struct("p.O", [("Es", SliceOf(elem)), ("M", MapOf(STRING, elem))])
    assert type_ids.id_of(outer) == 65
    assert type_ids.id_of(elem) == 66
    assert type_ids.id_of(SliceOf(elem)) == 67
    assert type_ids.id_of(MapOf(STRING, elem)) == 68


def test_each_type_is_defined_once_per_stream() -> None:
    encoder = Encoder()
    first = encoder.encode(INNER, INNER.zero)
    second = encoder.encode(INNER, INNER.zero)
    assert len(first) > len(second) == 4  # length, id, terminator... 03 ff82 00
    decoder = Decoder(first + second)
    assert decoder.decode(INNER) == decoder.decode(INNER) == INNER.zero


def test_two_schemas_with_one_go_spelling_are_refused() -> None:
    type_ids = TypeIds()
    type_ids.id_of(Struct("p.T", [("A", INT)]))
    with pytest.raises(TypeError, match="spelled"):
        type_ids.id_of(Struct("p.T", [("A", STRING)]))


# --- compatibility, as Go checks it ---------------------------------------------------


def test_a_struct_where_a_map_is_expected_is_refused() -> None:
    with pytest.raises(GobError, match=r"expected map\[string\]string, received struct"):
        decode(FEATURES, encode(INNER, INNER.zero))


def test_a_map_where_a_struct_is_expected_is_refused() -> None:
    with pytest.raises(GobError, match=r"expected codec\.Inner, received map"):
        decode(INNER, encode(FEATURES, {}))


def test_a_field_of_the_wrong_type_is_refused() -> None:
    other = Struct("codec.Inner", [("A", STRING)])
    with pytest.raises(GobError, match=r"field codec.Inner.A: expected int, received string"):
        decode(INNER, encode(other, other.cls("x")))


def test_signedness_must_match() -> None:
    with pytest.raises(GobError, match="expected uint, received int"):
        decode(UINT, encode(INT, 5))


def test_no_common_field_is_refused_at_top_level() -> None:
    other = Struct("p.Other", [("Z", INT)])
    with pytest.raises(GobError, match="no field"):
        decode(INNER, encode(other, other.cls(1)))


def test_fields_either_side_lacks_are_skipped_or_zero() -> None:
    sender = Struct("p.S", [("A", INT), ("Extra", MapOf(STRING, SliceOf(INNER))), ("B", STRING)])
    sent = sender.cls(3, {"k": (INNER.cls(1, "x"),)}, "b")
    receiver = Struct("p.S", [("B", STRING), ("C", BOOL), ("A", INT)])
    assert decode(receiver, encode(sender, sent)) == receiver.cls("b", False, 3)


def test_narrow_integers_are_range_checked() -> None:
    with pytest.raises(GobError, match="out of range for uint16"):
        decode(UINT16, encode(UINT, 70000))
    with pytest.raises(GobError, match="out of range for int8"):
        decode(INT8, encode(INT, -129))


def test_array_lengths_must_match() -> None:
    with pytest.raises(GobError, match="length 3"):
        decode(ArrayOf(INT, 2), encode(ArrayOf(INT, 3), (1, 2, 3)))


def test_pointers_are_flattened() -> None:
    assert encode(Ptr(INNER), INNER.cls(1, "a")) == encode(INNER, INNER.cls(1, "a"))
    assert decode(Ptr(INNER), encode(INNER, INNER.cls(1, "a"))) == INNER.cls(1, "a")
    nested = SliceOf(Ptr(INNER))
    assert decode(SliceOf(INNER), encode(nested, (INNER.zero,))) == (INNER.zero,)


def test_named_integers_are_plain_uints() -> None:
    assert encode(PEER_NAME, 7) == encode(UINT, 7)
    assert decode(UINT, encode(PEER_NAME, 7)) == 7


def test_invalid_utf8_round_trips() -> None:
    raw = b"\xff\xfeok"
    text = raw.decode("utf-8", "surrogateescape")
    assert decode(STRING, encode(STRING, text)) == text
    assert encode(STRING, text)[-4:] == raw


# --- streaming ---------------------------------------------------------------------------


def test_feeding_byte_by_byte() -> None:
    stream = encode(KITCHEN, KITCHEN.zero) + Encoder().encode(INT, -7)
    decoder = Decoder()
    got: list[object] = []
    for i, byte in enumerate(stream):
        decoder.feed(bytes([byte]))
        schema = KITCHEN if not got else INT
        try:
            got.append(decoder.decode(schema))
        except GobTruncated:
            assert i < len(stream) - 1 or len(got) < 2
    assert got == [KITCHEN.zero, -7]
    assert decoder.at_end() and decoder.offset == len(stream)


def test_truncation_rewinds_including_type_definitions() -> None:
    stream = encode(INNER, INNER.cls(1, "x"))
    decoder = Decoder(stream[:-1])
    with pytest.raises(GobTruncated):
        decoder.decode(INNER)
    assert decoder.offset == 0
    decoder.feed(stream[-1:])
    assert decoder.decode(INNER) == INNER.cls(1, "x")


def test_skip_discards_any_value() -> None:
    encoder = Encoder()
    stream = encoder.encode(KITCHEN, KITCHEN.zero) + encoder.encode(STRING, "after")
    decoder = Decoder(stream)
    decoder.skip()
    assert decoder.decode(STRING) == "after"


def test_an_error_breaks_the_stream() -> None:
    decoder = Decoder(encode(INT, 1) + encode(INT, 2))
    with pytest.raises(GobError, match="expected string"):
        decoder.decode(STRING)
    with pytest.raises(GobError, match="expected string"):
        decoder.decode(INT)


def test_decode_wants_exactly_one_value() -> None:
    with pytest.raises(GobError, match="left after the value"):
        decode(INT, encode(INT, 1) + encode(INT, 2))
    with pytest.raises(GobTruncated):
        decode(INT, b"")


# --- the encoder refuses values the schema cannot carry ----------------------------------


@pytest.mark.parametrize(
    ("schema", "value", "match"),
    [
        (UINT16, 65536, "out of range"),
        (UINT, -1, "out of range"),
        (INT, 1 << 63, "out of range"),
        (INT, True, "must be an int"),
        (STRING, b"x", "must be a str"),
        (STRING, "\ud800", "not encodable"),
        (BYTES, "x", "must be bytes"),
        (BOOL, 1, "must be a bool"),
        (ArrayOf(INT, 2), (1,), "1 items"),
        (SliceOf(Ptr(INNER)), [None], "nil pointer"),
        (INNER, Pair(1, None), "must be a Inner"),
        (SliceOf(INT), "abc", "must be a sequence"),
        (INNER, None, "nil"),
    ],
)
def test_encoder_refuses(schema: object, value: object, match: str) -> None:
    with pytest.raises(GobError, match=match):
        Encoder().encode(schema, value)  # type: ignore[arg-type]


def test_schema_mistakes_are_type_errors() -> None:
    with pytest.raises(TypeError, match="duplicate"):
        Struct("p.T", [("A", INT), ("A", STRING)])
    with pytest.raises(TypeError, match="exported"):
        Struct("p.T", [("a", INT)])
    with pytest.raises(TypeError, match="map key"):
        MapOf(SliceOf(INT), INT)
    with pytest.raises(TypeError, match="BYTES"):
        SliceOf(UINT8)
    with pytest.raises(TypeError, match="do not match"):
        Struct("p.T", [("A", INT)], Pair)


@pytest.mark.parametrize(
    ("go", "attr"),
    [
        ("NameByte", "name_byte"),
        ("UID", "uid"),
        ("RemoteTCPAddr", "remote_tcp_addr"),
        ("I64", "i64"),
    ],
)
def test_attribute_names(go: str, attr: str) -> None:
    assert snake_case(go) == attr


# --- generated readers -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Checked:
    """Not a slots class, and validates itself: the decoder must go through __init__."""

    a: int
    b: str

    def __post_init__(self) -> None:
        if self.a < 0:
            raise GobError("negative a")


CHECKED = Struct("t.Checked", [("A", INT), ("B", STRING)], Checked)


def test_post_init_runs_on_decode() -> None:
    assert decode(CHECKED, encode(CHECKED, Checked(2, "x"))) == Checked(2, "x")
    assert decode(SliceOf(CHECKED), encode(SliceOf(CHECKED), (Checked(1, ""),))) == (
        Checked(1, ""),
    )
    negative = Struct("t.Checked", [("A", INT)])
    with pytest.raises(GobError, match="negative a"):
        decode(CHECKED, encode(negative, negative.cls(-1)))


def test_arrays_of_structs() -> None:
    pair = ArrayOf(INNER, 2)
    value = (INNER.cls(1, "a"), INNER.zero)
    assert decode(pair, encode(pair, value)) == value
    with pytest.raises(GobError, match="length 3"):
        decode(pair, encode(ArrayOf(INNER, 3), (*value, INNER.zero)))


def test_readers_shared_between_streams_follow_each_streams_definitions() -> None:
    """Two senders, same schema on our side, different struct layouts on theirs."""
    wide = Struct("codec.Inner", [("Z", FLOAT64), ("B", STRING), ("A", INT)])
    narrow_first = decode(SliceOf(INNER), encode(SliceOf(wide), (wide.cls(1.5, "b", 3),)))
    plain = decode(SliceOf(INNER), encode(SliceOf(INNER), (INNER.cls(3, "b"),)))
    assert narrow_first == plain == (INNER.cls(3, "b"),)
    numbered_differently = Encoder(TypeIds(200)).encode(SliceOf(wide), (wide.cls(0.0, "", 9),))
    assert decode(SliceOf(INNER), numbered_differently) == (INNER.cls(9, ""),)


def test_a_truncated_field_inside_a_slice_of_structs() -> None:
    stream = bytearray(encode(SliceOf(INNER), (INNER.cls(0, "abc"),)))
    stream[-5] = 0x40  # the length of "abc" (then the terminator): 64, past the end
    with pytest.raises(GobError, match="length 64 runs past the end"):
        decode(SliceOf(INNER), bytes(stream))
