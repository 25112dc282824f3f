"""Incremental topology updates give the table that full summaries give.

A sender with one IncrementalEncoder per neighbour, a receiver that merges what
it can and asks for the rest in full: after every batch the receiver's table
equals a reference table that got the same batches as Go's full summaries (up to
placeholders nothing refers to), and it reports the same received / new peers.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.mesh.names import PeerName
from router.mesh.peers import PeerTable
from router.mesh.summary import (
    ConnectionSummary,
    PeerSummary,
    TopologyError,
    canonical,
    with_connections,
)
from router.mesh.topology_delta import (
    INCREMENTAL_TOPOLOGY_FEATURE,
    DigestEntry,
    FullSummaryRequest,
    IncrementalEncoder,
    IncrementalUpdate,
    PeerDelta,
    PullTracker,
    Purpose,
    SummaryHistory,
    SummaryRequest,
    TopologyDigest,
    apply_delta,
    apply_incremental_update,
    diff,
    digest_of,
    incremental_negotiated,
    summary_fingerprint,
    wanted_from,
)
from router.mesh.topology_delta_codec import Message, decode_message, encode_message
from tests.router.topology_strategies import (
    OURSELF,
    evolving_deliveries,
    fresh_table,
    state,
    summaries,
)

PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))


def wire(message: Message) -> Message:
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


def test_a_delta_s_result_hands_out_copies_of_its_connections_by_remote() -> None:
    """The map a delta's result was built from is kept for the table and the next
    delta, and only copies go out: what one holder changes, no other sees."""
    base, target = full_mesh(4, 1)[0], full_mesh(5, 2)[0]
    result = apply_delta(base, diff(base, target))
    assert result == target
    first = result.connections_by_remote()
    first.clear()
    assert result.connections_by_remote() == target.connections_by_remote()
    assert result.connections_by_remote() is not result.connections_by_remote()
    assert list(result.connections_by_remote().values()) == list(result.connections)


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


def test_a_delta_on_a_summary_the_receiver_held_before_resolves_from_its_history() -> None:
    """The sender is behind (it last sent v1, we have had v2 since): a v3 delta on v1
    still resolves, from the summaries we held."""
    v1, v2, v3 = (full_mesh(5, v)[0] for v in (1, 2, 3))
    history = SummaryHistory()
    receiver = fresh_table()
    for held in (v1, v2):
        receiver.apply_update([held])
        history.remember(held)
    delta = diff(v1, v3)
    assert apply_incremental_update(receiver, IncrementalUpdate((delta,))).needs_full == {v3.name}
    result = apply_incremental_update(receiver, IncrementalUpdate((delta,)), history)
    assert result.needs_full == frozenset() and receiver.get(v3.name) == v3


def test_the_feature_must_be_on_both_sides_in_the_same_version() -> None:
    on = {INCREMENTAL_TOPOLOGY_FEATURE: "3"}
    assert incremental_negotiated(on, on)
    assert not incremental_negotiated(on, {})
    assert not incremental_negotiated({INCREMENTAL_TOPOLOGY_FEATURE: "0"}, on)
    # Version 1 fingerprinted summaries another way: its bases never match ours; version
    # 2 wrote digest entries with varints.
    assert not incremental_negotiated({INCREMENTAL_TOPOLOGY_FEATURE: "1"}, on)
    assert not incremental_negotiated({INCREMENTAL_TOPOLOGY_FEATURE: "2"}, on)


def test_the_shared_history_is_bounded_and_bases_fall_back_to_a_guess_then_full() -> None:
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
    held_before = full_mesh(4, 7)[0]
    history.remember(held_before)  # what the neighbour held has left the history
    guessed = stale.encode([full_mesh(5, 8)[0]], Purpose.NEWS).items[0]
    assert isinstance(guessed, PeerDelta)  # against what we held before: gossip brought
    assert guessed.base_fingerprint == summary_fingerprint(held_before)  # it there too
    unknown = IncrementalEncoder(history)  # knows nothing of the neighbour: full
    assert isinstance(unknown.encode([full_mesh(5, 9)[0]]).items[0], PeerSummary)
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
    (b"\x01\x01\x02\x00", "unknown flags 0x2"),
    (b"\x01\x01\x00\x05\x00", "exceeds the message"),
    (b"\x01\x01\x00\x01\x04" + bytes(7), "unknown item kind 4"),
    (b"\x02\x01" + bytes(5), "exceeds the message"),
    (b"\x02\x00\x00\x00", "trailing bytes"),
    (b"\x02\x00\x01" + bytes(6), "held count 1 exceeds the message"),
    (b"\x02\x00\x01" + bytes(14), "not asked for"),
    (b"\x03\x01" + bytes(30), "exceeds the message"),
    (b"\x03\x01" + bytes(22) + b"\x02" + bytes(8), "HasShortID must be 0 or 1"),
    (b"\x03\x02" + bytes(62), "names a peer twice"),
    (b"\x04\x01" + bytes(5), "exceeds the message"),
    (b"\x01\x01\x00\x01\x00" + bytes(17) + b"\xff" * 11, "varint too long"),
    (b"\x01\x01\x00\x01\x00" + bytes(18) + b"\x01\xff", "not UTF-8"),
    (b"\x01\x01\x00\x01\x00" + bytes(16) + b"\x02\x00\x00\x00", "HasShortID must be 0 or 1"),
    (b"\x01\x01\x00\x01\x00" + bytes(16), "truncated summary"),
    (b"\x01\x01\x00\x01\x01" + bytes(24), "truncated delta"),
    (b"\x01\x01\x00\x01\x00" + bytes(19) + b"\x01" + bytes(6) + b"\x04\x00",
     "connection flags 0x4"),
])
def test_malformed_messages_raise_topology_error(data: bytes, cause: str) -> None:
    with pytest.raises(TopologyError, match=cause):
        decode_message(data)


@PROPERTY
@given(st.lists(summaries(), max_size=4, unique_by=lambda s: s.name), st.binary(max_size=8),
       st.integers(0, 31))
def test_codec_round_trips_and_never_crashes_on_garbage(items: list[PeerSummary],
                                                        noise: bytes, passed: int) -> None:
    pass_on = frozenset(s.name for i, s in enumerate(items) if passed >> i & 1)
    update = IncrementalUpdate(tuple(items), pass_on, to_all=passed >= 16)
    encoded = encode_message(update)
    assert decode_message(encoded) == update
    for corrupt in (encoded[:-1], encoded + noise[:1], noise, encoded[: len(noise)]):
        if corrupt == encoded:
            continue
        try:
            decoded = decode_message(corrupt)
        except TopologyError:
            continue  # the one error type malformed input may raise
        assert isinstance(decoded, IncrementalUpdate | FullSummaryRequest)


@PROPERTY
@given(st.lists(st.builds(DigestEntry, st.integers(0, (1 << 48) - 1).map(PeerName),
                          st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1),
                          st.booleans(), st.integers(0, (1 << 64) - 1)),
                max_size=6, unique_by=lambda e: e.name), st.integers(1, 30))
def test_digests_round_trip_and_a_cut_one_is_refused(entries: list[DigestEntry],
                                                     cut: int) -> None:
    encoded = encode_message(TopologyDigest(tuple(entries)))
    assert len(encoded) == 2 + 31 * len(entries)
    assert wire(TopologyDigest(tuple(entries))) == TopologyDigest(tuple(entries))
    if entries:
        with pytest.raises(TopologyError, match=r"exceeds the message|truncated"):
            decode_message(encoded[:-cut])


NEIGHBOUR = PeerName(0x90)


def replay(deliveries: list[tuple[str, list[PeerSummary]]], split: int,
           history: SummaryHistory | None = None) -> tuple[PeerTable, PeerTable]:
    """A receiver (us) and a neighbour that shared the first ``split`` batches, then
    each got its own ("full" ones went to the receiver, the rest to the neighbour).
    The neighbour's history holds every summary it held along the way, as its
    connections would have remembered them."""
    receiver = fresh_table()
    neighbour = PeerTable(NEIGHBOUR, "nb", 77, 4001, random.Random(1))
    for index, (how, batch) in enumerate(deliveries):
        if index < split or how == "full":
            receiver.apply_update(batch)
        if index < split or how != "full":
            neighbour.apply_update(batch)
        if history is not None:
            for summary in neighbour.summaries():
                history.remember(summary)
    return receiver, neighbour


@PROPERTY
@given(evolving_deliveries(), st.data())
def test_a_digest_exchange_gives_the_table_the_whole_topology_gives(
        deliveries: list[tuple[str, list[PeerSummary]]], data: st.DataObject) -> None:
    """A new connection: the receiver asks for what the neighbour's digest shows newer
    and gets it (as deltas where the neighbour can name the receiver's summary as a
    base); its table is then the one Go's sending every summary down gives."""
    split = data.draw(st.integers(0, len(deliveries)))
    history = SummaryHistory(depth=data.draw(st.integers(1, 4)))
    receiver, neighbour = replay(deliveries, split, history)
    reference, _ = replay(deliveries, split)
    reference.apply_update(neighbour.summaries())

    encoder = IncrementalEncoder(history)
    ours = wire(digest_of(receiver.summaries(), SummaryHistory()))
    assert isinstance(ours, TopologyDigest)
    encoder.note_digest(ours)
    theirs = wire(digest_of(neighbour.summaries(), history))
    assert isinstance(theirs, TopologyDigest)
    request = wire(SummaryRequest(PullTracker().choose(wanted_from(receiver, theirs),
                                                       "conn", 0.0)))
    assert isinstance(request, SummaryRequest)
    answer = wire(encoder.encode(neighbour.encode_summaries(request.names)))
    assert isinstance(answer, IncrementalUpdate)
    result = apply_incremental_update(receiver, answer)
    if result.needs_full:  # a base guessed (not in the neighbour's history): asked again
        again = wire(FullSummaryRequest(result.needs_full))
        assert isinstance(again, FullSummaryRequest)
        encoder.forget(again.names)
        answer = wire(encoder.encode(neighbour.encode_summaries(again.names)))
        assert isinstance(answer, IncrementalUpdate)
        assert apply_incremental_update(receiver, answer).needs_full == frozenset()
    assert state(receiver, drop_orphans=True) == state(reference, drop_orphans=True)
    # and now the neighbour holds nothing newer for us
    assert wanted_from(receiver, theirs) == ()


def test_after_a_digest_a_changed_summary_travels_as_a_delta_and_news_skip_the_known() -> None:
    before, after = full_mesh(30, 1), full_mesh(31, 2)[:30]  # everyone gained a peer
    receiver, sender = fresh_table(), fresh_table(seed=1)
    receiver.apply_update(before)
    sender.apply_update(after)
    history = SummaryHistory()
    for summary in before:  # what the sender held before: its history has them
        history.remember(summary)
    encoder = IncrementalEncoder(history)
    encoder.note_digest(digest_of(receiver.summaries(), SummaryHistory()))
    digest = digest_of(sender.summaries(), SummaryHistory())
    wanted = {entry.name for entry in wanted_from(receiver, digest)}
    newcomer = PeerName(0x1000 + 30)  # named in the connection lists: a placeholder
    assert wanted == {s.name for s in after} | {newcomer}
    answer = encoder.encode(sender.encode_summaries(wanted - {newcomer}))
    assert all(isinstance(item, PeerDelta) and len(item.added) == 1 for item in answer.items)
    assert len(encode_message(answer)) * 10 < len(encode_message(IncrementalUpdate(
        tuple(after))))
    assert apply_incremental_update(receiver, answer).needs_full == frozenset()
    # the neighbour holds these now: relayed news leaves them out, the repair does not
    assert encoder.encode(after, Purpose.NEWS).items == ()
    assert len(encoder.encode(after).items) == len(after)


def test_without_a_known_base_news_guesses_the_previous_repair_the_current_answers_go_whole(
        ) -> None:
    older, newer = full_mesh(8, 1)[0], full_mesh(8, 2)[0]
    history = SummaryHistory()
    history.remember(older)  # we held it; this neighbour's connection never carried it
    items = {purpose: IncrementalEncoder(history).encode([newer], purpose).items[0]
             for purpose in Purpose}
    news, repair, answer = items[Purpose.NEWS], items[Purpose.REPAIR], items[Purpose.ANSWER]
    assert isinstance(news, PeerDelta) and news.base_fingerprint == summary_fingerprint(older)
    assert isinstance(repair, PeerDelta) and repair.added == () and repair.removed == ()
    assert repair.base_fingerprint == summary_fingerprint(newer)  # "you hold this?"
    assert answer == newer
    # a receiver that holds the current summary takes the repair as a no-op; one that
    # holds the older one cannot place it and asks (it supersedes what it holds)
    current, behind = fresh_table(), fresh_table()
    current.apply_update([newer])
    behind.apply_update([older])
    assert apply_incremental_update(current, IncrementalUpdate((repair,))).update.new == set()
    assert apply_incremental_update(behind, IncrementalUpdate((repair,))).needs_full == {
        newer.name}
    assert apply_incremental_update(behind, IncrementalUpdate((news,))).update.new == {
        newer.name}
    # several reasons for one summary: the strongest decides
    other = full_mesh(8, 2)[1]
    mixed = IncrementalEncoder(history).encode([newer, other], {other.name: Purpose.REPAIR,
                                                                newer.name: Purpose.ANSWER})
    assert mixed.items[0] == newer and isinstance(mixed.items[1], PeerDelta)


def test_our_other_incarnation_in_a_digest_is_asked_for() -> None:
    table = fresh_table()
    ours = table.local_summary()
    stale = DigestEntry(OURSELF, ours.uid + 1, ours.version, True, 1)
    same = DigestEntry(OURSELF, ours.uid, 9, True, 1)
    assert wanted_from(table, TopologyDigest((stale,))) == (stale,)
    assert wanted_from(table, TopologyDigest((same,))) == ()


def test_the_pull_tracker_asks_one_neighbour_at_a_time() -> None:
    table = fresh_table()
    v1, v2, v3 = (DigestEntry(PeerName(0x10), 1, v, True, v) for v in (1, 2, 3))
    tracker = PullTracker(timeout=5.0)
    assert tracker.choose([v1], "a", 0.0) == {v1.name}
    assert tracker.choose([v1], "b", 1.0) == frozenset()  # asked of a already
    assert tracker.choose([v2], "b", 1.0) == frozenset()  # newer: once a answered
    tracker.dropped("a")
    assert tracker.choose([v1], "c", 2.0) == {v1.name}  # a went: ask again
    assert tracker.choose([v1], "d", 7.1) == {v1.name}  # c took too long
    assert tracker.choose([v3], "e", 7.2) == frozenset()
    assert tracker.choose([v2], "f", 7.3) == frozenset()  # not newer than e's offer
    table.apply_update([PeerSummary(v1.name, "x", 1, 1, 3, True)])
    assert tracker.received(table, [v1.name], 8.0) == {"e": {v1.name}}  # d answered v1
    assert tracker.pending() == {v1.name}
    table.apply_update([PeerSummary(v1.name, "x", 1, 3, 3, True)])  # news brought v3
    assert tracker.received(table, [v1.name], 8.5) == {}
    assert tracker.pending() == frozenset()


def test_news_that_overtakes_a_pull_ends_it_without_asking_again() -> None:
    table = fresh_table()
    v1, v2 = (DigestEntry(PeerName(0x10), 1, v, True, v) for v in (1, 2))
    tracker = PullTracker(timeout=5.0)
    assert tracker.choose([v1], "a", 0.0) == {v1.name}
    assert tracker.choose([v2], "b", 0.5) == frozenset()
    table.apply_update([PeerSummary(v1.name, "x", 1, 2, 3, True)])
    assert tracker.received(table, [v1.name], 1.0) == {}
    assert tracker.pending() == frozenset()


def test_a_digest_entry_checks_its_ranges() -> None:
    with pytest.raises(TopologyError, match="Version out of range"):
        DigestEntry(PeerName(1), 1, 1 << 64, True, 0)


@PROPERTY
@given(summaries(), summaries(), st.randoms(use_true_random=False))
def test_fingerprints_name_the_canonical_content(a: PeerSummary, b: PeerSummary,
                                                 rng: random.Random) -> None:
    """Equal content (connections by remote, in any order, the last of a remote's entries
    winning) has one fingerprint; different content has different ones; and a summary
    rebuilt around connection objects another one holds (cached digests) agrees with one
    built from fresh objects."""
    shuffled = list(canonical(a).connections)
    rng.shuffle(shuffled)
    reordered = PeerSummary(a.name, a.nickname, a.uid, a.version, a.short_id, a.has_short_id,
                            tuple(shuffled))
    assert summary_fingerprint(reordered) == summary_fingerprint(a)
    fresh = PeerSummary(a.name, a.nickname, a.uid, a.version, a.short_id, a.has_short_id,
                        tuple(ConnectionSummary(c.remote, c.remote_tcp_addr, c.outbound,
                                                c.established) for c in a.connections))
    assert summary_fingerprint(fresh) == summary_fingerprint(a)
    same = canonical(a) == canonical(b)
    assert (summary_fingerprint(a) == summary_fingerprint(b)) == same
    flipped = [ConnectionSummary(c.remote, c.remote_tcp_addr, c.outbound, not c.established)
               for c in canonical(a).connections]
    if flipped:
        changed = with_connections(a, {c.remote: c for c in flipped})
        assert summary_fingerprint(changed) != summary_fingerprint(a)


@PROPERTY
@given(summaries(), summaries())
def test_a_delta_gives_the_fingerprint_the_whole_summary_has(a: PeerSummary,
                                                              b: PeerSummary) -> None:
    """A summary built from a delta carries a fingerprint worked out from its base's and
    the changed connections: the same as computing it from scratch."""
    target = PeerSummary(a.name, b.nickname, b.uid, b.version, b.short_id, b.has_short_id,
                         b.connections)
    base = canonical(a)
    built = apply_delta(base, diff(base, target))
    fresh = PeerSummary(built.name, built.nickname, built.uid, built.version, built.short_id,
                        built.has_short_id, built.connections)
    assert built == canonical(target)
    assert summary_fingerprint(built) == summary_fingerprint(fresh) == summary_fingerprint(
        target)


def test_a_request_for_a_missing_base_names_the_one_held_and_gets_a_delta_on_it() -> None:
    """The sender guessed a base the receiver lacks (it holds an older one): the request
    names what the receiver holds, and the answer is a delta on that, not the whole
    summary."""
    v1 = full_mesh(6, 1)[0]
    v2 = with_connections(PeerSummary(v1.name, v1.nickname, v1.uid, 2, v1.short_id, True),
                          {c.remote: c for c in v1.connections[1:]})
    flipped = v2.connections[0]
    v3 = with_connections(PeerSummary(v1.name, v1.nickname, v1.uid, 3, v1.short_id, True),
                          {**v2.connections_by_remote(), flipped.remote: ConnectionSummary(
                              flipped.remote, flipped.remote_tcp_addr, flipped.outbound,
                              False)})
    history = SummaryHistory()
    for version in (v1, v2):
        history.remember(version)
    encoder = IncrementalEncoder(history)
    receiver = fresh_table()
    receiver.apply_update([v1])
    news = wire(encoder.encode([v3], Purpose.NEWS))
    assert isinstance(news, IncrementalUpdate)
    result = apply_incremental_update(receiver, news)
    assert result.needs_full == {v1.name}  # the guess (v2) is not held
    request = wire(FullSummaryRequest(result.needs_full,
                                      ((v1.name, summary_fingerprint(v1)),)))
    assert isinstance(request, FullSummaryRequest)
    encoder.note_request(request)
    answer = wire(encoder.encode([v3], Purpose.ANSWER))
    assert isinstance(answer, IncrementalUpdate)
    assert isinstance(answer.items[0], PeerDelta)
    assert answer.items[0].base_fingerprint == summary_fingerprint(v1)
    assert apply_incremental_update(receiver, answer).needs_full == frozenset()
    assert receiver.get(v1.name) == v3
    # a base the sender never had goes whole
    encoder.note_request(FullSummaryRequest(frozenset({v1.name}), ((v1.name, 12345),)))
    again = encoder.encode([v3], Purpose.ANSWER)
    assert isinstance(again.items[0], PeerSummary)
    with pytest.raises(TopologyError, match="not asked for"):
        FullSummaryRequest(frozenset(), ((v1.name, 1),))
    # a pull after a digest says what it holds too: the answer is a delta on it (a
    # neighbour whose news came through a hub is not known to hold any base here)
    pull = wire(SummaryRequest(frozenset({v1.name}), ((v1.name, summary_fingerprint(v1)),)))
    assert isinstance(pull, SummaryRequest)
    encoder.note_request(pull)
    delta = encoder.encode([v3], Purpose.ANSWER).items[0]
    assert isinstance(delta, PeerDelta) and delta.base_fingerprint == summary_fingerprint(v1)
    with pytest.raises(TopologyError, match="not asked for"):
        SummaryRequest(frozenset(), ((v1.name, 1),))
