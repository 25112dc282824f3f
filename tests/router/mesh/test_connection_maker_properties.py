"""Properties of the connection maker over generated event sequences (hypothesis).

A small runtime double answers the maker's plans the way the agent will: it holds the
dials in progress, and generated steps complete them, fail them, end connections, add
inbound ones, change the topology, let time pass, or send /connect and /forget.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from router.mesh.connection_maker import (
    INITIAL_INTERVAL,
    MAX_INTERVAL,
    SECOND,
    ConnectionMaker,
    OurConnection,
    Plan,
    ReportedConnection,
    TargetState,
    TerminationCause,
)
from router.mesh.names import PeerName
from router.mesh.peer_address import DirectPeer, parse_peer, resolve_peer

EXAMPLES = settings(max_examples=60, deadline=None)
US = PeerName(1)
PEER_TEXTS = ["10.0.0.1", "10.0.0.1:6783", "10.0.0.2", "10.0.0.3:6783", "10.0.0.4:7000",
              "10.0.0.5"]
REPORTED_ADDRESSES = ["10.0.0.3:6783", "10.0.0.6:6783", "10.0.0.7:5000", "10.0.0.2:40000"]


def resolved(texts: list[str]) -> list[DirectPeer]:
    return [resolve_peer(parse_peer(text), lambda host: []) for text in texts]


@dataclass
class Runtime:
    """The agent's side: dials in progress and live connections."""

    maker: ConnectionMaker
    limit: int
    now: int = 100 * SECOND
    pending: list[str] = field(default_factory=list)
    live: list[OurConnection] = field(default_factory=list)
    next_id: int = 1

    def accept(self, plan: Plan) -> None:
        live_outbound = {c.address for c in self.live if c.outbound}
        addresses = [d.address for d in plan.dial]
        assert len(set(addresses)) == len(addresses), "dialled twice in one plan"
        for address in addresses:
            assert address not in self.pending, f"{address} dialled while a dial is in progress"
            assert address not in live_outbound, f"{address} dialled while connected"
        self.pending += addresses
        if self.limit and plan.dial:
            assert len(self.pending) + len(self.live) <= self.limit
        for address in self.pending:
            target = self.maker.target(address)
            assert target is not None and target.state is TargetState.ATTEMPTING
        if plan.next_check_at is not None:
            assert plan.next_check_at > self.now

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def step(self, op: tuple[Any, ...]) -> None:
        kind, maker, now = op[0], self.maker, self.now
        if kind == "initiate":
            self.accept(maker.initiate_connections(resolved(op[1]), op[2], now))
        elif kind == "forget":
            self.accept(maker.forget_connections(op[1], now))
        elif kind in ("abort", "create", "handshake-fails") and self.pending:
            address = self.pending.pop(op[1] % len(self.pending))
            if kind == "abort":
                self.accept(maker.connection_aborted(address, "refused", now))
            elif kind == "handshake-fails":
                conn = OurConnection(self.new_id(), address, True)
                self.accept(maker.connection_terminated(conn, "EOF", now, op[2]))
            else:
                conn = OurConnection(self.new_id(), address, True, PeerName(100 + self.next_id))
                self.live.append(conn)
                self.accept(maker.connection_created(conn))
        elif kind == "terminate" and self.live:
            conn = self.live.pop(op[1] % len(self.live))
            self.accept(maker.connection_terminated(conn, "EOF", now, op[2]))
        elif kind == "inbound":
            conn = OurConnection(self.new_id(), f"{op[1]}:{40000 + self.next_id}", False,
                                 PeerName(op[2]))
            self.live.append(conn)
            self.accept(maker.connection_created(conn))
        elif kind == "topology":
            self.accept(maker.topology_changed(op[1], now))
        elif kind == "advance":
            self.now += op[1]
            self.accept(maker.tick(self.now))


causes = st.sampled_from(list(TerminationCause))
reported = st.builds(ReportedConnection, st.sampled_from([PeerName(2), PeerName(3), US]),
                     st.sampled_from([PeerName(4), PeerName(5), PeerName(6), US]),
                     st.sampled_from(REPORTED_ADDRESSES), st.booleans())
operations = st.one_of(
    st.tuples(st.just("initiate"), st.lists(st.sampled_from(PEER_TEXTS), max_size=4),
              st.booleans()),
    st.tuples(st.just("forget"), st.lists(st.sampled_from([*PEER_TEXTS, "nothing"]), max_size=3)),
    st.tuples(st.sampled_from(["abort", "create"]), st.integers(0, 9)),
    st.tuples(st.just("handshake-fails"), st.integers(0, 9), causes),
    st.tuples(st.just("terminate"), st.integers(0, 9), causes),
    st.tuples(st.just("inbound"), st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.9"]),
              st.integers(2, 6)),
    st.tuples(st.just("topology"), st.lists(reported, max_size=4)),
    st.tuples(st.just("advance"), st.integers(0, 400 * SECOND)),
)


def runtime_for(seed: int, limit: int, discovery: bool) -> Runtime:
    rng = random.Random(seed)
    maker = ConnectionMaker(US, jitter=rng.randrange, conn_limit=limit, discovery=discovery)
    return Runtime(maker, limit)


@EXAMPLES
@given(st.lists(operations, max_size=40), st.integers(0, 2**32), st.sampled_from([0, 2, 4]),
       st.booleans())
def test_no_double_dials_and_the_limit_holds(ops: list[tuple[Any, ...]], seed: int, limit: int,
                                             discovery: bool) -> None:
    runtime = runtime_for(seed, limit, discovery)
    for op in ops:
        runtime.step(op)  # Runtime.accept asserts after every plan


@EXAMPLES
@given(st.lists(st.integers(0, 1000 * SECOND), min_size=1, max_size=25), st.integers(0, 2**32))
def test_backoff_grows_to_the_cap_with_jitter_in_bounds(gaps: list[int], seed: int) -> None:
    runtime = runtime_for(seed, 0, False)
    maker = runtime.maker
    runtime.accept(maker.initiate_connections(resolved(["10.0.0.1"]), False, runtime.now))
    address = "10.0.0.1:6783"
    interval = INITIAL_INTERVAL
    for gap in gaps:
        maker.connection_aborted(address, "refused", runtime.now)
        target = maker.target(address)
        assert target is not None and target.try_after is not None
        assert interval // 2 <= target.try_after - runtime.now < interval // 2 + interval
        assert target.try_interval == min(interval * 3 // 2, MAX_INTERVAL) >= interval
        interval = target.try_interval
        # not dialled before its time, dialled once it has come
        assert maker.tick(target.try_after - 1).dial == ()
        runtime.now = target.try_after + gap
        assert [d.address for d in maker.tick(runtime.now).dial] == [address]
    assert interval <= MAX_INTERVAL


@EXAMPLES
@given(st.lists(operations, max_size=25), st.lists(st.sampled_from([*PEER_TEXTS, "x"]),
                                                   max_size=4),
       st.integers(0, 2**32), st.booleans())
def test_forget_removes_only_direct_targets(ops: list[tuple[Any, ...]], forgotten: list[str],
                                            seed: int, discovery: bool) -> None:
    runtime = runtime_for(seed, 0, discovery)
    for op in ops:
        runtime.step(op)
    maker = runtime.maker
    runtime.accept(maker.tick(runtime.now))  # settle: created connections do not re-check
    before, direct_before = maker.snapshot(), maker.targets()
    connections = maker.connection_count
    plan = maker.forget_connections(forgotten, runtime.now)
    runtime.accept(plan)
    after = maker.snapshot()
    assert maker.targets() == tuple(p for p in direct_before if p not in forgotten)
    assert maker.connection_count == connections and plan.dial == ()
    remaining = {p.target_address() for p in resolved(list(maker.targets()))}
    only_forgotten = {p.target_address() for p in resolved(
        [text for text in forgotten if text in direct_before])} - remaining
    assert set(after) <= set(before)
    for address, target in before.items():
        if address not in after:
            assert address in only_forgotten
            assert target.state in (TargetState.WAITING, TargetState.SUSPENDED)


@EXAMPLES
@given(st.lists(operations, max_size=25), st.lists(st.sampled_from(PEER_TEXTS), max_size=4),
       st.integers(0, 2**32))
def test_replace_keeps_exactly_the_new_set(ops: list[tuple[Any, ...]], new: list[str],
                                           seed: int) -> None:
    runtime = runtime_for(seed, 0, True)
    for op in ops:
        runtime.step(op)
    runtime.accept(runtime.maker.initiate_connections(resolved(new), True, runtime.now))
    assert runtime.maker.targets() == tuple(sorted(set(new)))
