"""Tests for npc.observe: NFLOG netlink decoding, blocked-connection events, the logger.

The first half is pure (hand-built packets and netlink messages, a fake clock, a
fake packet source).  The second half runs against the real kernel as root: each
test gets a fresh network namespace whose OUTPUT chain logs packets to 127.0.0.1
port 9 to NFLOG group 86 and drops them, opens the reader inside that namespace,
and sends real TCP/UDP/SCTP traffic from sockets created there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from common.kernel.netns import in_netns, open_netns
from common.kernel.nfnetlink import attr_table, iter_messages
from common.lab.sctp import build_init, build_init_ack
from npc.observe import (
    BlockedConnection,
    BlockedConnectionCounter,
    BlockedConnectionLogger,
    LoggedPacket,
    LogRateLimiter,
    NflogError,
    NflogReader,
    format_blocked,
    parse_blocked,
)
from npc.observe.nflog import (
    CONFIG_MSG_TYPE,
    NLM_F_ACK,
    NLM_F_REQUEST,
    NLMSG_DONE,
    PACKET_MSG_TYPE,
    build_config,
    cmd_attr,
    parse_error,
    parse_packet,
)

SYN, ACK, RST, FIN = 0x02, 0x10, 0x04, 0x01
METRIC = "weavenpc_blocked_connections_total"

# --------------------------------------------------------------------------------------
# Hand-built packets


def ipv4(proto: int, l4: bytes, src: str = "10.32.0.7", dst: str = "10.32.0.11",
         frag: int = 0, options: bytes = b"") -> bytes:
    """An IPv4 packet (checksum left 0: nothing here verifies it)."""
    ihl = 5 + len(options) // 4
    total = ihl * 4 + len(l4)
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 1, frag, 64, proto, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    return header + options + l4


def tcp(sport: int, dport: int, flags: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, flags, 65535, 0, 0)


def udp(sport: int, dport: int, data: bytes = b"x") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


def sctp_chunk(sport: int, dport: int, chunk_type: int) -> bytes:
    """SCTP common header plus one minimal chunk of the given type (checksum 0)."""
    return struct.pack("!HHII", sport, dport, 7, 0) + struct.pack("!BBH", chunk_type, 0, 4)


SYN_PACKET = ipv4(6, tcp(56648, 80, SYN))


# --------------------------------------------------------------------------------------
# Pure: which packets are blocked connections


@pytest.mark.parametrize(
    ("packet", "expected"),
    [
        pytest.param(SYN_PACKET, BlockedConnection("tcp", "10.32.0.7", 56648, "10.32.0.11", 80),
                     id="tcp-syn"),
        pytest.param(ipv4(6, tcp(1, 2, SYN | FIN)), BlockedConnection("tcp", "10.32.0.7", 1,
                     "10.32.0.11", 2), id="tcp-syn-fin-counts-like-the-original"),
        pytest.param(ipv4(6, tcp(1, 80, SYN | ACK)), None, id="tcp-syn-ack"),
        pytest.param(ipv4(6, tcp(1, 80, ACK)), None, id="tcp-ack"),
        pytest.param(ipv4(6, tcp(1, 80, RST)), None, id="tcp-rst"),
        pytest.param(ipv4(17, udp(5353, 53)), BlockedConnection("udp", "10.32.0.7", 5353,
                     "10.32.0.11", 53), id="udp"),
        pytest.param(ipv4(132, build_init(4000, 80, 1234, 1)),
                     BlockedConnection("sctp", "10.32.0.7", 4000, "10.32.0.11", 80),
                     id="sctp-init"),
        pytest.param(ipv4(132, build_init_ack(80, 4000, 1234, 99, 1, b"c")), None,
                     id="sctp-init-ack"),
        pytest.param(ipv4(132, sctp_chunk(4000, 80, 0)), None, id="sctp-data"),
        pytest.param(ipv4(132, sctp_chunk(4000, 80, 6)), None, id="sctp-abort"),
        pytest.param(ipv4(1, b"\x08\x00\x00\x00\x00\x01\x00\x01"), None, id="icmp"),
        pytest.param(ipv4(17, udp(1, 53), options=b"\x01\x01\x01\x00"),
                     BlockedConnection("udp", "10.32.0.7", 1, "10.32.0.11", 53),
                     id="ip-options-skipped"),
        pytest.param(ipv4(17, udp(1, 53), frag=0x2000), BlockedConnection(
                     "udp", "10.32.0.7", 1, "10.32.0.11", 53), id="first-fragment"),
        pytest.param(ipv4(17, udp(1, 53), frag=0x2000 | 185), None, id="later-fragment"),
        pytest.param(b"\x60" + SYN_PACKET[1:], None, id="not-ipv4"),
        pytest.param(b"\x44" + SYN_PACKET[1:], None, id="ihl-below-minimum"),
        pytest.param(b"", None, id="empty"),
    ],
)
def test_parse_blocked(packet: bytes, expected: BlockedConnection | None) -> None:
    assert parse_blocked(packet) == expected


@pytest.mark.parametrize(
    "packet",
    [SYN_PACKET, ipv4(17, udp(1, 53)), ipv4(132, build_init(4000, 80, 1234, 1))],
    ids=["tcp", "udp", "sctp"],
)
def test_truncated_packets_are_ignored(packet: bytes) -> None:
    """Every capture cut before the bytes we need yields None, never an exception."""
    needed = 20 + {6: 20, 17: 8, 132: 16}[packet[9]]
    for cut in range(needed):
        assert parse_blocked(packet[:cut]) is None, cut
    assert parse_blocked(packet[:needed]) is not None


def test_ip_total_length_bounds_the_transport_header() -> None:
    """Bytes past the IP total length (link-layer padding) are not the transport header."""
    short = bytearray(ipv4(17, udp(1, 53)))
    struct.pack_into("!H", short, 2, 24)  # claims only 4 bytes of UDP
    assert parse_blocked(bytes(short)) is None


def test_format_matches_the_original_line() -> None:
    event = BlockedConnection("tcp", "10.32.0.7", 56648, "10.32.0.11", 80)
    assert format_blocked(event) == (
        "TCP connection from 10.32.0.7:56648 to 10.32.0.11:80 blocked by Weave NPC."
    )
    udp_event = BlockedConnection("udp", "10.32.0.7", 5353, "10.32.0.11", 53)
    assert format_blocked(udp_event) == (
        "UDP connection from 10.32.0.7:5353 to 10.32.0.11:53 blocked by Weave NPC."
    )
    sctp_event = BlockedConnection("sctp", "10.32.0.7", 4000, "10.32.0.11", 80)
    assert format_blocked(sctp_event).startswith("SCTP connection from 10.32.0.7:4000 ")


@pytest.mark.parametrize(
    ("pods", "suffix"),
    [
        ({"10.32.0.7": "x/a", "10.32.0.11": "y/b"}, " (from x/a to y/b)"),
        ({"10.32.0.7": "x/a"}, " (from x/a)"),
        ({"10.32.0.11": "y/b"}, " (to y/b)"),
        ({}, ""),
    ],
    ids=["both", "source-only", "destination-only", "none"],
)
def test_format_with_pod_names(pods: dict[str, str], suffix: str) -> None:
    event = BlockedConnection("udp", "10.32.0.7", 5353, "10.32.0.11", 53)
    line = format_blocked(event, pods.get)
    assert line == format_blocked(event) + suffix
    assert "blocked by Weave NPC." in line


# --------------------------------------------------------------------------------------
# Pure: netlink messages


def attr(attr_type: int, value: bytes) -> bytes:
    length = 4 + len(value)
    return struct.pack("=HH", length, attr_type) + value + b"\0" * (-length % 4)


def nlmsg(msg_type: int, body: bytes, flags: int = 0, seq: int = 0) -> bytes:
    length = 16 + len(body)
    return struct.pack("=IHHII", length, msg_type, flags, seq, 0) + body + b"\0" * (-length % 4)


def packet_message(payload: bytes, prefix: bytes, seq: int) -> bytes:
    """An NFULNL_MSG_PACKET as the kernel builds it for the FORWARD hook."""
    body = struct.pack("!BBH", socket.AF_INET, 0, 86)
    body += attr(1, struct.pack("!HBB", 0x0800, 2, 0))  # NFULA_PACKET_HDR
    body += attr(3, struct.pack("!QQ", 1_700_000_000, 250_000))  # NFULA_TIMESTAMP
    body += attr(4 | 0x4000, struct.pack("!I", 7))  # INDEV, with NET_BYTEORDER flag
    body += attr(5, struct.pack("!I", 9))  # OUTDEV
    body += attr(10, prefix + b"\0")  # PREFIX, odd length: padded
    body += attr(12, struct.pack("!I", seq))  # SEQ
    body += attr(9, payload)  # PAYLOAD
    body += attr(99, b"unknown attributes are skipped")
    return nlmsg(PACKET_MSG_TYPE, body, flags=0x2)


def test_parse_batched_packet_messages() -> None:
    datagram = (packet_message(SYN_PACKET, b"abc", 5) + packet_message(b"xyz", b"", 6)
                + nlmsg(NLMSG_DONE, struct.pack("!BBH", 0, 0, 86)))
    messages = list(iter_messages(datagram))
    assert [m.msg_type for m in messages] == [PACKET_MSG_TYPE, PACKET_MSG_TYPE, NLMSG_DONE]
    first = parse_packet(messages[0].body)
    assert first == LoggedPacket(group=86, family=socket.AF_INET, hw_protocol=0x0800, hook=2,
                                 payload=SYN_PACKET, prefix="abc", indev=7, outdev=9, seq=5,
                                 timestamp=1_700_000_000.25)
    assert parse_packet(messages[1].body).payload == b"xyz"


def test_malformed_netlink_tails_are_dropped() -> None:
    good = packet_message(b"p", b"", 0)
    assert len(list(iter_messages(good + good[:10]))) == 1
    bad_length = struct.pack("=IHHII", 8, PACKET_MSG_TYPE, 0, 0, 0)  # shorter than a header
    assert list(iter_messages(bad_length + good)) == []
    attrs = attr(9, b"abcd") + struct.pack("=HH", 200, 10) + b"short"
    assert attr_table(attrs) == {9: b"abcd"}


def test_config_request_layout() -> None:
    msg = build_config(42, cmd_attr(1), socket.AF_UNSPEC, 86)
    length, msg_type, flags, seq, pid = struct.unpack_from("=IHHII", msg)
    assert (length, msg_type, flags, seq, pid) == (
        len(msg), CONFIG_MSG_TYPE, NLM_F_REQUEST | NLM_F_ACK, 42, 0)
    assert msg[16:20] == b"\x00\x00\x00\x56"  # nfgenmsg: family, version, be16 group 86
    assert msg[20:] == struct.pack("=HH", 5, 1) + b"\x01\0\0\0"  # NFULA_CFG_CMD BIND
    error = struct.pack("=i", -errno.EPERM) + msg[:16]
    assert parse_error(error) == (errno.EPERM, 42)


# --------------------------------------------------------------------------------------
# Pure: rate limiter, counter, logger loop


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_bursts_refills_and_summarises() -> None:
    clock = FakeClock()
    limiter = LogRateLimiter(rate=2.0, burst=3, summary_interval=10.0, clock=clock)
    assert [limiter.admit() for _ in range(5)] == [True, True, True, False, False]
    clock.now += 0.5  # one token back
    assert [limiter.admit(), limiter.admit()] == [True, False]
    assert limiter.summary() is None  # window opened at 1000.0, not due yet
    clock.now = 1010.0
    assert limiter.summary() == (
        "3 more blocked connections not logged in the last 10.0s"
        " (log rate limit 2/s, burst 3).")
    assert limiter.summary() is None and limiter.flush() is None
    clock.now += 100.0  # a long quiet spell refills only up to the burst
    assert [limiter.admit() for _ in range(4)] == [True, True, True, False]
    assert limiter.flush() is not None and limiter.suppressed_total == 4


def syn(dport: int, sport: int = 40000) -> LoggedPacket:
    return LoggedPacket(group=86, family=socket.AF_INET, hw_protocol=0x0800, hook=2,
                        payload=ipv4(6, tcp(sport, dport, SYN)))


def test_logger_counts_every_event_but_limits_lines() -> None:
    clock = FakeClock()
    registry = CollectorRegistry()
    lines: list[str] = []
    source = FakeSource()
    logger = BlockedConnectionLogger(
        source, BlockedConnectionCounter(registry), lines.append,
        resolver={"10.32.0.7": "x/a"}.get,
        limiter=LogRateLimiter(rate=1.0, burst=2, summary_interval=5.0, clock=clock))
    ack = LoggedPacket(group=86, family=socket.AF_INET, hw_protocol=0x0800, hook=2,
                       payload=ipv4(6, tcp(1, 80, ACK)))
    found = logger.handle([syn(80, 1), ack, syn(80, 2), syn(443, 3), syn(80, 4)])
    assert len(found) == 4 and logger.events == 4
    assert lines == [
        "TCP connection from 10.32.0.7:1 to 10.32.0.11:80 blocked by Weave NPC. (from x/a)",
        "TCP connection from 10.32.0.7:2 to 10.32.0.11:80 blocked by Weave NPC. (from x/a)",
    ]
    assert registry.get_sample_value(METRIC, {"protocol": "tcp", "dport": "80"}) == 3
    assert registry.get_sample_value(METRIC, {"protocol": "tcp", "dport": "443"}) == 1
    clock.now += 5.0  # the next event first emits the due summary, then takes a token
    logger.handle([syn(80, 5)])
    assert lines[2:] == [
        "2 more blocked connections not logged in the last 5.0s (log rate limit 1/s, burst 2).",
        "TCP connection from 10.32.0.7:5 to 10.32.0.11:80 blocked by Weave NPC. (from x/a)",
    ]
    assert logger.stop()
    source.close()


class FakeSource:
    """A packet source backed by a pipe, so the logger's poll sees it become readable."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.batches: list[list[LoggedPacket]] = []
        self.error: OSError | None = None

    def push(self, packets: list[LoggedPacket] | None = None, error: OSError | None = None) -> None:
        if packets:
            self.batches.append(packets)
        self.error = error
        os.write(self.write_fd, b"!")

    def fileno(self) -> int:
        return self.read_fd

    def read(self, timeout: float | None = None) -> list[LoggedPacket]:
        with contextlib.suppress(BlockingIOError):
            os.read(self.read_fd, 4096)
        if self.error is not None:
            raise self.error
        out = [p for batch in self.batches for p in batch]
        self.batches.clear()
        return out

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_logger_thread_surfaces_a_fatal_read_error() -> None:
    source = FakeSource()
    failures: list[BaseException] = []
    lines: list[str] = []
    logger = BlockedConnectionLogger(source, BlockedConnectionCounter(CollectorRegistry()),
                                     lines.append, on_error=failures.append, tick=10.0)
    logger.start()
    source.push([syn(80)])
    wait_for(lambda: logger.events == 1)
    broken = OSError(errno.EBADF, "socket gone")
    source.push(error=broken)
    wait_for(lambda: not logger.running)
    assert failures == [broken] and logger.error is broken
    with pytest.raises(OSError, match="socket gone"):
        logger.raise_if_failed()
    assert logger.stop() and logger.stop()  # idempotent
    assert len(lines) == 1
    source.close()


def test_logger_stop_is_prompt_and_flushes_the_summary() -> None:
    source = FakeSource()
    lines: list[str] = []
    logger = BlockedConnectionLogger(
        source, BlockedConnectionCounter(CollectorRegistry()), lines.append,
        limiter=LogRateLimiter(rate=1.0, burst=1, summary_interval=3600.0), tick=30.0)
    with logger:
        source.push([syn(80, n) for n in range(1, 4)])
        wait_for(lambda: logger.events == 3)
        started = time.monotonic()
    # __exit__ stopped it: the wake-up pipe, not the 30 s tick, ended the poll.
    assert time.monotonic() - started < 0.5
    assert not logger.running and logger.error is None
    assert len(lines) == 2 and lines[1].startswith("2 more blocked connections not logged")
    source.close()


# --------------------------------------------------------------------------------------
# Kernel: a fresh namespace whose OUTPUT chain logs and drops traffic to 127.0.0.1:9

BLOCKED_PORT = 9
LOGGED_INPUT_PORT = 10
RULES = "*filter\n" + "".join(
    f"-A OUTPUT -d 127.0.0.1 -p {proto} --dport {BLOCKED_PORT} -j NFLOG --nflog-group 86\n"
    f"-A OUTPUT -d 127.0.0.1 -p {proto} --dport {BLOCKED_PORT} -j DROP\n"
    for proto in ("tcp", "udp", "sctp")
) + (
    # Not dropped: checks the attributes the kernel adds on INPUT (timestamp, indev, prefix).
    f"-A INPUT -p udp --dport {LOGGED_INPUT_PORT} -j NFLOG --nflog-group 86"
    " --nflog-prefix npc-test\nCOMMIT\n"
)


@dataclass(frozen=True)
class Netns:
    name: str
    fd: int

    def reader(self, rcvbuf: int = 8 << 20, queue_threshold: int = 32,
               bind_pf: bool = False) -> NflogReader:
        """An NflogReader whose socket lives in this namespace."""
        with in_netns(self.fd):
            return NflogReader(86, rcvbuf=rcvbuf, queue_threshold=queue_threshold,
                               bind_pf=bind_pf)

    def ipv4_default_logger(self) -> str:
        """The namespace's default IPv4 logger (/proc/sys/net resolves per thread)."""
        with in_netns(self.fd), open("/proc/sys/net/netfilter/nf_log/2") as fh:
            return fh.read().strip()

    def open_socket(self, family: int, kind: int, proto: int = 0) -> socket.socket:
        with in_netns(self.fd):
            return socket.socket(family, kind, proto)


@pytest.fixture(params=["nft", "legacy"])
def netns(request: pytest.FixtureRequest) -> Iterator[Netns]:
    """Both iptables flavours: nft turns NFLOG into nft's ``log group`` expression,
    legacy runs the xt_NFLOG target; both reach nfnetlink_log."""
    name = f"nflogtest-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    fd = -1
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        restore = f"iptables-{request.param}-restore"
        subprocess.run(["ip", "netns", "exec", name, restore, "--noflush"],
                       input=RULES, text=True, check=True, capture_output=True)
        fd = open_netns(name)
        yield Netns(name, fd)
    finally:
        if fd >= 0:
            os.close(fd)
        subprocess.run(["ip", "netns", "del", name], check=False)


def send_dropped(sock: socket.socket, data: bytes, port: int = 0) -> None:
    """Send toward 127.0.0.1; the OUTPUT DROP makes the kernel answer EPERM."""
    with contextlib.suppress(PermissionError):
        sock.sendto(data, ("127.0.0.1", port))


def tcp_syn(ns: Netns) -> int:
    """A real connect() whose SYN is dropped; closing in SYN-SENT sends nothing more."""
    with ns.open_socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        assert sock.connect_ex(("127.0.0.1", BLOCKED_PORT)) == errno.EINPROGRESS
        return int(sock.getsockname()[1])


def udp_datagram(ns: Netns, port: int = BLOCKED_PORT) -> int:
    with ns.open_socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        send_dropped(sock, b"hello", port)
        return int(sock.getsockname()[1])


def raw_send(ns: Netns, proto: int, l4: bytes) -> None:
    """Send a transport segment over a raw socket (the kernel adds the IP header)."""
    with ns.open_socket(socket.AF_INET, socket.SOCK_RAW, proto) as sock:
        send_dropped(sock, l4)


def collect(reader: NflogReader, count: int, timeout: float = 5.0) -> list[LoggedPacket]:
    """Read until ``count`` packets arrived (or fail at the deadline), then a little more
    to catch any unexpected extra packet."""
    got: list[LoggedPacket] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only {len(got)} of {count} packets logged: {got}"
        got += reader.read(remaining)
    got += reader.read(0.2)
    return got


def test_reader_yields_blocked_connections(netns: Netns) -> None:
    with netns.reader() as reader:
        # Logged but not connection attempts: sent first, so when the counted ones
        # have arrived these have too (one instance queue keeps order).
        raw_send(netns, 6, tcp(3333, BLOCKED_PORT, SYN | ACK))
        raw_send(netns, 6, tcp(3334, BLOCKED_PORT, ACK))
        raw_send(netns, 132, build_init_ack(3335, BLOCKED_PORT, 77, 78, 1, b"cookie"))
        tcp_port = tcp_syn(netns)
        udp_port = udp_datagram(netns)
        raw_send(netns, 132, build_init(3336, BLOCKED_PORT, 0xABCDEF, 1))
        packets = collect(reader, 6)
    assert len(packets) == 6 and reader.lost == 0 and reader.overruns == 0
    for packet in packets:
        assert (packet.group, packet.family, packet.hw_protocol) == (86, socket.AF_INET, 0x0800)
        assert packet.hook == 3 and packet.outdev == 1 and packet.indev is None  # OUTPUT, lo
        assert packet.timestamp is None  # the kernel stamps only hooks up to FORWARD
        assert packet.prefix == ""
    events = [e for e in (parse_blocked(p.payload) for p in packets) if e is not None]
    assert events == [
        BlockedConnection("tcp", "127.0.0.1", tcp_port, "127.0.0.1", BLOCKED_PORT),
        BlockedConnection("udp", "127.0.0.1", udp_port, "127.0.0.1", BLOCKED_PORT),
        BlockedConnection("sctp", "127.0.0.1", 3336, "127.0.0.1", BLOCKED_PORT),
    ]


def test_input_hook_attributes(netns: Netns) -> None:
    with netns.reader() as reader:
        before = time.time()
        port = udp_datagram(netns, LOGGED_INPUT_PORT)
        (packet,) = collect(reader, 1)
    assert packet.hook == 1 and packet.indev == 1 and packet.outdev is None
    assert packet.prefix == "npc-test"
    assert packet.timestamp is not None and before - 1 <= packet.timestamp <= time.time() + 1
    assert parse_blocked(packet.payload) == BlockedConnection(
        "udp", "127.0.0.1", port, "127.0.0.1", LOGGED_INPUT_PORT)


def test_group_has_one_owner_per_namespace(netns: Netns) -> None:
    first = netns.reader()
    with pytest.raises(NflogError) as caught:
        netns.reader()
    assert caught.value.errno == errno.EPERM and "group 86" in str(caught.value)
    first.close()
    first.close()  # idempotent
    assert first.closed
    with pytest.raises(OSError) as closed:
        first.read(0)
    assert closed.value.errno == errno.EBADF
    with netns.reader() as again:  # closing released the kernel instance
        udp_datagram(netns)
        assert len(collect(again, 1)) == 1


def test_legacy_pf_bind_is_opt_in(netns: Netns) -> None:
    """PF_BIND is not needed for NFLOG and replaces the namespace's default logger."""
    original = netns.ipv4_default_logger()
    assert original != "nfnetlink_log"
    with netns.reader() as reader:
        assert reader.pf_errnos is None
        assert netns.ipv4_default_logger() == original
        udp_datagram(netns)
        assert len(collect(reader, 1)) == 1
    with netns.reader(bind_pf=True) as reader:
        assert reader.pf_errnos == (0, 0)  # accepted by this kernel...
    assert netns.ipv4_default_logger() == "nfnetlink_log"  # ...and it outlives the socket


def test_overrun_is_counted_and_reading_continues(netns: Netns) -> None:
    sent = 3000
    with netns.reader(rcvbuf=4096, queue_threshold=1) as reader:
        with netns.open_socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(sent):
                send_dropped(sock, b"x", BLOCKED_PORT)
        received = 0
        while batch := reader.read(0.3):  # 0.3 s quiet: the kernel has flushed
            received += len(batch)
        assert reader.overruns >= 1
        # One more packet reveals any loss at the tail through its sequence number.
        udp_datagram(netns)
        received += len(collect(reader, 1))
    assert received < sent and received + reader.lost == sent + 1


def test_logger_end_to_end(netns: Netns) -> None:
    registry = CollectorRegistry()
    lines: list[str] = []
    lock = threading.Lock()

    def log(line: str) -> None:
        with lock:
            lines.append(line)

    with netns.reader() as reader, BlockedConnectionLogger(
        reader, BlockedConnectionCounter(registry), log, resolver={"127.0.0.1": "ns/lo"}.get
    ) as logger:
        raw_send(netns, 6, tcp(3333, BLOCKED_PORT, SYN | ACK))
        tcp_port = tcp_syn(netns)
        udp_port = udp_datagram(netns)
        raw_send(netns, 132, build_init(3336, BLOCKED_PORT, 0xABCDEF, 1))
        wait_for(lambda: logger.events == 3)
    assert not logger.running and logger.error is None
    for proto in ("tcp", "udp", "sctp"):
        labels = {"protocol": proto, "dport": str(BLOCKED_PORT)}
        assert registry.get_sample_value(METRIC, labels) == 1.0, proto
    tail = "127.0.0.1:9 blocked by Weave NPC. (from ns/lo to ns/lo)"
    assert lines == [
        f"TCP connection from 127.0.0.1:{tcp_port} to {tail}",
        f"UDP connection from 127.0.0.1:{udp_port} to {tail}",
        f"SCTP connection from 127.0.0.1:3336 to {tail}",
    ]
