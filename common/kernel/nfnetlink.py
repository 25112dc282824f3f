"""The nfnetlink framing shared by npc's raw ipset and nf_tables writers and its NFLOG
reader (and whatever else of the agent's speaks nfnetlink).

They pack their messages with :mod:`struct` (pyroute2's encoders cost more per message
than a whole pod event may take); the writers wait until every message they sent has its
acknowledgement.  This module holds the common part: attributes, headers, the socket,
splitting datagrams into messages and attributes, and the reading of acknowledgements.
What a message means stays with each user.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from typing import NamedTuple

from common.kernel.sockets import set_buffer

NETLINK_NETFILTER = 12
"""The netfilter netlink family (``linux/netlink.h``); spelled here rather than imported
from pyroute2, whose package import loads all of it (tens of ms and several MB in every
process that frames a message)."""
NLMSG_ERROR = 2
HEADER = struct.Struct("=IHHII")
"""nlmsghdr: length, type, flags, sequence, port id."""
NFGEN = struct.Struct("!BBH")
"""nfgenmsg: family, version, resource id."""
_ATTR = struct.Struct("=HH")  # nlattr: length, type
_ERROR = struct.Struct("=i")
_SOL_NETLINK, _NETLINK_CAP_ACK = 270, 10
NLA_TYPE_MASK = 0x3FFF
"""An attribute's type without the NLA_F_NESTED / NLA_F_NET_BYTEORDER flag bits."""


class NetlinkMessage(NamedTuple):
    """One message of a netlink datagram; ``body`` is everything after ``nlmsghdr``."""

    msg_type: int
    flags: int
    seq: int
    body: bytes


def align4(length: int) -> int:
    """Netlink's NLMSG_ALIGN / NLA_ALIGN: round up to a multiple of 4."""
    return (length + 3) & ~3


def iter_messages(data: bytes) -> Iterator[NetlinkMessage]:
    """Split one received datagram into its netlink messages (a truncated tail is
    dropped: the kernel never sends one, and a reader must not die on it)."""
    offset = 0
    end = len(data)
    while offset + HEADER.size <= end:
        length, msg_type, flags, seq, _pid = HEADER.unpack_from(data, offset)
        if length < HEADER.size or offset + length > end:
            return
        yield NetlinkMessage(msg_type, flags, seq, data[offset + HEADER.size : offset + length])
        offset += align4(length)


def attr_table(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """The attributes in ``data[offset:]`` by type (flag bits masked off; the last
    attribute of a type wins).  A malformed tail (a length shorter than the header, or
    running past the end) ends the walk rather than raising."""
    table: dict[int, bytes] = {}
    end = len(data)
    unpack = _ATTR.unpack_from
    while offset + _ATTR.size <= end:
        length, attr_type = unpack(data, offset)
        if length < _ATTR.size or offset + length > end:
            break
        table[attr_type & NLA_TYPE_MASK] = data[offset + _ATTR.size : offset + length]
        offset += align4(length)
    return table


def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes (the length excludes the padding)."""
    return _ATTR.pack(_ATTR.size + len(payload), kind) + payload + bytes(-len(payload) % 4)


def text(value: str) -> bytes:
    """A NUL-terminated string attribute's payload."""
    return value.encode() + b"\0"


def message(kind: int, flags: int, seq: int, family: int, res_id: int, attrs: bytes) -> bytes:
    """One nfnetlink message: header, nfgenmsg, attributes."""
    body = NFGEN.pack(family, 0, res_id) + attrs
    return HEADER.pack(HEADER.size + len(body), kind, flags, seq, 0) + body


def open_socket(timeout: float | None = None, rcvbuf: int | None = None) -> socket.socket:
    """A NETLINK_NETFILTER socket in the calling thread's network namespace, whose
    acknowledgements carry no copy of the request (each stays a few dozen bytes);
    ``timeout`` 0 makes it non-blocking; ``rcvbuf``, when given, is the receive buffer
    (forced past ``rmem_max`` with CAP_NET_ADMIN, else capped by it)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        sock.setsockopt(_SOL_NETLINK, _NETLINK_CAP_ACK, 1)
        if rcvbuf is not None:
            set_buffer(sock, socket.SO_RCVBUF, rcvbuf)
        sock.bind((0, 0))  # port id 0: the kernel assigns one
        sock.settimeout(timeout)
    except BaseException:
        sock.close()
        raise
    return sock


def read_acks(sock: socket.socket, sequences: range, *, also: int | None = None,
              awaited: int | None = None) -> dict[int, int]:
    """Read until every message numbered in ``sequences`` is acknowledged (or, given
    ``awaited``, that one: the only one of a batch that asked for an acknowledgement);
    sequence → errno of those refused (the kernel reports a refusal whether or not the
    message asked, and before the acknowledgements of later messages).  An error for
    sequence ``also`` (a batch header the kernel refused outright, so nothing else will
    be acknowledged) ends the wait at once, and is reported as the first of
    ``sequences`` being refused."""
    pending = set(sequences) if awaited is None else {awaited}
    refused: dict[int, int] = {}
    while pending:
        data = sock.recv(65536)
        offset = 0
        while offset + HEADER.size <= len(data):
            length, kind, _, seq, _ = HEADER.unpack_from(data, offset)
            if kind == NLMSG_ERROR:
                (code,) = _ERROR.unpack_from(data, offset + HEADER.size)
                if seq in sequences:
                    pending.discard(seq)
                    if code:
                        refused[seq] = -code
                elif seq == also and code:
                    return {sequences.start: -code}
            offset += max((length + 3) & ~3, HEADER.size)
    return refused
