"""Incremental topology updates give the table that full summaries give.

A sender with one IncrementalEncoder per neighbour, a receiver that merges what
it can and asks for the rest in full: after every batch the receiver's table
equals a reference table that got the same batches as Go's full summaries (up to
placeholders nothing refers to), and it reports the same received / new peers.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.mesh.names import PeerName
from router.mesh.peers import PeerTable
from router.mesh.summary import ConnectionSummary, PeerSummary, TopologyError
from router.mesh.topology_delta import (
    INCREMENTAL_TOPOLOGY_FEATURE,
    FullSummaryRequest,
    IncrementalEncoder,
    IncrementalUpdate,
    PeerDelta,
    SummaryHistory,
    apply_delta,
    apply_incremental_update,
    diff,
    incremental_negotiated,
    summary_fingerprint,
)
from router.mesh.topology_delta_codec import decode_message, encode_message
from tests.router.topology_strategies import evolving_deliveries, fresh_table, state, summaries

PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))


def wire(message: IncrementalUpdate | FullSummaryRequest) -> IncrementalUpdate | FullSummaryRequest:
    """Through the codec, as a neighbour would receive it."""
    decoded = decode_message(encode_message(message))
    assert decoded == message
    return decoded


def deliver_incrementally(receiver: PeerTable, encoder: IncrementalEncoder,
                          batch: list[PeerSummary]) -> tuple[frozenset[PeerName], set[PeerName]]:
    """Send ``batch`` the incremental way, answering any request for full summaries."""
    message = wire(encoder.encode(batch))
    assert isinstance(message, IncrementalUpdate)
    result = apply_incremental_update(receiver, message)
    new = set(result.update.new)
    if result.needs_full:
        request = wire(FullSummaryRequest(result.needs_full))
        assert isinstance(request, FullSummaryRequest)
        encoder.forget(request.names)
        answer = wire(encoder.encode([s for s in batch if s.name in request.names]))
        assert isinstance(answer, IncrementalUpdate)
        assert all(isinstance(item, PeerSummary) for item in answer.items)
        second = apply_incremental_update(receiver, answer)
        assert second.needs_full == frozenset()
        new |= second.update.new
    return result.update.received, new


batches = st.lists(
    st.tuples(st.sampled_from(["incremental", "full", "echo"]),
              st.lists(summaries(), max_size=5, unique_by=lambda s: s.name)),
    max_size=8)


@PROPERTY
@given(evolving_deliveries(), st.integers(1, 4))
def test_incremental_updates_of_evolving_peers_merge_to_the_same_table(deliveries: list[
        tuple[str, list[PeerSummary]]], depth: int) -> None:
    check_same_table(deliveries, depth)


@PROPERTY
@given(batches, st.integers(1, 4))
def test_incremental_updates_of_arbitrary_summaries_merge_to_the_same_table(deliveries: list[
        tuple[str, list[PeerSummary]]], depth: int) -> None:
    check_same_table(deliveries, depth)


def check_same_table(deliveries: list[tuple[str, list[PeerSummary]]], depth: int) -> None:
    reference, receiver = fresh_table(), fresh_table()
    encoder = IncrementalEncoder(SummaryHistory(depth))
    for how, batch in deliveries:
        if how == "echo":
            # The neighbour gossiped to us: what it sent, it had.
            encoder.note_received(receiver.encode_summaries(s.name for s in batch))
            continue
        expected = reference.apply_update(batch)
        if how == "full":  # e.g. from a Go neighbour
            got = receiver.apply_update(batch)
            received, new = got.received, set(got.new)
        else:
            received, new = deliver_incrementally(receiver, encoder, batch)
        assert received == expected.received
        assert new == expected.new
        assert state(receiver, drop_orphans=True) == state(reference, drop_orphans=True)
    reference.garbage_collect()
    receiver.garbage_collect()
    assert state(receiver) == state(reference)


def full_mesh(size: int, version: int) -> list[PeerSummary]:
    names = [PeerName(0x1000 + i) for i in range(size)]
    return [PeerSummary(n, f"n{i}", 7 + i, version, i, True,
                        tuple(ConnectionSummary(r, f"10.0.{j // 250}.{j % 250}:6783", n < r, True)
                              for j, r in enumerate(names) if r != n))
            for i, n in enumerate(names)]


def test_a_join_into_a_full_mesh_costs_linear_bytes() -> None:
    """weaveworks/mesh#108: Go resends every list, O(N²); deltas carry one entry each."""
    before, size = full_mesh(60, 1), 60
    after = full_mesh(size + 1, 2)[:size]  # everyone now also lists the newcomer
    encoder = IncrementalEncoder(SummaryHistory())
    full_bytes = len(encode_message(encoder.encode(before)))
    delta_message = encoder.encode(after)
    delta_bytes = len(encode_message(delta_message))
    assert all(isinstance(item, PeerDelta) and len(item.added) == 1 and not item.removed
               for item in delta_message.items)
    assert delta_bytes * 20 < full_bytes
    receiver = fresh_table()
    receiver.apply_update(before)
    result = apply_incremental_update(receiver, delta_message)
    assert result.needs_full == frozenset() and result.update.new == {s.name for s in after}
    assert [receiver.get(s.name) for s in after] == after


def test_delta_round_trip_and_base_check() -> None:
    base, target = full_mesh(4, 1)[0], full_mesh(3, 2)[0]
    delta = diff(base, target)
    assert delta.removed == (PeerName(0x1003),) and delta.added == ()
    assert apply_delta(base, delta) == target
    assert delta.base_fingerprint == summary_fingerprint(base)
    with pytest.raises(TopologyError, match="does not apply"):
        apply_delta(target, delta)
    with pytest.raises(TopologyError, match="different peers"):
        diff(base, full_mesh(4, 1)[1])


def test_a_delta_the_receiver_cannot_place_is_skipped_or_requested() -> None:
    old, mid, new = (full_mesh(5, v)[0] for v in (1, 2, 3))
    delta = diff(old, new)
    receiver = fresh_table()
    receiver.apply_update([mid])  # not the base
    result = apply_incremental_update(receiver, IncrementalUpdate((delta,)))
    assert result.needs_full == {new.name} and result.update.received == {new.name}
    ahead = fresh_table()
    ahead.apply_update([full_mesh(5, 9)[0]])  # already past the delta: skip, as Go would
    assert apply_incremental_update(ahead, IncrementalUpdate((delta,))).needs_full == frozenset()


def test_the_feature_must_be_on_both_sides() -> None:
    on = {INCREMENTAL_TOPOLOGY_FEATURE: "1"}
    assert incremental_negotiated(on, on)
    assert not incremental_negotiated(on, {})
    assert not incremental_negotiated({INCREMENTAL_TOPOLOGY_FEATURE: "0"}, on)


def test_the_shared_history_is_bounded_and_bases_fall_back_to_full() -> None:
    history = SummaryHistory(depth=2)
    versions = [full_mesh(4, v)[0] for v in (1, 2, 3)]
    fingerprints = [history.remember(s) for s in versions]
    assert history.lookup(versions[0].name, fingerprints[0]) is None  # pushed out
    assert history.lookup(versions[2].name, fingerprints[2]) == versions[2]
    encoder = IncrementalEncoder(history)
    encoder.note_received([versions[0]])  # pushes versions[1] out in turn
    assert isinstance(encoder.encode([versions[2]]).items[0], PeerDelta)
    stale = IncrementalEncoder(history)
    stale.note_received([versions[1]])
    history.remember(full_mesh(4, 7)[0])
    assert isinstance(stale.encode([full_mesh(5, 8)[0]]).items[0], PeerSummary)
    history.forget_peers([versions[0].name])
    assert history.lookup(versions[0].name, fingerprints[2]) is None


def test_an_update_names_each_peer_once() -> None:
    summary = full_mesh(2, 1)[0]
    with pytest.raises(TopologyError, match="twice"):
        IncrementalUpdate((summary, summary))


@pytest.mark.parametrize(("data", "cause"), [
    (b"", "truncated message kind"),
    (b"\x09", "unknown message kind"),
    (b"\x01\x02\x00", "unknown format"),
    (b"\x01\x01\x05\x00", "exceeds the message"),
    (b"\x01\x01\x01\x02" + bytes(7), "item kind must be 0 or 1"),
    (b"\x02\x01" + bytes(5), "exceeds the message"),
    (b"\x02\x00\x00", "trailing bytes"),
    (b"\x01\x01\x01\x00" + bytes(6) + b"\x00" + b"\xff" * 11, "varint too long"),
    (b"\x01\x01\x01\x00" + bytes(6) + b"\x01\xff", "not UTF-8"),
    (b"\x01\x01\x01\x00" + bytes(6) + b"\x00\x01\x01\x80\x80\x04\x01\x00", "ShortID out of range"),
])
def test_malformed_messages_raise_topology_error(data: bytes, cause: str) -> None:
    with pytest.raises(TopologyError, match=cause):
        decode_message(data)


@PROPERTY
@given(st.lists(summaries(), max_size=4, unique_by=lambda s: s.name), st.binary(max_size=8))
def test_codec_round_trips_and_never_crashes_on_garbage(items: list[PeerSummary],
                                                        noise: bytes) -> None:
    encoded = encode_message(IncrementalUpdate(tuple(items)))
    assert decode_message(encoded) == IncrementalUpdate(tuple(items))
    for corrupt in (encoded[:-1], encoded + noise[:1], noise, encoded[: len(noise)]):
        if corrupt == encoded:
            continue
        try:
            decoded = decode_message(corrupt)
        except TopologyError:
            continue  # the one error type malformed input may raise
        assert isinstance(decoded, IncrementalUpdate | FullSummaryRequest)
