"""Two of our sleeve overlays over real UDP sockets on loopback (no privileges needed)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from router.datapath import sleeve as sleeve_module
from router.datapath.control import OVERLAY_CONTROL_TAG
from router.datapath.sleeve import SleeveConnection, SleeveOverlay
from router.datapath.sleeve_forwarder import HeartbeatSchedule
from router.datapath.sleeve_frames import SleeveFrame, encode_frames
from tests.router.datapath.overlay_nodes import Agent, OverlayPair
from tests.support.doubles import RecordingLog

HOSTS = ("127.0.0.1", "127.0.0.2")
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


@pytest.fixture
def pair() -> Iterator[OverlayPair]:
    with OverlayPair(HOSTS) as running:
        yield running


@pytest.fixture
def compat_pair() -> Iterator[OverlayPair]:
    with OverlayPair(HOSTS, switch=False) as running:
        yield running


def both_established(pair: OverlayPair) -> bool:
    return pair.established(pair.a) and pair.established(pair.b)


@pytest.mark.parametrize("keys", [(None, None), (KEY, KEY)], ids=["plain", "encrypted"])
def test_the_two_ends_establish(pair: OverlayPair, keys: tuple[bytes | None, bytes | None]
                                ) -> None:
    pair.connect(keys)
    pair.wait_for(lambda: both_established(pair), 5.0, "both ends established")
    # loopback: nothing refuses the 60000-byte probe, so the MTU stays 65535 (as Go's)
    assert pair.attrs(pair.a) == {"name": "sleeve", "mtu": 65535}
    assert pair.attrs(pair.b) == {"name": "sleeve", "mtu": 65535}
    # each side acked the other's heartbeat once, through the switch (sleeve is index 0)
    for agent in (pair.a, pair.b):
        assert agent.controls.count((OVERLAY_CONTROL_TAG, b"\x00\x01")) == 1
    assert pair.failure(pair.a) is None and pair.failure(pair.b) is None


def test_it_stays_established_through_many_heartbeat_timeouts(pair: OverlayPair) -> None:
    pair.connect((KEY, KEY))
    pair.wait_for(lambda: both_established(pair), 5.0, "both ends established")
    time.sleep(3.5)  # the shortened timeout is 1 s; slow heartbeats go every 0.2 s
    assert pair.failure(pair.a) is None and pair.failure(pair.b) is None


def test_the_dialler_times_out_when_the_peer_stays_silent(pair: OverlayPair) -> None:
    pair.connect(confirm=(True, False))  # b never starts: its sleeve ignores a
    pair.wait_for(lambda: pair.failure(pair.a) is not None, 5.0, "a's failure")
    assert pair.failure(pair.a) == "no working forwarders to ce:00:00:00:00:02(b)"
    assert not pair.established(pair.a)
    assert any(fields == {"peer": "ce:00:00:00:00:02(b)", "overlay": "sleeve",
                          "error": "timed out waiting for UDP heartbeat"}
               for fields in pair.a.log.messages("overlay_switch: forwarder failed"))


def test_without_the_switch_the_timeout_is_sleeve_s_own(compat_pair: OverlayPair) -> None:
    compat_pair.connect(confirm=(True, False))
    compat_pair.wait_for(lambda: compat_pair.failure(compat_pair.a) is not None, 5.0,
                         "a's failure")
    assert compat_pair.failure(compat_pair.a) == "timed out waiting for UDP heartbeat"


def test_compat_ends_establish_with_bare_sleeve_tags(compat_pair: OverlayPair) -> None:
    compat_pair.connect((KEY, KEY))
    compat_pair.wait_for(lambda: both_established(compat_pair), 5.0, "both established")
    assert (1, b"") in compat_pair.a.controls and (1, b"") in compat_pair.b.controls
    # the acceptor learned where the dialler sends from
    acceptor = sleeve_of(compat_pair.b, compat_pair)
    assert compat_pair.on(compat_pair.b, lambda _: acceptor.remote_address) == \
        compat_pair.a.sleeve.address


def test_different_keys_never_establish(pair: OverlayPair) -> None:
    pair.connect((KEY, OTHER_KEY))
    pair.wait_for(lambda: pair.failure(pair.a) is not None and pair.failure(pair.b) is not None,
                  5.0, "both failures")
    assert not pair.established(pair.a) and not pair.established(pair.b)
    assert pair.a.controls == [] and pair.b.controls == []
    assert any("decryption failed" in fields["error"]
               for fields in pair.b.log.messages("sleeve: ignoring datagram"))


def test_a_peer_that_stops_is_timed_out(pair: OverlayPair) -> None:
    pair.connect()
    pair.wait_for(lambda: both_established(pair), 5.0, "both ends established")

    async def stop_b() -> None:
        assert pair.b.conn is not None
        await pair.b.conn.stop()

    pair.b.node.call(stop_b)
    pair.wait_for(lambda: pair.failure(pair.a) is not None, 5.0, "a's failure")
    assert pair.failure(pair.a) == "no working forwarders to ce:00:00:00:00:02(b)"


def sleeve_of(agent: Agent, pair: OverlayPair) -> SleeveConnection:
    conn = pair.on(agent, lambda conn: conn)
    if isinstance(conn, SleeveConnection):
        return conn
    raise AssertionError(f"{agent.nickname} has no bare sleeve connection")


def test_data_frames_are_counted_and_dropped(compat_pair: OverlayPair) -> None:
    compat_pair.connect()
    compat_pair.wait_for(lambda: both_established(compat_pair), 5.0, "both established")
    a, b = compat_pair.a, compat_pair.b
    ethernet = bytes.fromhex("0a00000000020a0000000001") + b"\x08\x00" + bytes(40)
    datagram = b.name.to_bytes(6, "big") + encode_frames(
        [SleeveFrame(b.name, a.name, ethernet), SleeveFrame(b.name, a.name, ethernet)])

    async def send() -> None:
        b.sleeve.transmit(datagram, a.sleeve.address, df=False)

    b.node.call(send)
    compat_pair.wait_for(lambda: a.sleeve.counters.data_frames_dropped == 2, 2.0,
                         "two dropped frames")
    assert sleeve_of(a, compat_pair).data_frames_dropped == 2
    assert len(a.log.messages(
        "sleeve: dropping a data frame (forwarding is not implemented yet)")) == 2


def test_datagrams_from_unknown_peers_and_short_ones_are_ignored(pair: OverlayPair) -> None:
    pair.connect()
    pair.wait_for(lambda: both_established(pair), 5.0, "both ends established")
    a, b = pair.a, pair.b

    async def send() -> None:
        b.sleeve.transmit(b"\x01\x02", a.sleeve.address, df=False)
        b.sleeve.transmit(bytes.fromhex("ce0000000099") + bytes(30), a.sleeve.address, df=False)

    b.node.call(send)
    pair.wait_for(lambda: a.sleeve.counters.datagrams_unknown_sender == 1
                  and a.sleeve.counters.datagrams_malformed == 1, 2.0, "both counted")
    assert pair.failure(pair.a) is None


ONE_HEARTBEAT = HeartbeatSchedule(fast=30.0, first_retry=30.0, slow=40.0, timeout=60.0)
"""Only the first heartbeat goes out within a test: nothing retries a lost one."""


@pytest.mark.parametrize("kept", [True, False], ids=["fresh", "expired"])
def test_a_heartbeat_that_comes_before_the_connection_is_taken_when_it_starts(
        kept: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dialler heartbeats as soon as its side is ready; the acceptor, not yet
    confirmed, keeps that datagram and takes it when it starts, instead of waiting for
    the dialler's retry (which, here, never comes).  One kept too long is dropped."""
    if not kept:
        monkeypatch.setattr(sleeve_module, "EARLY_HOLD", 0.0)
    with OverlayPair(HOSTS, schedule=ONE_HEARTBEAT) as pair:
        pair.connect(confirm=(True, False))
        pair.wait_for(lambda: pair.b.sleeve.counters.datagrams_unknown_sender >= 1, 5.0,
                      "a's heartbeat at b")
        time.sleep(0.01)  # so that "expired" is past its (zero) hold
        pair.on(pair.b, lambda conn: conn.confirm())
        if kept:
            pair.wait_for(lambda: both_established(pair), 5.0, "both ends established")
        else:
            time.sleep(0.5)
            assert not pair.established(pair.a) and not pair.established(pair.b)


def test_a_heartbeat_behind_a_burst_of_large_datagrams_is_still_read() -> None:
    """Every peer sends a 60001-byte fragmentation test as its connection is
    established: an agent joining a mesh gets them all at once, while it is busy.  A
    heartbeat behind them must still be in the socket when the agent reads (the
    kernel's default buffer held two; this is the only heartbeat, nothing retries it)."""
    with OverlayPair(HOSTS, schedule=ONE_HEARTBEAT) as pair:
        pair.connect(confirm=(False, True))
        busy, release = threading.Event(), threading.Event()

        def stall() -> None:
            busy.set()
            release.wait(10)

        pair.b.node.loop.call_soon_threadsafe(stall)
        try:
            assert busy.wait(5)
            stranger = (0xCE0000000009).to_bytes(6, "big")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as burst:
                for size in [60000] * 64 + [1000] * 300:  # the small ones fill any gap
                    burst.sendto(stranger + bytes(size), pair.b.sleeve.address)
            pair.on(pair.a, lambda conn: conn.confirm())  # its one heartbeat, to b
        finally:
            release.set()
        pair.wait_for(lambda: both_established(pair), 5.0, "both ends established")
        assert pair.b.sleeve.counters.datagrams_unknown_sender == 364


def test_far_deadlines_are_put_on_a_grid_so_that_forwarders_wake_together() -> None:
    """With Go's timings, once established a forwarder's next wake-up (its heartbeat,
    10 s off) is on the half-second grid of the loop's clock, and not before the state
    machine's own deadline: every forwarder of an agent then shares a few wake-ups."""
    with OverlayPair(HOSTS, schedule=HeartbeatSchedule(), switch=False) as pair:
        pair.connect()
        pair.wait_for(lambda: both_established(pair), 5.0, "both ends established")
        for agent in (pair.a, pair.b):
            def timers(conn: object) -> tuple[float, float, float]:
                assert isinstance(conn, SleeveConnection) and conn._timer is not None
                deadline = conn._state.next_deadline()
                assert deadline is not None
                return conn._timer.when(), deadline, conn._loop.time()

            when, deadline, now = pair.on(agent, timers)
            assert when / sleeve_module.TIMER_GRAIN == round(when / sleeve_module.TIMER_GRAIN)
            assert deadline <= when < deadline + sleeve_module.TIMER_GRAIN
            assert when - now > 9.0  # the slow heartbeat, not a nearer deadline


def test_what_is_kept_of_peers_without_a_forwarder_is_small_and_bounded() -> None:
    """Only a heartbeat-sized datagram is kept, the last one per peer, for at most
    EARLY_KEPT peers (the sender's name is not authenticated)."""
    async def scenario() -> tuple[int, int, int]:
        overlay = SleeveOverlay(0xCE0000000001, RecordingLog(), host="127.0.0.1", port=0)
        sender = ("127.0.0.2", 6783)
        overlay._dispatch(bytes.fromhex("ce0000000002") + bytes(60001), sender)  # frag test
        big = len(overlay._early)
        for peer in range(2 * sleeve_module.EARLY_KEPT):
            overlay._dispatch(peer.to_bytes(6, "big") + bytes(80), sender)
            overlay._dispatch(peer.to_bytes(6, "big") + bytes(90), sender)  # replaces it
        return big, len(overlay._early), len(overlay._early[0][2])

    assert asyncio.run(scenario()) == (0, sleeve_module.EARLY_KEPT, 90)
