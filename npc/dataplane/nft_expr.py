"""Policy rules as nf_tables expressions, for writing them over netlink.

libnftables spends about a tenth of a millisecond on each rule of a batch (parsing the
JSON, evaluating, linearising), so the ~500 rules of a full sync at 1,000 policies cost
it 50-100 ms.  The rules this project writes into its policy chains use a handful of
forms, and each form has one linearisation, the one ``nft --debug=netlink`` shows for it
(nftables 1.0.6, Debian 12): packed here with :mod:`struct`, a rule costs microseconds.

:func:`rule_expressions` takes a rule as libnftables JSON (what :mod:`npc.render.nft`
builds) and returns the payload of its ``NFTA_RULE_EXPRESSIONS`` attribute, or None when
any part of it is outside the forms below; such a rule goes through libnftables.  The
forms, and what nft makes of them:

* ``ip saddr|daddr == @set`` (or ``!=``): ``meta load nfproto`` + ``cmp eq 2`` (the
  dependency nft adds before the first ``ip`` match of an ``inet`` rule), ``payload load
  4b @ network header + 12|16``, ``lookup`` (flag 1 when negated);
* ``ip saddr|daddr == A`` or ``== A/N``: the payload load is cut to the prefix's whole
  bytes when N is a multiple of 8 (``/8`` loads one byte), else loads 4 bytes and masks
  them with ``bitwise``; then ``cmp eq``;
* ``meta l4proto P``: ``meta load l4proto`` + ``cmp eq`` (one byte);
* ``th dport N`` or ``N-M``: ``payload load 2b @ transport header + 2`` + ``cmp eq``, or
  ``cmp gte`` and ``cmp lte``;
* ``counter``; a last ``accept``, ``drop``, ``jump C`` or ``goto C``.

Tests write every form both ways and compare what the kernel lists.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from typing import Any

from pyroute2.netlink import NLA_F_NESTED

from common.kernel.nfnetlink import attr, text

Json = dict[str, Any]

_LIST_ELEM = 1  # NFTA_LIST_ELEM
_EXPR_NAME, _EXPR_DATA = 1, 2  # NFTA_EXPR_*
_DATA_VALUE, _DATA_VERDICT = 1, 2  # NFTA_DATA_*
_VERDICT_CODE, _VERDICT_CHAIN = 1, 2  # NFTA_VERDICT_*
_META_DREG, _META_KEY = 1, 2  # NFTA_META_*
_CMP_SREG, _CMP_OP, _CMP_DATA = 1, 2, 3  # NFTA_CMP_*
_PAYLOAD_DREG, _PAYLOAD_BASE, _PAYLOAD_OFFSET, _PAYLOAD_LEN = 1, 2, 3, 4  # NFTA_PAYLOAD_*
_LOOKUP_SET, _LOOKUP_SREG, _LOOKUP_FLAGS = 1, 2, 5  # NFTA_LOOKUP_*
_BITWISE_SREG, _BITWISE_DREG, _BITWISE_LEN, _BITWISE_MASK, _BITWISE_XOR = 1, 2, 3, 4, 5
_COUNTER_BYTES, _COUNTER_PACKETS = 1, 2  # NFTA_COUNTER_*
_IMMEDIATE_DREG, _IMMEDIATE_DATA = 1, 2  # NFTA_IMMEDIATE_*
_REG_VERDICT, _REG_1 = 0, 1
_META_NFPROTO, _META_L4PROTO = 15, 16  # NFT_META_*
_NETWORK, _TRANSPORT = 1, 2  # NFT_PAYLOAD_*_HEADER
_EQ, _NEQ, _LTE, _GTE = 0, 1, 3, 5  # NFT_CMP_*
_LOOKUP_INVERT = 1  # NFT_LOOKUP_F_INV
_NFPROTO_IPV4 = 2
_VERDICTS = {"accept": 1, "drop": 0, "jump": -3, "goto": -4}  # NF_ACCEPT, NF_DROP, NFT_*
_PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132}
_ADDRESS_OFFSETS = {"saddr": 12, "daddr": 16}
_U32 = struct.Struct("!I")
_RULE_KEYS = frozenset({"family", "table", "chain", "expr", "comment"})
COMMENT_BYTES = 128
"""The longest comment nft accepts (NFTNL_UDATA_COMMENT_MAXLEN); longer is left to it."""


def _u32(value: int) -> bytes:
    return _U32.pack(value)


def _expression(name: str, data: bytes) -> bytes:
    return attr(_LIST_ELEM | NLA_F_NESTED,
                attr(_EXPR_NAME, text(name)) + attr(_EXPR_DATA | NLA_F_NESTED, data))


def _value(data: bytes) -> bytes:
    return attr(_DATA_VALUE, data)


def _meta(key: int) -> bytes:
    return _expression("meta", attr(_META_KEY, _u32(key)) + attr(_META_DREG, _u32(_REG_1)))


def _cmp(op: int, data: bytes) -> bytes:
    return _expression("cmp", attr(_CMP_SREG, _u32(_REG_1)) + attr(_CMP_OP, _u32(op))
                       + attr(_CMP_DATA | NLA_F_NESTED, _value(data)))


def _payload(base: int, offset: int, length: int) -> bytes:
    return _expression("payload", attr(_PAYLOAD_DREG, _u32(_REG_1))
                       + attr(_PAYLOAD_BASE, _u32(base)) + attr(_PAYLOAD_OFFSET, _u32(offset))
                       + attr(_PAYLOAD_LEN, _u32(length)))


_IPV4_DEPENDENCY = _meta(_META_NFPROTO) + _cmp(_EQ, bytes((_NFPROTO_IPV4,)))
_L4PROTO = {name: _meta(_META_L4PROTO) + _cmp(_EQ, bytes((number,)))
            for name, number in _PROTOCOLS.items()}
_COUNTER = _expression("counter", attr(_COUNTER_BYTES, bytes(8))
                       + attr(_COUNTER_PACKETS, bytes(8)))


def verdict_data(kind: str, chain: str | None = None) -> bytes:
    """Data (an ``NFTA_DATA_VERDICT`` attribute) that is the verdict ``kind`` (accept,
    drop; jump or goto ``chain``): a rule's last expression holds it, and so does a
    verdict map's element."""
    data = attr(_VERDICT_CODE, struct.pack("!i", _VERDICTS[kind]))
    if chain is not None:
        data += attr(_VERDICT_CHAIN, text(chain))
    return attr(_DATA_VERDICT | NLA_F_NESTED, data)


@functools.lru_cache(maxsize=4096)
def verdict(kind: str, chain: str | None = None) -> bytes:
    """The expression ``kind`` (accept, drop; jump or goto ``chain``)."""
    return _expression("immediate", attr(_IMMEDIATE_DREG, _u32(_REG_VERDICT))
                       + attr(_IMMEDIATE_DATA | NLA_F_NESTED, verdict_data(kind, chain)))


Operand = str | int | tuple[str, str | int, int]


def _operand(value: Any) -> Operand | None:
    """A match's right-hand side as a hashable value (so its encoding is made once): a
    string, a number, ("prefix", address, length) or ("range", low, high); None for any
    other."""
    if type(value) is str or type(value) is int:
        return value
    if type(value) is dict and len(value) == 1:
        [(kind, inner)] = value.items()
        if (kind == "prefix" and type(inner) is dict and inner.keys() == {"addr", "len"}
                and type(inner["addr"]) is str and type(inner["len"]) is int):
            return ("prefix", inner["addr"], inner["len"])
        if (kind == "range" and type(inner) is list and len(inner) == 2
                and all(type(b) is int for b in inner)):
            return ("range", inner[0], inner[1])
    return None


@functools.lru_cache(maxsize=16384)
def _address(offset: int, op: str, right: Operand) -> bytes | None:
    """``ip saddr|daddr`` (at ``offset``) compared with a set, an address or a prefix."""
    if isinstance(right, str) and right.startswith("@") and op in ("==", "!="):
        flags = _LOOKUP_INVERT if op == "!=" else 0
        lookup = attr(_LOOKUP_SET, text(right[1:])) + attr(_LOOKUP_SREG, _u32(_REG_1))
        if flags:
            lookup += attr(_LOOKUP_FLAGS, _u32(flags))
        return _payload(_NETWORK, offset, 4) + _expression("lookup", lookup)
    if op != "==":
        return None
    try:
        if isinstance(right, str):
            network = ipaddress.IPv4Network(right)
        elif isinstance(right, tuple) and right[0] == "prefix":
            network = ipaddress.IPv4Network(f"{right[1]}/{right[2]}")
        else:
            return None
    except ValueError:
        return None
    length = network.prefixlen
    packed = network.network_address.packed
    if length % 8 == 0 and length > 0:  # whole bytes: load only those
        return _payload(_NETWORK, offset, length // 8) + _cmp(_EQ, packed[:length // 8])
    mask = network.netmask.packed
    bitwise = (attr(_BITWISE_SREG, _u32(_REG_1)) + attr(_BITWISE_DREG, _u32(_REG_1))
               + attr(_BITWISE_LEN, _u32(4))
               + attr(_BITWISE_MASK | NLA_F_NESTED, _value(mask))
               + attr(_BITWISE_XOR | NLA_F_NESTED, _value(bytes(4))))
    return _payload(_NETWORK, offset, 4) + _expression("bitwise", bitwise) + _cmp(_EQ, packed)


@functools.lru_cache(maxsize=16384)
def _port(right: Operand) -> bytes | None:
    """``th dport`` equal to a port, or within a range."""
    if type(right) is int and 0 <= right <= 0xFFFF:
        return _payload(_TRANSPORT, 2, 2) + _cmp(_EQ, right.to_bytes(2, "big"))
    if isinstance(right, tuple) and right[0] == "range":
        _, low, high = right
        if isinstance(low, int) and 0 <= low <= 0xFFFF and 0 <= high <= 0xFFFF:
            return (_payload(_TRANSPORT, 2, 2) + _cmp(_GTE, low.to_bytes(2, "big"))
                    + _cmp(_LTE, high.to_bytes(2, "big")))
    return None


def _match(spec: Any, dependency: list[bool]) -> bytes | None:
    """One ``match``; ``dependency`` says whether the rule still needs nft's ``meta
    nfproto ipv4`` before an ``ip`` match (and is cleared once it has it)."""
    if not isinstance(spec, dict) or spec.keys() != {"op", "left", "right"}:
        return None
    op, left, right = spec["op"], spec["left"], _operand(spec["right"])
    if right is None or type(op) is not str:
        return None
    if left == {"meta": {"key": "l4proto"}}:
        if op != "==" or not isinstance(right, str) or right not in _PROTOCOLS:
            return None
        return _L4PROTO[right]
    if left == {"payload": {"protocol": "th", "field": "dport"}}:
        return _port(right) if op == "==" else None
    if (isinstance(left, dict) and left.keys() == {"payload"}
            and isinstance(left["payload"], dict) and left["payload"].get("protocol") == "ip"
            and left["payload"].keys() == {"protocol", "field"}
            and left["payload"]["field"] in _ADDRESS_OFFSETS):
        encoded = _address(_ADDRESS_OFFSETS[left["payload"]["field"]], op, right)
        if encoded is None:
            return None
        needs, dependency[0] = dependency[0], False
        return _IPV4_DEPENDENCY + encoded if needs else encoded
    return None


def rule_expressions(rule: Json) -> bytes | None:
    """The ``NFTA_RULE_EXPRESSIONS`` payload of ``rule`` (an ``add rule`` spec in
    libnftables JSON), as nft would write it; None if it is not in the forms this module
    knows (see the module's docstring), its comment is too long, or it is not an
    ``inet`` rule."""
    expressions = rule.get("expr")
    comment = rule.get("comment", "")
    if (not rule.keys() <= _RULE_KEYS or rule.get("family", "inet") != "inet"
            or type(expressions) is not list or not expressions
            or not isinstance(comment, str) or len(comment.encode()) > COMMENT_BYTES):
        return None
    *body, last = expressions
    if not isinstance(last, dict) or len(last) != 1:
        return None
    [(kind, argument)] = last.items()
    if kind in ("accept", "drop") and argument is None:
        final = verdict(kind)
    elif (kind in ("jump", "goto") and isinstance(argument, dict)
          and argument.keys() == {"target"} and isinstance(argument["target"], str)):
        final = verdict(kind, argument["target"])
    else:
        return None
    parts: list[bytes] = []
    dependency = [True]
    for expression in body:
        if expression == {"counter": None}:
            parts.append(_COUNTER)
            continue
        if not isinstance(expression, dict) or expression.keys() != {"match"}:
            return None
        encoded = _match(expression["match"], dependency)
        if encoded is None:
            return None
        parts.append(encoded)
    parts.append(final)
    return b"".join(parts)
