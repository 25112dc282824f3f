"""Hypothesis strategies for random but realistic cluster states over a fixed set of pods.

The pods (their keys, IPs and nodes) are the caller's, e.g. the lab's; what varies is
everything a policy test can change: namespace labels, pod labels, the container ports each
pod declares (and their names), and the NetworkPolicies.  Policies are generated as API
manifests and go through :func:`npc.model.parse.parse_network_policy`, so the API server's
defaulting applies.  Only valid manifests are generated; one the parser rejects is a bug.

Vocabularies are tiny on purpose, so that selectors, names and CIDRs often hit something.
Alternatives are listed simplest first and lists may be empty, so examples shrink towards
few, plain policies.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from hypothesis.strategies import DrawFn, SearchStrategy

from npc.model.objects import NAMESPACE_NAME_LABEL, ClusterState, Protocol
from npc.model.parse import parse_namespace, parse_network_policy, parse_pod

Manifest = dict[str, Any]

NS_LABELS: dict[str, tuple[str, ...]] = {"team": ("a", "b"), "env": ("a", "b")}
POD_LABELS: dict[str, tuple[str, ...]] = {"app": ("a", "b", "c"), "tier": ("a", "b", "c")}
PROTOCOLS: tuple[str, ...] = ("TCP", "UDP", "SCTP")
PORTS: tuple[int, ...] = (80, 81)
PORT_RANGES: tuple[tuple[int, int], ...] = ((79, 80), (80, 81), (81, 90))
PORT_NAMES: tuple[str, ...] = ("http", "alt", "serve-80-tcp")
"""Names pods may give their container ports; the same name may be a different port (and
protocol) on different pods."""
UNKNOWN_PORT_NAME = "nope"
"""A valid port name that no pod declares."""
EXTERNAL_CIDR = "203.0.113.0/24"
"""A block that holds no pod (TEST-NET-3)."""
_CIDR_PREFIXES = (32, 30, 24, 16, 0)
_EXCEPT_PREFIXES = (32, 30, 28, 24, 16, 8)
_POLICY_TYPES = (["Ingress"], ["Egress"], ["Ingress", "Egress"], ["Egress", "Ingress"])
_CONDITIONS = ("Succeeded", "Failed", "hostNetwork", "no-ip", "Pending")
"""Pod conditions besides Running (Pending with an IP still takes part in policy)."""


def probes() -> SearchStrategy[tuple[int, Protocol]]:
    """A (port, protocol) to probe: {80, 81} × {TCP, UDP, SCTP}."""
    return st.tuples(st.sampled_from(PORTS), st.sampled_from(list(Protocol)))


# ---- label selectors ----
@st.composite
def _requirement(draw: DrawFn, vocab: Mapping[str, Sequence[str]]) -> Manifest:
    key = draw(st.sampled_from(sorted(vocab)))
    op = draw(st.sampled_from(("In", "NotIn", "Exists", "DoesNotExist")))
    if op in ("Exists", "DoesNotExist"):
        return {"key": key, "operator": op}
    values = draw(st.lists(st.sampled_from(vocab[key]), min_size=1, max_size=2, unique=True))
    return {"key": key, "operator": op, "values": values}


def label_selectors(vocab: Mapping[str, Sequence[str]]) -> SearchStrategy[Manifest]:
    """A metav1.LabelSelector: ``{}``, matchLabels, matchExpressions (every operator), both."""
    return st.fixed_dictionaries({}, optional={
        "matchLabels": st.fixed_dictionaries(
            {}, optional={k: st.sampled_from(v) for k, v in vocab.items()}),
        "matchExpressions": st.lists(_requirement(vocab), min_size=1, max_size=2),
    })


# ---- policy pieces ----
@st.composite
def _ip_block(draw: DrawFn, ips: Sequence[str]) -> Manifest:
    if not ips or draw(st.integers(0, 9)) == 9:
        return {"cidr": EXTERNAL_CIDR}
    ip = draw(st.sampled_from(ips))
    net = ipaddress.ip_network(f"{ip}/{draw(st.sampled_from(_CIDR_PREFIXES))}", strict=False)
    candidates = sorted({ipaddress.ip_network(f"{other}/{p}", strict=False)
                         for other in ips if ipaddress.ip_address(other) in net
                         for p in _EXCEPT_PREFIXES if p > net.prefixlen},
                        key=lambda n: (n.prefixlen, n))
    excepts = draw(st.lists(st.sampled_from(candidates), max_size=2, unique=True)) \
        if candidates else []
    block: Manifest = {"cidr": str(net)}
    if excepts:
        block["except"] = [str(e) for e in excepts]
    return block


def ip_blocks(ips: Sequence[str]) -> SearchStrategy[Manifest]:
    """An ipBlock around one of ``ips`` (/32 … 0.0.0.0/0), with excepts that are strict
    subsets of it and hold some of ``ips``; or a block that holds no pod."""
    return _ip_block(ips)


def peers(namespaces: Sequence[str], ips: Sequence[str]) -> SearchStrategy[Manifest]:
    """One from/to element: podSelector only, namespaceSelector only, both, or ipBlock."""
    pod_sel = label_selectors(POD_LABELS)
    ns_sel = label_selectors({**NS_LABELS, NAMESPACE_NAME_LABEL: tuple(namespaces)})
    return st.one_of(
        st.fixed_dictionaries({"podSelector": pod_sel}),
        st.fixed_dictionaries({"namespaceSelector": ns_sel}),
        st.fixed_dictionaries({"namespaceSelector": ns_sel, "podSelector": pod_sel}),
        st.fixed_dictionaries({"ipBlock": ip_blocks(ips)}),
    )


def port_specs() -> SearchStrategy[Manifest]:
    """One ports element: defaulted, protocol only, number, range (endPort) or name."""
    proto = st.sampled_from(PROTOCOLS)
    return st.one_of(
        st.just({}),  # TCP, every port
        st.builds(lambda p: {"protocol": p}, proto),
        st.builds(lambda n: {"port": n}, st.sampled_from(PORTS)),  # protocol defaulted
        st.builds(lambda p, n: {"protocol": p, "port": n}, proto, st.sampled_from(PORTS)),
        st.builds(lambda p, r: {"protocol": p, "port": r[0], "endPort": r[1]},
                  proto, st.sampled_from(PORT_RANGES)),
        st.builds(lambda p, n: {"protocol": p, "port": n},
                  proto, st.sampled_from((*PORT_NAMES, UNKNOWN_PORT_NAME))),
    )


def rules(peers_key: str, namespaces: Sequence[str],
          ips: Sequence[str]) -> SearchStrategy[Manifest]:
    """An ingress (``peers_key="from"``) or egress (``"to"``) rule; ``{}`` allows all."""
    return st.fixed_dictionaries({}, optional={
        peers_key: st.lists(peers(namespaces, ips), max_size=3),
        "ports": st.lists(port_specs(), max_size=3),
    })


def network_policy_manifests(name: str, namespaces: Sequence[str],
                             ips: Sequence[str]) -> SearchStrategy[Manifest]:
    """A valid NetworkPolicy manifest named ``name`` in one of ``namespaces``.

    policyTypes may be missing (defaulted from the presence of egress rules) or explicit, in
    either order; ingress/egress may be missing, ``[]`` or a list of rules (``[{}]`` allows
    all), and are present regardless of policyTypes (rules of a type not listed are inert).
    """
    spec = st.fixed_dictionaries({"podSelector": label_selectors(POD_LABELS)}, optional={
        "policyTypes": st.sampled_from(_POLICY_TYPES),
        "ingress": st.lists(rules("from", namespaces, ips), max_size=3),
        "egress": st.lists(rules("to", namespaces, ips), max_size=3),
    })
    return st.builds(
        lambda ns, s: {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                       "metadata": {"name": name, "namespace": ns}, "spec": s},
        st.sampled_from(namespaces), spec)


# ---- pods and namespaces ----
@st.composite
def _container_ports(draw: DrawFn) -> list[Manifest]:
    out: list[Manifest] = []
    used: set[str] = set()
    for proto in PROTOCOLS:
        choices = [(80, 81), (80,), (81,)] + ([] if proto == "TCP" else [()])
        for number in draw(st.sampled_from(choices)):
            cp: Manifest = {"containerPort": number, "protocol": proto}
            name = draw(st.sampled_from((None, *PORT_NAMES)))
            if name is not None and name not in used:
                used.add(name)
                cp["name"] = name
            out.append(cp)
    return out


def container_ports() -> SearchStrategy[list[Manifest]]:
    """The ports a pod declares: TCP 80 and/or 81, UDP and SCTP any of 80/81, some named
    (names unique within the pod) from PORT_NAMES."""
    return _container_ports()


@dataclass(frozen=True)
class ClusterManifests:
    """A generated cluster as API manifests (what a lab applies) and as a ClusterState."""

    namespaces: tuple[Manifest, ...]
    pods: tuple[Manifest, ...]
    policies: tuple[Manifest, ...]

    def state(self) -> ClusterState:
        policies = []
        for m in self.policies:
            policy, errors = parse_network_policy(m)
            if errors:
                raise AssertionError(f"generated a manifest the parser rejects: {errors}\n{m}")
            policies.append(policy)
        return ClusterState(tuple(parse_namespace(m) for m in self.namespaces),
                            tuple(parse_pod(m) for m in self.pods), tuple(policies))


def cluster_manifests(pods: Sequence[tuple[str, str]], *, max_policies: int = 4,
                      nodes: Mapping[str, str] | None = None,
                      non_participants: bool = False) -> SearchStrategy[ClusterManifests]:
    """Manifests for a cluster holding exactly ``pods`` ((key "ns/name", IPv4) pairs).

    ``nodes`` maps pod keys to node names (default: no node).  With ``non_participants``
    some pods are also made Succeeded, Failed, Pending, hostNetwork or IP-less.
    """
    for key, ip in pods:
        if key.count("/") != 1:
            raise ValueError(f"pod key {key!r} is not namespace/name")
        ipaddress.IPv4Address(ip)
    namespaces = sorted({key.split("/")[0] for key, _ in pods})
    ips = [ip for _, ip in pods]
    node_of = nodes or {}

    def namespace(name: str) -> SearchStrategy[Manifest]:
        return st.builds(lambda labels: {"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": name, "labels": labels}},
                         st.fixed_dictionaries({}, optional={
                             k: st.sampled_from(v) for k, v in NS_LABELS.items()}))

    def pod(key: str, ip: str) -> SearchStrategy[Manifest]:
        ns, name = key.split("/")
        condition = st.sampled_from(("Running", *_CONDITIONS)) if non_participants \
            else st.just("Running")

        def build(labels: dict[str, str], ports: list[Manifest], cond: str) -> Manifest:
            status: Manifest = {"phase": "Running" if cond in ("hostNetwork", "no-ip") else cond}
            if cond != "no-ip":
                status["podIP"] = ip
                status["podIPs"] = [{"ip": ip}]
            spec: Manifest = {"containers": [
                {"name": f"cont-{p['containerPort']}-{p['protocol'].lower()}", "ports": [p]}
                for p in ports]}
            if key in node_of:
                spec["nodeName"] = node_of[key]
            if cond == "hostNetwork":
                spec["hostNetwork"] = True
            return {"apiVersion": "v1", "kind": "Pod", "spec": spec, "status": status,
                    "metadata": {"namespace": ns, "name": name, "labels": labels}}
        return st.builds(build, st.fixed_dictionaries({}, optional={
            k: st.sampled_from(v) for k, v in POD_LABELS.items()}), container_ports(), condition)

    def named(policies: list[Manifest]) -> tuple[Manifest, ...]:
        return tuple({**m, "metadata": {**m["metadata"], "name": f"np-{i}"}}
                     for i, m in enumerate(policies))

    return st.builds(
        ClusterManifests,
        st.tuples(*(namespace(n) for n in namespaces)),
        st.tuples(*(pod(key, ip) for key, ip in pods)),
        st.lists(network_policy_manifests("np", namespaces, ips),
                 max_size=max_policies).map(named))


def cluster_states(pods: Sequence[tuple[str, str]], *, max_policies: int = 4,
                   nodes: Mapping[str, str] | None = None,
                   non_participants: bool = False) -> SearchStrategy[ClusterState]:
    """A ClusterState over exactly ``pods`` ((key, IPv4) pairs); see cluster_manifests."""
    return cluster_manifests(pods, max_policies=max_policies, nodes=nodes,
                             non_participants=non_participants).map(lambda m: m.state())
