"""The fixed part of weave-npc's chain layout, and weaver's hooks into FORWARD and INPUT.

Packet walk (filter table, bridged traffic seen through br_netfilter):

* ``FORWARD -i weave -j WEAVE-NPC-EGRESS`` checks the source pod's egress.  An allowed
  packet is only *marked* (0x40000) and returns, because a packet between two local pods
  must still pass the destination's ingress checks next.  Unmarked NEW packets are logged
  to NFLOG 86 and dropped at the end of WEAVE-NPC-EGRESS once any policy has Egress.
* ``FORWARD -o weave -j WEAVE-NPC`` checks the destination pod's ingress; what it does not
  accept falls back to FORWARD, where weaver's hooks log NEW packets and drop them.
* Traffic bridged toward ``vethwe-bridge`` (other nodes) skips ingress here, and traffic
  arriving from it skips egress here: the node at the other end does that half.
"""

from __future__ import annotations

from common import contract
from npc.compile import names
from npc.compile.ruleset import (
    Accept,
    Addr,
    Chain,
    CtState,
    Direction,
    Drop,
    DstLocal,
    Jump,
    Mark,
    Match,
    Nflog,
    Origin,
    PhysDev,
    Return,
    Rule,
    SetMark,
    Verdict,
)

ESTABLISHED = CtState(("RELATED", "ESTABLISHED"))
NEW = CtState(("NEW",))
NOT_MARKED = Mark(names.EGRESS_MARK, names.EGRESS_MARK, negate=True)


def _static(matches: tuple[Match, ...], verdict: Verdict, what: str) -> Rule:
    return Rule(matches, verdict, what, (Origin(what=what),))


def static_chains(allow_mcast: bool, bridge_port: str, *, egress_drop: bool) -> tuple[Chain, ...]:
    """All seven chains, the dynamic ones empty (the compiler fills them)."""
    main = [
        _static((ESTABLISHED,), Accept(), "established connections"),
        *([_static((Addr(Direction.DST, names.MULTICAST_CIDR),), Accept(), "multicast")]
          if allow_mcast else []),
        _static((PhysDev(bridge_port, is_in=False),), Accept(),
                "to other nodes: their ingress is checked there"),
        _static((NEW,), Jump(names.DEFAULT_CHAIN), "pods no ingress policy selects"),
        _static((NEW,), Jump(names.INGRESS_CHAIN), "ingress policy rules"),
    ]
    egress = [
        _static((ESTABLISHED,), Accept(), "established connections"),
        _static((PhysDev(bridge_port, is_in=True),), Return(),
                "from other nodes: their egress was checked there"),
        _static((DstLocal(),), Return(), "to this node's addresses"),
        *([_static((Addr(Direction.DST, names.MULTICAST_CIDR),), Return(), "multicast")]
          if allow_mcast else []),
        _static((NEW,), Jump(names.EGRESS_DEFAULT_CHAIN), "pods no egress policy selects"),
        _static((NEW, NOT_MARKED), Jump(names.EGRESS_CUSTOM_CHAIN), "egress policy rules"),
    ]
    if egress_drop:
        egress += [
            _static((NEW, NOT_MARKED), Nflog(names.NFLOG_GROUP), "log blocked egress"),
            _static((NOT_MARKED,), Drop(), "drop blocked egress"),
        ]
    accept = [_static((), SetMark(names.EGRESS_MARK, names.EGRESS_MARK), "egress allowed")]
    return (
        Chain(names.MAIN_CHAIN, tuple(main)),
        Chain(names.DEFAULT_CHAIN, ()),
        Chain(names.INGRESS_CHAIN, ()),
        Chain(names.EGRESS_CHAIN, tuple(egress)),
        Chain(names.EGRESS_DEFAULT_CHAIN, ()),
        Chain(names.EGRESS_CUSTOM_CHAIN, ()),
        Chain(names.EGRESS_ACCEPT_CHAIN, tuple(accept)),
    )


# ---- weaver's hooks (rendered as iptables-save text: they live in built-in chains) ----
_NOTE = "NOTE: this must go before '-j KUBE-FORWARD'"


def forward_hooks(bridge: str = contract.BRIDGE) -> tuple[str, ...]:
    """The FORWARD block, each rule in ``iptables-save`` form (without ``-A FORWARD``)."""
    return (
        f'-i {bridge} -m comment --comment "{_NOTE}" -j {names.EGRESS_CHAIN}',
        f'-o {bridge} -m comment --comment "{_NOTE}" -j {names.MAIN_CHAIN}',
        f"-o {bridge} -m state --state NEW -j NFLOG --nflog-group {names.NFLOG_GROUP}",
        f"-o {bridge} -j DROP",
        f"-i {bridge} ! -o {bridge} -j ACCEPT",
        f"-o {bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    )


def input_hook(bridge: str = contract.BRIDGE) -> str:
    return f"-i {bridge} -j {names.EGRESS_CHAIN}"
