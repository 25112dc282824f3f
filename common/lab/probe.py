"""Connectivity probes from one pod to another, run in parallel from one process.

A probe creates its socket while its (pool) thread is inside the *source* pod's
namespace, then does all I/O after switching back: the socket belongs to the
source pod, so its packets leave through the pod's ``eth0`` and cross the node's
bridge (and br_netfilter's iptables hooks) exactly as a pod's traffic would.

Outcomes are recorded with a *kind* so a failing matrix can tell a DROP (timeout)
from a REJECT (refused/unreachable via ICMP) or a misrouted reply (wrong-reply).
"""

from __future__ import annotations

import errno
import random
import socket
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from common.kernel.netns import in_netns
from common.lab.sctp import CHUNK_INIT_ACK, IPPROTO_SCTP, build_init, parse_ipv4_sctp

Protocol = Literal["TCP", "UDP", "SCTP"]
PROTOCOLS: tuple[Protocol, ...] = ("TCP", "UDP", "SCTP")


def normalize_protocol(protocol: str) -> Protocol:
    """Accept ``tcp``/``TCP`` etc.; raise ValueError for anything else."""
    upper = protocol.upper()
    for proto in PROTOCOLS:
        if proto == upper:
            return proto
    raise ValueError(f"unknown protocol {protocol!r}")


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of one probe: ``ok`` plus why not (``kind``/``detail``) and how long."""

    ok: bool
    kind: str  # "ok", "timeout", "refused", "unreachable", "reset", "wrong-reply", "error"
    detail: str = ""
    elapsed: float = 0.0

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class ProbeSpec:
    """Everything a worker thread needs; ``src_fd`` is an open netns fd of the source."""

    src_fd: int
    dst_ip: str
    port: int
    protocol: Protocol
    timeout: float
    expect_reply: bytes | None = None  # UDP: expected payload (the destination's name)


def _classify(exc: BaseException) -> tuple[str, str]:
    """Map a socket exception to (kind, detail)."""
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout", ""
    if isinstance(exc, ConnectionRefusedError):
        return "refused", "ECONNREFUSED"
    if isinstance(exc, ConnectionResetError):
        return "reset", "ECONNRESET"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable", errno.errorcode[exc.errno]
    if isinstance(exc, OSError) and exc.errno is not None:
        return "error", errno.errorcode.get(exc.errno, str(exc.errno))
    return "error", repr(exc)


IP_RECVERR = getattr(socket, "IP_RECVERR", 11)


def _make_socket(spec: ProbeSpec) -> socket.socket:
    """Create the probe socket inside the source pod's namespace.

    UDP and raw sockets get ``IP_RECVERR``: without it Linux reports only "hard"
    ICMP errors (port/protocol unreachable) to them and silently drops "soft"
    ones such as host-unreachable (RFC 1122), so a REJECT with
    ``icmp-host-unreachable`` would look like a DROP (timeout).
    """
    with in_netns(spec.src_fd):
        if spec.protocol == "TCP":
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if spec.protocol == "UDP":
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_SCTP)
    sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    return sock


def run_probe(spec: ProbeSpec) -> ProbeResult:
    """Run one probe synchronously in the calling thread."""
    start = time.monotonic()
    deadline = start + spec.timeout
    try:
        sock = _make_socket(spec)
    except OSError as exc:
        return ProbeResult(False, "error", f"socket: {exc}", 0.0)
    try:
        sock.settimeout(spec.timeout)
        if spec.protocol == "TCP":
            sock.connect((spec.dst_ip, spec.port))
            kind, detail = "ok", ""
        elif spec.protocol == "UDP":
            kind, detail = _udp(sock, spec, deadline)
        else:
            kind, detail = _sctp(sock, spec, deadline)
    except (OSError, ValueError) as exc:
        kind, detail = _classify(exc)
    finally:
        sock.close()
    return ProbeResult(kind == "ok", kind, detail, time.monotonic() - start)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError()
    return left


def _udp(sock: socket.socket, spec: ProbeSpec, deadline: float) -> tuple[str, str]:
    """Send one datagram and wait for the answer; ICMP errors surface on connected sockets."""
    sock.connect((spec.dst_ip, spec.port))
    sock.send(b"probe")
    sock.settimeout(_remaining(deadline))
    reply = sock.recv(2048)
    if spec.expect_reply is not None and reply != spec.expect_reply:
        return "wrong-reply", reply[:64].decode(errors="replace")
    return "ok", ""


def _sctp(sock: socket.socket, spec: ProbeSpec, deadline: float) -> tuple[str, str]:
    """Send an INIT and wait for the matching INIT-ACK.

    ``connect()`` on the raw socket makes the kernel deliver only packets from the
    destination address to it and report ICMP errors (port/host unreachable) as
    socket errors, like a connected UDP socket.  Other probes' and servers'
    traffic in the same pod still reaches this socket, hence the tag/port checks.
    """
    sport = random.randint(32768, 60999)
    tag = random.getrandbits(32) or 1
    sock.connect((spec.dst_ip, 0))
    sock.send(build_init(sport, spec.port, tag, random.getrandbits(32)))
    while True:
        sock.settimeout(_remaining(deadline))
        pkt = parse_ipv4_sctp(sock.recv(65535))
        if (
            pkt is not None
            and pkt.src == spec.dst_ip
            and pkt.sport == spec.port
            and pkt.dport == sport
            and pkt.chunk_type == CHUNK_INIT_ACK
            and pkt.vtag == tag
        ):
            return ("ok", "") if pkt.checksum_ok else ("error", "bad INIT-ACK checksum")


class Prober:
    """A thread pool that runs probes; many (src, dst) pairs run concurrently.

    Blocked probes spend their whole timeout waiting, so parallelism (not speed
    per probe) is what keeps a 9x9 matrix with half its cells blocked at ~one
    timeout of wall time.
    """

    def __init__(self, workers: int = 64) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lab-probe")

    def run(self, specs: Iterable[ProbeSpec]) -> list[ProbeResult]:
        """Run all probes concurrently; results in input order."""
        return list(self._pool.map(run_probe, specs))

    def close(self) -> None:
        """Wait for running probes (bounded by their timeouts) and stop the workers."""
        self._pool.shutdown(wait=True, cancel_futures=True)
