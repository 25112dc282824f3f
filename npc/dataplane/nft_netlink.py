"""nf_tables element changes straight over netlink: what a pod event writes.

libnftables (1.0.6, Debian 12) fills its cache before it evaluates any batch: for an
element command it dumps every table, chain and set of the host and the elements of
every interval set — some 200 netlink round trips, 4-7 ms at 10,000 pods and 1,000
policies, however small the batch.  A pod event's batch is only additions and deletions
of elements of sets and maps that exist, which needs none of that.  Sent here as one
nfnetlink batch, it is one nf_tables transaction (all or nothing, as through
libnftables) and costs a fraction of a millisecond.

Only what this module encodes exactly is taken (see :func:`element_commands`): element
commands on ``inet`` sets keyed by IPv4 addresses, map elements whose value jumps to a
chain.  Anything else goes through libnftables.  The messages are packed with
:mod:`struct`; a test checks them against pyroute2's encoder.  The socket belongs to the
network namespace it was opened in.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink import NLA_F_NESTED, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST
from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_NFTABLES

from npc.dataplane.nfnetlink import attr, message, open_socket, read_acks, text

# Message types and attribute numbers of <linux/netfilter/nfnetlink.h> and nf_tables.h.
_BATCH_BEGIN, _BATCH_END = 0x10, 0x11
_NEWSETELEM, _DELSETELEM = 12, 14
_LIST_TABLE, _LIST_SET, _LIST_ELEMENTS = 1, 2, 3  # NFTA_SET_ELEM_LIST_*
_ELEM_KEY, _ELEM_DATA = 1, 2  # NFTA_SET_ELEM_*
_DATA_VALUE, _DATA_VERDICT = 1, 2  # NFTA_DATA_*
_VERDICT_CODE, _VERDICT_CHAIN = 1, 2  # NFTA_VERDICT_*
_NFT_JUMP = -3
_FAMILIES = {"inet": 1, "ip": 2, "bridge": 7}  # NFPROTO_*
MAX_ELEMENTS = 512
"""Larger batches go through libnftables (one datagram must hold the whole batch)."""


class NetlinkRefused(Exception):
    """The kernel refused the batch (nothing of it was applied)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ElementCommand:
    """Add (or delete) ``elements`` of set or map ``name``: (key, chain jumped to)."""

    delete: bool
    family: str
    table: str
    name: str
    elements: tuple[tuple[str, str | None], ...]


def element_commands(commands: Sequence[dict[str, Any]]) -> list[ElementCommand] | None:
    """``commands`` (libnftables JSON) as element commands; None if any is something
    else, or holds an element this module does not encode."""
    out: list[ElementCommand] = []
    total = 0
    for command in commands:
        if len(command) != 1:
            return None
        verb, what = next(iter(command.items()))
        if verb not in ("add", "delete") or not isinstance(what, dict) or list(what) != [
                "element"]:
            return None
        spec = what["element"]
        if (not isinstance(spec, dict) or set(spec) != {"family", "table", "name", "elem"}
                or spec["family"] not in _FAMILIES or not isinstance(spec["elem"], list)):
            return None
        elements = [_element(e, verb == "delete") for e in spec["elem"]]
        if any(e is None for e in elements):
            return None
        total += len(elements)
        out.append(ElementCommand(verb == "delete", spec["family"], str(spec["table"]),
                                  str(spec["name"]), tuple(e for e in elements if e)))
    return out if out and total <= MAX_ELEMENTS else None


def _element(value: Any, delete: bool) -> tuple[str, str | None] | None:
    """A set element (an IPv4 address) or, to add, a map element jumping to a chain."""
    if isinstance(value, str):
        return (value, None) if _ipv4(value) else None
    if delete or not isinstance(value, list) or len(value) != 2:
        return None
    key, data = value
    jump = data.get("jump") if isinstance(data, dict) and list(data) == ["jump"] else None
    if not (isinstance(key, str) and _ipv4(key) and isinstance(jump, dict)
            and list(jump) == ["target"] and isinstance(jump["target"], str)):
        return None
    return key, jump["target"]


def _ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def encode(command: ElementCommand, seq: int) -> bytes:
    """The NFT_MSG_NEWSETELEM / NFT_MSG_DELSETELEM message for ``command``."""
    elements = b""
    for i, (key, chain) in enumerate(command.elements, start=1):
        elem = attr(_ELEM_KEY | NLA_F_NESTED, attr(_DATA_VALUE, socket.inet_aton(key)))
        if chain is not None:
            verdict = (attr(_VERDICT_CODE, struct.pack("!i", _NFT_JUMP))
                       + attr(_VERDICT_CHAIN, text(chain)))
            elem += attr(_ELEM_DATA | NLA_F_NESTED, attr(_DATA_VERDICT | NLA_F_NESTED, verdict))
        # The list's members are numbered as libnftnl numbers them (the kernel ignores it).
        elements += attr(i | NLA_F_NESTED, elem)
    attrs = (attr(_LIST_TABLE, text(command.table)) + attr(_LIST_SET, text(command.name))
             + attr(_LIST_ELEMENTS | NLA_F_NESTED, elements))
    kind = (NFNL_SUBSYS_NFTABLES << 8) | (_DELSETELEM if command.delete else _NEWSETELEM)
    # NLM_F_CREATE without NLM_F_EXCL: ``add element`` (an existing element is no error).
    flags = NLM_F_REQUEST | NLM_F_ACK | (0 if command.delete else NLM_F_CREATE)
    return message(kind, flags, seq, _FAMILIES[command.family], 0, attrs)


def encode_batch(commands: Sequence[ElementCommand], first: int) -> bytes:
    """One transaction: BATCH_BEGIN (sequence ``first``), the commands, BATCH_END."""
    begin = message(_BATCH_BEGIN, NLM_F_REQUEST, first, socket.AF_UNSPEC,
                     NFNL_SUBSYS_NFTABLES, b"")
    end = message(_BATCH_END, NLM_F_REQUEST, first + len(commands) + 1, socket.AF_UNSPEC,
                   NFNL_SUBSYS_NFTABLES, b"")
    return begin + b"".join(encode(c, first + 1 + i) for i, c in enumerate(commands)) + end


class NftNetlink:
    """One NETLINK_NETFILTER socket, opened in the calling thread's network namespace."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._sock = open_socket(timeout)
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __call__(self, commands: Sequence[ElementCommand]) -> None:
        """Commit ``commands`` as one transaction and wait for every acknowledgement.
        Raises :class:`NetlinkRefused` naming the first command the kernel refused."""
        first = self._seq + 1
        self._seq = (self._seq + len(commands) + 2) % 0x7FFF0000
        try:
            self._sock.send(encode_batch(commands, first))
            refused = read_acks(self._sock, range(first + 1, first + 1 + len(commands)),
                                also=first)
        except OSError as exc:  # includes the socket timeout
            raise NetlinkRefused(f"netlink: {exc}", exc.errno or errno.EIO) from None
        if refused:
            seq = min(refused)
            command, code = commands[seq - first - 1], refused[seq]
            verb = "delete" if command.delete else "add"
            raise NetlinkRefused(
                f"{verb} element {command.family} {command.table} {command.name}: "
                f"{os.strerror(code)} ({errno.errorcode.get(code, code)})", code)
