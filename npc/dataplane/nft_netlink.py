"""nf_tables element changes, new chains and new address sets straight over netlink:
what a pod event writes, and the chains and sets of a full sync.

libnftables (1.0.6, Debian 12) fills its cache before it evaluates any batch: for an
element command it dumps every table, chain and set of the host and the elements of
every interval set — some 200 netlink round trips, 4-7 ms at 10,000 pods and 1,000
policies, however small the batch.  A pod event's batch is only additions and deletions
of elements of sets and maps that exist, which needs none of that.  Sent here as one
nfnetlink batch, it is one nf_tables transaction (all or nothing, as through
libnftables) and costs a fraction of a millisecond.

Only what this module encodes exactly is taken (see :func:`element_commands`): element
commands on ``inet`` sets keyed by IPv4 addresses, map elements whose value jumps to a
chain, new regular chains (:class:`NewChain`) whose rules
:mod:`npc.dataplane.nft_expr` encodes, with the comment nft would store, and new plain
``ipv4_addr`` sets (:func:`set_messages`).  Anything else goes through libnftables.
The messages are packed with :mod:`struct`; tests check them against pyroute2's encoder
and what libnftables makes of the same commands.  The socket belongs to the network
namespace it was opened in.
"""

from __future__ import annotations

import errno
import functools
import itertools
import os
import socket
import struct
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink import NLA_F_NESTED, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST
from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_NFTABLES

from common.kernel.errors import KernelError
from common.kernel.nfnetlink import attr, message, open_socket, read_acks, text
from common.kernel.sockets import set_buffer
from npc.dataplane.nft_expr import COMMENT_BYTES, verdict_data

# Message types and attribute numbers of <linux/netfilter/nfnetlink.h> and nf_tables.h.
_BATCH_BEGIN, _BATCH_END = 0x10, 0x11
_NEWTABLE, _NEWCHAIN, _DELCHAIN, _NEWRULE, _DELRULE, _NEWSET = 0, 3, 5, 6, 8, 9
_NEWSETELEM, _DELSETELEM = 12, 14
_TABLE_NAME, _TABLE_FLAGS = 1, 2  # NFTA_TABLE_*
_SET_TABLE, _SET_NAME, _SET_FLAGS, _SET_KEY_TYPE, _SET_KEY_LEN = 1, 2, 3, 4, 5  # NFTA_SET_*
_SET_ID, _SET_USERDATA = 10, 13
_IPV4_ADDR = 7  # nft's datatype number of ipv4_addr
_KEY_BIG_ENDIAN = bytes((0, 4)) + struct.pack("=I", 2)
"""A set's user data as nft writes it for an ``ipv4_addr`` key: the key's byte order
(libnftnl's NFTNL_UDATA_SET_KEYBYTEORDER, nft's BYTEORDER_BIG_ENDIAN).  nft 1.0.6 takes
no comment for a set given as JSON, so there is none here either."""
_CHAIN_TABLE, _CHAIN_NAME = 1, 3  # NFTA_CHAIN_*
_RULE_TABLE, _RULE_CHAIN, _RULE_EXPRESSIONS, _RULE_USERDATA = 1, 2, 4, 7  # NFTA_RULE_*
_UDATA_RULE_COMMENT = 0  # libnftnl's NFTNL_UDATA_RULE_COMMENT: how nft stores a comment
_NLM_F_APPEND = 0x800
_LIST_TABLE, _LIST_SET, _LIST_ELEMENTS = 1, 2, 3  # NFTA_SET_ELEM_LIST_*
_ELEM_KEY, _ELEM_DATA = 1, 2  # NFTA_SET_ELEM_*
_DATA_VALUE = 1  # NFTA_DATA_VALUE
_FAMILIES = {"inet": 1, "ip": 2, "bridge": 7}  # NFPROTO_*
MAX_ELEMENTS = 200_000
"""Larger batches go through libnftables.  One datagram holds the whole transaction (the
socket's send buffer is raised to fit, as libnftables does): ~45 bytes a map element."""
_ACK_ROOM = 2048
"""What one queued acknowledgement costs the receive buffer (its buffer, not its bytes)."""
_LIST_BYTES = 60_000
"""An element list is one attribute (at most 64 KiB): longer lists take more messages."""
FILL_BYTES, FILL_PER_MESSAGE = 96_000, 2048
"""Filling sets nothing refers to yet: a transaction holds about this many bytes of
elements (16 bytes an address, ~45 a map element), a message at most this many
addresses (its element list is one attribute, at most 64 KiB)."""


class NetlinkRefused(KernelError):
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


@dataclass(frozen=True)
class NewChain:
    """A new regular chain and its rules, each (its expressions as
    :func:`npc.dataplane.nft_expr.rule_expressions` encodes them, its comment)."""

    name: str
    rules: tuple[tuple[bytes, str], ...] = ()


Message = tuple[int, int, str, bytes, str]
"""One message of a transaction: nf_tables message type, flags, family, attributes and
what it does (to name it if the kernel refuses it)."""


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
        delete = verb == "delete"
        elements: list[tuple[str, str | None]] = []
        for value in spec["elem"]:
            element = _element(value, delete)
            if element is None:
                return None
            elements.append(element)
        total += len(elements)
        out.append(ElementCommand(delete, spec["family"], str(spec["table"]),
                                  str(spec["name"]), tuple(elements)))
    return out if out and total <= MAX_ELEMENTS else None


def removals(commands: Sequence[dict[str, Any]], table: str
             ) -> tuple[list[dict[str, Any]], list[str]]:
    """``commands`` split into what comes before their tail of chain removals (each chain
    of ``inet table`` flushed, then each deleted, as :func:`removal_messages` writes them)
    and the chains that tail removes."""
    def chain(command: dict[str, Any], verb: str) -> str | None:
        spec = command.get(verb, {}).get("chain") if len(command) == 1 else None
        if isinstance(spec, dict) and set(spec) == {"family", "table", "name"} \
                and spec["family"] == "inet" and spec["table"] == table:
            return str(spec["name"])
        return None

    deletes: list[str] = []
    while len(deletes) < len(commands) and (
            name := chain(commands[-1 - len(deletes)], "delete")) is not None:
        deletes.append(name)
    deletes.reverse()
    start = len(commands) - 2 * len(deletes)
    if not deletes or start < 0 or [chain(c, "flush") for c in
                                    commands[start:start + len(deletes)]] != deletes:
        return list(commands), []
    return list(commands[:start]), deletes


def _element(value: Any, delete: bool) -> tuple[str, str | None] | None:
    """A set element (an IPv4 address) or, to add, a map element jumping to a chain.
    (Called for every element of a batch: exact type checks, no copies.)"""
    if type(value) is str:
        return (value, None) if is_ipv4(value) else None
    if delete or type(value) is not list or len(value) != 2:
        return None
    key, data = value
    if type(key) is not str or type(data) is not dict or len(data) != 1:
        return None
    jump = data.get("jump")
    if type(jump) is not dict or len(jump) != 1:
        return None
    target = jump.get("target")
    if type(target) is not str or not is_ipv4(key):
        return None
    return key, target


def is_ipv4(text: str) -> bool:
    """Whether ``text`` is an IPv4 address in dotted-quad form (inet_pton is strict)."""
    try:
        socket.inet_pton(socket.AF_INET, text)
    except OSError:
        return False
    return True


_PLAIN = struct.Struct("=HHHHHH")
"""A set element that is one address: list item, key and value headers, then the
address (16 bytes, no padding)."""
_PLAIN_HEADS = tuple(_PLAIN.pack(_PLAIN.size + 4, i | NLA_F_NESTED, _PLAIN.size,
                                 _ELEM_KEY | NLA_F_NESTED, 8, _DATA_VALUE)
                     for i in range(1, FILL_PER_MESSAGE + 1))
"""The headers of the first elements of a list, as libnftnl numbers them (the kernel
ignores the number)."""


def _elements_message(delete: bool, family: str, table: str, name: str, elements: bytes
                      ) -> Message:
    attrs = (attr(_LIST_TABLE, text(table)) + attr(_LIST_SET, text(name))
             + attr(_LIST_ELEMENTS | NLA_F_NESTED, elements))
    # NLM_F_CREATE without NLM_F_EXCL: ``add element`` (an existing element is no error).
    return (_DELSETELEM if delete else _NEWSETELEM, 0 if delete else NLM_F_CREATE, family,
            attrs, f"{'delete' if delete else 'add'} element {family} {table} {name}")


def _element_messages(command: ElementCommand) -> list[Message]:
    return [_elements_message(command.delete, command.family, command.table, command.name,
                              elements) for elements in _encoded_elements(command)]


def _comment(text_: str) -> bytes:
    """A rule's user data holding ``text_`` as nft's comment (a type-length-value)."""
    value = text_.encode()[:COMMENT_BYTES] + b"\0"
    return bytes((_UDATA_RULE_COMMENT, len(value))) + value


def chain_messages(table: str, chains: Sequence[NewChain]) -> list[Message]:
    """Create ``chains`` in ``inet table``: every chain (``add chain``) before any rule
    (``add rule``, appended in order), since a jump needs its target."""
    out: list[Message] = [
        (_NEWCHAIN, NLM_F_CREATE, "inet",
         attr(_CHAIN_TABLE, text(table)) + attr(_CHAIN_NAME, text(chain.name)),
         f"add chain inet {table} {chain.name}") for chain in chains]
    for chain in chains:
        where = attr(_RULE_TABLE, text(table)) + attr(_RULE_CHAIN, text(chain.name))
        for number, (expressions, comment) in enumerate(chain.rules, 1):
            attrs = where + attr(_RULE_EXPRESSIONS | NLA_F_NESTED, expressions)
            if comment:
                attrs += attr(_RULE_USERDATA, _comment(comment))
            out.append((_NEWRULE, NLM_F_CREATE | _NLM_F_APPEND, "inet", attrs,
                        f"add rule inet {table} {chain.name} (rule {number})"))
    return out


def set_messages(table: str, names: Sequence[str]) -> list[Message]:
    """``add table inet table`` and ``add set inet table name { type ipv4_addr; }`` for
    each of ``names``, as nft 1.0.6 sends them (neither is an error if it exists)."""
    table_attr = text(table)
    out: list[Message] = [(_NEWTABLE, 0, "inet", attr(_TABLE_NAME, table_attr)
                           + attr(_TABLE_FLAGS, _BE32_ZERO), f"add table inet {table}")]
    for number, name in enumerate(names, 1):
        attrs = (attr(_SET_TABLE, table_attr) + attr(_SET_NAME, text(name))
                 + attr(_SET_FLAGS, _BE32_ZERO) + attr(_SET_KEY_TYPE, _be32(_IPV4_ADDR))
                 + attr(_SET_KEY_LEN, _be32(4)) + attr(_SET_ID, _be32(number))
                 + attr(_SET_USERDATA, _KEY_BIG_ENDIAN))
        out.append((_NEWSET, NLM_F_CREATE, "inet", attrs, f"add set inet {table} {name}"))
    return out


def _be32(value: int) -> bytes:
    return struct.pack(">I", value)


_BE32_ZERO = _be32(0)


def removal_messages(table: str, chains: Sequence[str]) -> list[Message]:
    """Remove regular chains ``chains`` of ``inet table``: every one flushed (a rule
    message without a handle), then every one deleted, since a jump holds its target."""
    flushes: list[Message] = [
        (_DELRULE, 0, "inet", attr(_RULE_TABLE, text(table)) + attr(_RULE_CHAIN, text(name)),
         f"flush chain inet {table} {name}") for name in chains]
    return flushes + [
        (_DELCHAIN, 0, "inet", attr(_CHAIN_TABLE, text(table)) + attr(_CHAIN_NAME, text(name)),
         f"delete chain inet {table} {name}") for name in chains]


@functools.lru_cache(maxsize=4096)
def _jump(chain: str) -> bytes:
    """An element's data: a jump to ``chain`` (the same for every pod of a group)."""
    return attr(_ELEM_DATA | NLA_F_NESTED, verdict_data("jump", chain))


_KEY = struct.Struct("=HHHH")  # the key attribute and its value's header
_ATTR_HEAD = struct.Struct("=HH")


def _encode_element(i: int, key: str, chain: str | None) -> bytes:
    """Element ``i`` of a list: its key and, for a map, the chain it jumps to."""
    if chain is None and i <= FILL_PER_MESSAGE:
        return _PLAIN_HEADS[i - 1] + socket.inet_aton(key)
    inner = (_KEY.pack(12, _ELEM_KEY | NLA_F_NESTED, 8, _DATA_VALUE) + socket.inet_aton(key)
             + (_jump(chain) if chain is not None else b""))
    return _ATTR_HEAD.pack(4 + len(inner), i | NLA_F_NESTED) + inner


def _encoded_elements(command: ElementCommand) -> list[bytes]:
    """``command``'s element list, cut into the payloads of as many messages as it needs;
    each list is numbered from 1, as libnftnl numbers it (the kernel ignores the number,
    and an element's size does not depend on it)."""
    lists: list[bytes] = []
    parts: list[bytes] = []
    size = 0
    for key, chain in command.elements:
        elem = _encode_element(len(parts) + 1, key, chain)
        if parts and size + len(elem) > _LIST_BYTES:
            lists.append(b"".join(parts))
            parts, size = [], 0
            elem = _encode_element(1, key, chain)
        parts.append(elem)
        size += len(elem)
    return [*lists, b"".join(parts)]


def encode(command: ElementCommand, seq: int) -> bytes:
    """The NFT_MSG_NEWSETELEM / NFT_MSG_DELSETELEM message for ``command`` (whose element
    list must fit one message)."""
    [elements] = _encoded_elements(command)
    return _numbered(_elements_message(command.delete, command.family, command.table,
                                       command.name, elements), seq)


def _address_list(addresses: Sequence[str]) -> bytes:
    """The element list of ``addresses`` (at most :data:`FILL_PER_MESSAGE`), built
    without a loop in Python."""
    return b"".join(itertools.chain.from_iterable(
        zip(_PLAIN_HEADS, map(socket.inet_aton, addresses), strict=False)))


def encode_addresses(table: str, name: str, addresses: Sequence[str], seq: int) -> bytes:
    """Add ``addresses`` (at most :data:`FILL_PER_MESSAGE`) to set ``name`` of ``inet
    table``: the same message as :func:`encode`'s."""
    return _numbered(_elements_message(False, "inet", table, name, _address_list(addresses)),
                     seq)


def _numbered(m: Message, seq: int, *, ack: bool = True) -> bytes:
    kind, flags, family, attrs, _ = m
    return message((NFNL_SUBSYS_NFTABLES << 8) | kind,
                   NLM_F_REQUEST | (NLM_F_ACK if ack else 0) | flags, seq, _FAMILIES[family], 0,
                   attrs)


def _batch(messages: Sequence[Message], first: int) -> bytes:
    """One transaction: BATCH_BEGIN (sequence ``first``), ``messages``, BATCH_END.  Only
    the last message asks for an acknowledgement (the kernel reports a refused one
    anyway): reading one per message would wake the writing thread, and make it wait for
    the interpreter lock, as many times as there are messages."""
    begin = message(_BATCH_BEGIN, NLM_F_REQUEST, first, socket.AF_UNSPEC,
                    NFNL_SUBSYS_NFTABLES, b"")
    end = message(_BATCH_END, NLM_F_REQUEST, first + len(messages) + 1, socket.AF_UNSPEC,
                  NFNL_SUBSYS_NFTABLES, b"")
    last = len(messages) - 1
    return begin + b"".join(_numbered(m, first + 1 + i, ack=i == last)
                            for i, m in enumerate(messages)) + end


class NftNetlink:
    """One NETLINK_NETFILTER socket, opened in the calling thread's network namespace."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._sock = open_socket(timeout)
        self._seq = 0
        self._room = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2
        """The largest datagram the socket's send buffer takes (the kernel doubles what
        is asked and keeps room for its bookkeeping)."""
        self._ack_room = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
        """Room in the receive buffer for acknowledgements (counted at their cost)."""

    def close(self) -> None:
        self._sock.close()

    def __call__(self, commands: Sequence[ElementCommand]) -> None:
        """Commit ``commands`` as one transaction and wait for every acknowledgement.
        Raises :class:`NetlinkRefused` naming the first command the kernel refused."""
        self.transaction([m for c in commands for m in _element_messages(c)])

    def patch(self, table: str, creates: Sequence[NewChain],
              elements: Sequence[ElementCommand], removes: Sequence[str]) -> None:
        """One transaction: create the chains ``creates`` of ``inet table``, then apply
        the element commands, then remove the chains ``removes`` (a pod event's)."""
        self.transaction([*chain_messages(table, creates),
                          *(m for c in elements for m in _element_messages(c)),
                          *removal_messages(table, removes)])

    def transaction(self, messages: Sequence[Message]) -> None:
        """Commit ``messages`` as one transaction and wait for every acknowledgement.
        Raises :class:`NetlinkRefused` naming the first message the kernel refused."""
        if messages:
            first = self._next(len(messages))
            self._commit(_batch(messages, first), first, [m[4] for m in messages])

    def fill(self, table: str,
             sets: Iterable[tuple[str, Collection[str] | Mapping[str, str]]],
             new: Sequence[str] = ()) -> None:
        """Add each set's addresses, or each verdict map's address → chain jumps (``inet``
        sets and maps of ``table``), in as many transactions as their size takes.  Only
        for sets and maps no rule refers to yet: nothing sees them half filled, so the
        fill need not be one transaction (the one with the rules that use them comes
        after).  The first transaction creates the table and the address sets ``new``
        first (see :func:`set_messages`)."""
        declared = set_messages(table, new) if new else []
        lists: list[tuple[str, bytes]] = []
        size = 0
        for name, elements in sets:
            if isinstance(elements, Mapping):
                payloads = _encoded_elements(ElementCommand(
                    False, "inet", table, name, tuple(elements.items())))
            else:
                listed = list(elements)
                payloads = [_address_list(listed[i:i + FILL_PER_MESSAGE])
                            for i in range(0, len(listed), FILL_PER_MESSAGE)]
            for payload in payloads:
                lists.append((name, payload))
                size += len(payload)
                if size >= FILL_BYTES:
                    self._fill_batch(table, lists, declared)
                    lists, size, declared = [], 0, []
        if lists or declared:
            self._fill_batch(table, lists, declared)

    def _fill_batch(self, table: str, lists: Sequence[tuple[str, bytes]],
                    declared: Sequence[Message]) -> None:
        self.transaction([*declared, *(_elements_message(False, "inet", table, name, payload)
                                       for name, payload in lists)])

    def _next(self, count: int) -> int:
        """The sequence number of the next batch of ``count`` messages (its BATCH_BEGIN's;
        the messages follow it)."""
        if self._seq > 0x7FFF0000:
            self._seq = 0
        first = self._seq + 1
        self._seq += count + 2
        return first

    def _commit(self, batch: bytes, first: int, described: Sequence[str]) -> None:
        """Send one transaction (BATCH_BEGIN numbered ``first``, then the messages
        ``described``) and wait for every acknowledgement."""
        # One datagram is one transaction: make room for it, and for the acknowledgements
        # the kernel queues while it handles the batch, before we read any (CAP_NET_ADMIN
        # may exceed the system's limits, as libnftables does; without it, the send or
        # the read says so).
        if len(batch) > self._room:
            self._room = 2 * len(batch)
            set_buffer(self._sock, socket.SO_SNDBUF, self._room)
        acks = _ACK_ROOM * (len(described) + 1)
        if acks > self._ack_room:
            self._ack_room = 2 * acks
            set_buffer(self._sock, socket.SO_RCVBUF, self._ack_room)
        try:
            self._sock.send(batch)
            refused = read_acks(self._sock, range(first + 1, first + 1 + len(described)),
                                also=first, awaited=first + len(described))
        except OSError as exc:  # includes the socket timeout
            raise NetlinkRefused(f"netlink: {exc}", exc.errno or errno.EIO) from None
        if refused:
            seq = min(refused)
            code = refused[seq]
            raise NetlinkRefused(f"{described[seq - first - 1]}: {os.strerror(code)} "
                                 f"({errno.errorcode.get(code, code)})", code)
