"""Walk a packet through a compiled :class:`Ruleset` as the kernel would, with no kernel.

The walk starts where weaver's hooks are (:mod:`npc.dataplane.hooks`): the FORWARD block
for bridged and routed traffic, or the INPUT hook when the destination is an address of
the node.  Every match term and verdict of the ruleset is evaluated as netfilter does;
rules are tried in order, a jump returns to the next rule, NFLOG and MARK go on.

:func:`explain_connection` composes walks the way the cluster does: one node checks both
sides of a connection between its own pods; across nodes the source node checks egress
(ingress is skipped for traffic leaving through the router's bridge port) and the
destination node checks ingress (egress is skipped for traffic arriving through it).
This is what ``npc debug explain`` prints, and a kernel-free check of the compiler.
"""

from __future__ import annotations

import ipaddress
import re
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any, Generic, TypeVar

from common import contract
from npc.compile import layout as hooks
from npc.compile import names
from npc.compile.layout import ESTABLISHED, NEW
from npc.compile.ruleset import (
    L4,
    Accept,
    Addr,
    CtState,
    Direction,
    Drop,
    DstLocal,
    InSet,
    IpSet,
    Jump,
    Mark,
    Match,
    Nflog,
    Origin,
    PhysDev,
    Return,
    Rule,
    Ruleset,
    SetKind,
    SetMark,
    Verdict,
)
from npc.model.objects import Protocol

DEFAULT_BRIDGE_PORT = contract.BRIDGE_PORT
_EGRESS_CHAINS = frozenset({names.EGRESS_CHAIN, names.EGRESS_DEFAULT_CHAIN,
                            names.EGRESS_CUSTOM_CHAIN, names.EGRESS_ACCEPT_CHAIN})
_INGRESS_CHAINS = frozenset({names.MAIN_CHAIN, names.DEFAULT_CHAIN, names.INGRESS_CHAIN})
_DEFAULT_CHAINS = frozenset({names.DEFAULT_CHAIN, names.EGRESS_DEFAULT_CHAIN})


@dataclass(frozen=True)
class Packet:
    """The first packet of a connection as one node's filter table sees it."""

    src: str
    dst: str
    protocol: Protocol | None = Protocol.TCP
    """None: a protocol other than TCP, UDP and SCTP (it has no ports)."""
    port: int = 0
    in_bridge: bool = True
    """Comes in on the weave bridge (``-i weave``): sent by a pod or from another node."""
    out_bridge: bool = True
    """Goes out on the weave bridge (``-o weave``): toward a pod or another node."""
    physdev_in: str = ""
    """The bridge port it was bridged in through ("": a pod's veth, or not bridged)."""
    physdev_out: str = ""
    dst_local: bool = False
    """The destination is an address of this node: INPUT sees it instead of FORWARD."""
    mark: int = 0
    state: str = "NEW"


@dataclass(frozen=True)
class Step:
    """A rule that matched: ``index`` is its position in ``chain`` (from 0)."""

    chain: str
    index: int
    rule: Rule


class Status(str, Enum):
    ALLOWED = "allowed"
    DENIED = "denied"
    SKIPPED = "skipped"  # the node at the other end checks this side
    NOT_CHECKED = "not checked"  # the packet never meets this side's chain
    NOT_REACHED = "not reached"  # the packet was decided before this side was checked


@dataclass(frozen=True)
class Side:
    """How one direction (egress of the source, ingress of the destination) went."""

    direction: str
    status: Status
    reason: str
    step: Step | None = None

    @property
    def origins(self) -> tuple[Origin, ...]:
        """The policy rules that allowed it (none for default-allow or fixed rules)."""
        return tuple(o for o in self.step.rule.origins if o.policy) if self.step else ()

    def __str__(self) -> str:
        return f"{self.direction} {self.status.value}: {self.reason}"


@dataclass(frozen=True)
class PacketVerdict:
    """The outcome of one walk: ``trace`` holds every rule that matched, in order."""

    allowed: bool
    trace: tuple[Step, ...]
    logged: bool
    egress: Side
    ingress: Side
    mark: int

    @property
    def explanation(self) -> str:
        return f"{self.egress}; {self.ingress}"

    def trace_lines(self) -> list[str]:
        return [format_step(step) for step in self.trace]


# ---- the built-in chains' hooks ----------------------------------------------------------
@dataclass(frozen=True)
class _Hook:
    """A rule of a built-in chain; ``in_bridge``/``out_bridge`` are its interface matches
    (``-i weave`` / ``-o weave``, False for ``!``, None when it has none)."""

    rule: Rule
    in_bridge: bool | None = None
    out_bridge: bool | None = None

    def applies(self, packet: Packet) -> bool:
        return ((self.in_bridge is None or self.in_bridge == packet.in_bridge)
                and (self.out_bridge is None or self.out_bridge == packet.out_bridge))


@lru_cache(maxsize=8)
def _forward_hooks(bridge: str) -> tuple[_Hook, ...]:
    spec: tuple[tuple[bool | None, bool | None, tuple[Match, ...], Verdict], ...] = (
        (True, None, (), Jump(names.EGRESS_CHAIN)),
        (None, True, (), Jump(names.MAIN_CHAIN)),
        (None, True, (NEW,), Nflog(names.NFLOG_GROUP)),
        (None, True, (), Drop()),
        (True, False, (), Accept()),
        (None, True, (ESTABLISHED,), Accept()),
    )
    texts = [re.sub(r' -m comment --comment "[^"]*"', "", t) for t in hooks.forward_hooks(bridge)]
    return tuple(_Hook(Rule(matches, verdict, text, (Origin(what=f"FORWARD {text}"),)), i, o)
                 for (i, o, matches, verdict), text in zip(spec, texts, strict=True))


@lru_cache(maxsize=8)
def _input_hooks(bridge: str) -> tuple[_Hook, ...]:
    text = hooks.input_hook(bridge)
    return (_Hook(Rule((), Jump(names.EGRESS_CHAIN), text, (Origin(what=f"INPUT {text}"),)),
                  in_bridge=True),)


# ---- matching ----------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=False)


def _in_cidr(ip: str, cidr: str) -> bool:
    return ipaddress.ip_address(ip) in _network(cidr)


def set_contains(sets: dict[str, IpSet], name: str, ip: str) -> bool:
    """ipset semantics: hash:ip and hash:net hold addresses or networks; a list:set holds
    an address if any of its member sets does."""
    if name not in sets:
        raise ValueError(f"a rule matches set {name}, which the ruleset does not define")
    ipset = sets[name]
    if ipset.kind is SetKind.LIST_SET:
        return any(set_contains(sets, m.value, ip) for m in ipset.members)
    return any(_in_cidr(ip, m.value) for m in ipset.members)


class _Outcome(Enum):
    ACCEPT = "accept"
    DROP = "drop"
    RETURN = "return"  # RETURN, or the end of the chain: back to the caller


class _Walker:
    def __init__(self, ruleset: Ruleset, packet: Packet) -> None:
        self.chains = {c.name: c.rules for c in ruleset.chains}
        self.sets = ruleset.set_by_name()
        self.packet = packet
        self.mark = packet.mark
        self.logged = False
        self.trace: list[Step] = []
        self.stack: list[str] = []

    def matches(self, term: Match) -> bool:
        p = self.packet
        if isinstance(term, CtState):
            return p.state in term.states
        if isinstance(term, Addr):
            return _in_cidr(p.src if term.direction is Direction.SRC else p.dst, term.cidr)
        if isinstance(term, InSet):
            ip = p.src if term.direction is Direction.SRC else p.dst
            return set_contains(self.sets, term.set_name, ip) != term.negate
        if isinstance(term, L4):
            if p.protocol is not term.protocol:
                return False
            if term.port_low is None:
                return True
            high = term.port_high if term.port_high is not None else term.port_low
            return term.port_low <= p.port <= high
        if isinstance(term, PhysDev):
            return (p.physdev_in if term.is_in else p.physdev_out) == term.port
        if isinstance(term, DstLocal):
            return p.dst_local
        if isinstance(term, Mark):
            return ((self.mark & term.mask) == term.value) != term.negate
        raise TypeError(f"unknown match term {term!r}")

    def chain(self, name: str) -> _Outcome:
        if name not in self.chains:
            raise ValueError(f"a rule jumps to {name}, which the ruleset does not define")
        if name in self.stack:
            raise ValueError(f"jump loop: {' -> '.join([*self.stack, name])}")
        self.stack.append(name)
        try:
            return self.rules(name, enumerate(self.chains[name]))
        finally:
            self.stack.pop()

    def rules(self, chain: str, rules: Iterable[tuple[int, Rule]]) -> _Outcome:
        for index, rule in rules:
            if all(self.matches(term) for term in rule.matches):
                self.trace.append(Step(chain, index, rule))
                outcome = self.verdict(rule.verdict)
                if outcome is not None:
                    return outcome
        return _Outcome.RETURN

    def verdict(self, verdict: Verdict) -> _Outcome | None:
        """The outcome that ends the current chain, or None to go on with the next rule."""
        if isinstance(verdict, Accept):
            return _Outcome.ACCEPT
        if isinstance(verdict, Drop):
            return _Outcome.DROP
        if isinstance(verdict, Return):
            return _Outcome.RETURN
        if isinstance(verdict, Jump):
            outcome = self.chain(verdict.chain)
            return None if outcome is _Outcome.RETURN else outcome
        if isinstance(verdict, Nflog):
            self.logged = True
        else:  # SetMark, as MARK --set-xmark value/mask
            self.mark = (self.mark & ~verdict.mask) ^ verdict.value
        return None


def walk(ruleset: Ruleset, packet: Packet, *, bridge: str = contract.BRIDGE) -> PacketVerdict:
    """Walk ``packet`` through the built-in chain that sees it on one node.  What npc's
    hooks neither accept nor drop is left to the rest of that chain: allowed here."""
    walker = _Walker(ruleset, packet)
    builtin, chain_hooks = (("INPUT", _input_hooks(bridge)) if packet.dst_local
                            else ("FORWARD", _forward_hooks(bridge)))
    outcome = walker.rules(builtin, ((i, h.rule) for i, h in enumerate(chain_hooks)
                                     if h.applies(packet)))
    allowed = outcome is not _Outcome.DROP
    trace = tuple(walker.trace)
    return PacketVerdict(allowed, trace, walker.logged,
                         _egress_side(ruleset, packet, trace),
                         _ingress_side(ruleset, packet, trace, allowed), walker.mark)


# ---- explanations ------------------------------------------------------------------------
def _isolating(ruleset: Ruleset, ip: str, direction: str) -> list[str]:
    """The policies that select the pod at ``ip`` for ``direction``."""
    sets = ruleset.set_by_name()
    return [p.policy for p in ruleset.policies
            if direction.capitalize() in p.directions and p.target_set in sets
            and set_contains(sets, p.target_set, ip)]


def denied_side(ruleset: Ruleset, direction: str, ip: str, step: Step | None = None) -> Side:
    """No rule allowed ``direction`` for the pod at ``ip``: say which policies isolate it."""
    isolating = _isolating(ruleset, ip, direction)
    why = (f"isolated by {', '.join(isolating)}" if isolating
           else "the address is in no pod set of any namespace")
    return Side(direction, Status.DENIED, f"no {direction} rule allowed it ({why})", step)


def policy_side(direction: str, policies: list[Origin], step: Step | None = None) -> Side:
    """Allowed by these policy rules."""
    noun = "policy rule " if len(policies) == 1 else "policy rules "
    return Side(direction, Status.ALLOWED, noun + ", ".join(map(str, policies)), step)


def _decided(direction: str, step: Step) -> Side:
    """The side as the rule that settled it tells."""
    rule = step.rule
    policies = [o for o in rule.origins if o.policy]
    if policies:
        return policy_side(direction, policies, step)
    what = rule.origins[0].what if rule.origins else rule.comment
    if step.chain in _DEFAULT_CHAINS:
        namespace = what.removeprefix("default-allow ")
        return Side(direction, Status.ALLOWED, f"not isolated for {direction}: matched the "
                    f"DefaultAllow rule of namespace {namespace}", step)
    if any(isinstance(term, PhysDev) for term in rule.matches):
        return Side(direction, Status.SKIPPED, what, step)
    return Side(direction, Status.ALLOWED, what, step)


def _egress_side(ruleset: Ruleset, packet: Packet, trace: tuple[Step, ...]) -> Side:
    steps = [s for s in trace if s.chain in _EGRESS_CHAINS]
    if not steps:
        return Side("egress", Status.NOT_CHECKED,
                    "did not come in on the weave bridge, so no egress chain saw it")
    marked = next((s for s in steps if s.rule.verdict == Jump(names.EGRESS_ACCEPT_CHAIN)), None)
    if marked is not None:
        return _decided("egress", marked)
    last = steps[-1]
    if isinstance(last.rule.verdict, Drop):
        return denied_side(ruleset, "egress", packet.src, last)
    if last.chain == names.EGRESS_CHAIN and isinstance(last.rule.verdict, Accept | Return):
        return _decided("egress", last)
    return Side("egress", Status.ALLOWED, "no egress rule matched, but egress is not "
                "enforced: no policy has Egress in its policyTypes")


def _ingress_side(ruleset: Ruleset, packet: Packet, trace: tuple[Step, ...],
                  allowed: bool) -> Side:
    steps = [s for s in trace if s.chain in _INGRESS_CHAINS]
    if not steps:
        if packet.dst_local or not packet.out_bridge:
            return Side("ingress", Status.NOT_CHECKED,
                        "does not go out on the weave bridge, so no pod's ingress applies")
        return Side("ingress", Status.NOT_REACHED,
                    f"{'accepted' if allowed else 'dropped'} before the ingress chains")
    accepted = next((s for s in steps if isinstance(s.rule.verdict, Accept)), None)
    if accepted is not None:
        return _decided("ingress", accepted)
    return denied_side(ruleset, "ingress", packet.dst, trace[-1])


class Traced(typing.Protocol):
    """A walk through one node's rules (either backend's layout)."""

    @property
    def logged(self) -> bool: ...

    def trace_lines(self) -> list[str]:
        """The rules that matched, one line each, in order."""
        ...


WalkT = TypeVar("WalkT", bound=Traced)


@dataclass(frozen=True)
class Explanation(Generic[WalkT]):
    """A connection between two pods as the cluster decides it; ``walks`` names the node
    of each walk ("node", or "source node" and "destination node")."""

    src: str
    dst: str
    port: int
    protocol: Protocol | None
    same_node: bool
    allowed: bool
    egress: Side
    ingress: Side
    walks: tuple[tuple[str, WalkT], ...]


def _bridge_port(ruleset: Ruleset) -> str:
    for chain in ruleset.chains:
        for rule in chain.rules:
            for term in rule.matches:
                if isinstance(term, PhysDev):
                    return term.port
    return DEFAULT_BRIDGE_PORT


def explain_connection(ruleset: Ruleset, src_ip: str, dst_ip: str, port: int,
                       protocol: Protocol | None, *, same_node: bool
                       ) -> Explanation[PacketVerdict]:
    """Whether a pod at ``src_ip`` may open a connection to the pod at ``dst_ip``."""
    def expl(allowed: bool, ingress: Side, *walks: tuple[str, PacketVerdict]
             ) -> Explanation[PacketVerdict]:
        return Explanation(src_ip, dst_ip, port, protocol, same_node, allowed,
                           walks[0][1].egress, ingress, walks)

    if same_node:
        verdict = walk(ruleset, Packet(src_ip, dst_ip, protocol, port))
        return expl(verdict.allowed, verdict.ingress, ("node", verdict))
    bridge_port = _bridge_port(ruleset)
    leaving = walk(ruleset, Packet(src_ip, dst_ip, protocol, port, physdev_out=bridge_port))
    if not leaving.allowed:
        return expl(False, Side("ingress", Status.NOT_REACHED, "dropped on the source node"),
                    ("source node", leaving))
    arriving = walk(ruleset, Packet(src_ip, dst_ip, protocol, port, physdev_in=bridge_port))
    return expl(arriving.allowed, arriving.ingress,
                ("source node", leaving), ("destination node", arriving))


def _verdict_text(verdict: Verdict) -> str:
    if isinstance(verdict, Jump):
        return f"-> {verdict.chain}"
    if isinstance(verdict, Nflog):
        return f"NFLOG group {verdict.group}"
    if isinstance(verdict, SetMark):
        return f"MARK {verdict.value:#x}/{verdict.mask:#x}"
    return type(verdict).__name__.upper()


def format_step(step: Step) -> str:
    return f"{step.chain}[{step.index}] {_verdict_text(step.rule.verdict)}: {step.rule.comment}"


def format_explanation(explanation: Explanation[Any], *, trace: bool = True) -> str:
    """Text for ``npc debug explain``: the verdict, each side, then the rules that matched."""
    e = explanation
    protocol = e.protocol.value if e.protocol is not None else "other"
    lines = [f"{'ALLOWED' if e.allowed else 'DENIED'}: {e.src} -> {e.dst} {protocol}/{e.port}"
             f" ({'same node' if e.same_node else 'different nodes'})",
             f"  {e.egress}", f"  {e.ingress}"]
    if trace:
        for where, verdict in e.walks:
            lines.append(f"  rules matched on the {where}:")
            lines += [f"    {line}" for line in verdict.trace_lines()]
            if verdict.logged:
                lines.append(f"    (logged to NFLOG group {names.NFLOG_GROUP})")
    return "\n".join(lines) + "\n"
