"""The features map: peer names and numbers parsed as Go parses them, and the mandatory checks."""

from __future__ import annotations

from typing import Any

import pytest

from router.mesh.features import (
    MANDATORY_FEATURES,
    LocalFeatures,
    RemoteFeatures,
    format_peer_name,
    parse_go_bool,
    parse_go_uint,
    parse_peer_name,
    parse_remote_features,
    v1_subset,
)
from router.mesh.protocol import FeaturesError
from tests.router.mesh.fixtures import go_fixtures, transcript
from tests.router.mesh.gobmap import GobMapCodec

FEATURES_B: dict[str, str] = transcript("v2-plain")["b"]["features"]


def test_mandatory_features_are_meshs() -> None:
    assert sorted(MANDATORY_FEATURES) == sorted(go_fixtures()["constants"]["v1_features"])


@pytest.mark.parametrize("case", go_fixtures()["peer_names"], ids=lambda c: repr(c["text"]))
def test_peer_names_parse_as_go_parses_them(case: dict[str, Any]) -> None:
    if case["value"] is None:
        with pytest.raises(ValueError, match="invalid peer name format"):
            parse_peer_name(case["text"])
    else:
        assert parse_peer_name(case["text"]) == case["value"]


def test_peer_name_formatting() -> None:
    assert format_peer_name(0xAABBCC000001) == "aa:bb:cc:00:00:01"
    assert format_peer_name(1) == "00:00:00:00:00:01"
    with pytest.raises(ValueError, match="48 bits"):
        format_peer_name(1 << 48)


@pytest.mark.parametrize(("table", "bits"), [("parse_uint64", 64), ("parse_uint12", 12)])
def test_unsigned_numbers_parse_as_strconv_does(table: str, bits: int) -> None:
    for case in go_fixtures()[table]:
        if case["value"] is None:
            with pytest.raises(ValueError, match=r"not an unsigned decimal|out of range"):
                parse_go_uint(case["text"], bits)
        else:
            assert parse_go_uint(case["text"], bits) == int(case["value"]), case


def test_booleans_parse_as_strconv_does() -> None:
    for case in go_fixtures()["parse_bool"]:
        if case["value"] is None:
            with pytest.raises(ValueError, match="is not a boolean"):
                parse_go_bool(case["text"])
        else:
            assert parse_go_bool(case["text"]) == (case["value"] == "true"), case


def test_local_features_are_what_weave_sends() -> None:
    local = LocalFeatures(name=0xAABBCC000001, nickname="node-a", uid=12345678901234567890,
                          conn_id=9876543210987654321, short_id=17, trusts_remote=False,
                          overlays=("fastdp", "sleeve"))
    assert local.to_wire() == transcript("v2-plain")["a"]["features"]


def test_no_overlays_entry_without_an_overlay() -> None:
    local = LocalFeatures(name=1, nickname="n", uid=1, conn_id=2, short_id=3, trusts_remote=True)
    assert "Overlays" not in local.to_wire()
    assert local.to_wire()["Trusted"] == "true"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("name", 1 << 48, "48 bits"), ("uid", -1, "uid must fit in 64 bits"),
    ("conn_id", 1 << 64, "conn_id must fit in 64 bits"),
    ("short_id", 4096, "short_id must fit in 12"),
])
def test_local_features_are_checked(field: str, value: int, message: str) -> None:
    values: dict[str, Any] = {"name": 1, "nickname": "n", "uid": 1, "conn_id": 2, "short_id": 3,
                              "trusts_remote": False}
    values[field] = value
    with pytest.raises(ValueError, match=message):
        LocalFeatures(**values)


def test_remote_features_parse() -> None:
    assert parse_remote_features(FEATURES_B) == RemoteFeatures(
        name=0xAABBCC000002, nickname="node-b", uid=42, conn_id=2**64 - 1, short_id=4095,
        trusted_by_remote=True, overlays=("fastdp", "sleeve"))


def test_optional_features_absent() -> None:
    remote = parse_remote_features(v1_subset(FEATURES_B))
    assert (remote.short_id, remote.trusted_by_remote, remote.overlays) == (None, False, None)


def test_an_empty_overlays_entry_is_one_empty_name_as_in_go() -> None:
    assert parse_remote_features({**FEATURES_B, "Overlays": ""}).overlays == ("",)


@pytest.mark.parametrize("missing", MANDATORY_FEATURES)
def test_each_mandatory_feature(missing: str) -> None:
    features = {k: v for k, v in FEATURES_B.items() if k != missing}
    with pytest.raises(FeaturesError, match=f"lack the mandatory entry '{missing}'"):
        parse_remote_features(features)


def test_peer_name_flavour_mismatch() -> None:
    with pytest.raises(FeaturesError, match="we use 'mac' peer names, the peer uses 'hash'"):
        parse_remote_features({**FEATURES_B, "PeerNameFlavour": "hash"})


@pytest.mark.parametrize(("key", "value", "message"), [
    ("Name", "node-b", "invalid Name in the peer's features: invalid peer name format"),
    ("ShortID", "4096", "invalid ShortID .* out of range for 12 bits"),
    ("Trusted", "yes", "invalid Trusted .* not a boolean"),
    ("UID", "-1", "invalid UID .* not an unsigned decimal"),
    ("ConnID", "18446744073709551616", "invalid ConnID .* out of range for 64 bits"),
])
def test_invalid_feature_values(key: str, value: str, message: str) -> None:
    with pytest.raises(FeaturesError, match=message):
        parse_remote_features({**FEATURES_B, key: value})


def test_v1_keeps_five_entries() -> None:
    assert sorted(v1_subset({**FEATURES_B, "PublicKey": "00"})) == sorted(MANDATORY_FEATURES)


@pytest.mark.parametrize("case", go_fixtures()["features_gob"],
                         ids=lambda c: f"{len(c['features'])}-entries")
def test_the_test_codec_reads_gos_gob(case: dict[str, Any]) -> None:
    codec = GobMapCodec()
    assert codec.decode_features(bytes.fromhex(case["gob"])) == case["features"]
    assert codec.decode_features(codec.encode_features(case["features"])) == case["features"]
