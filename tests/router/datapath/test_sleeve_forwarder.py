"""The sleeve forwarder's state machine on a fake clock: heartbeats, acks, timeouts, PMTU."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from router.datapath.control import SleeveControlTag, encode_pmtu_verified
from router.datapath.sleeve_forwarder import (
    DEFAULT_MTU,
    MIN_MTU,
    Address,
    HeartbeatSchedule,
    SleeveForwarderState,
    SleeveSendError,
)
from router.datapath.sleeve_frames import (
    ETHERNET_OVERHEAD,
    FRAME_HEADER_SIZE,
    UDP_OVERHEAD,
    SpecialKind,
    frag_test_frame,
    heartbeat_frame,
    mtu_test_frame,
    special_kind,
)
from tests.support.doubles import RecordingLog

UID = 0x0123456789ABCDEF
PEER: Address = ("192.168.77.2", 6783)
PLAIN_OVERHEAD = 62
PLAIN_PACKET_OVERHEAD = 6
GO = HeartbeatSchedule()


@dataclass
class FakeLink:
    """Records what the forwarder sends; refuses DF datagrams bigger than the path MTU."""

    path_mtu: int | None = None
    packet_overhead: int = PLAIN_PACKET_OVERHEAD
    broken: bool = False
    sent: list[tuple[bytes, bool, Address]] = field(default_factory=list)
    controls: list[tuple[int, bytes]] = field(default_factory=list)

    def send_special(self, payload: bytes, df: bool, address: Address) -> int | None:
        if self.broken:
            raise SleeveSendError("sending to 192.168.77.2:6783: Operation not permitted")
        size = UDP_OVERHEAD + self.packet_overhead + FRAME_HEADER_SIZE + len(payload)
        if df and self.path_mtu is not None and size > self.path_mtu:
            return self.path_mtu
        self.sent.append((payload, df, address))
        return None

    def send_control(self, tag: int, body: bytes) -> None:
        self.controls.append((tag, body))

    def kinds(self) -> list[tuple[SpecialKind, bool]]:
        return [(special_kind(payload), df) for payload, df, _ in self.sent]


def forwarder(link: FakeLink, remote: Address | None = PEER, overhead: int = PLAIN_OVERHEAD
              ) -> tuple[SleeveForwarderState, RecordingLog]:
    log = RecordingLog()
    return SleeveForwarderState(UID, remote, overhead, link, log, GO), log


def run_until(state: SleeveForwarderState, until: float) -> None:
    """Fire every deadline up to ``until``, as the I/O driver's timer does."""
    while (deadline := state.next_deadline()) is not None and deadline <= until:
        state.on_timer(deadline)


def test_the_dialler_heartbeats_at_once_then_every_half_second() -> None:
    link = FakeLink()
    state = SleeveForwarderState(UID, PEER, 62, link, RecordingLog(),
                                 HeartbeatSchedule(first_retry=0.5))  # exactly Go's
    state.confirm(100.0)
    assert link.sent == [(heartbeat_frame(UID), True, PEER)]
    run_until(state, 102.2)
    assert len(link.sent) == 5
    assert not state.established and state.failure is None


def test_ours_repeats_the_first_heartbeat_sooner_then_every_half_second() -> None:
    link = FakeLink()
    state, _ = forwarder(link)
    state.confirm(100.0)
    sent_at = [100.0]
    while len(sent_at) < 7:
        deadline = state.next_deadline()
        assert deadline is not None
        state.on_timer(deadline)
        sent_at.append(round(deadline, 6))
    assert sent_at == [100.0, 100.1, 100.3, 100.7, 101.2, 101.7, 102.2]
    assert len(link.sent) == 7 and link.kinds() == [(SpecialKind.HEARTBEAT, True)] * 7


def test_the_acceptor_awaits_contact_then_answers_and_acks_once() -> None:
    link = FakeLink()
    state, _ = forwarder(link, remote=None)
    state.confirm(0.0)
    run_until(state, 5.0)
    assert link.sent == []
    state.special_frame(5.0, PEER, heartbeat_frame(UID + 1))
    assert state.remote_address is None and link.controls == []
    state.special_frame(5.0, PEER, heartbeat_frame(UID))
    assert state.remote_address == PEER
    assert link.sent == [(heartbeat_frame(UID), True, PEER)]
    state.special_frame(5.2, PEER, heartbeat_frame(UID))
    assert link.controls == [(SleeveControlTag.CONNECTION_ESTABLISHED, b"")]


def test_the_ack_establishes_slows_heartbeats_and_starts_the_tests() -> None:
    link = FakeLink()
    state, _ = forwarder(link)
    state.confirm(0.0)
    state.control_message(0.3, SleeveControlTag.CONNECTION_ESTABLISHED, b"")
    assert state.established
    assert link.kinds()[1:] == [(SpecialKind.FRAG_TEST, False), (SpecialKind.MTU_TEST, True)]
    assert len(link.sent[2][0]) == 60000
    del link.sent[:]
    run_until(state, 10.2)
    assert link.kinds() == []
    run_until(state, 10.3)
    assert link.kinds() == [(SpecialKind.HEARTBEAT, True)]
    assert state.mtu == DEFAULT_MTU  # nothing refused the 60000 bytes (as on loopback)


def test_silence_fails_the_forwarder_after_a_minute_and_heartbeats_postpone_it() -> None:
    link = FakeLink()
    state, _ = forwarder(link)
    state.confirm(0.0)
    run_until(state, 40.0)
    state.special_frame(40.0, PEER, heartbeat_frame(UID))
    run_until(state, 99.9)
    assert state.failure is None
    run_until(state, 100.0)
    assert state.failure == "timed out waiting for UDP heartbeat"
    assert state.next_deadline() is None
    sent = len(link.sent)
    state.special_frame(101.0, PEER, heartbeat_frame(UID))
    assert len(link.sent) == sent


def test_a_moved_peer_is_followed() -> None:
    link = FakeLink()
    state, log = forwarder(link)
    state.confirm(0.0)
    state.special_frame(0.1, ("10.0.0.9", 40000), heartbeat_frame(UID))
    assert state.remote_address == ("10.0.0.9", 40000)
    assert log.messages("sleeve: peer UDP address changed") == [{"address": "10.0.0.9:40000"}]


def test_the_peer_s_tests_are_answered() -> None:
    link = FakeLink()
    state, _ = forwarder(link)
    state.special_frame(0.0, PEER, mtu_test_frame(1438))
    state.special_frame(0.0, PEER, frag_test_frame())
    damaged = bytearray(frag_test_frame())
    damaged[100] = 7
    state.special_frame(0.0, PEER, bytes(damaged))
    assert link.controls == [(SleeveControlTag.PMTU_VERIFIED, bytes.fromhex("059e")),
                             (SleeveControlTag.FRAGMENTATION_RECEIVED, b"")]


@pytest.mark.parametrize(("packet_overhead", "overhead", "mtu"), [
    (PLAIN_PACKET_OVERHEAD, PLAIN_OVERHEAD, 1438), (30, 86, 1414)], ids=["plain", "encrypted"])
def test_path_mtu_from_emsgsize_verified_by_the_peer(packet_overhead: int, overhead: int,
                                                      mtu: int) -> None:
    link = FakeLink(path_mtu=1500, packet_overhead=packet_overhead)
    state, log = forwarder(link, overhead=overhead)
    state.confirm(0.0)
    state.control_message(0.1, SleeveControlTag.CONNECTION_ESTABLISHED, b"")
    assert state.mtu == mtu  # the candidate, until verified
    test_frame = link.sent[-1][0]
    assert test_frame == mtu_test_frame(mtu) and link.sent[-1][1]
    assert UDP_OVERHEAD + packet_overhead + FRAME_HEADER_SIZE + len(test_frame) == 1500
    state.control_message(0.11, SleeveControlTag.PMTU_VERIFIED, encode_pmtu_verified(mtu))
    assert log.messages("sleeve: effective MTU verified") == [{"mtu": mtu}]
    assert state.max_payload == mtu + overhead - UDP_OVERHEAD


def test_unanswered_mtu_tests_are_retried_then_the_search_goes_down_to_552() -> None:
    link = FakeLink(path_mtu=1500)
    state, log = forwarder(link)
    state.confirm(0.0)
    state.special_frame(0.0, PEER, heartbeat_frame(UID))  # keep the silence timer away
    state.control_message(0.0, SleeveControlTag.CONNECTION_ESTABLISHED, b"")
    tests = [len(payload) - ETHERNET_OVERHEAD for payload, _, _ in link.sent
             if special_kind(payload) is SpecialKind.MTU_TEST]
    assert tests == [1438]
    run_until(state, 2.54)  # 10+20+...+640 ms: the 8th try goes out at 1.27 s
    tests = [len(payload) - ETHERNET_OVERHEAD for payload, _, _ in link.sent
             if special_kind(payload) is SpecialKind.MTU_TEST]
    assert tests == [1438] * 8
    run_until(state, 2.56)
    assert link.sent[-1][0] == mtu_test_frame((MIN_MTU + 1438) // 2)
    state.special_frame(30.0, PEER, heartbeat_frame(UID))
    run_until(state, 59.0)
    assert log.messages("sleeve: effective MTU verified") == [{"mtu": MIN_MTU}]
    assert state.mtu == MIN_MTU and state.failure is None


def mtu_tests(link: FakeLink) -> list[int]:
    return [len(payload) - ETHERNET_OVERHEAD for payload, _, _ in link.sent
            if special_kind(payload) is SpecialKind.MTU_TEST]


@pytest.mark.parametrize(("acked_at", "sent_at"), [
    (1.0, [1.0, 1.63, 2.27]),  # a second: the retries of the first 0.63 s are skipped
    (0.05, [0.05, 0.12, 0.20, 0.36, 0.68, 1.32]),  # 50 ms: those of the first 70 ms
    (0.004, [0.004 + t for t in (0, 0.01, 0.03, 0.07, 0.15, 0.31, 0.63, 1.27)]),  # Go's
], ids=["slow", "busy", "prompt"])
def test_a_peer_slow_to_acknowledge_is_sent_fewer_mtu_tests_on_go_s_deadlines(
        acked_at: float, sent_at: list[float]) -> None:
    """A peer joining a mesh of a hundred acknowledged our first heartbeat a second
    later, and answers MTU tests as late: Go's retries within that time only add to
    its load.  The last tries, and the moment the candidate is given up (2.55 s after
    the first test), stay Go's."""
    link = FakeLink(path_mtu=1500)
    state, _ = forwarder(link)
    state.confirm(0.0)
    state.special_frame(0.0, PEER, heartbeat_frame(UID))
    state.control_message(acked_at, SleeveControlTag.CONNECTION_ESTABLISHED, b"")
    assert state.round_trip == acked_at
    times: list[float] = []
    while (deadline := state.next_deadline()) is not None and deadline < acked_at + 2.5:
        before = len(mtu_tests(link))
        state.on_timer(deadline)
        if len(mtu_tests(link)) > before:
            times.append(deadline)
    assert [round(t, 3) for t in [acked_at, *times]] == pytest.approx(sent_at, abs=1e-3)
    assert mtu_tests(link) == [1438] * len(sent_at)
    run_until(state, acked_at + 2.549)
    assert mtu_tests(link) == [1438] * len(sent_at)
    run_until(state, acked_at + 2.551)
    assert link.sent[-1][0] == mtu_test_frame((MIN_MTU + 1438) // 2)


def test_a_verification_for_another_candidate_or_none_is_ignored() -> None:
    link = FakeLink(path_mtu=1500)
    state, log = forwarder(link)
    state.control_message(0.0, SleeveControlTag.PMTU_VERIFIED, encode_pmtu_verified(0))
    state.confirm(0.0)
    state.control_message(0.0, SleeveControlTag.CONNECTION_ESTABLISHED, b"")
    state.control_message(0.0, SleeveControlTag.PMTU_VERIFIED, encode_pmtu_verified(1400))
    state.control_message(0.0, SleeveControlTag.PMTU_VERIFIED, b"\x05")
    state.control_message(0.0, 9, b"")
    assert log.messages("sleeve: effective MTU verified") == []
    assert log.messages("sleeve: ignoring unknown control message tag") == [{"tag": 9}]
    assert len(log.messages("sleeve: received truncated MTUTestAck")) == 1
    assert state.mtu == 1438


def test_the_fragmentation_test_repeats_and_its_ack_is_remembered() -> None:
    link = FakeLink()
    state, _ = forwarder(link)
    state.confirm(0.0)
    state.control_message(0.0, SleeveControlTag.CONNECTION_ESTABLISHED, b"")
    state.control_message(0.1, SleeveControlTag.FRAGMENTATION_RECEIVED, b"")
    assert state.stack_frag
    for when in range(10, 301, 10):
        state.special_frame(float(when), PEER, heartbeat_frame(UID))
        run_until(state, float(when))
    assert not state.stack_frag  # a new test went out at 300 s and awaits its ack
    assert link.kinds().count((SpecialKind.FRAG_TEST, False)) == 2


def test_a_send_error_fails_the_forwarder() -> None:
    link = FakeLink(broken=True)
    state, _ = forwarder(link)
    state.confirm(0.0)
    assert state.failure == "sending to 192.168.77.2:6783: Operation not permitted"
    assert state.next_deadline() is None


Delivery = Callable[[SleeveForwarderState, float], None]


class SimulatedPath:
    """Two forwarder states joined by a lossless network of a given MTU and a mesh
    connection; deliveries run in order from one queue, on one fake clock."""

    def __init__(self, path_mtu: int, packet_overhead: int, overhead: int) -> None:
        self.queue: deque[tuple[int, Delivery]] = deque()
        self.now = 0.0
        self.addresses: list[Address] = [("10.0.0.1", 6783), ("10.0.0.2", 6783)]
        links = [PathLink(self, 0, path_mtu, packet_overhead),
                 PathLink(self, 1, path_mtu, packet_overhead)]
        self.states = [
            SleeveForwarderState(UID, self.addresses[1], overhead, links[0], RecordingLog(), GO),
            SleeveForwarderState(UID, None, overhead, links[1], RecordingLog(), GO),
        ]

    def run(self, until: float) -> None:
        while self.now < until:
            while self.queue:
                side, deliver = self.queue.popleft()
                deliver(self.states[side], self.now)
            deadlines = [d for s in self.states if (d := s.next_deadline()) is not None]
            self.now = min([*deadlines, until])
            for state in self.states:
                if (deadline := state.next_deadline()) is not None and deadline <= self.now:
                    state.on_timer(self.now)


@dataclass
class PathLink:
    path: SimulatedPath
    side: int
    path_mtu: int
    packet_overhead: int

    def send_special(self, payload: bytes, df: bool, address: Address) -> int | None:
        size = UDP_OVERHEAD + self.packet_overhead + FRAME_HEADER_SIZE + len(payload)
        if df and size > self.path_mtu:
            return self.path_mtu
        sender = self.path.addresses[self.side]
        self.path.queue.append(
            (1 - self.side, lambda state, now: state.special_frame(now, sender, payload)))
        return None

    def send_control(self, tag: int, body: bytes) -> None:
        self.path.queue.append(
            (1 - self.side, lambda state, now: state.control_message(now, tag, body)))


@pytest.mark.parametrize(("packet_overhead", "overhead", "mtu"), [
    (PLAIN_PACKET_OVERHEAD, PLAIN_OVERHEAD, 1438), (30, 86, 1414)], ids=["plain", "encrypted"])
def test_two_forwarders_establish_and_agree_on_the_mtu(packet_overhead: int, overhead: int,
                                                       mtu: int) -> None:
    path = SimulatedPath(1500, packet_overhead, overhead)
    for state in path.states:
        state.confirm(0.0)
    path.run(1.0)
    assert [state.established for state in path.states] == [True, True]
    assert [state.mtu for state in path.states] == [mtu, mtu]
    assert path.states[1].remote_address == path.addresses[0]
    path.run(610.0)
    assert [state.failure for state in path.states] == [None, None]
    assert [state.stack_frag for state in path.states] == [True, True]
