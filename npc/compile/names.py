"""Kernel names: weave-npc's chains, mark, NFLOG group, and its ipset name derivation.

ipset names are ``weave-`` + a short base-85 form of the SHA-1 of a descriptive string.
The strings for every set kind that the original derived without ambiguity are kept, so
operators see the same names as with the Go weave-npc and either one cleans up the other's
sets.  The original hashed a namespaceSelector-only set (list:set) and a combined
namespace+pod selector set (hash:ip) from the same ``":"+…`` prefix, so different
selectors could collide; combined sets, and the named-port sets the original never had,
get a tagged input here instead.
"""

from __future__ import annotations

import functools
import hashlib

from common import contract
from npc.model.objects import LabelSelector, Protocol

MAIN_CHAIN = contract.NPC_CHAIN
DEFAULT_CHAIN = "WEAVE-NPC-DEFAULT"
INGRESS_CHAIN = "WEAVE-NPC-INGRESS"
EGRESS_CHAIN = contract.NPC_EGRESS_CHAIN
EGRESS_DEFAULT_CHAIN = "WEAVE-NPC-EGRESS-DEFAULT"
EGRESS_CUSTOM_CHAIN = "WEAVE-NPC-EGRESS-CUSTOM"
EGRESS_ACCEPT_CHAIN = "WEAVE-NPC-EGRESS-ACCEPT"

ALL_CHAINS = (MAIN_CHAIN, DEFAULT_CHAIN, INGRESS_CHAIN, EGRESS_CHAIN, EGRESS_DEFAULT_CHAIN,
              EGRESS_CUSTOM_CHAIN, EGRESS_ACCEPT_CHAIN)

EGRESS_MARK = contract.NPC_EGRESS_MARK
"""Set on packets an egress rule allowed; must not clash with kube-proxy (0x4000, 0x8000)
or weave's IPsec mark (0x20000)."""

NFLOG_GROUP = contract.NFLOG_GROUP
MULTICAST_CIDR = "224.0.0.0/4"
SET_PREFIX = "weave-"

# Alphabet and digit order of weave's npc/shortname.go.
_SYMBOLS = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
            "(){}[]+=_$%^!*|/?.;:@#~")
assert len(_SYMBOLS) == 85


def short_name(text: str) -> str:
    """SHA-1 of ``text`` as a big-endian integer, written in base 85 least-significant
    digit first, without padding (at most 25 characters)."""
    value = int.from_bytes(hashlib.sha1(text.encode()).digest(), "big")
    out = []
    while True:
        value, digit = divmod(value, 85)
        out.append(_SYMBOLS[digit])
        if value == 0:
            break
    return "".join(out)


@functools.lru_cache(maxsize=1 << 16)
def set_name(source: str) -> str:
    return SET_PREFIX + short_name(source)


# ---- the descriptive strings that are hashed, per set kind --------------------------------
def ingress_default_allow_source(namespace: str) -> str:
    return f"ingress-default-allow:{namespace}"


def egress_default_allow_source(namespace: str) -> str:
    return f"egress-default-allow:{namespace}"


def pod_selector_source(namespace: str, selector: LabelSelector) -> str:
    """Pods of one namespace matching a selector; ``<ns>:`` is every pod of the namespace."""
    return f"{namespace}:{selector.canonical()}"


def namespace_selector_source(selector: LabelSelector) -> str:
    return f":{selector.canonical()}"


def combined_selector_source(namespace_selector: LabelSelector,
                             pod_selector: LabelSelector) -> str:
    # '|' and '+' occur in no namespace name or selector string, so this cannot collide
    # with the other kinds' inputs (the original's plain concatenation could).
    return f"nsel+psel:{namespace_selector.canonical()}|{pod_selector.canonical()}"


def except_source(namespace: str, excepts: tuple[str, ...]) -> str:
    return f"{namespace}:ipblock-except:{' '.join(sorted(excepts))}"


def named_port_source(name: str, protocol: Protocol, number: int) -> str:
    return f"named-port+{protocol.value.lower()}:{name}={number}"


def temporary_set_name(name: str) -> str:
    """A build-aside set for ``name``: filled, swapped in, destroyed in one restore."""
    return set_name(f"tmp+{name}")
