"""One connection's sleeve forwarder as a state machine: heartbeats, establishment, PMTU.

Background (weave 2.8.1 ``router/sleeve.go``, the forwarder goroutine).  What a Go peer
requires before it counts a connection as established, and what it expects of us:

1. On ``Confirm`` (the mesh registered the connection) the forwarder starts heartbeating:
   a heartbeat special frame carrying the connection UID, sent with DF, every 0.5 s (ours
   repeats the first sooner: :class:`HeartbeatSchedule`).  The
   dialling end knows where to send (the peer's TCP address and port); the accepting end
   has no UDP address yet ("awaiting contact") and waits for the peer's first heartbeat,
   whose source address it adopts and answers at once (this is how sleeve crosses NAT).
   A heartbeat from another address later moves the peer there.
2. The first heartbeat with the right UID is acknowledged once, over the mesh connection,
   with ConnectionEstablished.  Heartbeats with another UID (an older connection) are
   ignored.
3. Receiving ConnectionEstablished is what makes the forwarder *established* (and with it
   the mesh connection): the interval becomes 10 s; a fragmentation test (60001 zero
   bytes, no DF) goes out, and again every 5 minutes; and a 60000-byte DF frame goes out
   to start path-MTU discovery.
4. Every heartbeat received resets a 60 s timer started at Confirm; when it runs out the
   forwarder fails ("timed out waiting for UDP heartbeat") and the switch drops it.  A Go
   peer therefore needs our heartbeats (within 60 s, and ideally acked by us so it is
   established) and our ConnectionEstablished for its own.
5. Path MTU: a DF send that the kernel refuses with EMSGSIZE yields the underlay's path
   MTU; the overlay MTU is that minus the overhead (62 plain, 86 encrypted: 1438 / 1414 on
   a 1500-byte link).  It is then verified by binary search between 552 and that value:
   each candidate is sent as an MTU test frame (DF) up to 8 times, the wait doubling from
   10 ms, until the peer answers PMTUVerified with the candidate ("Effective MTU verified
   at N").  The peer answers every MTU test frame with PMTUVerified(length - 14) and every
   intact fragmentation test with FragmentationReceived.  Until a search ends, ``mtu`` is
   the candidate; before any EMSGSIZE it is 65535 (as on loopback).
6. Any other send failure makes the forwarder fail, as Go's does.

Design: sans-IO.  The state takes the time (``now``, seconds, monotonic) with every
event and sends through an injected :class:`SleeveLink` (which seals, transmits and
reports EMSGSIZE synchronously, as Go's DF sender does).  The driver asks
:meth:`next_deadline` and calls :meth:`on_timer` then; it reads ``established`` and
``failure`` after each call.  Deliberate differences from Go: a PMTUVerified that
arrives when no search is running is ignored (Go would take an MTU of 0 from one that
says 0); and a peer that was slow to acknowledge our first heartbeat is not sent the
MTU test retries that would go out before it could answer (on Go's deadlines, see
:meth:`SleeveForwarderState.first_mtu_wait`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from router.datapath.control import (
    ControlMessageError,
    SleeveControlTag,
    decode_pmtu_verified,
    encode_pmtu_verified,
)
from router.datapath.sleeve_frames import (
    UDP_OVERHEAD,
    SpecialKind,
    frag_test_frame,
    frag_test_intact,
    heartbeat_frame,
    heartbeat_uid,
    mtu_test_frame,
    mtu_tested_by,
    pmtu_discovery_frame,
    special_kind,
)

if TYPE_CHECKING:
    from common.service.logs import Logger

Address = tuple[str, int]
DEFAULT_MTU: Final = 65535
"""The MTU before any EMSGSIZE says otherwise (Go's DefaultMTU)."""
MIN_MTU: Final = 552
"""The lowest MTU the search assumes to work."""


@dataclass(frozen=True)
class HeartbeatSchedule:
    """Sleeve's timings (Go's constants by default, but for ``first_retry``)."""

    fast: float = 0.5
    """Heartbeat interval until the peer acknowledges one."""
    first_retry: float = 0.1
    """The first unacknowledged heartbeat is repeated after this long, the wait doubling
    up to ``fast`` (Go waits ``fast`` from the start).  The first heartbeat is often lost:
    it races the peer's registration of the connection, and the accepting peer cannot
    send its own until ours arrives, so each loss cost both ends half a second."""
    slow: float = 10.0
    """Heartbeat interval afterwards."""
    timeout: float = 60.0
    """Silence after which the forwarder fails (six slow heartbeats)."""
    frag_test_interval: float = 300.0
    mtu_verify_timeout: float = 0.010
    """Wait for the first answer to an MTU test; doubled at each retry."""
    mtu_verify_attempts: int = 8
    mtu_tests_kept: int = 3
    """The fewest MTU tests sent per candidate: a peer slow to acknowledge our first
    heartbeat is not sent the retries that would go before it could answer (see
    :meth:`SleeveForwarderState.first_mtu_wait`)."""


class SleeveSendError(Exception):
    """A datagram could not be sent for a reason other than its size; the forwarder fails."""


class SleeveLink(Protocol):
    """How the forwarder reaches its peer."""

    def send_special(self, payload: bytes, df: bool, address: Address) -> int | None:
        """Send one special frame (from us to the peer) in a datagram of its own, with or
        without DF.  Returns None once sent; for a DF datagram the kernel refuses as too
        big (EMSGSIZE), the underlay's path MTU.  Raises SleeveSendError otherwise."""
        ...

    def send_control(self, tag: int, body: bytes) -> None:
        """Send a sleeve control message (tag 1-3) over the mesh connection."""
        ...


class SleeveForwarderState:
    """The forwarder of one mesh connection (see the module docstring)."""

    def __init__(self, conn_uid: int, remote_address: Address | None, overhead: int,
                 link: SleeveLink, log: Logger, schedule: HeartbeatSchedule) -> None:
        self.conn_uid = conn_uid
        self.remote_address = remote_address
        """Where the peer's datagrams come from; None until its first heartbeat when it
        dialled us."""
        self.overhead = overhead
        """Underlay bytes around an overlay IP packet (62 plain, 86 encrypted)."""
        self._link = link
        self._log = log
        self._schedule = schedule
        self.established = False
        self.failure: str | None = None
        self.mtu = DEFAULT_MTU
        self.max_payload = DEFAULT_MTU - UDP_OVERHEAD
        self.stack_frag = False
        """Whether the peer confirmed that the kernel's fragments reach it."""
        self.acked_heartbeat = False
        self._interval = 0.0
        self._retry = schedule.first_retry
        self._heartbeat_due: float | None = None
        self._silence_deadline: float | None = None
        self._frag_test_due: float | None = None
        self._mtu_test_due: float | None = None
        self._mtu_tests_sent = 0
        self._first_heartbeat_at: float | None = None
        self.round_trip = 0.0
        """From our first heartbeat to the peer's acknowledgement: how long the peer took
        to answer, and so how soon an MTU test can be answered."""
        self._mtu_highest_good = 0
        self._mtu_lowest_bad = 0
        self._mtu_candidate = 0

    # ---- events ------------------------------------------------------------------
    def confirm(self, now: float) -> None:
        """The connection is registered: start heartbeating (once)."""
        if self._interval or self.failure is not None:
            return
        self._interval = self._schedule.fast
        if self.remote_address is not None:
            self._send_heartbeat(now)
            if self.failure is not None:
                return
        self._silence_deadline = now + self._schedule.timeout

    def special_frame(self, now: float, sender: Address, payload: bytes) -> None:
        """A special frame the peer sent us (its datagram came from ``sender``)."""
        if self.failure is not None:
            return
        kind = special_kind(payload)
        if kind is SpecialKind.HEARTBEAT:
            self._heartbeat_received(now, sender, payload)
        elif kind is SpecialKind.FRAG_TEST:
            if frag_test_intact(payload):
                self._link.send_control(SleeveControlTag.FRAGMENTATION_RECEIVED, b"")
        else:
            self._link.send_control(SleeveControlTag.PMTU_VERIFIED,
                                    encode_pmtu_verified(mtu_tested_by(payload)))

    def control_message(self, now: float, tag: int, body: bytes) -> None:
        """A sleeve control message (tag 1-3) from the peer."""
        if self.failure is not None:
            return
        if tag == SleeveControlTag.CONNECTION_ESTABLISHED:
            self._heartbeat_acked(now)
        elif tag == SleeveControlTag.FRAGMENTATION_RECEIVED:
            self.stack_frag = True
        elif tag == SleeveControlTag.PMTU_VERIFIED:
            self._mtu_verified(now, body)
        else:
            self._log.info("sleeve: ignoring unknown control message tag", tag=tag)

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` must run next (None: nothing scheduled)."""
        deadlines = [d for d in (self._silence_deadline, self._heartbeat_due,
                                 self._frag_test_due, self._mtu_test_due) if d is not None]
        return min(deadlines, default=None)

    def on_timer(self, now: float) -> None:
        """Do whatever is due at ``now``."""
        if self.failure is not None:
            return
        if self._silence_deadline is not None and self._silence_deadline <= now:
            self._fail("timed out waiting for UDP heartbeat")
            return
        if self._heartbeat_due is not None and self._heartbeat_due <= now:
            self._send_heartbeat(now)
        if self.failure is None and self._frag_test_due is not None \
                and self._frag_test_due <= now:
            while self._frag_test_due <= now:
                self._frag_test_due += self._schedule.frag_test_interval
            self._send_frag_test(now)
        if self.failure is None and self._mtu_test_due is not None \
                and self._mtu_test_due <= now:
            self._mtu_test_due = None
            self._mtu_test_timed_out(now)

    # ---- heartbeats --------------------------------------------------------------
    def _send_heartbeat(self, now: float) -> None:
        if self._first_heartbeat_at is None:
            self._first_heartbeat_at = now
        wait = self._interval
        if wait == self._schedule.fast and self._retry < wait:
            wait, self._retry = self._retry, self._retry * 2
        self._heartbeat_due = now + wait
        self._send(now, heartbeat_frame(self.conn_uid), df=True)

    def _heartbeat_received(self, now: float, sender: Address, payload: bytes) -> None:
        if heartbeat_uid(payload) != self.conn_uid:
            return
        if self.remote_address is None:
            self.remote_address = sender
            if self._interval:
                self._send_heartbeat(now)
                if self.failure is not None:
                    return
        elif sender != self.remote_address:
            self._log.info("sleeve: peer UDP address changed", address=f"{sender[0]}:{sender[1]}")
            self.remote_address = sender
        if not self.acked_heartbeat:
            self.acked_heartbeat = True
            self._link.send_control(SleeveControlTag.CONNECTION_ESTABLISHED, b"")
        if self._silence_deadline is not None:
            self._silence_deadline = now + self._schedule.timeout

    def _heartbeat_acked(self, now: float) -> None:
        if self._interval != self._schedule.slow:
            if self._first_heartbeat_at is not None:
                self.round_trip = now - self._first_heartbeat_at
            self._interval = self._schedule.slow
            if self._heartbeat_due is not None:
                self._heartbeat_due = now + self._interval
            self.established = True
        self._frag_test_due = now + self._schedule.frag_test_interval
        self._send_frag_test(now)
        if self.failure is None:
            # Refused with EMSGSIZE on any ordinary link: that starts the MTU search.
            self._send(now, pmtu_discovery_frame(), df=True)

    def _send_frag_test(self, now: float) -> None:
        self.stack_frag = False
        self._send(now, frag_test_frame(), df=False)

    # ---- sending and path MTU ------------------------------------------------------
    def _send(self, now: float, payload: bytes, df: bool) -> None:
        if self.remote_address is None:
            return
        try:
            path_mtu = self._link.send_special(payload, df, self.remote_address)
        except SleeveSendError as error:
            self._fail(str(error))
            return
        if path_mtu is not None:
            self._too_big(now, path_mtu)

    def _too_big(self, now: float, path_mtu: int) -> None:
        mtu = path_mtu - self.overhead
        if self._mtu_candidate and mtu >= self._mtu_candidate:
            return
        self._mtu_highest_good = MIN_MTU
        self._mtu_lowest_bad = mtu + 1
        self._mtu_candidate = mtu
        self._mtu_tests_sent = 0
        self.max_payload = path_mtu - UDP_OVERHEAD
        self.mtu = mtu
        self._send_mtu_test(now)

    def _send_mtu_test(self, now: float) -> None:
        self._send(now, mtu_test_frame(self._mtu_candidate), df=True)
        if self.failure is not None:
            return
        if self._mtu_tests_sent == 0:
            skipped, wait = self.first_mtu_wait()
            self._mtu_tests_sent = skipped + 1
        else:
            wait = self._schedule.mtu_verify_timeout * (1 << self._mtu_tests_sent)
            self._mtu_tests_sent += 1
        self._mtu_test_due = now + wait

    def first_mtu_wait(self) -> tuple[int, float]:
        """The retries of a candidate's first MTU test that are not sent, and how long
        the first test waits for its answer.

        Go retries after 10 ms, doubling.  A peer that took a second to acknowledge our
        first heartbeat (one that is joining a mesh of a hundred, and answering all of
        them) cannot answer that fast: the retries that would go out within
        :attr:`round_trip` are skipped, and the first test waits as long as they all
        would have.  The later retries go out when Go's do, and a candidate that is
        never verified is given up at the same time as Go's (2.55 s); at least
        ``mtu_tests_kept`` tests are sent.  A peer that answers at once is tested as
        Go tests."""
        timeout = self._schedule.mtu_verify_timeout
        limit = max(0, self._schedule.mtu_verify_attempts - self._schedule.mtu_tests_kept)
        skipped = 0
        while skipped < limit and timeout * ((2 << skipped) - 1) < self.round_trip:
            skipped += 1
        return skipped, timeout * ((2 << skipped) - 1)

    def _mtu_verified(self, now: float, body: bytes) -> None:
        try:
            mtu = decode_pmtu_verified(body)
        except ControlMessageError as error:
            self._log.info("sleeve: received truncated MTUTestAck", error=str(error))
            return
        if not self._mtu_candidate or mtu != self._mtu_candidate:
            return
        self._mtu_highest_good = mtu
        self._search_mtu(now)

    def _mtu_test_timed_out(self, now: float) -> None:
        if self._mtu_tests_sent < self._schedule.mtu_verify_attempts:
            self._send_mtu_test(now)
            return
        self._mtu_lowest_bad = self._mtu_candidate
        self._search_mtu(now)

    def _search_mtu(self, now: float) -> None:
        if self._mtu_highest_good + 1 >= self._mtu_lowest_bad:
            mtu = self._mtu_highest_good
            self._log.info("sleeve: effective MTU verified", mtu=mtu)
            self._mtu_test_due = None
            self._mtu_candidate = 0
            self.max_payload = mtu + self.overhead - UDP_OVERHEAD
            self.mtu = mtu
            return
        self._mtu_candidate = (self._mtu_highest_good + self._mtu_lowest_bad) // 2
        self._mtu_tests_sent = 0
        self._send_mtu_test(now)

    def _fail(self, reason: str) -> None:
        self.failure = reason
        self._heartbeat_due = self._silence_deadline = None
        self._frag_test_due = self._mtu_test_due = None

