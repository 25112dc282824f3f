"""ipset member changes straight over netlink: what a pod event writes.

A pod event changes a handful of members.  Spawning ``ipset restore`` for them costs
2-5 ms (exec, library loading, protocol handshake); sending the same changes as one batch
of netlink messages from npc's own socket costs a fraction of a millisecond.  The
messages go out together in one datagram and every one is acknowledged.

The messages are packed here with :mod:`struct`: pyroute2's ``ipset_msg`` encodes the same
bytes (a test checks that, message for message) but takes about 0.3 ms per message, the
whole budget of a pod event.

Semantics are those of the restore lines they replace: ``add -exist`` (an existing member
is kept and its comment updated) and ``del -exist`` (a missing member is no error).  The
socket belongs to the network namespace it was opened in: open it where npc runs.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyroute2.netlink import NLA_F_NESTED, NLA_F_NET_BYTEORDER, NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_IPSET
from pyroute2.netlink.nfnetlink.ipset import IPSET_CMD_ADD, IPSET_CMD_DEL

from common.kernel.exec import CommandError
from common.kernel.nfnetlink import attr, message, open_socket, read_acks, text

IPSET_PROTOCOL = 7
"""The ipset netlink protocol version of current kernels (6 is the oldest they accept)."""

# Attribute numbers of <linux/netfilter/ipset/ip_set.h>.
_ATTR_PROTOCOL, _ATTR_SETNAME, _ATTR_DATA = 1, 2, 7
_ATTR_IP, _ATTR_COMMENT = 1, 26  # inside DATA
_ATTR_IPADDR_IPV4 = 1  # inside IP
_BATCH = 256  # messages per datagram: far below the socket buffer


@dataclass(frozen=True)
class MemberChange:
    """Add ``ip`` to ``set_name`` (with ``comment`` if the set keeps comments), or delete
    it when ``delete``."""

    set_name: str
    ip: str
    comment: str | None = None
    delete: bool = False

    def as_restore_line(self) -> str:
        if self.delete:
            return f"del -exist {self.set_name} {self.ip}"
        if self.comment:
            return f'add -exist {self.set_name} {self.ip} comment "{self.comment}"'
        return f"add -exist {self.set_name} {self.ip}"


MemberWriter = Callable[[Sequence[MemberChange]], None]
"""Applies member changes to the kernel, raising :class:`CommandError` on refusal."""


class IpsetNetlink:
    """One NETLINK_NETFILTER socket, opened in the calling thread's network namespace."""

    def __init__(self) -> None:
        self._sock = open_socket()
        self._seq = 0

    def close(self) -> None:
        self._sock.close()


    def __call__(self, changes: Sequence[MemberChange]) -> None:
        """Send every change and wait for every acknowledgement.  Raises
        :class:`CommandError` naming the first change the kernel refused (the others are
        applied: like ``ipset restore``, this is not a transaction)."""
        for start in range(0, len(changes), _BATCH):
            self._apply(changes[start:start + _BATCH])

    def _apply(self, changes: Sequence[MemberChange]) -> None:
        first = self._seq + 1
        self._seq += len(changes)
        last = first + len(changes) - 1
        # Only the last change asks for an acknowledgement (a refused one is reported
        # anyway, before it): one wake-up per datagram, not one per change.
        self._sock.send(b"".join(encode(c, first + i, ack=first + i == last)
                                 for i, c in enumerate(changes)))
        refused = read_acks(self._sock, range(first, last + 1), awaited=last)
        if refused:
            seq = min(refused)
            change, code = changes[seq - first], refused[seq]
            raise CommandError(["ipset", "(netlink)"], code, "",
                               f"{change.as_restore_line()}: {os.strerror(code)}"
                               f" ({errno.errorcode.get(code, code)}); "
                               f"{len(refused)} of {len(changes)} changes refused", None)


def encode(change: MemberChange, seq: int, *, ack: bool = True) -> bytes:
    """The IPSET_CMD_ADD / IPSET_CMD_DEL netlink message for ``change`` (asking for an
    acknowledgement, unless not ``ack``)."""
    data = attr(_ATTR_IP | NLA_F_NESTED,
                attr(_ATTR_IPADDR_IPV4 | NLA_F_NET_BYTEORDER, socket.inet_aton(change.ip)))
    if change.comment and not change.delete:
        data += attr(_ATTR_COMMENT, text(change.comment))
    attrs = (attr(_ATTR_PROTOCOL, bytes([IPSET_PROTOCOL]))
             + attr(_ATTR_SETNAME, text(change.set_name))
             + attr(_ATTR_DATA | NLA_F_NESTED, data))
    kind = (NFNL_SUBSYS_IPSET << 8) | (IPSET_CMD_DEL if change.delete else IPSET_CMD_ADD)
    # No NLM_F_EXCL: an existing member (add) or a missing one (del) is not an error.
    return message(kind, NLM_F_REQUEST | (NLM_F_ACK if ack else 0), seq, socket.AF_INET, 0,
                   attrs)
