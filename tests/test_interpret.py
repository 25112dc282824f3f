"""The ruleset interpreter: hand-written walks, and a kernel-free cross-check of the
compiler against the reference evaluator (tests/oracle.py) over generated clusters."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from npc.compile import names
from npc.compile.compiler import Options, compile_ruleset
from npc.compile.interpret import (
    Packet,
    PacketVerdict,
    Status,
    explain_connection,
    format_explanation,
    walk,
)
from npc.compile.ruleset import (
    L4,
    Accept,
    Chain,
    Direction,
    Drop,
    InSet,
    IpSet,
    Jump,
    Mark,
    Member,
    Origin,
    Rule,
    Ruleset,
    SetKind,
    SetMark,
)
from npc.model.load import Loaded, add_object
from npc.model.objects import ClusterState, Protocol
from tests import oracle
from tests.strategies import cluster_states, probes

BRIDGE_PORT = "vethwe-bridge"
IP = {"x/a": "10.32.0.10", "x/b": "10.32.0.11", "y/a": "10.32.0.12", "y/b": "10.32.0.13",
      "z/a": "10.32.0.14"}


# ---- building clusters ---------------------------------------------------------------------
def _pod(key: str, labels: dict[str, str], ports: tuple[tuple[str, int, str], ...] = ()
         ) -> dict[str, Any]:
    namespace, name = key.split("/")
    container = {"name": "c", "ports": [{"name": n, "containerPort": p, "protocol": proto}
                                        for n, p, proto in ports]}
    return {"kind": "Pod", "metadata": {"namespace": namespace, "name": name, "labels": labels},
            "spec": {"containers": [container]},
            "status": {"phase": "Running", "podIP": IP[key]}}


BASE: tuple[dict[str, Any], ...] = (
    {"kind": "Namespace", "metadata": {"name": "x", "labels": {"team": "a"}}},
    {"kind": "Namespace", "metadata": {"name": "y", "labels": {"team": "b"}}},
    {"kind": "Namespace", "metadata": {"name": "z"}},
    _pod("x/a", {"app": "a"}),
    _pod("x/b", {"app": "b"}),
    _pod("y/a", {"app": "a"}, (("http", 8080, "TCP"),)),
    _pod("y/b", {"app": "b"}, (("http", 80, "TCP"),)),
    _pod("z/a", {"app": "a"}),
)


def compiled(*policies: tuple[str, dict[str, Any]], options: Options | None = None) -> Ruleset:
    loaded = Loaded()
    manifests = [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                  "metadata": {"namespace": key.split("/")[0], "name": key.split("/")[1]},
                  "spec": spec} for key, spec in policies]
    for i, obj in enumerate((*BASE, *manifests)):
        add_object(loaded, obj, f"object {i}")
    assert not loaded.problems, loaded.problems
    return compile_ruleset(loaded.state(), options)


def explain(rs: Ruleset, src: str, dst: str, port: int = 80,
            protocol: Protocol | None = Protocol.TCP, *, same_node: bool = True) -> Any:
    return explain_connection(rs, IP[src], IP[dst], port, protocol, same_node=same_node)


def assert_trace_is_the_rulesets(rs: Ruleset, verdict: PacketVerdict) -> None:
    for step in verdict.trace:
        if step.chain not in ("FORWARD", "INPUT"):
            assert rs.chain(step.chain).rules[step.index] == step.rule


DENY_INGRESS = ("y/deny", {"podSelector": {}, "policyTypes": ["Ingress"]})
DENY_EGRESS = ("x/deny-out", {"podSelector": {}, "policyTypes": ["Egress"]})


# ---- hand-written cases --------------------------------------------------------------------
@pytest.mark.parametrize("same_node", [True, False])
def test_no_policy_allows_everything(same_node: bool) -> None:
    e = explain(compiled(), "x/a", "y/a", same_node=same_node)
    assert e.allowed
    assert e.egress.status is Status.ALLOWED and e.ingress.status is Status.ALLOWED
    assert e.egress.reason.endswith("DefaultAllow rule of namespace x")
    assert e.ingress.reason.endswith("DefaultAllow rule of namespace y")
    assert not any(v.logged for _, v in e.walks)


@pytest.mark.parametrize("same_node", [True, False])
def test_default_deny_ingress(same_node: bool) -> None:
    rs = compiled(DENY_INGRESS)
    e = explain(rs, "x/a", "y/a", same_node=same_node)
    assert not e.allowed
    assert e.egress.reason.endswith("DefaultAllow rule of namespace x")
    assert e.ingress.status is Status.DENIED
    assert e.ingress.reason == "no ingress rule allowed it (isolated by y/deny)"
    where, last = e.walks[-1]
    assert last.logged and not last.allowed
    assert [s.chain for s in last.trace[-2:]] == ["FORWARD", "FORWARD"]
    assert isinstance(last.trace[-1].rule.verdict, Drop)
    if not same_node:
        assert where == "destination node"
        leaving = e.walks[0][1]
        assert leaving.allowed and leaving.ingress.status is Status.SKIPPED
    assert explain(rs, "y/a", "x/a", same_node=same_node).allowed


@pytest.mark.parametrize("same_node", [True, False])
def test_allow_via_namespace_selector(same_node: bool) -> None:
    rs = compiled(("y/allow", {"podSelector": {}, "ingress": [{"from": [
        {"podSelector": {"matchLabels": {"app": "b"}}},
        {"namespaceSelector": {"matchLabels": {"team": "a"}}}]}]}))
    e = explain(rs, "x/a", "y/a", same_node=same_node)
    assert e.allowed
    assert e.ingress.origins == (Origin("y/allow", "ingress", 0, 1, -1),)
    assert e.ingress.reason == "policy rule y/allow ingress[0] peer[1]"
    assert explain(rs, "y/b", "y/a", same_node=same_node).ingress.origins == (
        Origin("y/allow", "ingress", 0, 0, -1),)
    denied = explain(rs, "z/a", "y/a", same_node=same_node)
    assert not denied.allowed and denied.ingress.status is Status.DENIED
    for _, verdict in e.walks:
        assert_trace_is_the_rulesets(rs, verdict)


def test_egress_mark_path() -> None:
    rs = compiled(("x/out", {"podSelector": {"matchLabels": {"app": "a"}},
                             "policyTypes": ["Egress"],
                             "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "b"}}}],
                                         "ports": [{"port": 80}]}]}))
    e = explain(rs, "x/a", "x/b", 80)
    assert e.allowed
    assert e.egress.reason == "policy rule x/out egress[0] peer[0] port[0]"
    verdict = e.walks[0][1]
    assert verdict.mark == names.EGRESS_MARK
    marking = [s for s in verdict.trace if s.chain == names.EGRESS_ACCEPT_CHAIN]
    assert len(marking) == 1 and isinstance(marking[0].rule.verdict, SetMark)
    assert e.ingress.reason.endswith("DefaultAllow rule of namespace x")
    assert_trace_is_the_rulesets(rs, verdict)

    blocked = explain(rs, "x/a", "x/b", 81)
    assert not blocked.allowed and blocked.walks[0][1].logged
    assert blocked.egress.reason == "no egress rule allowed it (isolated by x/out)"
    assert blocked.ingress.status is Status.NOT_REACHED
    across = explain(rs, "x/a", "x/b", 81, same_node=False)
    assert not across.allowed and len(across.walks) == 1
    assert across.ingress.status is Status.NOT_REACHED
    assert explain(rs, "x/b", "x/a", 81).allowed  # x/b is not selected: not isolated


def test_named_port_resolves_per_destination() -> None:
    rs = compiled(("y/web", {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]}))
    assert explain(rs, "x/a", "y/a", 8080).allowed
    assert not explain(rs, "x/a", "y/a", 80).allowed
    assert explain(rs, "x/a", "y/b", 80).allowed
    assert not explain(rs, "x/a", "y/b", 8080).allowed
    assert not explain(rs, "x/a", "y/a", 8080, Protocol.UDP).allowed
    assert not explain(rs, "x/a", "y/a", 8080, None).allowed
    assert explain(rs, "x/a", "y/a", 8080).ingress.reason == "policy rule y/web ingress[0] port[0]"


def test_ip_block_except() -> None:
    rs = compiled(("y/cidr", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {
        "cidr": "10.32.0.0/24", "except": ["10.32.0.10/32"]}}]}]}))
    assert explain(rs, "x/b", "y/a").ingress.reason == "policy rule y/cidr ingress[0] peer[0]"
    assert not explain(rs, "x/a", "y/a").allowed


@pytest.mark.parametrize("allow_mcast", [True, False])
def test_multicast_bypass(allow_mcast: bool) -> None:
    rs = compiled(DENY_EGRESS, ("x/deny-in", {"podSelector": {}}),
                  options=Options(allow_mcast=allow_mcast))
    verdict = walk(rs, Packet(IP["x/a"], "224.0.0.251", Protocol.UDP, 5353))
    assert verdict.allowed is allow_mcast
    if allow_mcast:
        assert (verdict.egress.reason, verdict.ingress.reason) == ("multicast", "multicast")
    else:
        assert verdict.egress.status is Status.DENIED


def test_physdev_bypass() -> None:
    rs = compiled(DENY_EGRESS, DENY_INGRESS)
    arriving = walk(rs, Packet(IP["x/a"], IP["y/a"], physdev_in=BRIDGE_PORT))
    assert not arriving.allowed
    assert arriving.egress.status is Status.SKIPPED
    assert arriving.egress.reason == "from other nodes: their egress was checked there"
    assert arriving.ingress.reason == "no ingress rule allowed it (isolated by y/deny)"
    leaving = walk(rs, Packet(IP["y/a"], IP["y/b"], physdev_out=BRIDGE_PORT))
    assert leaving.allowed and leaving.ingress.status is Status.SKIPPED
    assert leaving.ingress.reason == "to other nodes: their ingress is checked there"


def test_bridge_port_is_read_from_the_ruleset() -> None:
    rs = compiled(DENY_INGRESS, options=Options(bridge_port="vethwe-other"))
    e = explain(rs, "x/a", "z/a", same_node=False)
    assert e.allowed and e.walks[0][1].ingress.status is Status.SKIPPED


def test_pod_to_node_goes_through_input() -> None:
    rs = compiled(DENY_EGRESS)
    verdict = walk(rs, Packet(IP["x/a"], "10.32.0.1", dst_local=True))
    assert verdict.allowed
    assert verdict.trace[0].chain == "INPUT"
    assert verdict.egress.reason == "to this node's addresses"
    assert verdict.ingress.status is Status.NOT_CHECKED


def test_routed_and_external_traffic() -> None:
    rs = compiled(DENY_INGRESS)
    outward = walk(rs, Packet(IP["y/a"], "198.51.100.1", out_bridge=False))
    assert outward.allowed and outward.ingress.status is Status.NOT_CHECKED
    assert outward.trace[-1].rule.comment == "-i weave ! -o weave -j ACCEPT"
    inward = walk(rs, Packet("198.51.100.1", IP["y/a"], in_bridge=False))
    assert not inward.allowed and inward.egress.status is Status.NOT_CHECKED
    established = walk(rs, Packet("198.51.100.1", IP["y/a"], in_bridge=False,
                                  state="ESTABLISHED"))
    assert established.allowed


# ---- the primitives, on a hand-built ruleset -----------------------------------------------
def tiny(main: tuple[Rule, ...], egress: tuple[Rule, ...] = ()) -> Ruleset:
    sets = (IpSet("ips", SetKind.HASH_IP, "", "", (Member("10.0.0.1"),)),
            IpSet("nets", SetKind.HASH_NET, "", "", (Member("10.1.0.0/16"),)),
            IpSet("list", SetKind.LIST_SET, "", "", (Member("ips"), Member("nets"))))
    return Ruleset(sets, (Chain(names.MAIN_CHAIN, main), Chain(names.EGRESS_CHAIN, egress)))


def allows(rs: Ruleset, src: str, port: int = 80, protocol: Protocol | None = Protocol.TCP,
           mark: int = 0) -> bool:
    return walk(rs, Packet(src, "10.9.9.9", protocol, port, mark=mark)).allowed


def test_set_kinds_and_negation() -> None:
    rs = tiny((Rule((InSet(Direction.SRC, "list"),), Accept(), "in list"),))
    assert allows(rs, "10.0.0.1") and allows(rs, "10.1.2.3")
    assert not allows(rs, "10.0.0.2")
    rs = tiny((Rule((InSet(Direction.SRC, "nets", negate=True),), Drop(), "not in nets"),
               Rule((), Accept(), "rest")))
    assert allows(rs, "10.1.255.255") and not allows(rs, "10.2.0.1")


def test_ports_protocols_and_marks() -> None:
    rs = tiny((Rule((L4(Protocol.TCP, 80, 90),), Accept(), "range"),))
    assert allows(rs, "10.0.0.1", 80) and allows(rs, "10.0.0.1", 90)
    assert not allows(rs, "10.0.0.1", 91) and not allows(rs, "10.0.0.1", 85, Protocol.UDP)
    assert not allows(rs, "10.0.0.1", 85, None)
    marked = Rule((Mark(0x40000, 0x40000),), Accept(), "marked")
    set_mark = Rule((), SetMark(0x40000, 0x40000), "mark")
    assert not allows(tiny((marked,)), "10.0.0.1")
    assert allows(tiny((marked,)), "10.0.0.1", mark=0x40001)
    assert allows(tiny((marked,), (set_mark,)), "10.0.0.1")


def test_broken_rulesets_are_errors() -> None:
    with pytest.raises(ValueError, match="does not define"):
        allows(tiny((Rule((), Jump("NOWHERE"), "jump"),)), "10.0.0.1")
    with pytest.raises(ValueError, match="does not define"):
        allows(tiny((Rule((InSet(Direction.SRC, "missing"),), Accept(), "set"),)), "10.0.0.1")
    with pytest.raises(ValueError, match="loop"):
        allows(tiny((Rule((), Jump(names.MAIN_CHAIN), "self"),)), "10.0.0.1")


def test_format_explanation() -> None:
    rs = compiled(("y/allow", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"team": "a"}}}], "ports": [{"port": 80}]}]}))
    text = format_explanation(explain(rs, "x/a", "y/a", same_node=False))
    lines = text.splitlines()
    assert lines[0] == "ALLOWED: 10.32.0.10 -> 10.32.0.12 TCP/80 (different nodes)"
    assert lines[1] == ("  egress allowed: not isolated for egress: matched the DefaultAllow"
                        " rule of namespace x")
    assert lines[2] == "  ingress allowed: policy rule y/allow ingress[0] peer[0] port[0]"
    assert "  rules matched on the source node:" in lines
    assert "  rules matched on the destination node:" in lines
    assert format_explanation(explain(rs, "x/a", "y/a"), trace=False).count("\n") == 3


# ---- the compiler against the reference evaluator ------------------------------------------
PODS = [(f"{ns}/{name}", f"10.32.0.{10 + i}")
        for i, (ns, name) in enumerate((ns, name) for ns in "xyz" for name in "abc")]
NODES = {key: f"node-{i % 2}" for i, (key, _) in enumerate(PODS)}


def disagreements(state: ClusterState, port: int, protocol: Protocol) -> list[str]:
    rs = compile_ruleset(state)
    out = []
    for src, src_ip in PODS:
        for dst, dst_ip in PODS:
            if src == dst:
                continue
            e = explain_connection(rs, src_ip, dst_ip, port, protocol,
                                   same_node=NODES[src] == NODES[dst])
            if e.allowed != oracle.allowed(state, src, dst, port, protocol):
                out.append(f"{src} -> {dst}: oracle {not e.allowed}, interpreter {e.allowed}\n"
                           + format_explanation(e))
    return out


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=cluster_states(PODS, nodes=NODES), probe=probes())
def test_compiled_rules_agree_with_reference_evaluator(state: ClusterState,
                                                       probe: tuple[int, Protocol]) -> None:
    port, protocol = probe
    found = disagreements(state, port, protocol)
    assert not found, f"{protocol.value}/{port}, policies {state.policies}\n" + "\n".join(found)

