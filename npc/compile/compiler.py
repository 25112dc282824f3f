"""Cluster state → :class:`Ruleset`: the complete NetworkPolicy v1 semantics, pure.

Isolation follows weave-npc's model.  Each namespace has an ingress and an egress
*default-allow* set holding its pods that no policy of that direction selects; the
``WEAVE-NPC-DEFAULT`` / ``WEAVE-NPC-EGRESS-DEFAULT`` chains let their traffic through.
A selected pod is left out of the set, so only the policy rules in ``WEAVE-NPC-INGRESS``
or ``WEAVE-NPC-EGRESS-CUSTOM`` can allow its traffic.  Every policy rule is an allow, so
rule order never matters and policies add up.

One kernel rule is emitted per (peer × port) of a policy rule.  Named ports are resolved
per destination pod: for each number a name resolves to, the rule also requires the
destination to be in the set of pods on which the name means that number.  Whatever the
compiler cannot honour is left out of the *allow* rules and reported, so it fails closed.
"""

from __future__ import annotations

import gc
import ipaddress
import operator
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from common import contract
from npc.compile import names
from npc.compile.layout import static_chains
from npc.compile.ruleset import (
    L4,
    Accept,
    Addr,
    Chain,
    CompileProblem,
    Direction,
    InSet,
    IpSet,
    Jump,
    Match,
    Member,
    Origin,
    PolicySummary,
    Return,
    Rule,
    Ruleset,
    SetKind,
    Verdict,
)
from npc.compile.selection import Selection
from npc.model.objects import (
    ClusterState,
    IPBlock,
    LabelSelector,
    NetworkPolicy,
    Peer,
    Pod,
    PolicyType,
    PortSpec,
    Protocol,
)

PodPredicate = Callable[[Pod, Callable[[str], dict[str, str]]], bool]
"""Whether a pod belongs to a set, given a namespace → labels lookup."""

SetListener = Callable[[IpSet], None]
"""Told of each set as soon as it is complete, so that a backend can load it into the
kernel while the compile goes on.  A list:set comes after every set it holds."""

COMMENT_LIMIT = 200
"""Room for our text in a rule comment (the kernel's xt_comment limit is 256 bytes; the
renderer appends the rule fingerprint)."""


@dataclass(frozen=True)
class Options:
    allow_mcast: bool = True
    bridge_port: str = contract.BRIDGE_PORT
    max_list_size: int = 1024


def pod_member(pod: Pod) -> Member:
    """A participating pod as a set member: its IPv4 address, commented with its name."""
    return Member(str(pod.ipv4), f"namespace: {pod.namespace}, pod: {pod.name}")


class _Members:
    """Set members for lists of participating pods (as :class:`Selection` gives them); each
    pod's :class:`Member` is made once per compile (a pod is typically in several sets)."""

    def __init__(self, pods: Iterable[Pod]) -> None:
        self._made = {pod.key: pod_member(pod) for pod in pods}

    def __call__(self, pods: tuple[Pod, ...] | list[Pod]) -> tuple[Member, ...]:
        """Members for ``pods``, sorted by address.  ``pods`` come in (namespace, name)
        order, as :class:`ClusterState` holds them, so when pods share an IP the first one
        names the member: the comment is deterministic.  (Sets hold tens of thousands of
        members at 10k pods, so this is built in C-level loops.)"""
        backwards = pods[::-1]  # in a dict built in order, the last write of a key wins
        by_ip = dict(zip(map(_IPV4, backwards), map(self._made.__getitem__,
                                                    map(_KEY, backwards)), strict=True))
        return tuple(map(by_ip.__getitem__, sorted(by_ip)))


_IPV4 = operator.attrgetter("ipv4")
_KEY = operator.attrgetter("key")


def _selector_text(selector: LabelSelector) -> str:
    return selector.canonical()


class _Compilation:
    """The work of one compile: the set registry and the rules, built up in order."""

    def __init__(self, state: ClusterState, options: Options,
                 on_set: SetListener | None = None) -> None:
        self.state = state
        self.options = options
        self.on_set = on_set
        self.sel = Selection(state)
        self.sets: dict[str, IpSet] = {}
        self._names: dict[str, str] = {}
        self.predicates: dict[str, PodPredicate] = {}
        self.scopes: dict[str, str | None] = {}
        self.named_ports_used: set[tuple[str, Protocol]] = set()
        self.problems: list[CompileProblem] = []
        self.members = _Members(self.sel.participating())

    # ---- sets ------------------------------------------------------------------------
    def _add_set(self, source: str, kind: SetKind, description: str,
                 members: Callable[[], tuple[Member, ...]],
                 member_of: PodPredicate | None = None, scope: str | None = None) -> str:
        """Register a set (members computed only the first time it is asked for).
        ``member_of`` says whether a pod belongs to it: the incremental compiler patches
        the set with it when pods change."""
        name = self._names.get(source)
        if name is None:
            name = self._names[source] = names.set_name(source)
        if name not in self.sets:
            ipset = self.sets[name] = IpSet(name, kind, source, description, members())
            if self.on_set is not None:
                self.on_set(ipset)
            if member_of is not None:
                self.predicates[name] = member_of
                self.scopes[name] = scope
        return name

    def pod_set(self, namespace: str, selector: LabelSelector) -> str:
        return self._add_set(
            names.pod_selector_source(namespace, selector), SetKind.HASH_IP,
            f"pods: namespace: {namespace}, selector: {_selector_text(selector)}",
            lambda: self.members(self.sel.pods(namespace, selector)),
            lambda pod, _: pod.namespace == namespace and selector.matches(pod.label_map),
            scope=namespace)

    def namespace_list_set(self, selector: LabelSelector) -> str | None:
        matching = self.sel.namespaces(selector)
        if len(matching) > self.options.max_list_size:
            return None
        return self._add_set(
            names.namespace_selector_source(selector), SetKind.LIST_SET,
            f"namespaces: selector: {_selector_text(selector)}",
            lambda: tuple(sorted(Member(self.pod_set(ns, LabelSelector()), f"namespace: {ns}")
                                 for ns in matching)))

    def combined_set(self, ns_selector: LabelSelector, pod_selector: LabelSelector) -> str:
        return self._add_set(
            names.combined_selector_source(ns_selector, pod_selector), SetKind.HASH_IP,
            f"namespaces: selector: {_selector_text(ns_selector)}, "
            f"pods: selector: {_selector_text(pod_selector)}",
            lambda: self.members([p for ns in self.sel.namespaces(ns_selector)
                                  for p in self.sel.pods(ns, pod_selector)]),
            lambda pod, ns_labels: (ns_selector.matches(ns_labels(pod.namespace))
                                    and pod_selector.matches(pod.label_map)))

    def except_set(self, namespace: str, block: IPBlock) -> str:
        return self._add_set(
            names.except_source(namespace, block.excepts), SetKind.HASH_NET,
            f"except: {' '.join(block.excepts)}",
            lambda: tuple(sorted(Member(e, f"excepted from {block.cidr}")
                                 for e in block.excepts)))

    def named_port_set(self, name: str, spec: PortSpec, number: int) -> str:
        return self._add_set(
            names.named_port_source(name, spec.protocol, number), SetKind.HASH_IP,
            f"named port {name} = {spec.protocol.value.lower()}/{number}",
            lambda: self.members(self.sel.named_ports.get((name, spec.protocol), {})
                                 .get(number, ())),
            lambda pod, _: pod.resolve_port(name, spec.protocol) == number)

    # ---- peers and ports -----------------------------------------------------------
    def peer_terms(self, policy: NetworkPolicy, peer: Peer | None,
                   side: Direction) -> tuple[tuple[Match, ...], str] | None:
        """Matches selecting ``peer`` on ``side`` and a description; None if it can match
        no IPv4 traffic at all."""
        if peer is None:
            return (), "anywhere"
        if peer.ip_block is not None:
            block = peer.ip_block
            if ipaddress.ip_network(block.cidr).version != 4:
                return None  # an IPv6 block matches no IPv4 packet
            terms: list[Match] = [Addr(side, block.cidr)]
            desc = f"cidr: {block.cidr}"
            if block.excepts:
                terms.append(InSet(side, self.except_set(policy.namespace, block), negate=True))
                desc += f" except [{' '.join(block.excepts)}]"
            return tuple(terms), desc
        if peer.namespace_selector is None:
            selector = peer.pod_selector or LabelSelector()
            return ((InSet(side, self.pod_set(policy.namespace, selector)),),
                    f"pods: namespace: {policy.namespace}, selector: {_selector_text(selector)}")
        if peer.pod_selector is None or peer.pod_selector.is_empty:
            ns_sel = peer.namespace_selector
            listed = self.namespace_list_set(ns_sel)
            if listed is not None:
                return ((InSet(side, listed),),
                        f"namespaces: selector: {_selector_text(ns_sel)}")
            # Too many namespaces for a list:set of --max-list-size: one hash:ip set of
            # all their pods has the same meaning.
            return ((InSet(side, self.combined_set(ns_sel, LabelSelector())),),
                    f"namespaces: selector: {_selector_text(ns_sel)}")
        return ((InSet(side, self.combined_set(peer.namespace_selector, peer.pod_selector)),),
                f"namespaces: selector: {_selector_text(peer.namespace_selector)}, "
                f"pods: selector: {_selector_text(peer.pod_selector)}")

    def port_variants(self, spec: PortSpec | None) -> list[tuple[tuple[Match, ...], str]]:
        """Alternatives of (matches, description) for one port entry; [] allows nothing."""
        if spec is None:
            return [((), "any port")]
        proto = spec.protocol
        if spec.port is None:
            return [((L4(proto),), f"{proto.value.lower()}/any")]
        if isinstance(spec.port, int):
            high = spec.end_port if spec.end_port is not None else spec.port
            text = f"{spec.port}" if high == spec.port else f"{spec.port}:{high}"
            return [((L4(proto, spec.port, high),), f"{proto.value.lower()}/{text}")]
        # Every number the name means on some pod: the rule also requires the destination
        # to be a pod on which it means that number, so this is exact for ingress (the
        # destination is the target) and egress alike, and the rules depend on pods only
        # through the set of numbers each name resolves to.
        self.named_ports_used.add((spec.port, proto))
        numbers = sorted(self.sel.named_ports.get((spec.port, proto), {}))
        return [((L4(proto, n, n), InSet(Direction.DST, self.named_port_set(spec.port, spec, n))),
                 f"{proto.value.lower()}/{spec.port}={n}") for n in numbers]

    # ---- policies --------------------------------------------------------------------
    def policy_rules(self, policy: NetworkPolicy, direction: PolicyType) -> list[Rule]:
        if direction not in policy.policy_types:
            return []
        selector = policy.pod_selector
        targets = self.sel.pods(policy.namespace, selector)
        if not targets:
            return []  # a policy that selects no pods does nothing
        target_side = Direction.DST if direction is PolicyType.INGRESS else Direction.SRC
        peer_side = Direction.SRC if direction is PolicyType.INGRESS else Direction.DST
        target_set = self.pod_set(policy.namespace, selector)
        target_desc = f"pods: namespace: {policy.namespace}, selector: {_selector_text(selector)}"
        word = "ingress" if direction is PolicyType.INGRESS else "egress"
        out: list[Rule] = []
        for ri, rule in enumerate(policy.rules(direction)):
            peers: list[tuple[int, Peer | None]] = list(enumerate(rule.peers)) or [(-1, None)]
            ports: list[tuple[int, PortSpec | None]] = list(enumerate(rule.ports)) or [(-1, None)]
            for pi, peer in peers:
                peer_part = self.peer_terms(policy, peer, peer_side)
                if peer_part is None:
                    continue
                peer_terms, peer_desc = peer_part
                for qi, spec in ports:
                    for port_terms, port_desc in self.port_variants(spec):
                        l4 = [t for t in port_terms if isinstance(t, L4)]
                        rest = [t for t in port_terms if not isinstance(t, L4)]
                        matches = (*l4, *peer_terms, InSet(target_side, target_set), *rest)
                        src, dst = ((peer_desc, target_desc) if direction is PolicyType.INGRESS
                                    else (target_desc, peer_desc))
                        origin = Origin(policy.key, word, ri, pi, qi)
                        text = f"{policy.key} {word}[{ri}]: {src} -> {dst} {port_desc} ({word})"
                        out.append(Rule(matches, Accept(), text[:COMMENT_LIMIT], (origin,)))
        return out

    def isolated_ips(self, direction: PolicyType) -> set[str]:
        isolated: set[str] = set()
        for policy in self.state.policies:
            if direction in policy.policy_types:
                isolated.update(str(p.ipv4) for p in self.sel.pods(policy.namespace,
                                                                     policy.pod_selector))
        return isolated

    def default_allow_set(self, namespace: str, direction: PolicyType,
                          isolated: set[str]) -> str:
        # An IP shared by an isolated pod and another pod stays isolated (fail closed).
        pods = [p for p in self.sel.pods_in(namespace) if p.ipv4 not in isolated]
        if direction is PolicyType.INGRESS:
            source = names.ingress_default_allow_source(namespace)
        else:
            source = names.egress_default_allow_source(namespace)
        selecting = [p.pod_selector for p in self.sel.policies_in(namespace)
                     if direction in p.policy_types]
        return self._add_set(source, SetKind.HASH_IP,
                             f"{direction.value.lower()} default-allow: namespace {namespace}",
                             lambda: self.members(pods),
                             lambda pod, _: pod.namespace == namespace and not any(
                                 s.matches(pod.label_map) for s in selecting),
                             scope=namespace)


def _merge_duplicates(rules: list[Rule]) -> tuple[Rule, ...]:
    """Identical rules from different policies become one, remembering every origin."""
    merged: dict[tuple[tuple[Match, ...], Verdict], Rule] = {}
    for rule in rules:
        key = (rule.matches, rule.verdict)
        if key in merged:
            first = merged[key]
            merged[key] = Rule(first.matches, first.verdict, first.comment,
                               first.origins + rule.origins)
        else:
            merged[key] = rule
    return tuple(merged.values())


@dataclass(frozen=True)
class CompileIndex:
    """What the incremental compiler needs to patch a ruleset for pod changes."""

    predicates: dict[str, PodPredicate]
    scopes: dict[str, str | None]
    """Set name → the only namespace whose pods it can hold (None: any namespace)."""
    named_ports_used: frozenset[tuple[str, Protocol]]


def compile_ruleset(state: ClusterState, options: Options | None = None,
                    on_set: SetListener | None = None) -> Ruleset:
    """Compile ``state`` into the desired kernel state.  Pure and deterministic."""
    return compile_with_index(state, options, on_set)[0]


def compile_with_index(state: ClusterState, options: Options | None = None,
                       on_set: SetListener | None = None) -> tuple[Ruleset, CompileIndex]:
    # A compile allocates many small objects that all live on (without the pause, the
    # collector took a third of its time at 10k pods).
    with collector_paused():
        return _compile(state, options or Options(), on_set)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused for a burst of allocation whose objects
    mostly live on (a compile, a full sync): triggered by allocation counts, it would only
    rescan them over and over.  Nothing is lost: it runs again afterwards.  Nests (only the
    outermost pause resumes it); usable as a decorator."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _compile(state: ClusterState, options: Options, on_set: SetListener | None
             ) -> tuple[Ruleset, CompileIndex]:
    c = _Compilation(state, options, on_set)
    for policy in state.policies:
        if policy.rejected:
            c.problems.append(CompileProblem(
                f"NetworkPolicy {policy.key}",
                f"rejected, its pods are isolated and nothing is allowed: {policy.rejected}"))
    per_policy = {p.key: (c.policy_rules(p, PolicyType.INGRESS),
                          c.policy_rules(p, PolicyType.EGRESS)) for p in state.policies}
    ingress = _merge_duplicates([r for rin, _ in per_policy.values() for r in rin])
    egress = _merge_duplicates([r for _, rout in per_policy.values() for r in rout])
    summaries = tuple(PolicySummary(
        p.key, tuple(t.value for t in p.policy_types),
        names.set_name(names.pod_selector_source(p.namespace, p.pod_selector)),
        tuple(pod.key for pod in c.sel.pods(p.namespace, p.pod_selector)),
        len(per_policy[p.key][0]) + len(per_policy[p.key][1]), p.rejected)
        for p in state.policies)
    isolated_in = c.isolated_ips(PolicyType.INGRESS)
    isolated_out = c.isolated_ips(PolicyType.EGRESS)
    default_rules: list[Rule] = []
    egress_default_rules: list[Rule] = []
    for ns in c.sel.namespace_names():
        comment_in = f"DefaultAllow ingress isolation for namespace: {ns}"
        comment_out = f"DefaultAllow egress isolation for namespace: {ns}"
        origin = (Origin(what=f"default-allow {ns}"),)
        in_set = c.default_allow_set(ns, PolicyType.INGRESS, isolated_in)
        out_set = c.default_allow_set(ns, PolicyType.EGRESS, isolated_out)
        default_rules.append(Rule((InSet(Direction.DST, in_set),), Accept(), comment_in, origin))
        egress_default_rules += [
            Rule((InSet(Direction.SRC, out_set),), Jump(names.EGRESS_ACCEPT_CHAIN),
                 comment_out, origin),
            Rule((InSet(Direction.SRC, out_set),), Return(), comment_out, origin)]
    custom: list[Rule] = []
    for rule in egress:
        # An egress allow only marks the packet: it may still face ingress checks.
        custom.append(Rule(rule.matches, Jump(names.EGRESS_ACCEPT_CHAIN), rule.comment,
                           rule.origins))
        custom.append(Rule(rule.matches, Return(), rule.comment, rule.origins))
    any_egress = any(PolicyType.EGRESS in p.policy_types for p in state.policies)
    chains = static_chains(options.allow_mcast, options.bridge_port, egress_drop=any_egress)
    dynamic = {
        names.DEFAULT_CHAIN: tuple(default_rules),
        names.INGRESS_CHAIN: ingress,
        names.EGRESS_DEFAULT_CHAIN: tuple(egress_default_rules),
        names.EGRESS_CUSTOM_CHAIN: tuple(custom),
    }
    chains = tuple(Chain(ch.name, dynamic.get(ch.name, ch.rules)) for ch in chains)
    ruleset = Ruleset(tuple(sorted(c.sets.values(), key=lambda s: s.name)), chains,
                      tuple(sorted(c.problems)), summaries)
    return ruleset, CompileIndex(dict(c.predicates), dict(c.scopes),
                                 frozenset(c.named_ports_used))
