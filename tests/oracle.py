"""A reference evaluator for Kubernetes NetworkPolicy (networking.k8s.io/v1), from the spec.

Deliberately naive: it decides one connection at a time by reading the policies as written,
with no sets, no caching and no code shared with the compiler, so it can be the oracle the
compiled rules are checked against.  Every branch cites the rule of the API reference
(https://kubernetes.io/docs/concepts/services-networking/network-policies/) it implements.

An endpoint is a pod key ``"namespace/name"`` (which must exist in the state) or a bare IP
address (outside the cluster).  A pod that takes no part in policy (``Pod.ipv4 is None``: no
IPv4, Succeeded/Failed, hostNetwork) is treated exactly like a bare IP: its own side is never
isolated, no selector ever matches it and it has no named ports; an ipBlock may match its IP.
"""

from __future__ import annotations

import ipaddress

from npc.model.objects import (
    ClusterState,
    LabelSelector,
    NetworkPolicy,
    Operator,
    Peer,
    Pod,
    PolicyType,
    PortSpec,
    Protocol,
    Rule,
)

Endpoint = str
"""A pod key ``"namespace/name"`` or a bare IP address."""


def allowed(state: ClusterState, src: Endpoint, dst: Endpoint, port: int,
            protocol: Protocol) -> bool:
    """Whether ``src`` may open a connection to ``dst`` on ``port``/``protocol``.

    Spec: "for a connection from a source pod to a destination pod to be allowed, both the
    egress policy on the source pod and the ingress policy on the destination pod need to
    allow the connection."
    """
    src_pod, src_ip = _resolve(state, src)
    dst_pod, dst_ip = _resolve(state, dst)
    return (_side_allows(state, src_pod, PolicyType.EGRESS, dst_pod, dst_ip, dst_pod, port,
                         protocol)
            and _side_allows(state, dst_pod, PolicyType.INGRESS, src_pod, src_ip, dst_pod, port,
                             protocol))


def expected_matrix(state: ClusterState, pods: list[str], port: int,
                    protocol: Protocol) -> dict[tuple[str, str], bool]:
    """``allowed`` for every ordered pair of distinct pod keys."""
    return {(s, d): allowed(state, s, d, port, protocol) for s in pods for d in pods if s != d}


def _resolve(state: ClusterState, endpoint: Endpoint) -> tuple[Pod | None, str | None]:
    """(the pod if it takes part in policy, else None; the IP address its traffic carries)."""
    if "/" not in endpoint:
        return None, str(ipaddress.ip_address(endpoint))  # external: an address, no pod
    pod = next((p for p in state.pods if p.key == endpoint), None)
    if pod is None:
        raise KeyError(f"no pod {endpoint!r} in the cluster state")
    if pod.ipv4 is None:  # not a participant: only its address (if any) is left
        return None, next(iter(pod.ips), None)
    return pod, pod.ipv4


def _side_allows(state: ClusterState, target: Pod | None, direction: PolicyType,
                 peer_pod: Pod | None, peer_ip: str | None, dst_pod: Pod | None, port: int,
                 protocol: Protocol) -> bool:
    """Whether ``target``'s policies of ``direction`` let the connection through."""
    if target is None:
        return True  # no policy ever selects an external address or a non-participant
    # Spec: "a pod is isolated for ingress [egress] if there is any NetworkPolicy that both
    # selects the pod and has 'Ingress' ['Egress'] in its policyTypes."
    selecting = [p for p in state.policies if p.namespace == target.namespace
                 and direction in p.policy_types and _selects(p.pod_selector, target.labels)]
    if not selecting:
        return True  # "By default, a pod is non-isolated": all traffic allowed
    # Spec: "policies are additive": the allowed connections are the union of the rules of
    # all selecting policies.  A rejected (invalid) policy isolates but allows nothing.
    return any(_rule_allows(state, policy, rule, peer_pod, peer_ip, dst_pod, port, protocol)
               for policy in selecting if not policy.rejected
               for rule in (policy.ingress if direction is PolicyType.INGRESS else policy.egress))


def _rule_allows(state: ClusterState, policy: NetworkPolicy, rule: Rule, peer_pod: Pod | None,
                 peer_ip: str | None, dst_pod: Pod | None, port: int, protocol: Protocol) -> bool:
    """Spec: a rule matches traffic that matches both its from/to and its ports sections;
    an empty or missing from/to matches all peers, empty or missing ports all ports."""
    peers_ok = not rule.peers or any(_peer_matches(state, policy, peer, peer_pod, peer_ip)
                                     for peer in rule.peers)
    ports_ok = not rule.ports or any(_port_matches(spec, dst_pod, port, protocol)
                                     for spec in rule.ports)
    return peers_ok and ports_ok


def _peer_matches(state: ClusterState, policy: NetworkPolicy, peer: Peer, pod: Pod | None,
                  ip: str | None) -> bool:
    if peer.ip_block is not None:
        # ipBlock: "particular IP CIDR ranges ... except" — the address is in cidr and in no
        # except (applied to pod addresses too: this is a plain address match).
        if ip is None:
            return False
        addr = ipaddress.ip_address(ip)
        return (addr in ipaddress.ip_network(peer.ip_block.cidr, strict=False)
                and not any(addr in ipaddress.ip_network(e, strict=False)
                            for e in peer.ip_block.excepts))
    if peer.pod_selector is None and peer.namespace_selector is None:
        raise ValueError(f"{policy.key}: a peer with no selector and no ipBlock is invalid")
    if pod is None:
        return False  # selectors select pods, never addresses or non-participants
    if peer.namespace_selector is None:
        # podSelector alone: "selects particular Pods in the same namespace as the policy"
        in_namespace = pod.namespace == policy.namespace
    else:
        # namespaceSelector: "selects particular namespaces ... all Pods" in them
        ns = state.namespace(pod.namespace)
        in_namespace = _selects(peer.namespace_selector, ns.labels if ns else ())
    # Both given: "selects particular Pods within particular namespaces" (AND).
    return in_namespace and (peer.pod_selector is None
                             or _selects(peer.pod_selector, pod.labels))


def _port_matches(spec: PortSpec, dst_pod: Pod | None, port: int, protocol: Protocol) -> bool:
    if spec.protocol is not protocol:
        return False  # "protocol ... which traffic must match" (defaults to TCP)
    if spec.port is None:
        return True  # "If this field is not provided, this matches all port names and numbers"
    if isinstance(spec.port, str):
        # A named port is the destination pod's container port of that name and protocol;
        # a destination that is no pod (or lacks the name) has no such port.
        return dst_pod is not None and any(
            cp.name == spec.port and cp.protocol is protocol and cp.port == port
            for cp in dst_pod.container_ports)
    # endPort: "the range of ports from port to endPort, inclusive"
    end = spec.end_port if spec.end_port is not None else spec.port
    return spec.port <= port <= end


def _selects(selector: LabelSelector, labels: tuple[tuple[str, str], ...]) -> bool:
    """metav1.LabelSelector: all requirements hold (so ``{}`` selects everything)."""
    have = dict(labels)
    for req in selector.requirements:
        if req.operator is Operator.IN:
            ok = req.key in have and have[req.key] in req.values
        elif req.operator is Operator.NOT_IN:
            ok = req.key not in have or have[req.key] not in req.values  # lacking key matches
        elif req.operator is Operator.EXISTS:
            ok = req.key in have
        else:  # DoesNotExist
            ok = req.key not in have
        if not ok:
            return False
    return True
