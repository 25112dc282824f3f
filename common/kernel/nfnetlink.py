"""The nfnetlink framing shared by the raw ipset and nf_tables writers.

Both pack their messages with :mod:`struct` (pyroute2's encoders cost more per message
than a whole pod event may take) and both wait until every message they sent has its
acknowledgement.  This module holds that common part: attributes, headers, the socket and
the reading of acknowledgements.  What a message means stays with each writer.
"""

from __future__ import annotations

import socket
import struct

from pyroute2.netlink import NETLINK_NETFILTER, NLMSG_ERROR

HEADER = struct.Struct("=IHHII")
"""nlmsghdr: length, type, flags, sequence, port id."""
NFGEN = struct.Struct("!BBH")
"""nfgenmsg: family, version, resource id."""
_ATTR = struct.Struct("=HH")  # nlattr: length, type
_ERROR = struct.Struct("=i")
_SOL_NETLINK, _NETLINK_CAP_ACK = 270, 10


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


def open_socket(timeout: float | None = None) -> socket.socket:
    """A NETLINK_NETFILTER socket in the calling thread's network namespace, whose
    acknowledgements carry no copy of the request (each stays a few dozen bytes)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(_SOL_NETLINK, _NETLINK_CAP_ACK, 1)
    sock.bind((0, 0))
    sock.settimeout(timeout)
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
