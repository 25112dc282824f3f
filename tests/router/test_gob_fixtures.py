"""Our gob codec against streams written by Go's encoding/gob (fixtures/gob_fixtures.json).

Every stream is decoded to the values the Go program recorded; every stream we
can reproduce is re-encoded byte for byte: from the recorded values when the
bytes are deterministic, and from the decoded values always (decoding keeps
map entries in the order Go wrote them).
"""

from __future__ import annotations

from typing import Any

import pytest

from router.ipam import messages as ipam
from router.mesh import messages as mesh
from router.mesh.gob import Decoder, Encoder, TypeIds
from tests.router.gob_samples import (
    DECODE_ONLY,
    IPAM_UNICAST_CASES,
    SCHEMAS,
    from_json,
    has_multi_entry_map,
    load_fixtures,
    stream_bytes,
)

CASES = load_fixtures()
GO_FIRST_ID = 64
"""The Go that wrote the fixtures (1.21+) numbers user types from 64."""


def by_name(name: str) -> dict[str, Any]:
    return next(c for c in CASES if c["name"] == name)


def case_ids(case: dict[str, Any]) -> str:
    return str(case["name"])


def test_fixtures_cover_every_message() -> None:
    names = {c["name"] for c in CASES}
    assert len(CASES) >= 25
    for prefix in ("features_", "gossip_", "topology_", "ipam_gossip_", "ipam_space_", "codec_"):
        assert any(n.startswith(prefix) for n in names), prefix
    assert {"ipam_ring_update", "shared_process", "codec_wide_to_narrow"} <= names


@pytest.mark.parametrize("case", CASES, ids=case_ids)
def test_decodes_to_the_values_go_sent(case: dict[str, Any]) -> None:
    for stream in case["streams"]:
        decoder = Decoder(stream_bytes(case, stream))
        for item in stream["items"]:
            schema = SCHEMAS[item["schema"]]
            assert decoder.decode(schema) == from_json(schema, item["value"])
        assert decoder.at_end()


def encodable(case: dict[str, Any]) -> bool:
    return all(i["schema"] not in DECODE_ONLY for s in case["streams"] for i in s["items"])


@pytest.mark.parametrize("case", [c for c in CASES if encodable(c)], ids=case_ids)
def test_reencoding_what_we_decoded_gives_go_bytes(case: dict[str, Any]) -> None:
    type_ids = TypeIds(GO_FIRST_ID)  # one Go process wrote all of a case's streams
    for stream in case["streams"]:
        data = stream_bytes(case, stream)
        decoder, encoder = Decoder(data), Encoder(type_ids)
        out = b""
        for item in stream["items"]:
            schema = SCHEMAS[item["schema"]]
            out += encoder.encode(schema, decoder.decode(schema))
        assert out.hex() == data.hex()


def deterministic(case: dict[str, Any]) -> bool:
    items = [i for s in case["streams"] for i in s["items"]]
    return encodable(case) and not any(has_multi_entry_map(i["value"]) for i in items)


@pytest.mark.parametrize("case", [c for c in CASES if deterministic(c)], ids=case_ids)
def test_encoding_go_values_gives_go_bytes(case: dict[str, Any]) -> None:
    type_ids = TypeIds(GO_FIRST_ID)
    for stream in case["streams"]:
        encoder = Encoder(type_ids)
        out = b"".join(
            encoder.encode(SCHEMAS[i["schema"]], from_json(SCHEMAS[i["schema"]], i["value"]))
            for i in stream["items"]
        )
        assert out.hex() == stream_bytes(case, stream).hex()


def test_deterministic_cases_are_most_cases() -> None:
    """Guard the guard: the byte-exact encode test must not silently skip everything."""
    assert sum(deterministic(c) for c in CASES) >= len(CASES) - 6


def test_shared_process_numbers_types_after_the_first_stream() -> None:
    """Go numbers types per process: the second stream's types start after the first's."""
    first, second = by_name("shared_process")["streams"]
    type_ids = TypeIds(GO_FIRST_ID)
    assert (
        mesh.encode_features({"PeerNameFlavour": "mac"}, type_ids=type_ids).hex() == (first["hex"])
    )
    peers = mesh.decode_topology(bytes.fromhex(second["hex"]))
    assert mesh.encode_topology(peers, type_ids=type_ids).hex() == second["hex"]
    # The same peers from a fresh process are numbered from the start again.
    assert (
        mesh.encode_topology(peers, type_ids=TypeIds(GO_FIRST_ID)).hex()
        == (by_name("topology_three_peers")["streams"][0]["hex"])
    )


# --- the message functions on the same fixtures ----------------------------------------


def only_stream(name: str) -> tuple[bytes, list[dict[str, Any]]]:
    (stream,) = by_name(name)["streams"]
    return bytes.fromhex(stream["hex"]), stream["items"]


def test_features_handshake() -> None:
    data, items = only_stream("features_handshake")
    features = mesh.decode_features(data)
    assert features == from_json(mesh.FEATURES, items[0]["value"])
    assert features["NickName"] == "nöde-1 ☃"
    assert mesh.encode_features(features, type_ids=TypeIds(GO_FIRST_ID)) == data


@pytest.mark.parametrize(
    ("name", "unicast"),
    [("gossip_broadcast", False), ("gossip_unicast", True), ("gossip_empty_payload", False)],
)
def test_gossip_bodies(name: str, unicast: bool) -> None:
    data, items = only_stream(name)
    body = mesh.decode_gossip(data, unicast=unicast)
    assert body.channel == items[0]["value"]
    assert body.source == items[1]["value"]
    assert body.payload == bytes.fromhex(items[-1]["value"])
    assert body.destination == (items[2]["value"] if unicast else None)
    assert mesh.encode_gossip(body, type_ids=TypeIds(GO_FIRST_ID)) == data


def test_unicast_destination_is_a_full_uint64() -> None:
    data, _ = only_stream("gossip_unicast")
    assert mesh.decode_gossip(data, unicast=True).destination == 0xFFFFFFFFFFFF


@pytest.mark.parametrize(
    "name",
    [
        "topology_one_peer_no_conns",
        "topology_placeholder_peer",
        "topology_three_peers",
        "topology_full_mesh_5",
    ],
)
def test_topology_updates(name: str) -> None:
    data, items = only_stream(name)
    peers = mesh.decode_topology(data)
    assert len(peers) == len(items) // 2
    for peer, summary, conns in zip(peers, items[::2], items[1::2], strict=True):
        assert peer.summary == from_json(mesh.PEER_SUMMARY, summary["value"])
        assert peer.connections == from_json(mesh.CONNECTION_SUMMARIES, conns["value"])
    assert mesh.encode_topology(peers, type_ids=TypeIds(GO_FIRST_ID)) == data


def test_full_mesh_connections() -> None:
    peers = mesh.decode_topology(only_stream("topology_full_mesh_5")[0])
    assert [len(p.connections) for p in peers] == [4] * 5
    assert peers[0].summary.uid == 0x1234567890ABCDEF
    assert peers[2].connections[0].remote_tcp_addr == "10.32.0.1:6783"


@pytest.mark.parametrize("name", sorted(IPAM_UNICAST_CASES))
def test_ipam_unicast(name: str) -> None:
    data, items = only_stream(name)
    assert data[0] == IPAM_UNICAST_CASES[name]
    message = ipam.decode_unicast(data)
    if isinstance(message, ipam.RingUpdate):
        assert message.state == from_json(ipam.GOSSIP_STATE, items[0]["value"])
        assert message.state.ring is not None and len(message.state.ring.entries) == 3
    else:
        assert message.range == from_json(ipam.RANGE, items[0]["value"])
    assert ipam.encode_unicast(message, type_ids=TypeIds(GO_FIRST_ID)) == data


def test_ipam_nil_and_empty_maps_are_told_apart() -> None:
    observer = ipam.decode_gossip_state(only_stream("ipam_gossip_observer")[0])
    assert observer == ipam.GossipState(now=-5, nicknames=None, paxos=None, ring=None)
    empty = ipam.decode_gossip_state(only_stream("ipam_gossip_empty_maps")[0])
    assert empty == ipam.GossipState(now=0, nicknames={}, paxos={}, ring=None)


def test_ipam_paxos_state() -> None:
    state = ipam.decode_gossip_state(only_stream("ipam_gossip_paxos")[0])
    assert state.paxos is not None and state.ring is None
    node = ipam.NodeID(name=0xCE31E006451A, uid=0xFFFFFFFFFFFFFFFF)
    claims = state.paxos[node]
    assert claims.accepted_val.value == (0xCE31E006451A, 0x2A0000000001)
    assert claims.promise == ipam.ProposalID(round=2, proposer=node)


def test_ipam_state_defined_once_used_twice() -> None:
    data, _items = only_stream("ipam_gossip_twice")
    decoder = Decoder(data)
    first, second = decoder.decode(ipam.GOSSIP_STATE), decoder.decode(ipam.GOSSIP_STATE)
    assert decoder.at_end()
    assert (first.now, second.now) == (10, 11)
    assert second.paxos == {} and second.ring is None
