"""Walk a packet through the ``inet weave-npc`` table as nf_tables would, with no kernel.

The iptables layout's walk (:mod:`npc.compile.interpret`) shows the chains the iptables
backend writes; a node on the nftables backend holds another shape (dispatch maps, group,
target and pending chains, see :mod:`npc.render.nft`), so ``npc debug explain`` there walks
this one: the table :func:`npc.render.nft.build_table` makes, which is what the kernel holds.

Only the expressions that table uses are understood (payload and meta matches, set and
verdict-map lookups, ``ct state``, the mark bits the ``bridge weave-npc`` table sets, fib
``local``); anything else is an error, not a guess.  Netfilter's control flow: ``jump``
returns to the next rule, ``goto`` does not (the chain it leaves ends with the target), a
chain that runs out returns, and a base chain that runs out takes its policy (accept).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from common import contract
from npc.compile.interpret import (
    Explanation,
    Packet,
    Side,
    Status,
    denied_side,
    policy_side,
)
from npc.compile.ruleset import Origin, Ruleset
from npc.model.objects import Protocol
from npc.render.nft import ANY, FROM_ROUTER, TO_ROUTER, NftChain, NftTable

Json = dict[str, Any]


class WalkError(ValueError):
    """The table holds something this walker does not understand, or refers to a chain,
    set or map it does not define."""


@dataclass(frozen=True)
class NftStep:
    """A rule that matched: ``index`` is its position in ``chain`` (from 0)."""

    chain: str
    index: int
    rule: Json
    origins: tuple[Origin, ...] = ()

    @property
    def comment(self) -> str:
        return str(self.rule.get("comment", ""))

    @property
    def verdict(self) -> str:
        """The rule's last expression in nft's words: ``accept``, ``goto egress``..."""
        last = self.rule["expr"][-1]
        (key, value), = last.items()
        if key in ("jump", "goto"):
            return f"{key} {value['target']}"
        if key == "vmap":
            return f"vmap {value['data']}"
        if key == "log":
            return f"log group {value['group']}"
        return str(key)


@dataclass
class NftWalk:
    """The outcome of one walk: ``steps`` holds every rule that matched, in order."""

    allowed: bool = True
    steps: list[NftStep] = field(default_factory=list)
    logged: bool = False

    def trace_lines(self) -> list[str]:
        return [f"{s.chain}[{s.index}] {s.verdict}" + (f": {s.comment}" if s.comment else "")
                for s in self.steps]


class _Walker:
    def __init__(self, table: NftTable, packet: Packet, bridge_port: str) -> None:
        self.chains = {c.name: c for c in table.chains}
        self.sets = {s.name: s for s in table.sets}
        self.maps = {m.name: dict(m.elements) for m in table.maps}
        self.packet = packet
        # The bridge table marks what enters from or leaves through the router's port.
        self.mark = packet.mark
        if packet.physdev_in == bridge_port:
            self.mark |= FROM_ROUTER
        if packet.physdev_out == bridge_port:
            self.mark |= TO_ROUTER
        self.walk = NftWalk()
        self.stack: list[str] = []

    # ---- values ----------------------------------------------------------------------
    def value(self, expr: Any) -> Any:
        """The packet's value for the left side of a match or a map key."""
        p = self.packet
        if isinstance(expr, dict) and "payload" in expr:
            fld = expr["payload"]["field"]
            if fld in ("saddr", "daddr"):
                return p.src if fld == "saddr" else p.dst
            if fld == "dport":
                return p.port
        elif isinstance(expr, dict) and "meta" in expr:
            key = expr["meta"]["key"]
            known: dict[str, Any] = {
                "nfproto": "ipv4", "mark": self.mark,
                "iifname": contract.BRIDGE if p.in_bridge else "",
                "oifname": contract.BRIDGE if p.out_bridge else "",
                "l4proto": p.protocol.value.lower() if p.protocol is not None else "other"}
            if key in known:
                return known[key]
        elif isinstance(expr, dict) and "ct" in expr and expr["ct"]["key"] == "state":
            return p.state.lower()
        elif isinstance(expr, dict) and "fib" in expr:
            return "local" if p.dst_local else "unicast"
        elif isinstance(expr, dict) and "&" in expr:
            left, mask = expr["&"]
            base = self.value(left)
            if mask == ANY:  # ``ip saddr & 0.0.0.0``: the constant key
                return ANY
            return int(base) & int(mask)
        raise WalkError(f"cannot evaluate {expr!r}")

    def in_set(self, name: str, value: Any) -> bool:
        if name not in self.sets:
            raise WalkError(f"a rule looks up @{name}, which the table does not define")
        nft_set = self.sets[name]
        if not nft_set.interval:
            return str(value) in nft_set.elements
        address = ipaddress.ip_address(str(value))
        return any(address in ipaddress.ip_network(e, strict=False) for e in nft_set.elements)

    def matches(self, match: Json) -> bool:
        op, left, right = match["op"], match["left"], match["right"]
        value = self.value(left)
        if isinstance(right, str) and right.startswith("@"):
            found = self.in_set(right[1:], value)
        elif isinstance(right, dict) and "prefix" in right:
            net = ipaddress.ip_network(f"{right['prefix']['addr']}/{right['prefix']['len']}")
            found = ipaddress.ip_address(value) in net
        elif isinstance(right, dict) and "range" in right:
            low, high = right["range"]
            found = low <= value <= high
        elif op == "in":
            found = value in (right if isinstance(right, list) else [right])
            return found
        else:
            found = value == right
        if op in ("==", "in"):
            return found
        if op == "!=":
            return not found
        raise WalkError(f"unknown match operator {op!r}")

    # ---- control flow -----------------------------------------------------------------
    def chain(self, name: str) -> str:
        """``accept``, ``drop`` or ``return`` (the chain ran out, or said so)."""
        if name not in self.chains:
            raise WalkError(f"a rule jumps to {name}, which the table does not define")
        if name in self.stack:
            raise WalkError(f"jump loop: {' -> '.join([*self.stack, name])}")
        self.stack.append(name)
        try:
            return self.rules(self.chains[name])
        finally:
            self.stack.pop()

    def rules(self, chain: NftChain) -> str:
        for index, rule in enumerate(chain.rules):
            outcome = self.rule(chain, index, rule)
            if outcome is not None:
                return outcome
        return "return"

    def rule(self, chain: NftChain, index: int, rule: Json) -> str | None:
        """The outcome that ends ``chain``, or None to go on with its next rule."""
        for expr in rule["expr"]:
            (key, value), = expr.items()
            if key == "match":
                if not self.matches(value):
                    return None
                continue
            if key == "counter":
                continue
            origins = chain.origins[index] if index < len(chain.origins) else ()
            step = NftStep(chain.name, index, rule, origins)
            if key == "vmap":
                target = self.maps.get(value["data"].lstrip("@"))
                if target is None:
                    raise WalkError(f"a rule looks up {value['data']}, which the table "
                                    "does not define")
                jump_to = target.get(str(self.value(value["key"])))
                if jump_to is None:
                    return None  # no element: the rule does not match
                self.walk.steps.append(step)
                return self.jump(jump_to)
            self.walk.steps.append(step)
            if key in ("accept", "drop"):
                return str(key)
            if key == "jump":
                return self.jump(value["target"])
            if key == "goto":
                return self.chain(value["target"])
            if key == "log":
                self.walk.logged = True
                continue
            raise WalkError(f"cannot evaluate {expr!r}")
        return None

    def jump(self, target: str) -> str | None:
        outcome = self.chain(target)
        return None if outcome == "return" else outcome


def walk_table(table: NftTable, packet: Packet, *, bridge_port: str) -> NftWalk:
    """Walk ``packet`` through the base chain that sees it on one node (``input`` when
    the destination is the node's, else ``forward``); what it neither accepts nor drops
    is accepted by the chain's policy."""
    walker = _Walker(table, packet, bridge_port)
    outcome = walker.chain("input" if packet.dst_local else "forward")
    walker.walk.allowed = outcome != "drop"
    return walker.walk


# ---- explanations ------------------------------------------------------------------------
def _in_direction(step: NftStep, direction: str) -> bool:
    return (step.chain == direction or step.chain.startswith(f"{direction}-")) \
        and step.chain != "egress-passed"


def _policy_or(direction: str, step: NftStep, default_allow: str) -> Side:
    """The side as the rule that let the packet through tells."""
    policies = [o for o in step.origins if o.policy]
    if policies:
        return policy_side(direction, policies)
    if step.comment == default_allow:
        return Side(direction, Status.ALLOWED, f"not isolated for {direction}: the pod is in "
                    f"{direction}_default_allow ({step.comment})")
    if step.comment.startswith(("from other nodes", "to other nodes")):
        return Side(direction, Status.SKIPPED, step.comment)
    if step.comment == "no egress policy anywhere":
        return Side(direction, Status.ALLOWED, "no egress rule matched, but egress is not "
                    "enforced: no policy has Egress in its policyTypes")
    return Side(direction, Status.ALLOWED, step.comment)


def _egress_side(ruleset: Ruleset, packet: Packet, walk: NftWalk) -> Side:
    steps = [s for s in walk.steps if _in_direction(s, "egress")]
    if not steps:
        return Side("egress", Status.NOT_CHECKED,
                    "did not come in on the weave bridge, so no egress chain saw it")
    passed = next((s for s in steps if s.verdict == "goto egress-passed"), None)
    if passed is not None:
        return _policy_or("egress", passed, "pods no egress policy selects")
    if steps[-1].verdict == "drop":
        return denied_side(ruleset, "egress", packet.src)
    return Side("egress", Status.ALLOWED, steps[-1].comment)


def _ingress_side(ruleset: Ruleset, packet: Packet, walk: NftWalk) -> Side:
    steps = [s for s in walk.steps if _in_direction(s, "ingress")]
    if not steps:
        if packet.dst_local or not packet.out_bridge:
            return Side("ingress", Status.NOT_CHECKED,
                        "does not go out on the weave bridge, so no pod's ingress applies")
        return Side("ingress", Status.NOT_REACHED,
                    f"{'accepted' if walk.allowed else 'dropped'} before the ingress chains")
    accepted = next((s for s in steps if s.verdict == "accept"), None)
    if accepted is not None:
        return _policy_or("ingress", accepted, "pods no ingress policy selects")
    return denied_side(ruleset, "ingress", packet.dst)


def explain_connection_nft(table: NftTable, ruleset: Ruleset, src_ip: str, dst_ip: str,
                           port: int, protocol: Protocol | None, *, same_node: bool,
                           bridge_port: str) -> Explanation[NftWalk]:
    """Whether a pod at ``src_ip`` may open a connection to the pod at ``dst_ip``, as the
    nftables layout decides it (see :func:`npc.compile.interpret.explain_connection`
    for the composition of walks: the same, through this table)."""
    def walked(packet: Packet) -> tuple[NftWalk, Side, Side]:
        walk = walk_table(table, packet, bridge_port=bridge_port)
        return walk, _egress_side(ruleset, packet, walk), _ingress_side(ruleset, packet, walk)

    def expl(allowed: bool, egress: Side, ingress: Side, *walks: tuple[str, NftWalk]
             ) -> Explanation[NftWalk]:
        return Explanation(src_ip, dst_ip, port, protocol, same_node, allowed, egress,
                           ingress, walks)

    if same_node:
        walk, egress, ingress = walked(Packet(src_ip, dst_ip, protocol, port))
        return expl(walk.allowed, egress, ingress, ("node", walk))
    leaving, egress, _ = walked(Packet(src_ip, dst_ip, protocol, port,
                                       physdev_out=bridge_port))
    if not leaving.allowed:
        return expl(False, egress, Side("ingress", Status.NOT_REACHED,
                                        "dropped on the source node"), ("source node", leaving))
    arriving, _, ingress = walked(Packet(src_ip, dst_ip, protocol, port,
                                         physdev_in=bridge_port))
    return expl(arriving.allowed, egress, ingress, ("source node", leaving),
                ("destination node", arriving))
