"""Ruleset → the desired ``inet weave-npc`` nftables table (pure), as libnftables JSON.

The semantics are those of the iptables layout (see :mod:`npc.compile.layout`); the shape
is built for lookups instead of walks:

* every pod a policy isolates is a key of a **verdict map** (``ingress_dispatch`` by
  destination, ``egress_dispatch`` by source) whose value jumps to the **group chain** of
  exactly the target sets it is in (pods selected by the same policies share one); a group
  chain only jumps to the **target chain** of each of its target sets, which holds the
  rules of the policies selecting that set.  So a new connection costs one hash lookup
  plus the rules of the policies that concern it — never a walk over the rules of
  unrelated policies;
* a pod event never adds a map element, though: an element that jumps makes the kernel
  validate the whole table when it commits (it walks every element of every verdict
  map, about 90 ns each: 1.4 ms at 10,000 pods), so the event would cost what the cluster
  holds.  Instead the pod goes into a plain set (``ingress_pending`` or
  ``egress_pending``), and its new connections take the **pending chain**: a jump to the
  target chain of each target set the pod is in, looked up live (so it is exact whatever
  the pod's group).  The backend later folds pending pods into the map in one
  transaction, when the controller is idle (see ``NftablesBackend.tidy``); a full sync
  leaves none pending.  The pending chain's name tells its content (the target sets), and
  it is reached through a one-element map (``*_pending_chain``, looked up with a constant
  key like ``egress_open``): so a policy change stages a new pending chain and the switch
  to it stays an element change;
* the pods no policy isolates are one set per direction (``*_default_allow``);
* selector sets become ``ipv4_addr`` sets (a namespace-selector list:set becomes the union
  of its members), except sets become interval sets;
* whether any egress policy exists (if none, egress is not filtered at all) is one element
  of ``egress_open``, looked up with a constant key, not a different rule: so the chains
  never depend on it, and turning it over is an element change like a pod's.

nftables has no ``physdev`` match, and in the ``inet`` family a bridged packet's in/out
interface is the bridge itself.  So a two-rule ``bridge weave-npc`` table marks packets that
enter from (``FROM_ROUTER``) or leave through (``TO_ROUTER``) the router's bridge port,
and the ``inet`` chains read the mark: the same bypass as iptables' ``physdev`` rules.
Rule order never matters inside a group or target chain: every policy rule is an allow.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from common import contract
from npc.compile import names
from npc.compile.ruleset import (
    L4,
    Addr,
    Direction,
    InSet,
    IpSet,
    Match,
    Origin,
    Rule,
    Ruleset,
    SetKind,
)

TABLE = "weave-npc"
FROM_ROUTER = 0x100000
TO_ROUTER = 0x200000
"""Mark bits for the bridge-port bypass; clear of kube-proxy (0x4000, 0x8000), weave's
IPsec (0x20000) and weave-npc's iptables egress mark (0x40000)."""
COMMENT_LIMIT = 120  # nftables keeps at most 128 bytes of rule comment

Json = dict[str, Any]


@dataclass(frozen=True)
class NftSet:
    name: str
    interval: bool
    elements: frozenset[str]
    comment: str


@dataclass(frozen=True)
class NftMap:
    name: str
    elements: tuple[tuple[str, str], ...]  # ip → chain to jump to


@dataclass(frozen=True)
class NftChain:
    name: str
    rules: tuple[Json, ...]
    hook: tuple[str, int] | None = None  # (hook, priority) for base chains
    fingerprint: str = field(default="", compare=False)
    origins: tuple[tuple[Origin, ...], ...] = field(default=(), compare=False, repr=False)
    """Per rule, the policy rules it came from (target chains; empty elsewhere): what
    ``npc debug explain`` names."""

    def __post_init__(self) -> None:
        digest = hashlib.sha1(repr((self.hook, self.rules)).encode()).hexdigest()[:12]
        object.__setattr__(self, "fingerprint", digest)

    def rules_with_fingerprint(self) -> list[Json]:
        """The rules, the first one's comment starting with ``#<fingerprint>``: reading
        that back tells whether the kernel's chain is exactly this one."""
        rules = [dict(r) for r in self.rules]
        if rules:
            text = f"#{self.fingerprint} {rules[0].get('comment', '')}".strip()
            rules[0]["comment"] = text[:COMMENT_LIMIT]
        return rules


@dataclass(frozen=True)
class Dispatch:
    """One direction's dispatch as :func:`build_table` laid it out: what it takes to move a
    pod from one group chain to another without building the table again."""

    map: str
    prefix: str
    targets: frozenset[str]
    """The target sets (Ruleset names) of this direction's policies that exist; each has
    its target chain."""
    groups: dict[str, frozenset[str]]
    """Group chain → its key: the target sets each of its pods is in."""

    @property
    def pending(self) -> str:
        """The set of the pods dispatched through the pending chain, not the map."""
        return f"{self.prefix}_pending"

    @property
    def pending_map(self) -> str:
        """The map whose one element jumps to the pending chain."""
        return f"{self.prefix}_pending_chain"

    def key_of(self, ip: str, sets: Mapping[str, set[str]]) -> frozenset[str]:
        """The target sets ``ip`` is in, by the nft sets ``sets`` (name → elements)."""
        return frozenset(t for t in self.targets if ip in sets.get(set_name(t), ()))

    def chain(self, key: frozenset[str]) -> NftChain:
        """The group chain of the pods in exactly the target sets ``key``: a jump to the
        target chain of each (its name tells its content)."""
        return NftChain(group_chain_name(self.prefix, key),
                        tuple(jump_rule(target_chain_name(self.prefix, t)) for t in sorted(key)))


@dataclass(frozen=True)
class SetRoles:
    """How the Ruleset's ipset-level sets become nft sets (see :func:`build_table`): what it
    takes to turn a set's member changes into element changes."""

    own: dict[str, str]
    """hash:ip set → the nft set holding exactly its members."""
    unions: dict[str, tuple[str, ...]]
    """nft set → the hash:ip sets whose union it is (list:sets, merged default-allow)."""
    containing: dict[str, tuple[str, ...]]
    """hash:ip set → the unions it is part of."""
    loose: frozenset[str]
    """Union parts without an nft set of their own (the default-allow sets)."""
    blocked: frozenset[str]
    """Sets whose member changes have no element form known here."""


@dataclass(frozen=True)
class NftTable:
    sets: tuple[NftSet, ...]
    maps: tuple[NftMap, ...]
    chains: tuple[NftChain, ...]
    dispatch: tuple[Dispatch, ...] = field(default=(), compare=False, repr=False)
    """The layout of the two dispatch maps, for patching them pod by pod."""


def canonical_cidr(cidr: str) -> str:
    """How elements are compared: a /32 is its address."""
    return cidr[:-3] if cidr.endswith("/32") else cidr


def set_name(ipset_name: str) -> str:
    """An nft-friendly, deterministic name for one of the Ruleset's sets."""
    return "s_" + hashlib.sha1(ipset_name.encode()).hexdigest()[:16]


# ---- expressions -----------------------------------------------------------------------
def _payload(proto: str, fld: str) -> Json:
    return {"payload": {"protocol": proto, "field": fld}}


def _addr_value(cidr: str) -> Any:
    net = ipaddress.ip_network(cidr)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _term(m: Match) -> list[Json]:
    if isinstance(m, Addr):
        return [_match(_payload("ip", "saddr" if m.direction is Direction.SRC else "daddr"),
                       _addr_value(m.cidr))]
    if isinstance(m, InSet):
        fld = "saddr" if m.direction is Direction.SRC else "daddr"
        return [_match(_payload("ip", fld), f"@{set_name(m.set_name)}",
                       "!=" if m.negate else "==")]
    if isinstance(m, L4):
        out = [_match({"meta": {"key": "l4proto"}}, m.protocol.value.lower())]
        if m.port_low is not None:
            high = m.port_high if m.port_high is not None else m.port_low
            port: Any = m.port_low if high == m.port_low else {"range": [m.port_low, high]}
            out.append(_match(_payload("th", "dport"), port))
        return out
    raise TypeError(f"no nftables form for {m!r} in a policy rule")


def _mark_set(bit: int) -> Json:
    return {"mangle": {"key": {"meta": {"key": "mark"}},
                       "value": {"|": [{"meta": {"key": "mark"}}, bit]}}}


def _mark_has(bit: int) -> Json:
    return _match({"&": [{"meta": {"key": "mark"}}, bit]}, 0, "!=")


def _ct(*states: str) -> Json:
    return _match({"ct": {"key": "state"}}, list(states), "in")


def _rule(exprs: list[Json], comment: str = "") -> Json:
    # Every rule counts its packets: ``npc debug`` shows them next to the policy rule.
    rule: Json = {"expr": [*exprs[:-1], {"counter": None}, exprs[-1]]}
    if comment:
        rule["comment"] = comment[:COMMENT_LIMIT]
    return rule


ACCEPT: Json = {"accept": None}
DROP: Json = {"drop": None}


def _goto(chain: str) -> Json:
    return {"goto": {"target": chain}}


def _log_drop() -> list[Json]:
    return [_rule([_ct("new"), {"log": {"group": names.NFLOG_GROUP}}], "log blocked"),
            _rule([DROP], "drop blocked")]


# ---- from the Ruleset --------------------------------------------------------------------
def _targets(ruleset: Ruleset) -> dict[str, dict[str, set[str]]]:
    """direction → target set name → the policies (keys) with that target."""
    out: dict[str, dict[str, set[str]]] = {"Ingress": defaultdict(set), "Egress": defaultdict(set)}
    for p in ruleset.policies:
        for d in p.directions:
            out[d][p.target_set].add(p.policy)
    return out


def _policy_rules(ruleset: Ruleset, chain: str, target_dir: Direction,
                  targets: dict[str, set[str]]) -> dict[str, list[Rule]]:
    """Target set → its policy rules (with the target match removed)."""
    by_target: dict[str, list[Rule]] = defaultdict(list)
    for rule in ruleset.chain(chain).rules:
        target = next(m for m in rule.matches if isinstance(m, InSet) and not m.negate
                      and m.direction is target_dir and m.set_name in targets
                      and rule.origins[0].policy in targets[m.set_name])
        rest = tuple(m for m in rule.matches if m is not target)
        by_target[target.set_name].append(Rule(rest, rule.verdict, rule.comment, rule.origins))
    return by_target


def group_chain_name(prefix: str, key: frozenset[str]) -> str:
    """The chain of the pods in exactly the target sets ``key``."""
    return f"{prefix}-" + hashlib.sha1("|".join(sorted(key)).encode()).hexdigest()[:12]


def target_chain_name(prefix: str, target: str) -> str:
    """The chain of the rules of the policies selecting target set ``target`` (whose nft
    set, when it has one, is named the same after the prefix)."""
    return f"{prefix}-{set_name(target)}"


def jump_rule(chain: str) -> Json:
    """A group chain's rule: a plain jump (no counter: the target chain's rules count)."""
    return {"expr": [{"jump": {"target": chain}}]}


def _pending_chain(prefix: str, targets: frozenset[str]) -> NftChain:
    """For a pod not in the map yet: the target chain of each target set it is in (see the
    module's docstring).  Named after its content, like a group chain."""
    fld = "daddr" if prefix == "ingress" else "saddr"
    return NftChain(group_chain_name(f"{prefix}-pending", targets), tuple(
        {"expr": [_match(_payload("ip", fld), f"@{set_name(t)}"),
                  {"jump": {"target": target_chain_name(prefix, t)}}]}
        for t in sorted(targets)))


def _groups(members: dict[str, frozenset[str]], prefix: str
            ) -> tuple[dict[str, frozenset[str]], list[tuple[str, str]]]:
    """Pods selected by the same target sets share a chain: chain name → group, and the
    dispatch map's elements (ip → chain), in address text order."""
    by_ip: dict[str, list[str]] = {}
    for target in sorted(members):  # so each pod's list of targets comes sorted
        for ip in members[target]:
            held = by_ip.get(ip)
            if held is None:
                by_ip[ip] = [target]
            else:
                held.append(target)
    chains: dict[tuple[str, ...], str] = {}
    groups: dict[str, frozenset[str]] = {}
    elements = []
    for ip in sorted(by_ip):
        key = tuple(by_ip[ip])
        chain = chains.get(key)
        if chain is None:
            group = frozenset(key)
            chain = chains[key] = group_chain_name(prefix, group)
            groups[chain] = group
        elements.append((ip, chain))
    return groups, elements


def _target_chain(prefix: str, target: str, rules: list[Rule], verdict: Json) -> NftChain:
    """The rules of the policies selecting ``target``, as nftables rules."""
    return NftChain(target_chain_name(prefix, target), tuple(
        _rule([*(e for m in r.matches for e in _term(m)), verdict],
              "; ".join(str(o) for o in r.origins)) for r in rules),
        origins=tuple(r.origins for r in rules))


def _dispatch(direction: str, targets: dict[str, frozenset[str]], rules: dict[str, list[Rule]],
              verdict: Json) -> tuple[Dispatch, list[NftMap], list[NftChain]]:
    """One direction's dispatch map and pending map, the layout of its group chains, its
    target chains and its pending chain."""
    prefix = direction.lower()
    groups, elements = _groups(targets, prefix)
    layout = Dispatch(f"{prefix}_dispatch", prefix, frozenset(targets), groups)
    chains = [_target_chain(prefix, t, rules.get(t, []), verdict) for t in targets]
    pending = _pending_chain(prefix, layout.targets)
    chains.append(pending)
    return layout, [NftMap(layout.map, tuple(elements)),
                    NftMap(layout.pending_map, ((ANY, pending.name),))], chains


def _union(sets: Mapping[str, IpSet], names_: list[str]) -> frozenset[str]:
    return frozenset(m.value for n in names_ for m in sets[n].members)


def _default_allow(ruleset: Ruleset, kind: str) -> frozenset[str]:
    sets = [s for s in ruleset.sets if s.source.startswith(f"{kind}-default-allow:")]
    return frozenset(m.value for s in sets for m in s.members)


def is_default_allow(s: IpSet) -> bool:
    """Whether ``s`` is a default-allow set (merged into ``*_default_allow``)."""
    return "-default-allow:" in s.source


def address_set(s: IpSet, sets: Mapping[str, IpSet]) -> NftSet | None:
    """The nft set of ``s`` if it is one of plain addresses that stands alone, as
    :func:`build_table` lays it out: a hash:ip set, or a list:set as the union of its
    members (which ``sets`` holds); None for the others (interval and merged sets)."""
    if is_default_allow(s) or s.kind is SetKind.HASH_NET:
        return None
    if s.kind is SetKind.LIST_SET:
        elements = _union(sets, [m.value for m in s.members])
    else:
        elements = frozenset(m.value for m in s.members)
    return NftSet(set_name(s.name), False, elements, s.description[:COMMENT_LIMIT])


def _sets(ruleset: Ruleset, skip: set[str], built: Mapping[str, NftSet]) -> list[NftSet]:
    by_name = ruleset.set_by_name()
    out = []
    for s in ruleset.sets:
        if s.name in skip:
            continue
        alone = built.get(s.name) or address_set(s, by_name)
        if alone is not None:
            out.append(alone)
            continue
        # Interval sets refuse overlapping elements: store the merged form.
        nets = ipaddress.collapse_addresses(ipaddress.IPv4Network(m.value) for m in s.members)
        out.append(NftSet(set_name(s.name), True,
                          frozenset(canonical_cidr(str(n)) for n in nets),
                          s.description[:COMMENT_LIMIT]))
    return out


def build_table(ruleset: Ruleset, *, allow_mcast: bool,
                built: Mapping[str, NftSet] | None = None) -> NftTable:
    """The table for ``ruleset``; ``built`` holds address sets already made from its
    sets (by :func:`address_set`, keyed by the Ruleset's set name), to be reused."""
    any_egress = any("Egress" in p.directions for p in ruleset.policies)
    targets = _targets(ruleset)
    by_name = ruleset.set_by_name()
    in_rules = _policy_rules(ruleset, names.INGRESS_CHAIN, Direction.DST, targets["Ingress"])
    out_rules = _policy_rules(ruleset, names.EGRESS_CUSTOM_CHAIN, Direction.SRC,
                              targets["Egress"])
    # EGRESS-CUSTOM holds each rule twice (mark, then return): keep one of each pair.
    out_rules = {t: rules[::2] for t, rules in out_rules.items()}
    def members(names_: dict[str, set[str]]) -> dict[str, frozenset[str]]:
        # A policy that selects no pods has no target set: nothing to dispatch.
        return {t: frozenset(m.value for m in by_name[t].members)
                for t in names_ if t in by_name}

    in_layout, in_maps, in_chains = _dispatch("Ingress", members(targets["Ingress"]), in_rules,
                                             ACCEPT)
    out_layout, out_maps, out_chains = _dispatch("Egress", members(targets["Egress"]), out_rules,
                                                _goto("egress-passed"))
    default_sources = {s.name for s in ruleset.sets if is_default_allow(s)}
    sets = _sets(ruleset, default_sources, built or {})
    sets += [NftSet("ingress_default_allow", False, _default_allow(ruleset, "ingress"),
                    "pods no ingress policy selects"),
             NftSet("egress_default_allow", False, _default_allow(ruleset, "egress"),
                    "pods no egress policy selects")]
    sets += [NftSet(layout.pending, False, frozenset(),
                    f"pods whose new connections take {layout.prefix}'s pending chain")
             for layout in (in_layout, out_layout)]
    # The key ``ip saddr & 0.0.0.0`` is 0.0.0.0 for every packet: egress_open holds it
    # exactly when no egress policy exists anywhere.
    sets.append(NftSet(EGRESS_OPEN, False, frozenset() if any_egress else OPEN,
                       "0.0.0.0 when no egress policy exists anywhere"))
    chains = _static_chains(allow_mcast) + in_chains + out_chains
    chains += [layout.chain(key) for layout in (in_layout, out_layout)
               for key in layout.groups.values()]
    return NftTable(tuple(sorted(sets, key=lambda s: s.name)), (*in_maps, *out_maps),
                    tuple(sorted(chains, key=lambda c: c.name)), (in_layout, out_layout))


def set_roles(ruleset: Ruleset) -> SetRoles:
    """The part each of the Ruleset's sets plays in :func:`build_table`'s nft sets."""
    default_allow = {s.name for s in ruleset.sets if is_default_allow(s)}
    own = {s.name: set_name(s.name) for s in ruleset.sets
           if s.kind is SetKind.HASH_IP and s.name not in default_allow}
    unions = {f"{kind}_default_allow": tuple(s.name for s in ruleset.sets
                                              if s.source.startswith(f"{kind}-default-allow:"))
              for kind in ("ingress", "egress")}
    blocked = default_allow - {part for parts in unions.values() for part in parts}
    blocked |= {s.name for s in ruleset.sets if s.name in default_allow
                and s.kind is not SetKind.HASH_IP}
    for s in ruleset.sets:
        if s.kind is SetKind.LIST_SET:
            parts = tuple(m.value for m in s.members)
            if all(part in own for part in parts):
                unions[set_name(s.name)] = parts
            else:  # a union of sets patched nowhere else: leave it to a full sync
                blocked.update(parts)
    containing: dict[str, list[str]] = defaultdict(list)
    for union, parts in unions.items():
        for part in parts:
            containing[part].append(union)
    loose = {part for parts in unions.values() for part in parts if part not in own}
    return SetRoles(own, unions, {k: tuple(v) for k, v in containing.items()},
                    frozenset(loose), frozenset(blocked))


EGRESS_OPEN = "egress_open"
ANY = "0.0.0.0"
"""``ip saddr & 0.0.0.0``: the constant key of ``egress_open`` and the pending maps."""
OPEN = frozenset({ANY})


def _pending(fld: str, prefix: str) -> Json:
    """Pending pods (see the module's docstring) take the pending chain."""
    return _rule([_ct("new"), _match(_payload("ip", fld), f"@{prefix}_pending"),
                  {"vmap": {"key": {"&": [_payload("ip", fld), ANY]},
                            "data": f"@{prefix}_pending_chain"}}],
                 "the same, pod not in the map yet")


def _static_chains(allow_mcast: bool) -> list[NftChain]:
    weave = contract.BRIDGE
    mcast = _match(_payload("ip", "daddr"), _addr_value(names.MULTICAST_CIDR))
    ipv4_only = _match({"meta": {"key": "nfproto"}}, "ipv4", "!=")
    iif = _match({"meta": {"key": "iifname"}}, weave)
    oif = _match({"meta": {"key": "oifname"}}, weave)
    forward = [_rule([ipv4_only, ACCEPT], "IPv4 only, as the iptables backend"),
               _rule([iif, _goto("egress")], "from pods: egress first"),
               _rule([oif, _goto("ingress")], "to pods: ingress")]
    local = _match({"fib": {"flags": ["daddr"], "result": "type"}}, "local")
    input_ = [_rule([ipv4_only, ACCEPT]),
              _rule([iif, local, ACCEPT], "to this node's addresses"),
              _rule([iif, _goto("egress")], "pod to node broadcast and others")]
    egress = [
        _rule([_ct("established", "related"), ACCEPT], "established connections"),
        _rule([_mark_has(FROM_ROUTER), _goto("egress-passed")],
              "from other nodes: their egress was checked there"),
        *([_rule([mcast, _goto("egress-passed")], "multicast")] if allow_mcast else []),
        _rule([_ct("new"), _match(_payload("ip", "saddr"), "@egress_default_allow"),
               _goto("egress-passed")], "pods no egress policy selects"),
        _rule([_ct("new"), {"vmap": {"key": _payload("ip", "saddr"),
                                     "data": "@egress_dispatch"}}],
              "egress policy rules of the source pod"),
        _pending("saddr", "egress"),
        _rule([_match({"&": [_payload("ip", "saddr"), ANY]}, f"@{EGRESS_OPEN}"),
               _goto("egress-passed")], "no egress policy anywhere"),
        *_log_drop(),
    ]
    passed = [_rule([oif, _goto("ingress")], "to pods: ingress next"),
              _rule([ACCEPT], "leaving the pod network")]
    ingress = [
        _rule([_ct("established", "related"), ACCEPT], "established connections"),
        *([_rule([mcast, ACCEPT], "multicast")] if allow_mcast else []),
        _rule([_mark_has(TO_ROUTER), ACCEPT], "to other nodes: their ingress is checked there"),
        _rule([_ct("new"), _match(_payload("ip", "daddr"), "@ingress_default_allow"), ACCEPT],
              "pods no ingress policy selects"),
        _rule([_ct("new"), {"vmap": {"key": _payload("ip", "daddr"),
                                     "data": "@ingress_dispatch"}}],
              "ingress policy rules of the destination pod"),
        _pending("daddr", "ingress"),
        *_log_drop(),
    ]
    return [NftChain("forward", tuple(forward), ("forward", 0)),
            NftChain("input", tuple(input_), ("input", 0)),
            NftChain("egress", tuple(egress)), NftChain("egress-passed", tuple(passed)),
            NftChain("ingress", tuple(ingress))]


def bridge_table_commands(port: str) -> list[Json]:
    """The ``bridge weave-npc`` table that classifies the router's bridge port ``port``."""
    t = {"family": "bridge", "table": TABLE}
    return [
        {"add": {"table": {"family": "bridge", "name": TABLE}}},
        {"add": {"chain": {**t, "name": "from-router", "type": "filter",
                           "hook": "prerouting", "prio": -300, "policy": "accept"}}},
        {"add": {"chain": {**t, "name": "to-router", "type": "filter", "hook": "forward",
                           "prio": -300, "policy": "accept"}}},
        {"flush": {"chain": {**t, "name": "from-router"}}},
        {"flush": {"chain": {**t, "name": "to-router"}}},
        {"add": {"rule": {**t, "chain": "from-router", "expr": [
            _match({"meta": {"key": "iifname"}}, port), _mark_set(FROM_ROUTER)]}}},
        {"add": {"rule": {**t, "chain": "to-router", "expr": [
            _match({"meta": {"key": "oifname"}}, port), _mark_set(TO_ROUTER)]}}},
    ]
