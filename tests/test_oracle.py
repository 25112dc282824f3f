"""The reference evaluator (tests/oracle.py) against hand-made cases, one per spec corner,
and a smoke test of the random cluster states of tests/strategies.py."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npc.model.objects import (
    NAMESPACE_NAME_LABEL,
    ClusterState,
    LabelSelector,
    NetworkPolicy,
    PolicyType,
    Protocol,
)
from npc.model.parse import parse_namespace, parse_network_policy, parse_pod
from tests.oracle import allowed, expected_matrix
from tests.strategies import ClusterManifests, cluster_manifests, cluster_states, probes

Manifest = dict[str, Any]

# ---- a small fixed cluster ----
# x: team=a        y: team=b, env=a        z: (only its name label)
NAMESPACES = {"x": {"team": "a"}, "y": {"team": "b", "env": "a"}, "z": {}}
# key: (ip, labels, container ports as (number, protocol, name), extra)
PODS: dict[str, tuple[str, dict[str, str], list[tuple[int, str, str]], Manifest]] = {
    "x/a": ("10.32.0.10", {"app": "a"},
            [(80, "TCP", "http"), (81, "TCP", ""), (80, "UDP", "dns"), (80, "SCTP", "")], {}),
    "x/b": ("10.32.0.11", {"app": "b", "tier": "a"}, [(80, "TCP", ""), (81, "TCP", "http")], {}),
    "y/a": ("10.32.1.10", {"app": "a"}, [(80, "TCP", "http"), (81, "UDP", "alt")], {}),
    "y/b": ("10.32.1.11", {"app": "b", "tier": "b"}, [(81, "TCP", "http")], {}),
    "z/a": ("10.32.2.10", {"app": "a"}, [], {}),
    "x/done": ("10.32.0.12", {"app": "a"}, [(80, "TCP", "http")],
               {"status": {"phase": "Succeeded"}}),
    "x/host": ("172.18.0.2", {"app": "a"}, [(80, "TCP", "http")],
               {"spec": {"hostNetwork": True}}),
}
EXTERNAL = "203.0.113.7"


def _pod_manifest(key: str) -> Manifest:
    ip, labels, ports, extra = PODS[key]
    ns, name = key.split("/")
    spec: Manifest = {"containers": [{"name": "c", "ports": [
        {"containerPort": n, "protocol": p, **({"name": pn} if pn else {})}
        for n, p, pn in ports]}], **extra.get("spec", {})}
    status: Manifest = {"phase": "Running", "podIP": ip, **extra.get("status", {})}
    return {"metadata": {"namespace": ns, "name": name, "labels": labels},
            "spec": spec, "status": status}


def np(ns: str, spec: Manifest, name: str = "p") -> NetworkPolicy:
    """A policy from its manifest, which must be valid."""
    policy, errors = parse_network_policy(
        {"metadata": {"namespace": ns, "name": name}, "spec": spec})
    assert not errors, errors
    return policy


def cluster(*policies: NetworkPolicy) -> ClusterState:
    return ClusterState(
        tuple(parse_namespace({"metadata": {"name": n, "labels": lb}})
              for n, lb in NAMESPACES.items()),
        tuple(parse_pod(_pod_manifest(k)) for k in PODS),
        tuple(policies))


def sel(**labels: str) -> Manifest:
    return {"matchLabels": labels}


def expr(key: str, op: str, *values: str) -> Manifest:
    e: Manifest = {"key": key, "operator": op}
    if values:
        e["values"] = list(values)
    return {"matchExpressions": [e]}


ALL: Manifest = {}
DENY_INGRESS = {"podSelector": ALL, "policyTypes": ["Ingress"]}
DENY_EGRESS = {"podSelector": ALL, "policyTypes": ["Egress"]}


def ingress(*rules: Manifest, target: Manifest = ALL) -> Manifest:
    return {"podSelector": target, "policyTypes": ["Ingress"], "ingress": list(rules)}


def egress(*rules: Manifest, target: Manifest = ALL) -> Manifest:
    return {"podSelector": target, "policyTypes": ["Egress"], "egress": list(rules)}


def from_(*peers: Manifest, ports: list[Manifest] | None = None) -> Manifest:
    return {"from": list(peers), **({"ports": ports} if ports is not None else {})}


def to(*peers: Manifest, ports: list[Manifest] | None = None) -> Manifest:
    return {"to": list(peers), **({"ports": ports} if ports is not None else {})}


def ports(*specs: Manifest) -> Manifest:
    return {"ports": list(specs)}


def case(id: str, policies: list[NetworkPolicy], src: str, dst: str, expected: bool,
         port: int = 80, protocol: str = "TCP") -> Any:
    return pytest.param(policies, src, dst, port, Protocol(protocol), expected, id=id)


TEAM_B: Manifest = {"namespaceSelector": sel(team="b")}
TEAM_B_AND_APP_A: Manifest = {"namespaceSelector": sel(team="b"), "podSelector": sel(app="a")}

INVALID, _ = parse_network_policy({"metadata": {"namespace": "x", "name": "bad"}, "spec": {
    "podSelector": sel(app="a"), "ingress": [{}, ports({"port": 0})]}})

CASES = [
    # -- isolation --
    case("no-policy-allows-all", [], "x/b", "x/a", True),
    case("default-deny-ingress-denies", [np("x", DENY_INGRESS)], "x/b", "x/a", False),
    case("default-deny-ingress-from-other-ns", [np("x", DENY_INGRESS)], "y/a", "x/a", False),
    case("default-deny-ingress-leaves-egress", [np("x", DENY_INGRESS)], "x/a", "y/a", True),
    case("empty-ingress-list-denies", [np("x", {"podSelector": ALL, "ingress": []})],
         "x/b", "x/a", False),
    case("defaulted-types-ingress-only", [np("x", {"podSelector": ALL})], "x/b", "x/a", False),
    case("allow-all-rule", [np("x", ingress({}))], EXTERNAL, "x/a", True),
    case("default-deny-egress", [np("x", DENY_EGRESS)], "x/a", "y/a", False),
    case("default-deny-egress-leaves-ingress", [np("x", DENY_EGRESS)], "y/a", "x/a", True),
    case("egress-rules-default-types-both", [np("x", {"podSelector": ALL, "egress": [{}]})],
         "y/a", "x/a", False),
    case("egress-rules-ignored-if-type-ingress",
         [np("x", {"podSelector": ALL, "policyTypes": ["Ingress"],
                   "egress": [to({"podSelector": ALL})]})],
         "x/a", "y/a", True),
    case("ingress-rules-ignored-if-type-egress",
         [np("x", {"podSelector": ALL, "policyTypes": ["Egress"], "ingress": [{}]})],
         "y/a", "x/a", True),
    case("policy-selecting-no-pods-does-nothing",
         [np("x", {"podSelector": sel(app="c"), "policyTypes": ["Ingress", "Egress"]})],
         "x/b", "x/a", True),
    case("policy-selects-only-its-namespace", [np("y", DENY_INGRESS)], "x/b", "x/a", True),
    case("target-selector-spares-others", [np("x", {"podSelector": sel(app="b")})],
         "y/a", "x/a", True),
    case("target-selector-isolates-match", [np("x", {"podSelector": sel(app="b")})],
         "y/a", "x/b", False),
    # -- peers --
    case("pod-selector-empty-own-ns", [np("x", ingress(from_({"podSelector": ALL})))],
         "x/b", "x/a", True),
    case("pod-selector-empty-not-other-ns", [np("x", ingress(from_({"podSelector": ALL})))],
         "y/a", "x/a", False),
    case("pod-selector-labels-own-ns-only",
         [np("x", ingress(from_({"podSelector": sel(app="a")}), target=sel(app="b")))],
         "y/a", "x/b", False),
    case("pod-selector-labels-match",
         [np("x", ingress(from_({"podSelector": sel(app="a")}), target=sel(app="b")))],
         "x/a", "x/b", True),
    case("ns-selector-empty-all-namespaces", [np("x", ingress(from_({"namespaceSelector": ALL})))],
         "z/a", "x/a", True),
    case("ns-selector-empty-own-namespace-too",
         [np("x", ingress(from_({"namespaceSelector": ALL})))], "x/b", "x/a", True),
    case("ns-selector-empty-not-external",
         [np("x", ingress(from_({"namespaceSelector": ALL})))], EXTERNAL, "x/a", False),
    case("ns-selector-labels", [np("x", ingress(from_({"namespaceSelector": sel(team="b")})))],
         "y/b", "x/a", True),
    case("ns-selector-labels-miss", [np("x", ingress(from_({"namespaceSelector": sel(team="b")})))],
         "z/a", "x/a", False),
    case("ns-selector-name-label",
         [np("x", ingress(from_({"namespaceSelector": sel(**{NAMESPACE_NAME_LABEL: "z"})})))],
         "z/a", "x/a", True),
    case("both-selectors-and-match",
         [np("x", ingress(from_(TEAM_B_AND_APP_A)))],
         "y/a", "x/a", True),
    case("both-selectors-and-wrong-pod",
         [np("x", ingress(from_(TEAM_B_AND_APP_A)))],
         "y/b", "x/a", False),
    case("both-selectors-and-wrong-ns",
         [np("x", ingress(from_(TEAM_B_AND_APP_A)))],
         "z/a", "x/a", False),
    case("two-peers-or",
         [np("x", ingress(from_(TEAM_B, {"podSelector": sel(app="a")})))],
         "y/b", "x/b", True),
    case("two-peers-or-neither",
         [np("x", ingress(from_(TEAM_B, {"podSelector": sel(app="a")})))],
         "z/a", "x/b", False),
    # -- matchExpressions (peers in any namespace) --
    *[case(f"expr-{op}-{'-'.join(vals) or 'none'}-{src.replace('/', '')}",
           [np("x", ingress(from_({"namespaceSelector": ALL, "podSelector": expr(k, op, *vals)})))],
           src, "x/a", ok)
      for k, op, vals, src, ok in [
          ("app", "In", ("a", "c"), "y/a", True),
          ("app", "In", ("a", "c"), "y/b", False),
          ("tier", "NotIn", ("b",), "y/a", True),  # lacks the key: NotIn matches
          ("tier", "NotIn", ("b",), "x/b", True),
          ("tier", "NotIn", ("b",), "y/b", False),
          ("tier", "Exists", (), "y/b", True),
          ("tier", "Exists", (), "y/a", False),
          ("tier", "DoesNotExist", (), "y/a", True),
          ("tier", "DoesNotExist", (), "y/b", False),
      ]],
    case("ns-expr-notin-lacking-key",
         [np("x", ingress(from_({"namespaceSelector": expr("team", "NotIn", "a")})))],
         "z/a", "x/a", True),
    case("ns-expr-notin-excluded",
         [np("x", ingress(from_({"namespaceSelector": expr("team", "NotIn", "a")})))],
         "x/b", "x/a", False),
    case("target-expr-doesnotexist-isolates",
         [np("x", {"podSelector": expr("tier", "DoesNotExist")})], "y/a", "x/a", False),
    case("target-expr-doesnotexist-spares",
         [np("x", {"podSelector": expr("tier", "DoesNotExist")})], "y/a", "x/b", True),
    # -- ipBlock --
    *[case(f"ipblock-except-{src.replace('/', '').replace('.', '_')}",
           [np("x", ingress(from_({"ipBlock": {"cidr": "10.32.0.0/16",
                                               "except": ["10.32.1.0/24"]}})))],
           src, "x/a", ok)
      for src, ok in [("z/a", True), ("y/a", False), ("x/b", True), ("10.32.9.9", True),
                      ("10.32.1.99", False), (EXTERNAL, False)]],
    case("ipblock-slash32-pod", [np("x", ingress(from_({"ipBlock": {"cidr": "10.32.1.10/32"}})))],
         "y/a", "x/a", True),
    case("ipblock-everything-but", [np("x", ingress(from_(
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.32.0.8/30"]}})))], "x/b", "x/a", False),
    case("ipblock-everything-but-external", [np("x", ingress(from_(
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.32.0.8/30"]}})))], EXTERNAL, "x/a", True),
    case("egress-ipblock-external", [np("x", egress(to({"ipBlock": {"cidr": "203.0.113.0/24"}})))],
         "x/a", EXTERNAL, True),
    case("egress-ipblock-other-external",
         [np("x", egress(to({"ipBlock": {"cidr": "203.0.113.0/24"}})))], "x/a", "8.8.8.8", False),
    case("egress-ipblock-not-pod", [np("x", egress(to({"ipBlock": {"cidr": "203.0.113.0/24"}})))],
         "x/a", "y/a", False),
    case("egress-pod-selector-not-external", [np("x", egress(to({"namespaceSelector": ALL})))],
         "x/a", EXTERNAL, False),
    # -- ports --
    case("port-number-match", [np("x", ingress(ports({"port": 80})))], "y/a", "x/a", True),
    case("port-number-miss", [np("x", ingress(ports({"port": 80})))], "y/a", "x/a", False, 81),
    case("port-empty-peers-any-source", [np("x", ingress(ports({"port": 80})))],
         EXTERNAL, "x/a", True),
    case("port-and-peer-both-needed",
         [np("x", ingress(from_({"podSelector": ALL}, ports=[{"port": 81}])))], "x/b", "x/a",
         False),
    case("endport-inclusive-end", [np("x", ingress(ports({"port": 80, "endPort": 81})))],
         "y/a", "x/a", True, 81),
    case("endport-inclusive-start", [np("x", ingress(ports({"port": 81, "endPort": 90})))],
         "y/a", "x/a", True, 81),
    case("endport-range-miss", [np("x", ingress(ports({"port": 79, "endPort": 80})))],
         "y/a", "x/a", False, 81),
    case("endport-wrong-protocol",
         [np("x", ingress(ports({"protocol": "UDP", "port": 80, "endPort": 81})))],
         "y/a", "x/a", False, 81),
    case("named-port-x-a-is-80", [np("x", ingress(ports({"port": "http"})))],
         "y/a", "x/a", True, 80),
    case("named-port-x-a-not-81", [np("x", ingress(ports({"port": "http"})))],
         "y/a", "x/a", False, 81),
    case("named-port-x-b-is-81", [np("x", ingress(ports({"port": "http"})))],
         "y/a", "x/b", True, 81),
    case("named-port-x-b-not-80", [np("x", ingress(ports({"port": "http"})))],
         "y/a", "x/b", False, 80),
    case("named-port-unknown", [np("x", ingress(ports({"port": "nope"})))],
         "y/a", "x/a", False, 80),
    case("named-port-protocol-mismatch",
         [np("x", ingress(ports({"protocol": "UDP", "port": "http"})))],
         "y/a", "x/a", False, 80, "UDP"),
    case("named-port-udp", [np("x", ingress(ports({"protocol": "UDP", "port": "dns"})))],
         "y/a", "x/a", True, 80, "UDP"),
    case("named-port-udp-not-tcp", [np("x", ingress(ports({"protocol": "UDP", "port": "dns"})))],
         "y/a", "x/a", False, 80, "TCP"),
    case("egress-named-port-dst-pod", [np("x", egress(ports({"port": "http"})))],
         "x/a", "y/b", True, 81),
    case("egress-named-port-dst-pod-miss", [np("x", egress(ports({"port": "http"})))],
         "x/a", "y/b", False, 80),
    case("egress-named-port-not-external", [np("x", egress(ports({"port": "http"})))],
         "x/a", EXTERNAL, False, 80),
    case("egress-named-port-not-hostnetwork", [np("y", egress(ports({"port": "http"})))],
         "y/a", "x/host", False, 80),
    case("sctp-only-isolates-tcp", [np("x", ingress(ports({"protocol": "SCTP"})))],
         "y/a", "x/a", False, 80, "TCP"),
    case("sctp-only-allows-sctp", [np("x", ingress(ports({"protocol": "SCTP"})))],
         "y/a", "x/a", True, 81, "SCTP"),
    case("udp-only-not-tcp", [np("x", ingress(ports({"protocol": "UDP", "port": 80})))],
         "y/a", "x/a", False, 80, "TCP"),
    case("udp-only-allows-udp", [np("x", ingress(ports({"protocol": "UDP", "port": 80})))],
         "y/a", "x/a", True, 80, "UDP"),
    case("protocol-defaults-tcp", [np("x", ingress(ports({"port": 80})))],
         "y/a", "x/a", False, 80, "UDP"),
    case("port-list-or", [np("x", ingress(ports({"protocol": "UDP"}, {"port": 81})))],
         "y/a", "x/a", True, 81),
    # -- additivity and both directions --
    case("policies-additive", [np("x", DENY_INGRESS, "deny"), np("x", ingress(from_(TEAM_B)), "y")],
         "y/a", "x/a", True),
    case("policies-additive-rest-denied",
         [np("x", DENY_INGRESS, "deny"), np("x", ingress(from_(TEAM_B)), "y")],
         "z/a", "x/a", False),
    case("policies-additive-ports", [np("x", ingress(ports({"port": 80})), "p80"),
                                     np("x", ingress(ports({"port": 81})), "p81")],
         "y/a", "x/a", True, 81),
    case("egress-allows-ingress-denies",
         [np("x", egress(to({"namespaceSelector": sel(team="b")}))), np("y", DENY_INGRESS)],
         "x/a", "y/a", False),
    case("ingress-allows-egress-denies",
         [np("x", DENY_EGRESS), np("y", ingress(from_({"namespaceSelector": sel(team="a")})))],
         "x/a", "y/a", False),
    case("egress-and-ingress-allow",
         [np("x", egress(to({"namespaceSelector": sel(team="b")}))),
          np("y", ingress(from_({"namespaceSelector": sel(team="a")})))],
         "x/a", "y/a", True),
    # -- pods that take no part --
    case("succeeded-never-isolated-ingress", [np("x", DENY_INGRESS)], "y/a", "x/done", True),
    case("succeeded-never-isolated-egress", [np("x", DENY_EGRESS)], "x/done", "y/a", True),
    case("hostnetwork-never-isolated", [np("x", DENY_INGRESS)], "y/a", "x/host", True),
    case("succeeded-never-selected",
         [np("y", ingress(from_({"namespaceSelector": ALL})))], "x/done", "y/a", False),
    case("hostnetwork-never-selected",
         [np("y", ingress(from_({"namespaceSelector": ALL, "podSelector": ALL})))],
         "x/host", "y/a", False),
    case("succeeded-ipblock-matches-ip",
         [np("y", ingress(from_({"ipBlock": {"cidr": "10.32.0.12/32"}})))], "x/done", "y/a", True),
    case("hostnetwork-ipblock-matches-node-ip",
         [np("y", ingress(from_({"ipBlock": {"cidr": "172.18.0.0/16"}})))], "x/host", "y/a", True),
    # -- invalid policies fail closed --
    case("rejected-policy-isolates", [INVALID], "x/b", "x/a", False),
    case("rejected-policy-target-only", [INVALID], "x/a", "x/b", True),
    case("rejected-policy-ignores-rules",
         [NetworkPolicy("x", "r", LabelSelector(), (PolicyType.INGRESS,), ingress=np(
             "x", ingress({})).ingress, rejected="spec.ingress[0]: broken")],
         "y/a", "x/a", False),
    case("rejected-policy-other-direction", [INVALID], "x/a", "y/a", True),
]


def test_invalid_fixture_is_rejected() -> None:
    assert INVALID.rejected and INVALID.policy_types == (PolicyType.INGRESS,)


@pytest.mark.parametrize(("policies", "src", "dst", "port", "protocol", "expected"), CASES)
def test_allowed(policies: list[NetworkPolicy], src: str, dst: str, port: int,
                 protocol: Protocol, expected: bool) -> None:
    assert allowed(cluster(*policies), src, dst, port, protocol) is expected


def test_unknown_pod_is_an_error() -> None:
    with pytest.raises(KeyError):
        allowed(cluster(), "x/nope", "x/a", 80, Protocol.TCP)


def test_expected_matrix_pairs() -> None:
    state = cluster(np("x", DENY_INGRESS))
    keys = ["x/a", "x/b", "y/a"]
    matrix = expected_matrix(state, keys, 80, Protocol.TCP)
    assert matrix == {("x/a", "x/b"): False, ("x/a", "y/a"): True, ("x/b", "x/a"): False,
                      ("x/b", "y/a"): True, ("y/a", "x/a"): False, ("y/a", "x/b"): False}


# ---- the random cluster states ----
LAB_PODS = [(f"{ns}/{p}", f"10.32.{i}.{10 + j}")
            for i, ns in enumerate("xyz") for j, p in enumerate("abc")]
LAB_KEYS = [k for k, _ in LAB_PODS]


def _allow_everything(state: ClusterState) -> ClusterState:
    opened = tuple(np(ns.name, {"podSelector": ALL, "policyTypes": ["Ingress", "Egress"],
                                "ingress": [{}], "egress": [{}]}, "zz-allow-all")
                   for ns in state.namespaces)
    return ClusterState(state.namespaces, state.pods, state.policies + opened)


@settings(max_examples=200, deadline=None)
@given(cluster_manifests(LAB_PODS, non_participants=True, nodes={"x/a": "n1"}), probes())
def test_generated_states_are_valid(manifests: ClusterManifests,
                                    probe: tuple[int, Protocol]) -> None:
    state = manifests.state()
    assert [p.key for p in state.pods] == sorted(LAB_KEYS)
    assert {ns.name for ns in state.namespaces} == {"x", "y", "z"}
    assert all(not p.rejected for p in state.policies)
    assert len(state.policies) == len(manifests.policies) <= 4
    matrix = expected_matrix(state, LAB_KEYS, *probe)
    assert len(matrix) == len(LAB_KEYS) * (len(LAB_KEYS) - 1)
    # Policies only ever take away from "everything allowed", and allow-all policies
    # in every namespace give everything back.
    bare = ClusterState(state.namespaces, state.pods)
    opened = _allow_everything(state)
    for src, dst in matrix:
        assert allowed(bare, src, dst, *probe)
        assert allowed(opened, src, dst, *probe)


@settings(max_examples=200, deadline=None)
@given(cluster_states(LAB_PODS), probes(), st.sampled_from(LAB_KEYS),
       st.sampled_from(["203.0.113.7", "10.32.1.10", "10.32.200.1"]))
def test_oracle_never_raises_on_external(state: ClusterState, probe: tuple[int, Protocol],
                                         pod: str, ip: str) -> None:
    assert all(p.ipv4 is not None for p in state.pods)  # lab pods all take part
    assert isinstance(allowed(state, pod, ip, *probe), bool)
    assert isinstance(allowed(state, ip, pod, *probe), bool)
