"""Generated values of every schema survive our encoder and decoder unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.ipam import messages as ipam
from router.mesh import messages as mesh
from router.mesh.gob import Decoder, Encoder, GobError, GobType, TypeIds, decode, encode
from router.mesh.gob.schema import MapOf, base_of
from tests.router.gob_samples import INNER, KITCHEN, values

SCHEMAS: dict[str, GobType[Any]] = {
    "features": mesh.FEATURES,
    "peer_summary": mesh.PEER_SUMMARY,
    "connection_summaries": mesh.CONNECTION_SUMMARIES,
    "gossip_state": ipam.GOSSIP_STATE,
    "ring": ipam.RING,
    "paxos": ipam.PAXOS_GOSSIP_STATE,
    "range": ipam.RANGE,
    "kitchen": KITCHEN,
    "inner": INNER,
}
EXAMPLES = settings(max_examples=60, deadline=None)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_round_trip(name: str) -> None:
    schema = SCHEMAS[name]

    @EXAMPLES
    @given(values(schema))
    def check(value: Any) -> None:
        data = encode(schema, value)
        assert decode(schema, data) == value
        assert encode(schema, decode(schema, data)) == data

    check()


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_a_fresh_stream_is_what_a_fresh_encoder_writes(name: str) -> None:
    """``encode`` works out a schema's id and definitions once and reuses them; every
    stream must still be the one a new :class:`Encoder` writes, and a value that does
    not fit must still be refused."""
    schema = SCHEMAS[name]

    @EXAMPLES
    @given(values(schema))
    def check(value: Any) -> None:
        assert encode(schema, value) == Encoder().encode(schema, value)
        assert encode(schema, value) == Encoder().encode(schema, value)  # from the cache

    check()
    if not isinstance(base_of(schema), MapOf):  # a nil map is a value; nil others are not
        with pytest.raises(GobError, match="cannot encode a nil"):
            encode(schema, None)


@pytest.mark.parametrize("name", ["gossip_state", "kitchen", "connection_summaries"])
def test_streams_of_several_values(name: str) -> None:
    schema = SCHEMAS[name]

    @EXAMPLES
    @given(st.lists(values(schema), min_size=1, max_size=4), st.sampled_from([None, 64, 65]))
    def check(items: list[Any], first_id: int | None) -> None:
        encoder = Encoder(TypeIds(first_id) if first_id else None)
        stream = b"".join(encoder.encode(schema, item) for item in items)
        decoder = Decoder(stream)
        assert [decoder.decode(schema) for _ in items] == items
        assert decoder.at_end()

    check()


@EXAMPLES
@given(
    st.lists(
        st.builds(
            mesh.TopologyPeer,
            values(mesh.PEER_SUMMARY),
            values(mesh.CONNECTION_SUMMARIES),
        ),
        max_size=5,
    )
)
def test_topology_round_trip(peers: list[mesh.TopologyPeer]) -> None:
    assert mesh.decode_topology(mesh.encode_topology(peers)) == peers


@EXAMPLES
@given(
    st.text(max_size=20),
    st.integers(0, (1 << 64) - 1),
    st.binary(max_size=40),
    st.none() | st.integers(0, (1 << 64) - 1),
)
def test_gossip_body_round_trip(
    channel: str, source: int, payload: bytes, destination: int | None
) -> None:
    body = mesh.GossipBody(channel, source, payload, destination)
    decoded = mesh.decode_gossip(mesh.encode_gossip(body), unicast=destination is not None)
    assert decoded == body


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=20),
    st.integers(0, (1 << 64) - 1),
    st.binary(max_size=300),
    st.none() | st.integers(0, (1 << 64) - 1),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=3),
    st.integers(min_value=0),
)
def test_gossip_bodies_are_written_and_read_as_the_gob_encoder_and_decoder_do(
    channel: str, source: int, payload: bytes, destination: int | None,
    changes: list[tuple[int, int]], cut: int,
) -> None:
    """The direct path for gossip bodies against the general encoder and decoder: the
    same bytes out, and for any bytes in (changed, cut short) the same body or the
    same kind of error."""
    body = mesh.GossipBody(channel, source, payload, destination)
    data = mesh.encode_gossip(body)
    assert data == mesh._encode_gossip_with(Encoder(), body)
    mutated = bytearray(data)
    for where, byte in changes:
        mutated[where % len(mutated)] = byte
    mutated = mutated[:len(mutated) - cut % 4] if changes else mutated
    for unicast in (False, True):
        outcomes: list[mesh.GossipBody | type[GobError]] = []
        for read in (mesh.decode_gossip, mesh._decode_gossip_stream):
            try:
                outcomes.append(read(bytes(mutated), unicast=unicast))
            except GobError as err:
                outcomes.append(type(err))
        assert outcomes[0] == outcomes[1]


@EXAMPLES
@given(
    st.one_of(
        st.builds(ipam.SpaceRequest, values(ipam.RANGE)),
        st.builds(ipam.SpaceRequestDenied, values(ipam.RANGE)),
        st.builds(ipam.RingUpdate, values(ipam.GOSSIP_STATE)),
    )
)
def test_ipam_unicast_round_trip(message: ipam.UnicastMessage) -> None:
    assert ipam.decode_unicast(ipam.encode_unicast(message)) == message
