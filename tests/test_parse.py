"""Parsing Kubernetes objects into the model: the API server's defaulting, its validation
(every rejection names the field), pods, and loading files of YAML/JSON documents."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from npc.model.load import Loaded, load_files, load_texts
from npc.model.objects import (
    NAMESPACE_NAME_LABEL,
    ContainerPort,
    IPBlock,
    LabelSelector,
    NetworkPolicy,
    Operator,
    Peer,
    PolicyType,
    PortSpec,
    Protocol,
    Requirement,
    Rule,
)
from npc.model.parse import (
    FieldError,
    Invalid,
    parse_namespace,
    parse_network_policy,
    parse_pod,
    parse_selector,
)

Manifest = dict[str, Any]

INGRESS = (PolicyType.INGRESS,)
BOTH = (PolicyType.INGRESS, PolicyType.EGRESS)
WEB = {"matchLabels": {"app": "web"}}
WEB_SELECTOR = LabelSelector((Requirement("app", Operator.IN, ("web",), equals=True),))


def parse(spec: Any, ns: str = "shop", name: str = "p") -> tuple[NetworkPolicy, list[FieldError]]:
    return parse_network_policy({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                 "metadata": {"namespace": ns, "name": name}, "spec": spec})


def valid(spec: Manifest) -> NetworkPolicy:
    policy, errors = parse(spec)
    assert errors == []
    assert policy.rejected == ""
    return policy


def selector(raw: Manifest) -> LabelSelector:
    return parse_selector(raw, "sel")


# ---- defaulting -------------------------------------------------------------------------
@pytest.mark.parametrize(("spec", "types"), [
    pytest.param({"podSelector": {}}, INGRESS, id="omitted-no-rules"),
    pytest.param({"podSelector": {}, "ingress": [{}]}, INGRESS, id="omitted-ingress-rules"),
    pytest.param({"podSelector": {}, "egress": [{}]}, BOTH, id="omitted-with-egress"),
    pytest.param({"podSelector": {}, "egress": []}, INGRESS, id="omitted-egress-empty-list"),
    pytest.param({"podSelector": {}, "egress": None}, INGRESS, id="omitted-egress-null"),
    pytest.param({"podSelector": {}, "policyTypes": [], "egress": [{}]}, BOTH,
                 id="empty-list-is-defaulted"),
    pytest.param({"podSelector": {}, "policyTypes": ["Egress"]}, (PolicyType.EGRESS,),
                 id="explicit-egress-only"),
    pytest.param({"podSelector": {}, "policyTypes": ["Ingress"], "egress": [{}]}, INGRESS,
                 id="explicit-ingress-ignores-egress-rules"),
    pytest.param({"podSelector": {}, "policyTypes": ["Egress", "Ingress"]}, BOTH,
                 id="explicit-both-ordered"),
])
def test_policy_types_defaulting(spec: Manifest, types: tuple[PolicyType, ...]) -> None:
    assert valid(spec).policy_types == types


@pytest.mark.parametrize(("port", "expected"), [
    pytest.param({"port": 80}, PortSpec(Protocol.TCP, 80), id="protocol-omitted"),
    pytest.param({"port": 80, "protocol": None}, PortSpec(Protocol.TCP, 80), id="protocol-null"),
    pytest.param({"protocol": "UDP", "port": 53}, PortSpec(Protocol.UDP, 53), id="udp"),
    pytest.param({"protocol": "SCTP"}, PortSpec(Protocol.SCTP), id="sctp-every-port"),
    pytest.param({}, PortSpec(Protocol.TCP), id="empty-is-every-tcp-port"),
    pytest.param({"port": "http"}, PortSpec(Protocol.TCP, "http"), id="named"),
    pytest.param({"port": 80, "endPort": 80}, PortSpec(Protocol.TCP, 80, 80),
                 id="endPort-equal-to-port"),
    pytest.param({"port": 80, "endPort": 90}, PortSpec(Protocol.TCP, 80, 90), id="range"),
    pytest.param({"port": 1, "endPort": 65535}, PortSpec(Protocol.TCP, 1, 65535),
                 id="full-range"),
])
def test_ports(port: Manifest, expected: PortSpec) -> None:
    policy = valid({"podSelector": {}, "ingress": [{"ports": [port]}]})
    assert policy.ingress == (Rule((), (expected,)),)


def test_namespace_gets_its_name_label_over_a_user_value() -> None:
    ns = parse_namespace({"kind": "Namespace", "metadata": {
        "name": "shop", "labels": {"team": "a", NAMESPACE_NAME_LABEL: "impostor"}}})
    assert ns.name == "shop"
    assert ns.labels == ((NAMESPACE_NAME_LABEL, "shop"), ("team", "a"))


def test_namespace_without_labels_has_only_its_name_label() -> None:
    assert parse_namespace({"metadata": {"name": "x"}}).labels == ((NAMESPACE_NAME_LABEL, "x"),)


def test_namespace_invalid_label_raises_with_path() -> None:
    with pytest.raises(Invalid) as info:
        parse_namespace({"metadata": {"name": "x", "labels": {"team": "not valid"}}})
    assert info.value.path == "metadata.labels.team"


def test_policy_namespace_defaults_to_default() -> None:
    policy, errors = parse_network_policy({"metadata": {"name": "p"}, "spec": {}})
    assert errors == []
    assert policy.key == "default/p"


def test_policy_without_name_raises() -> None:
    with pytest.raises(Invalid) as info:
        parse_network_policy({"metadata": {"namespace": "x"}, "spec": {}})
    assert info.value.path == "metadata.name"


@pytest.mark.parametrize(("peer", "expected"), [
    pytest.param({"podSelector": {}}, Peer(pod_selector=LabelSelector()),
                 id="empty-podSelector-is-every-pod-of-the-namespace"),
    pytest.param({"namespaceSelector": {}}, Peer(namespace_selector=LabelSelector()),
                 id="empty-namespaceSelector-is-every-namespace"),
    pytest.param({"podSelector": WEB, "namespaceSelector": {}},
                 Peer(pod_selector=WEB_SELECTOR, namespace_selector=LabelSelector()),
                 id="both-selectors"),
    pytest.param({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.2.0.0/16", "10.1.0.0/16"]}},
                 Peer(ip_block=IPBlock("10.0.0.0/8", ("10.1.0.0/16", "10.2.0.0/16"))),
                 id="ipBlock-excepts-sorted"),
    pytest.param({"ipBlock": {"cidr": "10.1.2.3/16"}}, Peer(ip_block=IPBlock("10.1.0.0/16")),
                 id="ipBlock-host-bits-normalised"),
    pytest.param({"ipBlock": {"cidr": "fd00::/48", "except": ["fd00:0:0:1::/64"]}},
                 Peer(ip_block=IPBlock("fd00::/48", ("fd00:0:0:1::/64",))),
                 id="ipBlock-ipv6"),
])
def test_peers(peer: Manifest, expected: Peer) -> None:
    policy = valid({"podSelector": {}, "ingress": [{"from": [peer]}]})
    assert policy.ingress == (Rule((expected,)),)


@pytest.mark.parametrize("rule", [
    pytest.param({}, id="from-missing"),
    pytest.param({"from": []}, id="from-empty-list"),
    pytest.param({"from": None}, id="from-null"),
])
def test_missing_or_empty_peers_mean_any_peer(rule: Manifest) -> None:
    policy = valid({"podSelector": {}, "ingress": [rule]})
    assert policy.ingress == (Rule(peers=(), ports=()),)


def test_egress_peers_read_from_to() -> None:
    policy = valid({"podSelector": {}, "egress": [{"to": [{"podSelector": {}}]}, {"to": []}]})
    assert policy.egress == (Rule((Peer(pod_selector=LabelSelector()),)), Rule())
    assert policy.ingress == ()


def test_missing_pod_selector_is_empty() -> None:
    policy = valid({})
    assert policy.pod_selector == LabelSelector()
    assert policy.pod_selector.is_empty


def test_match_labels_are_folded_into_in_requirements() -> None:
    sel = selector({"matchLabels": {"b": "2", "a": "1"},
                    "matchExpressions": [{"key": "c", "operator": "In", "values": ["y", "x"]}]})
    assert sel.requirements == (
        Requirement("a", Operator.IN, ("1",), equals=True),
        Requirement("b", Operator.IN, ("2",), equals=True),
        Requirement("c", Operator.IN, ("x", "y")),
    )
    assert sel.matches({"a": "1", "b": "2", "c": "x"})
    assert not sel.matches({"a": "1", "b": "3", "c": "x"})
    assert not sel.matches({"a": "1", "b": "2"})


def test_selector_is_normalised_for_equality() -> None:
    one = selector({"matchExpressions": [
        {"key": "b", "operator": "NotIn", "values": ["y", "x", "x"]},
        {"key": "a", "operator": "Exists"}]})
    other = selector({"matchExpressions": [
        {"key": "a", "operator": "Exists"},
        {"key": "b", "operator": "NotIn", "values": ["x", "y"]}]})
    assert one == other
    assert hash(one) == hash(other)


@pytest.mark.parametrize(("raw", "text"), [
    pytest.param({}, "", id="empty"),
    pytest.param({"matchLabels": {}, "matchExpressions": []}, "", id="empty-lists"),
    pytest.param({"matchLabels": {"a": "b"}}, "a=b", id="match-labels"),
    pytest.param({"matchLabels": {"z": "1", "a": "2"}}, "a=2,z=1", id="sorted-by-key"),
    pytest.param({"matchLabels": {"a": "b"}, "matchExpressions": [
        {"key": "e", "operator": "Exists"},
        {"key": "d", "operator": "DoesNotExist"},
        {"key": "c", "operator": "In", "values": ["y", "x"]}]},
        "a=b,c in (x,y),!d,e", id="every-kind"),
    pytest.param({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["y", "x"]}]},
                 "a notin (x,y)", id="notin-values-sorted"),
    pytest.param({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]},
                 "a notin (x)", id="notin-one-value"),
    pytest.param({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]},
                 "a in (x)", id="in-one-value-is-not-equals"),
    pytest.param({"matchExpressions": [{"key": "b", "operator": "DoesNotExist"}],
                  "matchLabels": {"a": "1", "c": "3"}}, "a=1,!b,c=3",
                 id="not-sorted-by-bang"),
    pytest.param({"matchLabels": {"example.com/tier": "db", "app": ""}},
                 "app=,example.com/tier=db", id="prefixed-key-and-empty-value"),
    pytest.param({"matchLabels": {"a": "x"},
                  "matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]},
                 "a=x,a in (x)", id="same-key-match-labels-first"),
])
def test_canonical_selector_string(raw: Manifest, text: str) -> None:
    assert selector(raw).canonical() == text


@pytest.mark.parametrize(("sel", "labels", "matches"), [
    pytest.param({}, {}, True, id="empty-matches-everything"),
    pytest.param({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]},
                 {}, True, id="notin-matches-missing-key"),
    pytest.param({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]},
                 {"a": "x"}, False, id="notin-excludes-value"),
    pytest.param({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]},
                 {"a": ""}, False, id="doesnotexist-empty-value"),
    pytest.param({"matchExpressions": [{"key": "a", "operator": "Exists"}]},
                 {"a": ""}, True, id="exists-empty-value"),
    pytest.param({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]},
                 {"a": "x"}, True, id="in-one-value-like-equals"),
])
def test_selector_matches(sel: Manifest, labels: dict[str, str], matches: bool) -> None:
    assert selector(sel).matches(labels) is matches


# ---- validation -------------------------------------------------------------------------
def _from(peer: Any) -> Manifest:
    return {"podSelector": WEB, "ingress": [{"from": [peer]}]}


def _ports(port: Any) -> Manifest:
    return {"podSelector": WEB, "ingress": [{"ports": [port]}]}


def _block(cidr: Any, *excepts: Any) -> Manifest:
    block: Manifest = {"cidr": cidr}
    if excepts:
        block["except"] = list(excepts)
    return _from({"ipBlock": block})


def _expr(**expr: Any) -> Manifest:
    return _from({"podSelector": {"matchExpressions": [expr]}})


PEER = "spec.ingress[0].from[0]"
PORT = "spec.ingress[0].ports[0]"
EXPR = f"{PEER}.podSelector.matchExpressions[0]"

REJECTED = [
    # ipBlock
    pytest.param(_block("10.0.0.0/33"), f"{PEER}.ipBlock.cidr", id="cidr-prefix-33"),
    pytest.param(_block("banana"), f"{PEER}.ipBlock.cidr", id="cidr-banana"),
    pytest.param(_block("banana/8"), f"{PEER}.ipBlock.cidr", id="cidr-banana-prefix"),
    pytest.param(_block("10.0.0.0"), f"{PEER}.ipBlock.cidr", id="cidr-missing-prefix"),
    pytest.param(_block("10.0.0.0/"), f"{PEER}.ipBlock.cidr", id="cidr-empty-prefix"),
    pytest.param(_block(None), f"{PEER}.ipBlock.cidr", id="cidr-missing"),
    pytest.param(_block(167772160), f"{PEER}.ipBlock.cidr", id="cidr-number"),
    pytest.param(_block("10.0.0.0/16", "10.1.0.0/24"), f"{PEER}.ipBlock.except[0]",
                 id="except-outside-cidr"),
    pytest.param(_block("10.0.0.0/16", "10.0.0.0/16"), f"{PEER}.ipBlock.except[0]",
                 id="except-equal-to-cidr"),
    pytest.param(_block("10.0.0.0/16", "10.0.0.0/8"), f"{PEER}.ipBlock.except[0]",
                 id="except-wider-than-cidr"),
    pytest.param(_block("10.0.0.0/16", "10.0.1.0/24", "fd00::/64"),
                 f"{PEER}.ipBlock.except[1]", id="except-other-family"),
    pytest.param(_block("fd00::/48", "10.0.0.0/24"), f"{PEER}.ipBlock.except[0]",
                 id="except-ipv4-in-ipv6"),
    pytest.param(_block("10.0.0.0/16", "10.0.1.0"), f"{PEER}.ipBlock.except[0]",
                 id="except-missing-prefix"),
    # ports
    pytest.param(_ports({"endPort": 90}), f"{PORT}.endPort", id="endPort-without-port"),
    pytest.param(_ports({"port": "http", "endPort": 90}), f"{PORT}.endPort",
                 id="endPort-with-named-port"),
    pytest.param(_ports({"port": 90, "endPort": 80}), f"{PORT}.endPort",
                 id="endPort-below-port"),
    pytest.param(_ports({"port": 90, "endPort": 65536}), f"{PORT}.endPort",
                 id="endPort-above-65535"),
    pytest.param(_ports({"port": 90, "endPort": "100"}), f"{PORT}.endPort",
                 id="endPort-string"),
    pytest.param(_ports({"port": "Http"}), f"{PORT}.port", id="port-name-uppercase"),
    pytest.param(_ports({"port": "a--b"}), f"{PORT}.port", id="port-name-double-dash"),
    pytest.param(_ports({"port": "-ab"}), f"{PORT}.port", id="port-name-leading-dash"),
    pytest.param(_ports({"port": "ab-"}), f"{PORT}.port", id="port-name-trailing-dash"),
    pytest.param(_ports({"port": "1234"}), f"{PORT}.port", id="port-name-no-letter"),
    pytest.param(_ports({"port": "80"}), f"{PORT}.port", id="port-number-as-string"),
    pytest.param(_ports({"port": "abcdefghijklmnop"}), f"{PORT}.port",
                 id="port-name-16-chars"),
    pytest.param(_ports({"port": "web_port"}), f"{PORT}.port", id="port-name-underscore"),
    pytest.param(_ports({"port": ""}), f"{PORT}.port", id="port-name-empty"),
    pytest.param(_ports({"port": 0}), f"{PORT}.port", id="port-0"),
    pytest.param(_ports({"port": 70000}), f"{PORT}.port", id="port-70000"),
    pytest.param(_ports({"port": -1}), f"{PORT}.port", id="port-negative"),
    pytest.param(_ports({"port": 8.5}), f"{PORT}.port", id="port-float"),
    pytest.param(_ports({"port": True}), f"{PORT}.port", id="port-bool"),
    pytest.param(_ports({"protocol": "ICMP", "port": 80}), f"{PORT}.protocol",
                 id="protocol-icmp"),
    pytest.param(_ports({"protocol": "tcp", "port": 80}), f"{PORT}.protocol",
                 id="protocol-lowercase"),
    # peers
    pytest.param(_from({}), PEER, id="peer-empty"),
    pytest.param(_from(None), PEER, id="peer-null"),
    pytest.param(_from({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}), PEER,
                 id="ipBlock-with-podSelector"),
    pytest.param(_from({"ipBlock": {"cidr": "10.0.0.0/8"}, "namespaceSelector": {}}), PEER,
                 id="ipBlock-with-namespaceSelector"),
    pytest.param(_from("everyone"), PEER, id="peer-not-an-object"),
    # selectors
    pytest.param(_expr(key="a", operator="In", values=[]), f"{EXPR}.values",
                 id="in-empty-values"),
    pytest.param(_expr(key="a", operator="In"), f"{EXPR}.values", id="in-missing-values"),
    pytest.param(_expr(key="a", operator="NotIn", values=[]), f"{EXPR}.values",
                 id="notin-empty-values"),
    pytest.param(_expr(key="a", operator="Exists", values=["x"]), f"{EXPR}.values",
                 id="exists-with-values"),
    pytest.param(_expr(key="a", operator="DoesNotExist", values=["x"]), f"{EXPR}.values",
                 id="doesnotexist-with-values"),
    pytest.param(_expr(key="a", operator="Equals", values=["x"]), f"{EXPR}.operator",
                 id="unknown-operator"),
    pytest.param(_expr(key="a", operator="in", values=["x"]), f"{EXPR}.operator",
                 id="lowercase-operator"),
    pytest.param(_expr(key="a"), f"{EXPR}.operator", id="missing-operator"),
    pytest.param(_expr(operator="Exists"), f"{EXPR}.key", id="missing-key"),
    pytest.param(_expr(key="-a", operator="Exists"), f"{EXPR}.key", id="invalid-key"),
    pytest.param(_expr(key="Bad.Prefix/a", operator="Exists"), f"{EXPR}.key",
                 id="invalid-key-prefix"),
    pytest.param(_expr(key="a" * 64, operator="Exists"), f"{EXPR}.key", id="key-64-chars"),
    pytest.param(_expr(key="a", operator="In", values=["ok", "not ok"]), f"{EXPR}.values[1]",
                 id="invalid-value"),
    pytest.param(_expr(key="a", operator="In", values=[1]), f"{EXPR}.values[0]",
                 id="value-not-a-string"),
    pytest.param(_from({"podSelector": {"matchLabels": {"bad key": "x"}}}),
                 f"{PEER}.podSelector.matchLabels.bad key", id="invalid-label-key"),
    pytest.param(_from({"namespaceSelector": {"matchLabels": {"team": "-x"}}}),
                 f"{PEER}.namespaceSelector.matchLabels.team", id="invalid-label-value"),
    pytest.param(_from({"namespaceSelector": {"matchLabels": {"team": "x" * 64}}}),
                 f"{PEER}.namespaceSelector.matchLabels.team", id="label-value-64-chars"),
    pytest.param(_from({"podSelector": {"matchLabels": {"replicas": 3}}}),
                 f"{PEER}.podSelector.matchLabels.replicas", id="label-value-not-a-string"),
    pytest.param(_from({"podSelector": {"matchLabel": {"a": "b"}}}), f"{PEER}.podSelector",
                 id="selector-unknown-field"),
    # structure
    pytest.param({"podSelector": WEB, "ingress": {"from": []}}, "spec.ingress",
                 id="ingress-not-a-list"),
    pytest.param({"podSelector": WEB, "ingress": [{"ports": {"port": 80}}]},
                 "spec.ingress[0].ports", id="ports-not-a-list"),
    pytest.param({"podSelector": WEB, "ingress": [{"from": {"podSelector": {}}}]},
                 "spec.ingress[0].from", id="from-not-a-list"),
]


@pytest.mark.parametrize(("spec", "path"), REJECTED)
def test_invalid_ingress_rejects_policy_keeping_its_target(spec: Manifest, path: str) -> None:
    policy, errors = parse(spec)
    assert [e.path for e in errors] == [path]
    assert errors[0].obj == "NetworkPolicy shop/p"
    assert errors[0].reason
    assert str(errors[0]) == f"NetworkPolicy shop/p: {path}: {errors[0].reason}"
    assert policy.rejected
    assert path in policy.rejected
    assert policy.pod_selector == WEB_SELECTOR
    assert policy.policy_types == INGRESS
    assert policy.rules(PolicyType.INGRESS) == ()
    assert policy.ingress == ()


def test_invalid_egress_peer_keeps_defaulted_types() -> None:
    policy, errors = parse({"podSelector": WEB, "egress": [{"to": [{}]}]})
    assert [e.path for e in errors] == ["spec.egress[0].to[0]"]
    assert policy.rejected
    assert policy.policy_types == BOTH
    assert policy.rules(PolicyType.EGRESS) == ()


def test_every_invalid_rule_is_reported() -> None:
    policy, errors = parse({"podSelector": WEB, "policyTypes": ["Ingress", "Egress"],
                            "ingress": [{"ports": [{"port": 0}]}, {},
                                        {"from": [{"ipBlock": {"cidr": "x"}}]}],
                            "egress": [{"ports": [{"protocol": "ICMP"}]}]})
    assert [e.path for e in errors] == ["spec.ingress[0].ports[0].port",
                                        "spec.ingress[2].from[0].ipBlock.cidr",
                                        "spec.egress[0].ports[0].protocol"]
    assert all(e.path in policy.rejected for e in errors)
    assert policy.rules(PolicyType.INGRESS) == policy.rules(PolicyType.EGRESS) == ()


@pytest.mark.parametrize(("types", "path"), [
    pytest.param(["Ingress", "Sideways"], "spec.policyTypes[1]", id="unknown"),
    pytest.param(["ingress"], "spec.policyTypes[0]", id="lowercase"),
    pytest.param(["Egress", "Egress"], "spec.policyTypes[1]", id="duplicate"),
    pytest.param("Ingress", "spec.policyTypes", id="not-a-list"),
])
def test_invalid_policy_types_reject_and_isolate_both_directions(types: Any, path: str) -> None:
    policy, errors = parse({"podSelector": WEB, "policyTypes": types, "ingress": [{}]})
    assert [e.path for e in errors] == [path]
    assert policy.rejected
    assert policy.pod_selector == WEB_SELECTOR
    assert policy.policy_types == BOTH
    assert policy.rules(PolicyType.INGRESS) == ()


@pytest.mark.parametrize(("pod_selector", "path"), [
    pytest.param({"matchLabels": {"app": "not valid"}}, "spec.podSelector.matchLabels.app",
                 id="invalid-label-value"),
    pytest.param({"matchExpressions": [{"key": "app", "operator": "Is"}]},
                 "spec.podSelector.matchExpressions[0].operator", id="unknown-operator"),
    pytest.param("app=web", "spec.podSelector", id="not-an-object"),
])
def test_broken_pod_selector_isolates_every_pod_of_the_namespace(pod_selector: Any,
                                                                 path: str) -> None:
    policy, errors = parse({"podSelector": pod_selector, "policyTypes": ["Ingress"],
                            "ingress": [{}]})
    assert [e.path for e in errors] == [path]
    assert policy.rejected
    assert policy.pod_selector == LabelSelector()
    assert policy.policy_types == BOTH
    assert policy.rules(PolicyType.INGRESS) == policy.rules(PolicyType.EGRESS) == ()


def test_spec_not_an_object_rejects() -> None:
    policy, errors = parse(["nope"])
    assert [e.path for e in errors] == ["spec"]
    assert policy.rejected
    assert policy.policy_types == BOTH


# ---- pods -------------------------------------------------------------------------------
def pod(status: Manifest | None = None, spec: Manifest | None = None,
        labels: Manifest | None = None) -> Manifest:
    return {"kind": "Pod", "metadata": {"namespace": "shop", "name": "web",
                                        "labels": labels or {"app": "web"}},
            "spec": spec or {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", **(status or {})}}


@pytest.mark.parametrize(("status", "ips", "ipv4"), [
    pytest.param({"podIP": "10.0.0.1"}, ("10.0.0.1",), "10.0.0.1", id="podIP-only"),
    pytest.param({"podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.2"}, {"ip": "fd00::2"}]},
                 ("10.0.0.2", "fd00::2"), "10.0.0.2", id="podIPs-preferred"),
    pytest.param({"podIP": "fd00::1", "podIPs": [{"ip": "fd00::1"}, {"ip": "10.0.0.1"}]},
                 ("fd00::1", "10.0.0.1"), "10.0.0.1", id="dual-stack-ipv6-first"),
    pytest.param({"podIP": "fd00::1", "podIPs": [{"ip": "fd00::1"}]}, ("fd00::1",), None,
                 id="ipv6-only"),
    pytest.param({"podIPs": []}, (), None, id="no-ip"),
    pytest.param({"podIPs": [], "podIP": "10.0.0.3"}, ("10.0.0.3",), "10.0.0.3",
                 id="empty-podIPs-falls-back"),
])
def test_pod_ips(status: Manifest, ips: tuple[str, ...], ipv4: str | None) -> None:
    p = parse_pod(pod(status))
    assert p.ips == ips
    assert p.ipv4 == ipv4


@pytest.mark.parametrize(("phase", "host_network", "in_policy"), [
    pytest.param("Running", False, True, id="running"),
    pytest.param("Pending", False, True, id="pending-with-ip"),
    pytest.param("Unknown", False, True, id="unknown"),
    pytest.param("Succeeded", False, False, id="succeeded"),
    pytest.param("Failed", False, False, id="failed"),
    pytest.param("Running", True, False, id="host-network"),
])
def test_pod_takes_part_in_policy(phase: str, host_network: bool, in_policy: bool) -> None:
    p = parse_pod(pod({"phase": phase, "podIP": "10.0.0.1"},
                      {"hostNetwork": host_network, "nodeName": "n1", "containers": []}))
    assert p.phase == phase
    assert p.host_network is host_network
    assert p.node_name == "n1"
    assert p.ipv4 == ("10.0.0.1" if in_policy else None)


def test_pod_defaults() -> None:
    p = parse_pod({"metadata": {"name": "x"}})
    assert (p.namespace, p.name, p.labels, p.ips, p.phase) == ("default", "x", (), (), "Pending")
    assert p.key == "default/x"


def test_container_ports() -> None:
    p = parse_pod(pod(spec={"containers": [
        {"name": "a", "ports": [{"containerPort": 80, "name": "http"},
                                {"containerPort": 53, "protocol": "UDP", "name": "dns"}]},
        {"name": "b"},
        {"name": "c", "ports": [{"containerPort": 9000, "protocol": "SCTP"},
                                {"containerPort": 53, "name": "dns-tcp"}]}]}))
    assert p.container_ports == (
        ContainerPort(80, Protocol.TCP, "http"),
        ContainerPort(53, Protocol.UDP, "dns"),
        ContainerPort(9000, Protocol.SCTP, ""),
        ContainerPort(53, Protocol.TCP, "dns-tcp"),
    )
    assert p.resolve_port("dns", Protocol.UDP) == 53
    assert p.resolve_port("dns", Protocol.TCP) is None
    assert p.resolve_port("http", Protocol.TCP) == 80
    assert p.resolve_port("missing", Protocol.TCP) is None


PORTS = "spec.containers[1].ports[0]"


@pytest.mark.parametrize(("port", "path"), [
    pytest.param({"containerPort": 0}, f"{PORTS}.containerPort", id="port-0"),
    pytest.param({"containerPort": 65536}, f"{PORTS}.containerPort", id="port-65536"),
    pytest.param({"containerPort": "80"}, f"{PORTS}.containerPort", id="port-string"),
    pytest.param({}, f"{PORTS}.containerPort", id="port-missing"),
    pytest.param({"containerPort": True}, f"{PORTS}.containerPort", id="port-bool"),
    pytest.param({"containerPort": 80, "protocol": "ICMP"}, f"{PORTS}.protocol",
                 id="protocol-icmp"),
    pytest.param({"containerPort": 80, "name": "Http"}, f"{PORTS}.name", id="name-uppercase"),
    pytest.param({"containerPort": 80, "name": 8080}, f"{PORTS}.name", id="name-number"),
    pytest.param("80", PORTS, id="not-an-object"),
])
def test_invalid_container_port_raises_with_path(port: Any, path: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_pod(pod(spec={"containers": [{"name": "a"}, {"name": "b", "ports": [port]}]}))
    assert info.value.path == path


@pytest.mark.parametrize(("manifest", "path"), [
    pytest.param(pod({"podIPs": [{"ip": "10.0.0.300"}]}), "status.podIPs[0]", id="bad-ip"),
    pytest.param(pod(labels={"app": "we b"}), "metadata.labels.app", id="bad-label"),
    pytest.param(pod(spec={"containers": "web"}), "spec.containers", id="containers-not-list"),
    pytest.param({"metadata": {"namespace": "x"}}, "metadata.name", id="no-name"),
])
def test_invalid_pod_raises_with_path(manifest: Manifest, path: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_pod(manifest)
    assert info.value.path == path


# ---- loading files ----------------------------------------------------------------------
NS_DOC = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: a}}\n"
POD_DOC = """apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: web, ports: [{containerPort: 80, name: http}]}]}
status: {phase: Running, podIP: 10.0.0.1}
"""


def policy_doc(name: str, ports: str = "[{port: 80}]") -> str:
    return f"""apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: {name}, namespace: shop}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  ingress:
  - ports: {ports}
"""


BROKEN_PORTS = "[{port: 90, endPort: 80}]"


def _names(loaded: Loaded) -> list[str]:
    return [p.name for p in loaded.policies]


def test_load_multi_document_yaml_skips_empty_documents() -> None:
    text = "\n---\n".join(["# just a comment", NS_DOC, "", POD_DOC, policy_doc("a"), "---"])
    loaded = load_texts([("f.yaml", text)])
    assert loaded.problems == []
    assert not loaded.failed
    assert [n.name for n in loaded.namespaces] == ["shop"]
    assert [p.key for p in loaded.pods] == ["shop/web"]
    assert _names(loaded) == ["a"]
    state = loaded.state()
    assert [n.name for n in state.namespaces] == ["shop"]
    assert state.policies[0].ingress == (Rule((), (PortSpec(Protocol.TCP, 80),)),)


def test_load_only_empty_documents() -> None:
    loaded = load_texts([("f.yaml", "---\n---\n# nothing\n"), ("g.yaml", "")])
    assert loaded.problems == []
    assert (loaded.namespaces, loaded.pods, loaded.policies) == ([], [], [])


def _indent(doc: str) -> str:
    lines = doc.strip().splitlines()
    return "\n".join(["- " + lines[0], *("  " + line for line in lines[1:])])


@pytest.mark.parametrize("kind", ["List", "NetworkPolicyList", "PodList"])
def test_load_list_items(kind: str) -> None:
    text = f"apiVersion: v1\nkind: {kind}\nitems:\n" + "\n".join(
        _indent(d) for d in (NS_DOC, POD_DOC, policy_doc("a"), policy_doc("b")))
    loaded = load_texts([("f.yaml", text)])
    assert loaded.problems == []
    assert [n.name for n in loaded.namespaces] == ["shop"]
    assert [p.name for p in loaded.pods] == ["web"]
    assert _names(loaded) == ["a", "b"]


def test_load_json() -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "j", "namespace": "shop"}, "spec": {"podSelector": {}}}]}
    loaded = load_texts([("f.json", json.dumps(doc))])
    assert loaded.problems == []
    assert _names(loaded) == ["j"]


def test_unknown_kind_is_a_warning() -> None:
    service = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
    loaded = load_texts([("f.yaml", service + "---\n" + policy_doc("a"))])
    assert len(loaded.problems) == 1
    problem = loaded.problems[0]
    assert not problem.fatal
    assert problem.where == "f.yaml document 0"
    assert "'Service'" in problem.message
    assert not loaded.failed
    assert _names(loaded) == ["a"]


def test_invalid_yaml_is_fatal_and_names_the_file() -> None:
    loaded = load_texts([("bad.yaml", "kind: [unclosed\n"), ("good.yaml", policy_doc("a"))])
    assert loaded.failed
    assert len(loaded.problems) == 1
    assert loaded.problems[0].fatal
    assert loaded.problems[0].where == "bad.yaml"
    assert str(loaded.problems[0]).startswith("bad.yaml: invalid YAML")
    assert _names(loaded) == ["a"]


def test_broken_policy_names_file_document_and_field() -> None:
    text = policy_doc("good") + "---\n" + policy_doc("broken", BROKEN_PORTS)
    loaded = load_texts([("dir/p.yaml", text)])
    assert loaded.failed
    assert len(loaded.problems) == 1
    text_of_problem = str(loaded.problems[0])
    assert text_of_problem.startswith("dir/p.yaml document 1: NetworkPolicy shop/broken: ")
    assert "spec.ingress[0].ports[0].endPort" in text_of_problem
    assert "isolated" in text_of_problem
    good, broken = loaded.policies
    assert (good.name, good.rejected) == ("good", "")
    assert broken.name == "broken"
    assert broken.rejected
    assert broken.pod_selector == WEB_SELECTOR


def test_broken_object_inside_a_list_names_the_item() -> None:
    bad_pod = POD_DOC.replace("containerPort: 80", "containerPort: 0").replace("web,", "bad,", 1)
    text = "apiVersion: v1\nkind: List\nitems:\n" + "\n".join(
        _indent(d) for d in (NS_DOC, bad_pod, POD_DOC, policy_doc("x", BROKEN_PORTS)))
    loaded = load_texts([("c.yaml", policy_doc("first") + "---\n" + text)])
    assert [str(p).split(": ")[0] for p in loaded.problems] == [
        "c.yaml document 1 items[1]", "c.yaml document 1 items[3]"]
    assert "Pod bad: spec.containers[0].ports[0].containerPort" in str(loaded.problems[0])
    assert "spec.ingress[0].ports[0].endPort" in str(loaded.problems[1])
    assert all(p.fatal for p in loaded.problems)
    assert [p.name for p in loaded.pods] == ["web"]
    assert [n.name for n in loaded.namespaces] == ["shop"]
    assert [(p.name, bool(p.rejected)) for p in loaded.policies] == [
        ("first", False), ("x", True)]


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("just a string\n", "not a Kubernetes object", id="scalar-document"),
    pytest.param("- a\n- b\n", "not a Kubernetes object", id="list-document"),
    pytest.param(policy_doc("old").replace("networking.k8s.io/v1", "extensions/v1beta1"),
                 "apiVersion 'extensions/v1beta1' is not supported", id="old-api-version"),
    pytest.param("kind: NetworkPolicy\nmetadata: {namespace: shop}\n",
                 "metadata.name", id="policy-without-name"),
])
def test_other_fatal_object_problems(text: str, message: str) -> None:
    loaded = load_texts([("f.yaml", policy_doc("a") + "---\n" + text)])
    assert loaded.failed
    assert len(loaded.problems) == 1
    assert loaded.problems[0].where == "f.yaml document 1"
    assert message in loaded.problems[0].message
    assert _names(loaded) == ["a"]


def test_load_files_directory_recursive_sorted(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "dir.yaml").mkdir()  # a directory whose name looks like a file: skipped
    (tmp_path / "dir.yaml" / "inside.yaml").write_text(policy_doc("p-dir-inside"))
    (tmp_path / "b.yaml").write_text(policy_doc("p-b"))
    (tmp_path / "a.yml").write_text(policy_doc("p-a"))
    (tmp_path / "sub" / "c.json").write_text(json.dumps(
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "p-sub-c", "namespace": "shop"}, "spec": {}}))
    (tmp_path / "sub" / "deeper" / "a.yaml").write_text(policy_doc("p-sub-deeper-a"))
    (tmp_path / "notes.txt").write_text("not: [yaml")
    (tmp_path / "README.md").write_text(policy_doc("p-readme"))
    loaded = load_files([tmp_path])
    assert loaded.problems == []
    assert _names(loaded) == ["p-a", "p-b", "p-dir-inside", "p-sub-c", "p-sub-deeper-a"]


def test_load_files_explicit_file_of_any_name_and_problems_name_it(tmp_path: Path) -> None:
    explicit = tmp_path / "policy.txt"
    explicit.write_text(policy_doc("x", BROKEN_PORTS))
    loaded = load_files([str(explicit)])
    assert _names(loaded) == ["x"]
    assert str(loaded.problems[0]).startswith(f"{explicit} document 0: ")


def test_load_files_reports_unreadable_paths_and_loads_the_rest(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(policy_doc("good"))
    os.symlink(tmp_path / "nowhere.yaml", tmp_path / "dangling.yaml")
    (tmp_path / "latin1.yaml").write_bytes(b"# caf\xe9\n" + policy_doc("latin").encode())
    missing = tmp_path / "missing.yaml"
    loaded = load_files([tmp_path, missing])
    assert loaded.failed
    assert [(p.where, p.fatal) for p in loaded.problems] == [
        (str(tmp_path / "dangling.yaml"), True),
        (str(tmp_path / "latin1.yaml"), True),
        (str(missing), True)]
    assert all(p.message.startswith("cannot read") for p in loaded.problems)
    assert "No such file or directory" in loaded.problems[0].message
    assert _names(loaded) == ["good"]
