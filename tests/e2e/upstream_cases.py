"""The upstream Kubernetes e2e NetworkPolicy data-plane tests, as data.

Source: kubernetes/kubernetes, test/e2e/network/netpol/network_policy.go at commit
008b3652959ca58af8be3fb5b6ecfe9ae7638282 (the layout in which every test names the pods it
needs, e.g. ``initializeResources(..., "x/a", "x/b", "y/a")``).  Helper semantics were taken
from the same directory: policies.go (GenNetworkPolicy*, SetSpecIngressRules /
SetSpecEgressRules), test_helper.go (AddPodLabels and AddNamespaceLabel merge into the
existing labels), kubemanager.go (namespaces carry only kubernetes.io/metadata.name) and
model.go (pod label ``pod=<name>``, named ports ``serve-<port>-<proto>``).

Cases per context (48 in all):

* "Netpol NetworkPolicy between server and client": 42
* "Netpol [LinuxOnly] NetworkPolicy between server and client using UDP": 3
* "Netpol [Feature:SCTPConnectivity] [LinuxOnly] NetworkPolicy between server and client
  using SCTP": 3

Left out: the "Netpol API" tests (network_policy_api.go), which send no traffic.

Conventions:

* Namespaces are "x", "y" and "z" (upstream appends a random suffix); a selector on
  ``kubernetes.io/metadata.name: <nsY>`` is written with "y".
* Manifests are the JSON the upstream Go objects serialise to.  ``omitempty`` drops empty
  lists and maps, so ``SetSpecIngressRules()`` with no rules yields ``policyTypes:
  [Ingress]`` and no ``ingress`` key, and ``MatchLabels: map[string]string{}`` yields ``{}``.
  SetSpecIngressRules / SetSpecEgressRules append Ingress / Egress to ``policyTypes`` the
  first time they run, so every upstream policy has ``policyTypes`` set.
* IP placeholders follow tests/e2e/scenario.py: ``{ip:x/b}/32`` is upstream's
  ``<podIP>/32`` (hostMask 32 for IPv4) and ``{net:x/b/4}`` is upstream's
  ``makeLargeCIDRForIP`` (the /4 network holding the pod's IP, prefix included).
* Upstream ignores loopback probes (pod to itself) when it judges a matrix
  (``ignoreLoopback = true``); see IGNORE_LOOPBACK.
"""

from __future__ import annotations

from typing import Any

from tests.e2e.scenario import (
    Action,
    Case,
    CreatePolicy,
    DeletePolicy,
    Expect,
    ExpectAllEgress,
    ExpectAllIngress,
    Expectation,
    ExpectPeer,
    Probe,
    Reachability,
    SetNamespaceLabels,
    SetPodLabels,
    Step,
    UpdatePolicy,
)

Json = dict[str, Any]

FIXTURE_NAMESPACES: tuple[str, ...] = ("x", "y", "z")

# Upstream's ValidateOrFail does not count pod-to-itself results (ignoreLoopback = true).
IGNORE_LOOPBACK = True

UPSTREAM_COMMIT = "008b3652959ca58af8be3fb5b6ecfe9ae7638282"

TCP_CONTEXT = "Netpol NetworkPolicy between server and client"
UDP_CONTEXT = "Netpol [LinuxOnly] NetworkPolicy between server and client using UDP"
SCTP_CONTEXT = (
    "Netpol [Feature:SCTPConnectivity] [LinuxOnly] "
    "NetworkPolicy between server and client using SCTP"
)

NS_NAME_LABEL = "kubernetes.io/metadata.name"


# ---- manifest helpers ----
def _policy(ns: str, name: str, spec: Json) -> Json:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def _gen(
    selector: Json,
    ingress: list[Json] | None = None,
    egress: list[Json] | None = None,
) -> Json:
    """GenNetworkPolicy* with SetSpecIngressRules (if ``ingress`` is not None) applied first,
    then SetSpecEgressRules (if ``egress`` is not None): policyTypes in that order, empty
    rule lists dropped as omitempty does."""
    spec: Json = {"podSelector": selector}
    types: list[str] = []
    if ingress is not None:
        types.append("Ingress")
        if ingress:
            spec["ingress"] = ingress
    if egress is not None:
        types.append("Egress")
        if egress:
            spec["egress"] = egress
    spec["policyTypes"] = types
    return spec


def _all() -> Json:
    """An empty selector (also what ``MatchLabels: map[string]string{}`` serialises to)."""
    return {}


def _labels(labels: dict[str, str]) -> Json:
    return {"matchLabels": dict(labels)}


def _pod(name: str) -> Json:
    return _labels({"pod": name})


def _ns(name: str) -> Json:
    return _labels({NS_NAME_LABEL: name})


def _expr(key: str, operator: str, *values: str) -> Json:
    return {"matchExpressions": [{"key": key, "operator": operator, "values": list(values)}]}


def _port(port: int | str, protocol: str | None = None) -> Json:
    out: Json = {"port": port}
    if protocol is not None:
        out["protocol"] = protocol
    return out


def _create(ns: str, name: str, spec: Json) -> CreatePolicy:
    return CreatePolicy(_policy(ns, name, spec))


def _update(ns: str, name: str, spec: Json) -> UpdatePolicy:
    return UpdatePolicy(_policy(ns, name, spec))


# ---- step / reachability helpers ----
def _reach(*expectations: Expectation, default: bool = True) -> Reachability:
    return Reachability(default=default, expectations=tuple(expectations))


def _step(probes: tuple[Probe, ...], reachability: Reachability, *actions: Action) -> Step:
    return Step(actions=tuple(actions), probes=probes, reachability=reachability)


def _tcp(*ports: int) -> tuple[Probe, ...]:
    return tuple(Probe(p, "TCP") for p in ports)


def _udp(*ports: int) -> tuple[Probe, ...]:
    return tuple(Probe(p, "UDP") for p in ports)


def _sctp(*ports: int) -> tuple[Probe, ...]:
    return tuple(Probe(p, "SCTP") for p in ports)


def _pods(spec: str) -> tuple[str, ...]:
    return tuple(spec.split())


def _peer(from_: str, to: str, connected: bool) -> ExpectPeer:
    """ExpectPeer with peers written "ns/pod", "ns/" (any pod of ns) or "" (anything)."""
    fns, _, fpod = from_.partition("/")
    tns, _, tpod = to.partition("/")
    return ExpectPeer(fns, fpod, tns, tpod, connected)


# ---- the TCP context: "NetworkPolicy between server and client" ----
def _tcp_cases() -> list[Case]:
    cases: list[Case] = []

    def add(name: str, pods: str, steps: list[Step], ports: tuple[int, ...] = (80,),
            protocols: tuple[str, ...] = ("TCP",)) -> None:
        cases.append(Case(name=name, steps=tuple(steps), pods=_pods(pods), ports=ports,
                          protocols=protocols, context=TCP_CONTEXT))

    add("should support a 'default-deny-ingress' policy [Feature:NetworkPolicy]",
        "x/a x/b y/a y/b", [
            _step(_tcp(80), _reach(_peer("", "x/", False)),
                  _create("x", "deny-ingress", _gen(_all(), ingress=[]))),
        ])

    add("should support a 'default-deny-all' policy [Feature:NetworkPolicy]",
        "x/a x/b y/a", [
            _step(_tcp(80), _reach(_peer("", "x/", False), _peer("x/", "", False)),
                  _create("x", "deny-all", _gen(_all(), ingress=[], egress=[]))),
        ])

    add("should enforce policy to allow traffic from pods within server namespace based on "
        "PodSelector [Feature:NetworkPolicy]",
        "x/a x/b x/c y/a", [
            _step(_tcp(80),
                  _reach(ExpectAllIngress("x/a", False), Expect("x/b", "x/a", True)),
                  _create("x", "x-a-allows-x-b",
                          _gen(_pod("a"), ingress=[{"from": [{"podSelector": _pod("b")}]}]))),
        ])

    add("should enforce policy to allow ingress traffic for a target [Feature:NetworkPolicy]",
        "x/a x/b y/a", [
            _step(_tcp(80),
                  _reach(ExpectAllIngress("x/a", True), ExpectAllIngress("x/b", False)),
                  _create("x", "deny-all", _gen(_all(), ingress=[])),
                  _create("x", "allow-all-to-a",
                          _gen(_pod("a"), ingress=[
                              {"from": [{"podSelector": _all(), "namespaceSelector": _all()}]},
                          ]))),
        ])

    add("should enforce policy to allow ingress traffic from pods in all namespaces "
        "[Feature:NetworkPolicy]",
        "x/a x/b y/a z/a", [
            _step(_tcp(80), _reach(),
                  _create("x", "allow-from-another-ns",
                          _gen(_pod("a"), ingress=[{"from": [{"namespaceSelector": _all()}]}]))),
        ])

    add("should enforce policy to allow traffic only from a different namespace, based on "
        "NamespaceSelector [Feature:NetworkPolicy]",
        "x/a x/b y/a z/a", [
            _step(_tcp(80),
                  _reach(_peer("x/", "x/a", False), _peer("z/", "x/a", False)),
                  _create("x", "allow-client-a-via-ns-selector",
                          _gen(_pod("a"), ingress=[{"from": [{"namespaceSelector": _ns("y")}]}]))),
        ])

    add("should enforce policy based on PodSelector with MatchExpressions "
        "[Feature:NetworkPolicy]",
        "x/a x/b y/a", [
            _step(_tcp(80),
                  _reach(ExpectAllIngress("x/a", False), Expect("x/b", "x/a", True)),
                  _create("x", "x-a-allows-x-b",
                          _gen(_pod("a"), ingress=[
                              {"from": [{"podSelector": _expr("pod", "In", "b")}]},
                          ]))),
        ])

    add("should enforce policy based on NamespaceSelector with MatchExpressions "
        "[Feature:NetworkPolicy]",
        "x/a x/b y/a z/a", [
            _step(_tcp(80),
                  _reach(_peer("x/", "x/a", False), _peer("z/", "x/a", False)),
                  _create("x", "allow-ns-y-match-selector",
                          _gen(_pod("a"), ingress=[
                              {"from": [{"namespaceSelector": _expr(NS_NAME_LABEL, "In", "y")}]},
                          ]))),
        ])

    add("should enforce policy based on PodSelector or NamespaceSelector "
        "[Feature:NetworkPolicy]",
        "x/a x/b x/c y/a", [
            _step(_tcp(80),
                  _reach(Expect("x/a", "x/a", False), Expect("x/c", "x/a", False)),
                  _create("x", "allow-ns-y-match-selector",
                          _gen(_pod("a"), ingress=[
                              {"from": [
                                  {"namespaceSelector": _expr(NS_NAME_LABEL, "NotIn", "x")},
                                  {"podSelector": _pod("b")},
                              ]},
                          ]))),
        ])

    add("should enforce policy based on PodSelector and NamespaceSelector "
        "[Feature:NetworkPolicy]",
        "x/a x/b y/a y/b z/b", [
            _step(_tcp(80),
                  _reach(ExpectAllIngress("x/a", False), Expect("y/b", "x/a", True),
                         Expect("z/b", "x/a", True)),
                  _create("x", "allow-ns-y-podselector-and-nsselector",
                          _gen(_pod("a"), ingress=[
                              {"from": [{
                                  "namespaceSelector": _expr(NS_NAME_LABEL, "NotIn", "x"),
                                  "podSelector": _pod("b"),
                              }]},
                          ]))),
        ])

    add("should enforce policy based on Multiple PodSelectors and NamespaceSelectors "
        "[Feature:NetworkPolicy]",
        "x/a x/b y/a y/b y/c", [
            _step(_tcp(80),
                  _reach(_peer("x/", "x/a", False), Expect("y/a", "x/a", False)),
                  _create("x", "allow-ns-y-z-pod-b-c",
                          _gen(_pod("a"), ingress=[
                              {"from": [{
                                  "namespaceSelector": _expr(NS_NAME_LABEL, "NotIn", "x"),
                                  "podSelector": _expr("pod", "In", "b", "c"),
                              }]},
                          ]))),
        ])

    add("should enforce policy based on any PodSelectors [Feature:NetworkPolicy]",
        "x/a x/b x/c", [
            _step(_tcp(80),
                  _reach(ExpectAllIngress("x/a", False), Expect("x/b", "x/a", True),
                         Expect("x/c", "x/a", True)),
                  _create("x", "allow-ns-x-pod-b-c",
                          _gen(_pod("a"), ingress=[
                              {"from": [{"podSelector": _pod("b")}, {"podSelector": _pod("c")}]},
                          ]))),
        ])

    add("should enforce policy to allow traffic only from a pod in a different namespace based "
        "on PodSelector and NamespaceSelector [Feature:NetworkPolicy]",
        "x/a x/b y/a y/b z/a", [
            _step(_tcp(80),
                  _reach(ExpectAllIngress("x/a", False), Expect("y/a", "x/a", True)),
                  _create("x", "allow-ns-y-pod-a-via-namespace-pod-selector",
                          _gen(_pod("a"), ingress=[
                              {"from": [{"namespaceSelector": _ns("y"), "podSelector": _pod("a")}]},
                          ]))),
        ])

    allow_y_on_81 = _reach(
        _peer("x/", "x/a", False), _peer("y/", "x/a", True), _peer("z/", "x/a", False))

    add("should enforce policy based on Ports [Feature:NetworkPolicy]",
        "x/a x/b y/a y/b z/a", [
            _step(_tcp(81), allow_y_on_81,
                  _create("x", "allow-client-a-via-ns-selector",
                          _gen(_pod("a"), ingress=[
                              {"from": [{"namespaceSelector": _ns("y")}],
                               "ports": [_port(81, "TCP")]},
                          ]))),
        ], ports=(81,))

    add("should enforce multiple, stacked policies with overlapping podSelectors "
        "[Feature:NetworkPolicy]",
        "x/a x/b y/a y/b z/a", [
            _step(_tcp(81), allow_y_on_81,
                  _create("x", "allow-client-a-via-ns-selector",
                          _gen(_pod("a"), ingress=[
                              {"from": [{"namespaceSelector": _ns("y")}],
                               "ports": [_port(81, "TCP")]},
                          ]))),
            _step(_tcp(80), _reach(ExpectAllIngress("x/a", False))),
            _step(_tcp(80), allow_y_on_81,
                  _create("x", "allow-client-a-via-ns-selector-80",
                          _gen(_pod("a"), ingress=[
                              {"from": [{"namespaceSelector": _ns("y")}],
                               "ports": [_port(80, "TCP")]},
                          ]))),
        ], ports=(80, 81))

    add("should support allow-all policy [Feature:NetworkPolicy]",
        "x/a x/b y/a", [
            _step(_tcp(80, 81), _reach(),
                  _create("x", "allow-all", _gen(_all(), ingress=[{}]))),
        ], ports=(80, 81))

    add("should allow ingress access on one named port [Feature:NetworkPolicy]",
        "x/a x/b y/a", [
            _step(_tcp(81), _reach(),
                  _create("x", "allow-all",
                          _gen(_all(), ingress=[{"ports": [_port("serve-81-tcp")]}]))),
            _step(_tcp(80), _reach(_peer("", "x/", False))),
        ], ports=(80, 81))

    add("should allow ingress access from namespace on one named port [Feature:NetworkPolicy]",
        "x/a x/b y/a z/a", [
            _step(_tcp(80),
                  _reach(_peer("x/", "x/a", False), _peer("z/", "x/a", False)),
                  _create("x", "allow-client-a-via-ns-selector-80",
                          _gen(_pod("a"), ingress=[
                              {"from": [{"namespaceSelector": _ns("y")}],
                               "ports": [_port("serve-80-tcp", "TCP")]},
                          ]))),
            _step(_tcp(81), _reach(ExpectAllIngress("x/a", False))),
        ], ports=(80, 81))

    add("should allow egress access on one named port [Feature:NetworkPolicy]",
        "x/a y/a", [
            _step(_tcp(80), _reach(),
                  _create("x", "allow-egress",
                          _gen(_all(), egress=[{"ports": [_port("serve-80-tcp")]}]))),
            _step(_tcp(81), _reach(_peer("x/", "", False))),
        ], ports=(80, 81))

    add("should enforce updated policy [Feature:NetworkPolicy]",
        "x/a y/a", [
            _step(_tcp(81), _reach(),
                  _create("x", "allow-all-mutate-to-deny-all", _gen(_all(), ingress=[{}]))),
            # policy.Spec.Ingress = []: policyTypes stays [Ingress], the rule list empties.
            _step(_tcp(81), _reach(_peer("", "x/", False)),
                  _update("x", "allow-all-mutate-to-deny-all", _gen(_all(), ingress=[]))),
        ], ports=(81,))

    add("should allow ingress access from updated namespace [Feature:NetworkPolicy]",
        "x/a y/a", [
            _step(_tcp(80), _reach(ExpectAllIngress("x/a", False)),
                  _create("x", "allow-client-a-via-ns-selector",
                          _gen(_pod("a"), ingress=[
                              {"from": [{"namespaceSelector": _labels({"ns2": "updated"})}]},
                          ]))),
            # AddNamespaceLabel(nsY, "ns2", "updated") adds to the existing labels.
            _step(_tcp(80),
                  _reach(ExpectAllIngress("x/a", False), _peer("y/", "", True)),
                  SetNamespaceLabels("y", {NS_NAME_LABEL: "y", "ns2": "updated"})),
        ])

    add("should allow ingress access from updated pod [Feature:NetworkPolicy]",
        "x/a x/b", [
            _step(_tcp(80), _reach(ExpectAllIngress("x/a", False)),
                  _create("x", "allow-client-a-via-pod-selector",
                          _gen(_pod("a"), ingress=[
                              {"from": [{"podSelector": _labels({"pod": "b", "pod2": "updated"})}]},
                          ]))),
            # AddPodLabels merges {"pod": "b", "pod2": "updated"} into {"pod": "b"}.
            _step(_tcp(80),
                  _reach(ExpectAllIngress("x/a", False), Expect("x/b", "x/a", True)),
                  SetPodLabels("x/b", {"pod": "b", "pod2": "updated"})),
        ])

    add("should deny ingress from pods on other namespaces [Feature:NetworkPolicy]",
        "x/a x/b y/a z/a", [
            _step(_tcp(80), _reach(_peer("y/", "x/", False), _peer("z/", "x/", False)),
                  _create("x", "deny-empty-policy",
                          _gen(_all(), ingress=[{"from": [{"podSelector": _all()}]}]))),
        ])

    add("should deny ingress access to updated pod [Feature:NetworkPolicy]",
        "x/a y/a", [
            _step(_tcp(80), _reach(),
                  _create("x", "deny-ingress-via-label-selector",
                          _gen(_labels({"target": "isolated"}), ingress=[]))),
            # AddPodLabels merges {"target": "isolated"} into {"pod": "a"}.
            _step(_tcp(80), _reach(ExpectAllIngress("x/a", False)),
                  SetPodLabels("x/a", {"pod": "a", "target": "isolated"})),
        ])

    add("should deny egress from pods based on PodSelector [Feature:NetworkPolicy]",
        "x/a x/b y/a", [
            _step(_tcp(80), _reach(ExpectAllEgress("x/a", False)),
                  _create("x", "deny-egress-pod-a", _gen(_pod("a"), egress=[]))),
        ])

    add("should deny egress from all pods in a namespace [Feature:NetworkPolicy]",
        "x/a x/b y/a", [
            _step(_tcp(80), _reach(_peer("x/", "", False)),
                  _create("x", "deny-egress-ns-x", _gen(_all(), egress=[]))),
        ])

    together = _gen(_pod("a"), ingress=[{"from": [{"podSelector": _pod("b")}]}])
    together["egress"] = [{"ports": [_port(80)]}]
    together["policyTypes"] = ["Egress", "Ingress"]  # set explicitly upstream, in this order
    add("should work with Ingress, Egress specified together [Feature:NetworkPolicy]",
        "x/a x/b x/c y/a", [
            _step(_tcp(80),
                  _reach(ExpectAllIngress("x/a", False), Expect("x/b", "x/a", True)),
                  _create("x", "allow-client-a-via-pod-selector", together)),
            _step(_tcp(81),
                  _reach(ExpectAllIngress("x/a", False), ExpectAllEgress("x/a", False),
                         Expect("x/b", "x/a", True))),
        ], ports=(80, 81))

    def from_xa() -> list[Json]:
        return [{"from": [{"namespaceSelector": _ns("x"), "podSelector": _pod("a")}]}]

    add("should support denying of egress traffic on the client side (even if the server "
        "explicitly allows this traffic) [Feature:NetworkPolicy]",
        "x/a y/a y/b", [
            _step(_tcp(80),
                  _reach(_peer("x/a", "", False), _peer("", "y/a", False),
                         _peer("x/a", "y/a", True), _peer("", "y/b", False)),
                  _create("x", "allow-to-ns-y-pod-a",
                          _gen(_pod("a"), egress=[
                              {"to": [{"namespaceSelector": _ns("y"), "podSelector": _pod("a")}]},
                          ])),
                  _create("y", "allow-from-xa-on-ya-match-selector",
                          _gen(_pod("a"), ingress=from_xa())),
                  _create("y", "allow-from-xa-on-yb-match-selector",
                          _gen(_pod("b"), ingress=from_xa()))),
        ])

    add("should enforce egress policy allowing traffic to a server in a different namespace "
        "based on PodSelector and NamespaceSelector [Feature:NetworkPolicy]",
        "x/a y/a y/b", [
            _step(_tcp(80),
                  _reach(ExpectAllEgress("x/a", False), Expect("x/a", "y/a", True)),
                  _create("x", "allow-to-ns-y-pod-a",
                          _gen(_pod("a"), egress=[
                              {"to": [{"namespaceSelector": _ns("y"), "podSelector": _pod("a")}]},
                          ]))),
        ])

    add("should enforce ingress policy allowing any port traffic to a server on a specific "
        "protocol [Feature:NetworkPolicy]",
        "x/a y/a", [
            _step(_tcp(80), _reach(),
                  _create("x", "allow-ingress-by-proto",
                          _gen(_pod("a"), ingress=[{"ports": [{"protocol": "TCP"}]}]))),
            _step(_udp(80), _reach(_peer("", "x/a", False))),
        ], protocols=("TCP", "UDP"))

    add("should enforce multiple ingress policies with ingress allow-all policy taking "
        "precedence [Feature:NetworkPolicy]",
        "x/a y/a", [
            _step(_tcp(81), _reach(_peer("", "x/", False)),
                  _create("x", "allow-ingress-port-80",
                          _gen(_all(), ingress=[{"ports": [_port(80)]}]))),
            _step(_tcp(81), _reach(),
                  _create("x", "allow-ingress", _gen(_all(), ingress=[{}]))),
        ], ports=(81,))

    add("should enforce multiple egress policies with egress allow-all policy taking "
        "precedence [Feature:NetworkPolicy]",
        "x/a y/a", [
            _step(_tcp(81), _reach(_peer("x/", "", False)),
                  _create("x", "allow-egress-port-80",
                          _gen(_all(), egress=[{"ports": [_port(80)]}]))),
            _step(_tcp(81), _reach(),
                  _create("x", "allow-egress", _gen(_all(), egress=[{}]))),
        ], ports=(81,))

    add("should stop enforcing policies after they are deleted [Feature:NetworkPolicy]",
        "x/a y/a", [
            _step(_tcp(80), _reach(_peer("x/", "", False), _peer("", "x/", False)),
                  _create("x", "deny-all", _gen(_all(), ingress=[], egress=[]))),
            # k8s.cleanNetworkPolicies deletes every policy of x, y and z: only this one.
            _step(_tcp(80), _reach(), DeletePolicy("x", "deny-all")),
        ])

    add("should allow egress access to server in CIDR block [Feature:NetworkPolicy]",
        "x/a y/a y/b", [
            _step(_tcp(80),
                  _reach(ExpectAllEgress("x/a", False), Expect("x/a", "y/b", True)),
                  _create("x", "allow-client-a-via-cidr-egress-rule",
                          _gen(_pod("a"), egress=[
                              {"to": [{"ipBlock": {"cidr": "{ip:y/b}/32"}}]},
                          ]))),
        ])

    def large_cidr_except_xb() -> Json:
        # makeLargeCIDRForIP(podB IP) = the /4 holding it; except podB's /32.
        return _gen(_pod("a"), egress=[
            {"to": [{"ipBlock": {"cidr": "{net:x/b/4}", "except": ["{ip:x/b}/32"]}}]},
        ])

    add("should enforce except clause while egress access to server in CIDR block "
        "[Feature:NetworkPolicy]",
        "x/a x/b x/c", [
            _step(_tcp(80), _reach(Expect("x/a", "x/b", False)),
                  _create("x", "allow-client-a-via-cidr-egress-rule", large_cidr_except_xb())),
        ])

    add("should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed "
        "[Feature:NetworkPolicy]",
        "x/a x/b x/c", [
            _step(_tcp(80), _reach(Expect("x/a", "x/b", False)),
                  _create("x", "allow-client-a-via-cidr-egress-rule", large_cidr_except_xb())),
            # Upstream replaces the policy (same name, UpdatePolicy) with one allowing only
            # podB's /32; it does not add a second policy.
            _step(_tcp(80),
                  _reach(ExpectAllEgress("x/a", False), Expect("x/a", "x/b", True)),
                  _update("x", "allow-client-a-via-cidr-egress-rule",
                          _gen(_pod("a"), egress=[
                              {"to": [{"ipBlock": {"cidr": "{ip:x/b}/32"}}]},
                          ]))),
        ])

    add("should enforce policies to check ingress and egress policies can be controlled "
        "independently based on PodSelector [Feature:NetworkPolicy]",
        "x/a x/b y/a", [
            _step(_tcp(80), _reach(),
                  _create("x", "allow-egress-for-target", _gen(_pod("a"), egress=[{}]))),
            _step(_tcp(80), _reach(ExpectAllIngress("x/a", False)),
                  _create("x", "deny-ingress-via-label-selector", _gen(_pod("a"), ingress=[]))),
        ])

    add("should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin "
        "doesn't support SCTP [Feature:NetworkPolicy]",
        "x/a y/a", [
            _step(_tcp(81), _reach(_peer("", "x/", False)),
                  _create("x", "deny-ingress", _gen(_all(), ingress=[])),
                  _create("x", "allow-only-sctp-ingress-on-port-81",
                          _gen(_pod("a"), ingress=[{"ports": [_port(81, "SCTP")]}]))),
        ], ports=(81,))

    add("should properly isolate pods that are selected by a policy allowing SCTP, even if the "
        "plugin doesn't support SCTP [Feature:NetworkPolicy]",
        "x/a y/a", [
            _step(_tcp(81), _reach(ExpectAllIngress("x/a", False)),
                  _create("x", "allow-only-sctp-ingress-on-port-80",
                          _gen(_pod("a"), ingress=[{"ports": [_port(80, "SCTP")]}]))),
        ], ports=(81,))

    add("should not allow access by TCP when a policy specifies only UDP "
        "[Feature:NetworkPolicy]",
        "x/a y/a", [
            _step(_tcp(81), _reach(ExpectAllIngress("x/a", False)),
                  _create("x", "allow-only-udp-ingress-on-port-81",
                          _gen(_pod("a"), ingress=[{"ports": [_port(81, "UDP")]}]))),
        ], ports=(81,))

    add("should enforce policy to allow traffic based on NamespaceSelector with MatchLabels "
        "using default ns label [Feature:NetworkPolicy]",
        "x/a x/b y/a z/a", [
            _step(_tcp(80),
                  _reach(_peer("x/", "x/a", False), _peer("z/", "x/a", False)),
                  _create("x", "allow-client-a-via-ns-selector-for-immutable-ns-label",
                          _gen(_pod("a"), ingress=[{"from": [{"namespaceSelector": _ns("y")}]}]))),
        ])

    add("should enforce policy based on NamespaceSelector with MatchExpressions using default "
        "ns label [Feature:NetworkPolicy]",
        "x/a x/b y/a z/a", [
            _step(_tcp(80), _reach(_peer("x/a", "y/", False)),
                  _create("x", "allow-ns-y-match-selector-for-immutable-ns-label",
                          _gen(_pod("a"), egress=[
                              {"to": [{"namespaceSelector": _expr(NS_NAME_LABEL, "NotIn", "y")}]},
                          ]))),
        ])

    return cases


# ---- the UDP and SCTP contexts: the same three tests, one protocol each ----
def _one_protocol_cases(protocol: str, context: str) -> list[Case]:
    probe = {"UDP": _udp, "SCTP": _sctp}[protocol]
    one = (protocol,)
    return [
        Case(
            name="should support a 'default-deny-ingress' policy [Feature:NetworkPolicy]",
            pods=_pods("x/a x/b y/a y/b"), ports=(80,), protocols=one, context=context,
            steps=(
                _step(probe(80), _reach(_peer("", "x/", False)),
                      _create("x", "deny-all", _gen(_all(), ingress=[]))),
            ),
        ),
        Case(
            name="should enforce policy based on Ports [Feature:NetworkPolicy]",
            pods=_pods("x/a x/b y/a z/a"), ports=(81,), protocols=one, context=context,
            steps=(
                _step(probe(81), _reach(_peer("x/", "x/a", False), _peer("z/", "x/a", False)),
                      _create("x", "allow-ingress-on-port-81-ns-x",
                              _gen(_pod("a"), ingress=[
                                  {"from": [{"namespaceSelector": _ns("y")}],
                                   "ports": [_port(81, protocol)]},
                              ]))),
            ),
        ),
        Case(
            name="should enforce policy to allow traffic only from a pod in a different "
                 "namespace based on PodSelector and NamespaceSelector [Feature:NetworkPolicy]",
            pods=_pods("x/a x/b y/a"), ports=(80,), protocols=one, context=context,
            steps=(
                _step(probe(80),
                      _reach(ExpectAllIngress("x/a", False), Expect("y/a", "x/a", True)),
                      _create("x", "allow-ns-y-pod-a-via-namespace-pod-selector",
                              _gen(_pod("a"), ingress=[
                                  {"from": [{"namespaceSelector": _ns("y"),
                                             "podSelector": _pod("a")}]},
                              ]))),
            ),
        ),
    ]


CASES: tuple[Case, ...] = (
    *_tcp_cases(),
    *_one_protocol_cases("UDP", UDP_CONTEXT),
    *_one_protocol_cases("SCTP", SCTP_CONTEXT),
)
