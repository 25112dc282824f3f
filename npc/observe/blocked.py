"""Blocked-connection events from logged packets: parse, count, format, rate-limit.

What counts as a blocked connection
-----------------------------------
npc logs only ``--state NEW`` packets before dropping them, but a NEW packet is not
always a connection attempt, so, as the Go original (npc/metrics/metrics.go) did:

* TCP counts only a SYN without ACK (a stray ACK or SYN-ACK that conntrack calls
  NEW with loose tracking is not a connection attempt);
* UDP counts every packet (each one is a new "connection" to the policy);
* SCTP, which the original ignored, counts only packets whose first chunk is INIT
  (chunk type 1), the only chunk that opens an association;
* anything else (ICMP, non-first fragments, truncated or non-IPv4 packets) is ignored.

Log line
--------
:func:`format_blocked` produces the original's line byte for byte, e.g.
``TCP connection from 10.32.0.7:56648 to 10.32.0.11:80 blocked by Weave NPC.``
(``UDP``/``SCTP`` likewise).  When a resolver knows the pods behind the addresses,
a suffix in parentheses is appended after the original's final full stop, so
``grep 'blocked by Weave NPC.'`` and parsers of the old line keep working::

    ... blocked by Weave NPC. (from x/a to y/b)    both pods known
    ... blocked by Weave NPC. (from x/a)           only the source known
    ... blocked by Weave NPC. (to y/b)             only the destination known

Rate limiting
-------------
A flood of blocked packets must not fill the node's disk, so lines pass a token
bucket (:class:`LogRateLimiter`); suppressed lines are summarised by one line per
interval.  The Prometheus counter still counts every event.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter

Protocol = Literal["tcp", "udp", "sctp"]
Resolver = Callable[[str], str | None]
"""Maps an IPv4 address to ``"namespace/name"`` of the pod that has it, or None."""

IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_SCTP = 132
TCP_SYN = 0x02
TCP_ACK = 0x10
SCTP_CHUNK_INIT = 1
_FRAGMENT_OFFSET_MASK = 0x1FFF

LINE_SUFFIX = "blocked by Weave NPC."
SUMMARY_TEXT = "more blocked connections not logged"


@dataclass(frozen=True, slots=True)
class BlockedConnection:
    """A connection attempt that policy dropped."""

    protocol: Protocol
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int


def _ipv4(raw: bytes) -> str:
    return socket.inet_ntoa(raw)


def _transport(packet: bytes) -> tuple[int, bytes] | None:
    """``(protocol, transport bytes)`` of an IPv4 packet, or None if it has none to offer.

    The transport bytes end at the IP total length or at the end of the capture,
    whichever is first (NFLOG copies only the configured range).  Non-first fragments
    carry no transport header and are refused.
    """
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    header_len = (packet[0] & 0x0F) * 4
    total_len, frag = struct.unpack_from("!H2xH", packet, 2)
    if header_len < 20 or len(packet) < header_len or frag & _FRAGMENT_OFFSET_MASK:
        return None
    end = min(total_len, len(packet))
    return packet[9], packet[header_len:end]


def parse_blocked(packet: bytes) -> BlockedConnection | None:
    """The blocked connection an IPv4 packet (from its IP header on) attempts, if any."""
    found = _transport(packet)
    if found is None:
        return None
    proto, l4 = found
    protocol: Protocol
    if proto == IPPROTO_TCP:
        # Need the flags byte (offset 13); the Go decoder also wanted a full 20 bytes.
        if len(l4) < 20 or l4[13] & (TCP_SYN | TCP_ACK) != TCP_SYN:
            return None
        protocol = "tcp"
    elif proto == IPPROTO_UDP:
        if len(l4) < 8:
            return None
        protocol = "udp"
    elif proto == IPPROTO_SCTP:
        # 12-byte common header, then the first chunk's type byte.
        if len(l4) < 16 or l4[12] != SCTP_CHUNK_INIT:
            return None
        protocol = "sctp"
    else:
        return None
    sport, dport = struct.unpack_from("!HH", l4)
    return BlockedConnection(protocol, _ipv4(packet[12:16]), sport, _ipv4(packet[16:20]), dport)


def pod_suffix(event: BlockedConnection, resolver: Resolver | None) -> str:
    """The ``" (from ns/a to ns/b)"`` extension, or "" when no pod is known."""
    if resolver is None:
        return ""
    parts = []
    src = resolver(event.src_ip)
    if src:
        parts.append(f"from {src}")
    dst = resolver(event.dst_ip)
    if dst:
        parts.append(f"to {dst}")
    return f" ({' '.join(parts)})" if parts else ""


def format_blocked(event: BlockedConnection, resolver: Resolver | None = None) -> str:
    """The original's warning line, plus pod names when ``resolver`` knows them."""
    return (
        f"{event.protocol.upper()} connection from {event.src_ip}:{event.src_port}"
        f" to {event.dst_ip}:{event.dst_port} {LINE_SUFFIX}{pod_suffix(event, resolver)}"
    )


class LogRateLimiter:
    """Token bucket for log lines: ``burst`` lines at once, then ``rate`` lines per second.

    :meth:`admit` says whether a line may be written now; refused lines are counted,
    and :meth:`summary` returns one line about them once ``summary_interval`` seconds
    have passed since the first refusal of the current window (call it regularly,
    also when no packets arrive).  :meth:`flush` returns any pending summary at once,
    for shutdown.  Not thread-safe: one runner owns it.
    """

    def __init__(
        self,
        rate: float = 10.0,
        burst: int = 50,
        summary_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or summary_interval <= 0:
            raise ValueError("rate and summary_interval must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.summary_interval = summary_interval
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._suppressed = 0
        self._window_start = 0.0
        self.suppressed_total = 0
        """Lines refused since creation (summarised or not)."""

    def admit(self) -> bool:
        """Take a token if there is one; otherwise count the line as suppressed."""
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        if self._suppressed == 0:
            self._window_start = now
        self._suppressed += 1
        self.suppressed_total += 1
        return False

    def summary(self) -> str | None:
        """The summary line if the current window is due, else None."""
        if self._suppressed and self._clock() - self._window_start >= self.summary_interval:
            return self.flush()
        return None

    def flush(self) -> str | None:
        """The summary line for any suppressed lines now, else None; starts a new window."""
        if not self._suppressed:
            return None
        count, self._suppressed = self._suppressed, 0
        elapsed = self._clock() - self._window_start
        return (
            f"{count} {SUMMARY_TEXT} in the last {elapsed:.1f}s"
            f" (log rate limit {self.rate:g}/s, burst {self.burst})."
        )


class BlockedConnectionCounter:
    """``weavenpc_blocked_connections_total{protocol, dport}``, registered in ``registry``.

    Name, help text and labels are the original's; ``protocol`` is ``tcp``, ``udp`` or
    ``sctp`` and ``dport`` the destination port in decimal.  Create one per registry
    (registering the name twice raises).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.counter = Counter(
            "weavenpc_blocked_connections",  # the client appends _total
            "Connection attempts blocked by policy controller.",
            ["protocol", "dport"],
            registry=registry,
        )
        # labels() validates and locks on every call; a flood hits few distinct ports.
        self._children: dict[tuple[str, int], Counter] = {}

    def record(self, event: BlockedConnection) -> None:
        key = (event.protocol, event.dst_port)
        child = self._children.get(key)
        if child is None:
            child = self.counter.labels(protocol=event.protocol, dport=str(event.dst_port))
            self._children[key] = child
        child.inc()
