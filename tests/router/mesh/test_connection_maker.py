"""Connection-maker rules the Go fixtures cannot show (they never reach a real dial).

The connection limit (Go checks it in ``createConnection``, which the fixture harness
stops short of), which dials may accept a new peer, exact retry times and timers, the
``waiting`` status text, and what the runtime gets wrong-footed by (bad jitter, a
created connection without a remote).
"""

from __future__ import annotations

import random

import pytest

from router.mesh.connection_maker import (
    INITIAL_INTERVAL,
    MAX_INTERVAL,
    SECOND,
    ConnectionMaker,
    Dial,
    OurConnection,
    Refusal,
    ReportedConnection,
    TargetState,
    TerminationCause,
    reported_connections,
)
from router.mesh.go_text import GoClock
from router.mesh.names import PeerName
from router.mesh.peer_address import DirectPeer
from router.mesh.peers import PeerTable
from router.mesh.summary import ConnectionSummary, PeerSummary

US, B, C, D = (PeerName(i) for i in (1, 2, 3, 4))
NOW = 100 * SECOND


def direct(*peers: str) -> list[DirectPeer]:
    return [DirectPeer(p, p.split(":")[0], int(p.split(":")[1]) if ":" in p else 0)
            for p in peers]


def maker(limit: int = 0, discovery: bool = True) -> ConnectionMaker:
    return ConnectionMaker(US, jitter=lambda n: n // 4, conn_limit=limit, discovery=discovery)


def test_limit_counts_dials_in_progress_and_direct_targets_go_first() -> None:
    cm = maker(limit=3)
    cm.connection_created(OurConnection(1, "10.9.9.9:5555", False, D))
    cm.topology_changed([ReportedConnection(B, C, "10.0.0.3:6783", True)], NOW)
    plan = cm.initiate_connections(direct("10.0.0.7", "10.0.0.1", "10.0.0.5"), False, NOW)
    # room for 3 - 1 connection - 1 dial in progress (the discovered one) = 1
    assert plan.dial == (Dial("10.0.0.1:6783", True),)
    refusal = "Connection limit reached (3)"
    assert plan.refused == (Refusal("10.0.0.5:6783", refusal), Refusal("10.0.0.7:6783", refusal))
    target = cm.target("10.0.0.5:6783")
    assert target is not None and target.state is TargetState.WAITING
    assert target.last_error == refusal and target.try_interval == 3 * SECOND
    # the refused ones back off like any failed dial: the timer is their retry time
    assert plan.next_check_at == NOW + SECOND + INITIAL_INTERVAL // 4


def test_limit_zero_means_unlimited_and_a_full_house_dials_nothing() -> None:
    cm = maker(limit=0)
    assert len(cm.initiate_connections(direct(*(f"10.1.0.{i}" for i in range(50))),
                                       False, NOW).dial) == 50
    full = maker(limit=1)
    full.connection_created(OurConnection(1, "10.9.9.9:5555", False, D))
    plan = full.initiate_connections(direct("10.0.0.1"), False, NOW)
    assert plan.dial == () and len(plan.refused) == 1


def test_discovered_dials_must_meet_a_known_peer() -> None:
    cm = maker()
    cm.initiate_connections(direct("10.0.0.2"), False, NOW)
    plan = cm.topology_changed([ReportedConnection(B, C, "10.0.0.3:6783", True),
                                ReportedConnection(B, D, "10.0.0.2:6783", True)], NOW)
    assert plan.dial == (Dial("10.0.0.3:6783", False),)


def test_retry_times_and_timer_are_exact() -> None:
    cm = maker()
    cm.initiate_connections(direct("10.0.0.1", "10.0.0.2"), False, NOW)
    plan = cm.connection_aborted("10.0.0.1:6783", "refused", NOW)
    first = NOW + INITIAL_INTERVAL // 2 + INITIAL_INTERVAL // 4
    assert plan.next_check_at == first
    plan = cm.connection_aborted("10.0.0.2:6783", "refused", NOW + SECOND)
    assert plan.next_check_at == first  # the earliest of the two
    assert cm.tick(first - 1).dial == ()
    plan = cm.tick(first)
    assert plan.dial == (Dial("10.0.0.1:6783", True),)
    assert plan.next_check_at == NOW + SECOND + 1_500_000_000


def test_created_does_not_recheck_but_keeps_the_timer() -> None:
    cm = maker()
    cm.initiate_connections(direct("10.0.0.1", "10.0.0.2"), False, NOW)
    timer = cm.connection_aborted("10.0.0.1:6783", "refused", NOW).next_check_at
    plan = cm.connection_created(OurConnection(7, "10.0.0.2:6783", True, B))
    assert plan.dial == () and plan.next_check_at == timer


def test_a_hidden_portless_peer_is_dialled_when_the_inbound_connection_ends() -> None:
    cm = maker()
    cm.connection_created(OurConnection(1, "10.0.0.1:40000", False, B))
    cm.initiate_connections(direct("10.0.0.1"), False, NOW)
    assert cm.target("10.0.0.1:6783") is None  # hidden by the inbound connection
    clock = GoClock(wall_ns=0, monotonic_ns=NOW, started_ns=NOW)
    assert cm.status_entries(clock) == ()
    cm.connection_terminated(OurConnection(1, "10.0.0.1:40000", False, B), "EOF", NOW)
    entries = cm.status_entries(clock)
    assert [(e.address, e.state, e.info) for e in entries] == [("10.0.0.1:6783", "connecting", "")]


def test_a_portless_peer_is_not_dialled_while_a_connection_from_its_ip_handshakes() -> None:
    """Both ends retrying at once would handshake twice, and the tie-break would shut
    one connection down (often the established one)."""
    cm = maker()
    plan = cm.initiate_connections(direct("10.0.0.1", "10.0.0.2"), False, NOW)
    assert sorted(d.address for d in plan.dial) == ["10.0.0.1:6783", "10.0.0.2:6783"]
    for address in ("10.0.0.1:6783", "10.0.0.2:6783"):
        cm.connection_aborted(address, "connection refused", NOW)
    retry = cm.target("10.0.0.1:6783")
    assert retry is not None and retry.try_after is not None
    accepted = OurConnection(7, "10.0.0.1:40000", False)
    cm.inbound_accepted(accepted)
    plan = cm.tick(retry.try_after + SECOND)
    assert [d.address for d in plan.dial] == ["10.0.0.2:6783"]  # not 10.0.0.1
    hidden = cm.target("10.0.0.1:6783")
    assert hidden is not None and hidden.state is TargetState.SUSPENDED
    # the handshake failed: the peer is dialled again
    plan = cm.connection_terminated(accepted, "EOF", retry.try_after + 2 * SECOND)
    assert [d.address for d in plan.dial] == ["10.0.0.1:6783"]
    # one that succeeds hides it as any registered inbound connection does
    cm.connection_aborted("10.0.0.1:6783", "refused", NOW + 10 * SECOND)
    other = OurConnection(8, "10.0.0.1:40002", False)
    cm.inbound_accepted(other)
    cm.connection_created(OurConnection(8, "10.0.0.1:40002", False, B))
    assert cm.tick(NOW + 3600 * SECOND).dial == ()


def test_status_texts() -> None:
    cm = maker()
    cm.initiate_connections(direct("10.0.0.1", "10.0.0.2", "10.0.0.3"), False, NOW)
    cm.connection_aborted("10.0.0.1:6783", "refused", NOW)
    cm.connection_terminated(OurConnection(5, "10.0.0.3:6783", True, US),
                             "cannot connect to ourself", NOW,
                             cause=TerminationCause.CONNECT_TO_SELF)
    clock = GoClock(wall_ns=1_700_000_000 * SECOND, monotonic_ns=NOW, started_ns=NOW - 4 * SECOND)
    assert [(e.address, e.state, e.info) for e in cm.status_entries(clock)] == [
        ("10.0.0.1:6783", "failed",
         "refused, retry: 2023-11-14 22:13:21.5 +0000 UTC m=+5.500000000"),
        ("10.0.0.2:6783", "connecting", ""),
        ("10.0.0.3:6783", "failed", "cannot connect to ourself, retry: never"),
    ]
    assert cm.termination_count == 0
    assert cm.targets(active_only=True) == ("10.0.0.1", "10.0.0.2")


def test_ipv6_and_nil_direct_peers() -> None:
    cm = maker()
    plan = cm.initiate_connections([DirectPeer("v6", "fd00::1", 0), DirectPeer("[]", "", 0)],
                                   False, NOW)
    assert [d.address for d in plan.dial] == [":6783", "[fd00::1]:6783"]
    # an inbound connection from fd00::1 hides the port-less peer, as in Go
    cm.connection_aborted("[fd00::1]:6783", "refused", NOW)
    cm.connection_created(OurConnection(1, "[fd00::1]:5000", False, B))
    cm.tick(NOW)
    target = cm.target("[fd00::1]:6783")
    assert target is not None and target.state is TargetState.SUSPENDED


def test_reported_connections_from_the_peer_table() -> None:
    """Discovery reads what other peers report of the peers we are not connected to:
    ourselves and our neighbours are left out, whoever reports them."""
    table = PeerTable(US, "us", 1, 1, random.Random(0))
    table.apply_update([
        PeerSummary(B, "b", 1, 1, 1, True, (
            ConnectionSummary(C, "10.0.0.3:1", True, True),
            ConnectionSummary(C, "10.0.0.3:2", False, True),
            ConnectionSummary(D, "10.0.0.4:6783", True, False),
            ConnectionSummary(US, "10.0.0.9:6783", True, True))),
        PeerSummary(D, "d", 1, 1, 2, True, (ConnectionSummary(C, "10.0.0.3:6783", True, True),
                                            ConnectionSummary(B, "10.0.0.2:6783", True, True)))])
    assert reported_connections(table, [B]) == (
        ReportedConnection(B, C, "10.0.0.3:2", False),
        ReportedConnection(B, D, "10.0.0.4:6783", True),
        ReportedConnection(D, C, "10.0.0.3:6783", True))
    assert reported_connections(table, [B, C, D]) == ()


def test_misuse_is_refused_clearly() -> None:
    cm = ConnectionMaker(US, jitter=lambda n: n)
    cm.initiate_connections(direct("10.0.0.1"), False, NOW)
    with pytest.raises(ValueError, match="jitter"):
        cm.connection_aborted("10.0.0.1:6783", "refused", NOW)
    with pytest.raises(ValueError, match="remote"):
        cm.connection_created(OurConnection(1, "10.0.0.1:6783", True))


def test_events_for_unknown_targets_change_nothing() -> None:
    cm = maker()
    assert cm.connection_aborted("10.9.9.9:6783", "refused", NOW).dial == ()
    cm.connection_created(OurConnection(1, "10.9.9.9:6783", True, B))
    cm.connection_terminated(OurConnection(1, "10.9.9.9:6783", True, B), "EOF", NOW)
    assert cm.snapshot() == {} and cm.termination_count == 1


def test_the_interval_never_passes_the_cap() -> None:
    cm = maker()
    cm.initiate_connections(direct("10.0.0.1"), False, NOW)
    now = NOW
    for _ in range(30):
        cm.connection_aborted("10.0.0.1:6783", "refused", now)
        now += MAX_INTERVAL * 2
        cm.tick(now)
    target = cm.target("10.0.0.1:6783")
    assert target is not None and target.try_interval == MAX_INTERVAL
