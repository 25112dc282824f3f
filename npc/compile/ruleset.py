"""The compiled, backend-neutral desired state: sets with members, chains with ordered rules.

A :class:`Ruleset` is an immutable, deterministic value: the same cluster state always
compiles to an equal ruleset, and rendering it gives byte-identical kernel input.  Every
rule carries the policies and rule indexes it came from (:class:`Origin`), which is what
``npc debug`` prints and what lets a kernel rule be traced back to YAML.

Match terms are small frozen values; a renderer (iptables or nftables) translates each.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from enum import Enum

from npc.model.objects import Protocol


class SetKind(str, Enum):
    HASH_IP = "hash:ip"
    HASH_NET = "hash:net"
    LIST_SET = "list:set"


@dataclass(frozen=True, order=True)
class Member:
    value: str
    comment: str = ""


@dataclass(frozen=True)
class IpSet:
    """An ipset: kernel ``name``, what it stands for (``source`` is the string that was
    hashed into the name, kept for debugging) and sorted members."""

    name: str
    kind: SetKind
    source: str
    description: str
    members: tuple[Member, ...] = ()


# ---- match terms -------------------------------------------------------------------------
class Direction(str, Enum):
    SRC = "src"
    DST = "dst"


@dataclass(frozen=True)
class CtState:
    """Connection-tracking state (``-m state`` as weave-npc writes it)."""

    states: tuple[str, ...]


@dataclass(frozen=True)
class Addr:
    direction: Direction
    cidr: str


@dataclass(frozen=True)
class InSet:
    direction: Direction
    set_name: str
    negate: bool = False


@dataclass(frozen=True)
class L4:
    """Protocol, and optionally a destination port or inclusive port range."""

    protocol: Protocol
    port_low: int | None = None
    port_high: int | None = None


@dataclass(frozen=True)
class PhysDev:
    """Bridged traffic entering (``is_in``) or leaving through a bridge port."""

    port: str
    is_in: bool


@dataclass(frozen=True)
class DstLocal:
    """The destination is an address of this host (``-m addrtype --dst-type LOCAL``)."""


@dataclass(frozen=True)
class Mark:
    value: int
    mask: int
    negate: bool = False


Match = CtState | Addr | InSet | L4 | PhysDev | DstLocal | Mark


# ---- verdicts ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Accept:
    pass


@dataclass(frozen=True)
class Drop:
    pass


@dataclass(frozen=True)
class Return:
    pass


@dataclass(frozen=True)
class Jump:
    chain: str


@dataclass(frozen=True)
class Nflog:
    group: int


@dataclass(frozen=True)
class SetMark:
    value: int
    mask: int


Verdict = Accept | Drop | Return | Jump | Nflog | SetMark


@dataclass(frozen=True, order=True)
class Origin:
    """Where a rule came from: a policy rule (``policy`` = "ns/name") or a fixed part of
    the layout (``policy`` = "" and ``what`` says which)."""

    policy: str = ""
    direction: str = ""
    rule: int = -1
    peer: int = -1
    port: int = -1
    what: str = ""

    def __str__(self) -> str:
        if not self.policy:
            return self.what
        parts = [f"{self.policy} {self.direction}[{self.rule}]"]
        if self.peer >= 0:
            parts.append(f"peer[{self.peer}]")
        if self.port >= 0:
            parts.append(f"port[{self.port}]")
        return " ".join(parts) + (f" ({self.what})" if self.what else "")


@dataclass(frozen=True)
class Rule:
    matches: tuple[Match, ...]
    verdict: Verdict
    comment: str
    origins: tuple[Origin, ...] = ()

    @functools.cached_property
    def fingerprint(self) -> str:
        """Identifies the rule's effect (matches and verdict); stored in the kernel rule's
        comment, so reading comments back tells, without parsing the kernel's normalised
        rule text, whether a chain holds exactly the rules we want.  Computed when first
        asked for (the nftables backend never asks)."""
        return hashlib.sha1(repr((self.matches, self.verdict)).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[Rule, ...]


@dataclass(frozen=True, order=True)
class CompileProblem:
    """Something in the input the compiler could not honour as written.  The compiler
    always fails closed: the affected pods are isolated, never opened."""

    obj: str
    message: str

    def __str__(self) -> str:
        return f"{self.obj}: {self.message}"


@dataclass(frozen=True)
class PolicySummary:
    """What one policy does: the pods it selects (isolates) for which directions, the set
    its rules match them with, and how many kernel rules it produced."""

    policy: str
    directions: tuple[str, ...]
    target_set: str
    targets: tuple[str, ...]
    rules: int
    rejected: str = ""


@dataclass(frozen=True)
class Ruleset:
    sets: tuple[IpSet, ...]
    chains: tuple[Chain, ...]
    problems: tuple[CompileProblem, ...] = ()
    policies: tuple[PolicySummary, ...] = ()

    def chain(self, name: str) -> Chain:
        for c in self.chains:
            if c.name == name:
                return c
        raise KeyError(name)

    def set_by_name(self) -> dict[str, IpSet]:
        return {s.name: s for s in self.sets}
