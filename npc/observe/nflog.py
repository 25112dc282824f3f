"""A native reader for packets logged by ``-j NFLOG`` (nfnetlink_log), without ulogd.

Kernel background
-----------------
``-j NFLOG --nflog-group N`` (and nft's ``log group N``, which is what iptables-nft
turns the target into) hands each matching packet to the nfnetlink_log logger.  The
logger looks up the *instance* for group N in the packet's network namespace; if no
process has bound that group the packet is simply not logged.  An instance belongs to
exactly one netlink socket (its port id): it is created by a ``BIND`` config command,
a second ``BIND`` from another socket fails (with ``EPERM``: the kernel checks the
owner before the command), and the kernel destroys
the instance when the owning socket is closed.  So the reader must be created in the
namespace whose rules log (a netlink socket is bound for life to the namespace of the
thread that created it), and only one reader per group per namespace can exist; the
Go original's ulogd was that one reader.

Everything travels over a ``NETLINK_NETFILTER`` (12) socket.  Every netlink message is

``nlmsghdr``  ``u32 len, u16 type, u16 flags, u32 seq, u32 pid`` (host byte order),
              ``type = subsystem << 8 | message`` (subsystem ``NFNL_SUBSYS_ULOG`` = 4;
              message ``NFULNL_MSG_PACKET`` = 0 or ``NFULNL_MSG_CONFIG`` = 1);
``nfgenmsg``  ``u8 family, u8 version (0), be16 res_id`` (res_id = the group number);
attributes    TLVs ``u16 nla_len, u16 nla_type`` (host order; ``nla_len`` counts the
              4-byte header but not the padding), each value padded to 4 bytes.  The
              top two bits of ``nla_type`` are the NESTED / NET_BYTEORDER flags.

*Inside* the attribute values nfnetlink_log uses network byte order: the u32 ifindex,
mark, uid and gid values, the ``nfulnl_msg_packet_hdr`` (``be16 hw_protocol, u8 hook,
u8 pad``) and the timestamp (``be64 sec, be64 usec``).  ``NFULA_PAYLOAD`` is the packet
from its network header (for IPv4, the IP header), cut to the configured copy range;
``NFULA_PREFIX`` is the rule's ``--nflog-prefix`` with its terminating NUL.
``NFULA_TIMESTAMP`` is only sent for PREROUTING, INPUT and FORWARD.

Configuration is ``NFULNL_MSG_CONFIG`` with ``NFULA_CFG_*`` attributes, sent with
``NLM_F_ACK`` so each command is answered by an ``NLMSG_ERROR`` (error 0 = success).

``PF_UNBIND``/``PF_BIND`` for AF_INET are what libnetfilter_log users (ulogd) send
first.  They date from kernels with one logger per family, where NFLOG worked only
while nfnetlink_log was the family's bound logger.  Current kernels keep loggers per
type and NFLOG asks for the ``ULOG`` type explicitly, so these commands are not
needed; yet they are *not* no-ops: measured on 6.18, PF_BIND replaces the
namespace's default IPv4 logger (``/proc/sys/net/netfilter/nf_log/2``, e.g.
``nf_log_ipv4``) with nfnetlink_log and the change outlives the socket.  That
default serves loggers that name no type, such as conntrack's invalid-packet
logging, which would then go to an unbound NFLOG group 0 instead of the kernel log.
On a host-network DaemonSet that is host state we do not own, so the reader sends
them only when asked (``bind_pf=True``) and then ignores refusals.

Delivery: the kernel queues packets per instance and sends the queue as one
datagram (``NLM_F_MULTI`` messages closed by ``NLMSG_DONE``) once it holds
``queue_threshold`` packets, once the flush timer (``flush_timeout``) fires, or once
the instance buffer is full.  If our socket's receive buffer is full the datagram is
dropped and the next ``recv`` fails once with ``ENOBUFS`` (once per overrun episode,
however many datagrams it lost); the reader counts that
(:attr:`NflogReader.overruns`) and carries on, as losing log lines under a flood is
preferable to blocking or dying.  To know how many *packets* were lost, the reader
turns on ``NFULNL_CFG_F_SEQ``: each packet then carries the instance's sequence
number (``NFULA_SEQ``, counting from 0), and gaps are summed in
:attr:`NflogReader.lost` (a loss shows up when the next packet arrives).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from dataclasses import dataclass
from types import TracebackType

from common.contract import NFLOG_GROUP
from common.kernel import nfnetlink as nl

NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1
NFNETLINK_V0 = 0

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4

NFULNL_CFG_CMD_BIND = 1
NFULNL_CFG_CMD_UNBIND = 2
NFULNL_CFG_CMD_PF_BIND = 3
NFULNL_CFG_CMD_PF_UNBIND = 4
NFULA_CFG_CMD = 1
NFULA_CFG_MODE = 2
NFULA_CFG_TIMEOUT = 4
NFULA_CFG_QTHRESH = 5
NFULA_CFG_FLAGS = 6
NFULNL_COPY_PACKET = 0x02
NFULNL_CFG_F_SEQ = 0x0001

NFULA_PACKET_HDR = 1
NFULA_MARK = 2
NFULA_TIMESTAMP = 3
NFULA_IFINDEX_INDEV = 4
NFULA_IFINDEX_OUTDEV = 5
NFULA_IFINDEX_PHYSINDEV = 6
NFULA_IFINDEX_PHYSOUTDEV = 7
NFULA_PAYLOAD = 9
NFULA_PREFIX = 10
NFULA_UID = 11
NFULA_SEQ = 12
NFULA_GID = 14

PACKET_MSG_TYPE = NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_PACKET
CONFIG_MSG_TYPE = NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_CONFIG

_U32 = struct.Struct("!I")
_ACK_TIMEOUT = 2.0


class NflogError(OSError):
    """Configuring the NFLOG subscription failed (carries the kernel's errno)."""


@dataclass(frozen=True, slots=True)
class LoggedPacket:
    """One packet as reported by nfnetlink_log (attributes that were absent are None).

    ``payload`` starts at the network header (the IPv4 header for ``family`` AF_INET)
    and holds at most the configured copy range.  ``hook`` is the netfilter hook
    number (0 PREROUTING, 1 INPUT, 2 FORWARD, 3 OUTPUT, 4 POSTROUTING).  Interface
    fields are ifindexes in the namespace of the reader.  ``timestamp`` is seconds
    since the epoch as the kernel reported it (only for hooks up to FORWARD).
    """

    group: int
    family: int
    hw_protocol: int
    hook: int
    payload: bytes
    prefix: str = ""
    indev: int | None = None
    outdev: int | None = None
    physindev: int | None = None
    physoutdev: int | None = None
    mark: int | None = None
    uid: int | None = None
    gid: int | None = None
    seq: int | None = None
    timestamp: float | None = None


def build_config(seq: int, attrs: bytes, family: int = socket.AF_UNSPEC, group: int = 0) -> bytes:
    """An ``NFULNL_MSG_CONFIG`` request (with ``NLM_F_ACK``) carrying packed attributes."""
    return nl.message(CONFIG_MSG_TYPE, NLM_F_REQUEST | NLM_F_ACK, seq, family, group, attrs)


def cmd_attr(command: int) -> bytes:
    """``NFULA_CFG_CMD`` holding ``struct nfulnl_msg_config_cmd`` (one u8)."""
    return nl.attr(NFULA_CFG_CMD, bytes([command]))


def mode_attrs(copy_range: int, queue_threshold: int, flush_timeout: float) -> bytes:
    """Copy-packet mode, queueing, and per-instance sequence numbers.

    ``nfulnl_msg_config_mode`` is ``be32 range, u8 mode, u8 pad`` (packed, 6 bytes);
    the timeout is a be32 in hundredths of a second; the flags a be16.
    """
    mode = struct.pack("!IBB", copy_range, NFULNL_COPY_PACKET, 0)
    return (
        nl.attr(NFULA_CFG_MODE, mode)
        + nl.attr(NFULA_CFG_QTHRESH, _U32.pack(queue_threshold))
        + nl.attr(NFULA_CFG_TIMEOUT, _U32.pack(round(flush_timeout * 100)))
        + nl.attr(NFULA_CFG_FLAGS, struct.pack("!H", NFULNL_CFG_F_SEQ))
    )


def parse_error(body: bytes) -> tuple[int, int]:
    """``(errno, seq of the request)`` from an ``NLMSG_ERROR`` body (``s32 error`` then the
    request's header); the kernel sends the negative errno, 0 for an ACK."""
    if len(body) < 4 + nl.HEADER.size:
        return errno.EPROTO, -1
    (error,) = struct.unpack_from("=i", body)
    seq = nl.HEADER.unpack_from(body, 4)[3]
    return -error, seq


def _u32(table: dict[int, bytes], attr_type: int) -> int | None:
    value = table.get(attr_type)
    return _U32.unpack_from(value)[0] if value is not None and len(value) >= 4 else None


def parse_packet(body: bytes) -> LoggedPacket:
    """Decode the body of an ``NFULNL_MSG_PACKET`` message (``nfgenmsg`` + attributes)."""
    family, _version, group = nl.NFGEN.unpack_from(body)
    attrs = nl.attr_table(body, nl.NFGEN.size)
    hw_protocol = hook = 0
    header = attrs.get(NFULA_PACKET_HDR)
    if header is not None and len(header) >= 3:
        hw_protocol, hook = struct.unpack_from("!HB", header)
    prefix = attrs.get(NFULA_PREFIX)
    stamp = attrs.get(NFULA_TIMESTAMP)
    timestamp: float | None = None
    if stamp is not None and len(stamp) >= 16:
        sec, usec = struct.unpack_from("!QQ", stamp)
        timestamp = sec + usec / 1e6
    return LoggedPacket(
        group=group,
        family=family,
        hw_protocol=hw_protocol,
        hook=hook,
        payload=attrs.get(NFULA_PAYLOAD, b""),
        prefix=prefix.split(b"\0", 1)[0].decode("utf-8", "replace") if prefix else "",
        indev=_u32(attrs, NFULA_IFINDEX_INDEV),
        outdev=_u32(attrs, NFULA_IFINDEX_OUTDEV),
        physindev=_u32(attrs, NFULA_IFINDEX_PHYSINDEV),
        physoutdev=_u32(attrs, NFULA_IFINDEX_PHYSOUTDEV),
        mark=_u32(attrs, NFULA_MARK),
        uid=_u32(attrs, NFULA_UID),
        gid=_u32(attrs, NFULA_GID),
        seq=_u32(attrs, NFULA_SEQ),
        timestamp=timestamp,
    )


class NflogReader:
    """Subscribe to one NFLOG group in the calling thread's network namespace.

    Construction opens and configures the socket and raises :class:`NflogError` if the
    group cannot be bound (``EPERM``: another socket, e.g. ulogd, owns it in this
    namespace, or the caller lacks CAP_NET_ADMIN).  ``read`` is meant for one thread;
    ``close`` releases the group.

    ``copy_range`` bytes of each packet are copied (128 covers an IPv4 header with
    options plus any TCP/UDP/SCTP header we look at).  ``queue_threshold`` and
    ``flush_timeout`` (seconds) trade latency for fewer, larger datagrams under load:
    with one packet per datagram a Python reader loses about half of a 50k packets/s
    flood even with an 8 MiB buffer, with batches of 16-64 it loses none.
    ``rcvbuf`` is the socket receive buffer (forced past ``rmem_max`` when privileged);
    ``max_batch`` bounds the datagrams one ``read`` drains so callers stay responsive.
    ``bind_pf`` also sends the legacy PF_UNBIND/PF_BIND for AF_INET, which only very
    old kernels need and which change the namespace's default logger (see the module
    docstring).
    """

    def __init__(
        self,
        group: int = NFLOG_GROUP,
        *,
        copy_range: int = 128,
        queue_threshold: int = 32,
        flush_timeout: float = 0.05,
        rcvbuf: int = 8 << 20,
        max_batch: int = 64,
        bind_pf: bool = False,
    ) -> None:
        if not 0 <= group <= 0xFFFF:
            raise ValueError(f"NFLOG group {group} is out of range 0-65535")
        self.group = group
        self.max_batch = max_batch
        self.overruns = 0
        """Times the kernel dropped datagrams because our receive buffer was full."""
        self.truncated = 0
        """Datagrams larger than our receive buffer (their tail was lost)."""
        self.lost = 0
        """Packets the kernel logged but we never received (gaps in ``NFULA_SEQ``)."""
        self.packets = 0
        """Packets returned by :meth:`read` so far."""
        self.pf_errnos: tuple[int, int] | None = None
        """Kernel answers to PF_UNBIND and PF_BIND (0 = accepted); None if not sent."""
        self._seq = 0
        self._next_packet_seq = 0  # the instance numbers packets from 0
        self._pending: list[LoggedPacket] = []
        self._acks: dict[int, int] = {}
        self._buf = bytearray(1 << 17)
        self._sock = nl.open_socket(timeout=0.0, rcvbuf=rcvbuf)
        try:
            if bind_pf:
                self._bind_pf()
            self._configure(copy_range, queue_threshold, flush_timeout)
        except BaseException:
            self._sock.close()
            raise
        self._poll = select.poll()
        self._poll.register(self._sock.fileno(), select.POLLIN)

    def _bind_pf(self) -> None:
        unbind = self._request(cmd_attr(NFULNL_CFG_CMD_PF_UNBIND), family=socket.AF_INET)
        bind = self._request(cmd_attr(NFULNL_CFG_CMD_PF_BIND), family=socket.AF_INET)
        self.pf_errnos = (unbind, bind)

    def _configure(self, copy_range: int, queue_threshold: int, flush_timeout: float) -> None:
        err = self._request(cmd_attr(NFULNL_CFG_CMD_BIND), group=self.group)
        if err:
            # The kernel answers EPERM (not EBUSY) when another socket already owns the
            # group's instance in this namespace; EPERM also means no CAP_NET_ADMIN.
            hint = (" (already bound by another socket, e.g. ulogd, or no CAP_NET_ADMIN)"
                    if err in (errno.EPERM, errno.EBUSY) else "")
            raise NflogError(err, f"NFLOG bind group {self.group}{hint}: {os.strerror(err)}")
        err = self._request(mode_attrs(copy_range, queue_threshold, flush_timeout), self.group)
        if err:
            raise NflogError(err, f"NFLOG group {self.group} copy mode: {os.strerror(err)}")

    def _request(self, attrs: bytes, group: int = 0, family: int = socket.AF_UNSPEC) -> int:
        """Send one config message and wait for its ACK; returns the errno (0 = success).

        Packets that arrive meanwhile (the group is live right after BIND) are kept
        for the next :meth:`read`.
        """
        self._seq += 1
        seq = self._seq
        self._sock.sendto(build_config(seq, attrs, family, group), (0, 0))
        deadline = time.monotonic() + _ACK_TIMEOUT
        while seq not in self._acks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NflogError(errno.ETIMEDOUT, f"no answer to NFLOG config request {seq}")
            select.select([self._sock], [], [], remaining)
            self._receive_ready(self._pending, limit=None)
        return self._acks.pop(seq)

    def fileno(self) -> int:
        """The netlink socket, readable when packets are waiting (for selectors)."""
        return self._sock.fileno()

    def read(self, timeout: float | None = None) -> list[LoggedPacket]:
        """Wait up to ``timeout`` seconds (None: forever, 0: not at all) for logged packets
        and return those available, oldest first; [] on timeout.

        ``ENOBUFS`` (the kernel dropped datagrams) is counted in :attr:`overruns` and
        reading continues; any other socket error is raised, as is reading after
        :meth:`close` (``EBADF``).
        """
        if self.closed:
            raise OSError(errno.EBADF, "read from a closed NflogReader")
        packets, self._pending = self._pending, []
        if not packets:
            ms = None if timeout is None else max(0, round(timeout * 1000))
            if not self._poll.poll(ms):
                return []
        self._receive_ready(packets, limit=self.max_batch)
        self.packets += len(packets)
        return packets

    def _receive_ready(self, out: list[LoggedPacket], limit: int | None) -> None:
        """Receive datagrams until none is ready (or ``limit`` were taken)."""
        taken = 0
        while limit is None or taken < limit:
            try:
                nbytes, _anc, flags, _addr = self._sock.recvmsg_into([self._buf])
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.overruns += 1
                continue
            taken += 1
            if flags & socket.MSG_TRUNC:
                self.truncated += 1
            self._dispatch(bytes(self._buf[:nbytes]), out)

    def _dispatch(self, datagram: bytes, out: list[LoggedPacket]) -> None:
        for msg in nl.iter_messages(datagram):
            if msg.msg_type == PACKET_MSG_TYPE and len(msg.body) >= nl.NFGEN.size:
                packet = parse_packet(msg.body)
                if packet.seq is not None:
                    self.lost += (packet.seq - self._next_packet_seq) & 0xFFFFFFFF
                    self._next_packet_seq = (packet.seq + 1) & 0xFFFFFFFF
                out.append(packet)
            elif msg.msg_type == NLMSG_ERROR:
                err, seq = parse_error(msg.body)
                self._acks[seq] = err
            # NLMSG_DONE closes a multi-packet batch; NOOP and others carry nothing.

    def close(self) -> None:
        """Close the socket; the kernel then destroys the group's instance.  Idempotent."""
        if self._sock.fileno() >= 0:
            self._poll.unregister(self._sock.fileno())
        self._sock.close()

    @property
    def closed(self) -> bool:
        return self._sock.fileno() < 0

    def __enter__(self) -> NflogReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
