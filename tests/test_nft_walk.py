"""The nftables layout walked without a kernel (``npc debug explain`` on an nftables
node): it agrees with the reference evaluator and with the iptables layout's walk, and it
shows the nftables chains, not the iptables ones."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings

from npc.compile.compiler import compile_ruleset
from npc.compile.interpret import Status, explain_connection, format_explanation
from npc.model.load import Loaded, add_object
from npc.model.objects import ClusterState, Protocol
from npc.render.nft import NftMap, NftSet, NftTable, build_table
from npc.render.nft_walk import explain_connection_nft
from tests import oracle
from tests.strategies import cluster_states, probes

PORT = "vethwe-bridge"
PODS = [(f"{ns}/{name}", f"10.32.0.{10 + i}")
        for i, (ns, name) in enumerate((ns, name) for ns in "xyz" for name in "abc")]
NODES = {key: f"node-{i % 2}" for i, (key, _) in enumerate(PODS)}


def cluster(*policies: dict[str, object]) -> ClusterState:
    loaded = Loaded()
    objects: list[dict[str, object]] = [
        {"kind": "Namespace", "metadata": {"name": "x", "labels": {"team": "a"}}},
        {"kind": "Namespace", "metadata": {"name": "y"}}]
    for i, (key, ip) in enumerate(PODS[:6]):
        ns, name = key.split("/")
        objects.append({"kind": "Pod", "metadata": {"namespace": ns, "name": name,
                                                    "labels": {"app": name}},
                        "spec": {"nodeName": f"node-{i % 2}"},
                        "status": {"phase": "Running", "podIP": ip}})
    objects += [{"kind": "NetworkPolicy", **p} for p in policies]
    for i, obj in enumerate(objects):
        add_object(loaded, obj, f"object {i}")
    assert not loaded.problems
    return loaded.state()


def test_explain_on_nftables_walks_the_nftables_table() -> None:
    state = cluster({"metadata": {"namespace": "y", "name": "allow"}, "spec": {
        "podSelector": {"matchLabels": {"app": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}],
                     "ports": [{"port": 80}]}]}})
    rs = compile_ruleset(state)
    table = build_table(rs, allow_mcast=True)
    src, dst = dict(PODS)["x/a"], dict(PODS)["y/a"]
    e = explain_connection_nft(table, rs, src, dst, 80, Protocol.TCP, same_node=False,
                               bridge_port=PORT)
    text = format_explanation(e)
    lines = text.splitlines()
    assert lines[0] == f"ALLOWED: {src} -> {dst} TCP/80 (different nodes)"
    assert lines[1] == ("  egress allowed: not isolated for egress: the pod is in "
                        "egress_default_allow (pods no egress policy selects)")
    assert lines[2] == "  ingress allowed: policy rule y/allow ingress[0] peer[0] port[0]"
    # the nftables chains and maps, none of iptables' WEAVE-NPC chains
    assert "WEAVE-NPC" not in text and "FORWARD" not in text
    assert "    forward[1] goto egress: from pods: egress first" in lines
    assert "    ingress[4] vmap @ingress_dispatch: ingress policy rules of the destination " \
           "pod" in lines
    target = [line for line in lines if line.startswith("    ingress-s_")]
    assert len(target) == 1 and target[0].endswith("accept: y/allow ingress[0] peer[0] port[0]")
    # the other side of the bridge: leaving the source node, ingress is checked there
    assert "    ingress[2] accept: to other nodes: their ingress is checked there" in lines

    denied = explain_connection_nft(table, rs, dict(PODS)["y/b"], dst, 80, Protocol.TCP,
                                    same_node=True, bridge_port=PORT)
    assert not denied.allowed and denied.ingress.status is Status.DENIED
    assert denied.ingress.reason == "no ingress rule allowed it (isolated by y/allow)"
    assert denied.walks[0][1].logged
    assert format_explanation(denied).splitlines()[-2:] == [
        "    ingress[7] drop: drop blocked", "    (logged to NFLOG group 86)"]


def test_a_pending_pod_is_decided_through_the_pending_chain() -> None:
    """A pod event puts the pod into ``ingress_pending`` rather than the map: the walk takes
    the pending chain and reaches the same target chain."""
    state = cluster({"metadata": {"namespace": "y", "name": "deny"}, "spec": {
        "podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels":
                                                                  {"app": "b"}}}]}]}})
    rs = compile_ruleset(state)
    table = build_table(rs, allow_mcast=True)
    dst = dict(PODS)["y/a"]
    pending = move_to_pending(table, dst)
    for src, allowed in (("y/b", True), ("y/c", False)):
        for t in (table, pending):
            e = explain_connection_nft(t, rs, dict(PODS)[src], dst, 80, Protocol.TCP,
                                       same_node=True, bridge_port=PORT)
            assert e.allowed is allowed, format_explanation(e)
    e = explain_connection_nft(pending, rs, dict(PODS)["y/b"], dst, 80, Protocol.TCP,
                               same_node=True, bridge_port=PORT)
    chains = [line.split("[")[0].strip() for line in e.walks[0][1].trace_lines()]
    assert any(c.startswith("ingress-pending-") for c in chains), chains


def move_to_pending(table: NftTable, ip: str) -> NftTable:
    maps = tuple(NftMap(m.name, tuple(e for e in m.elements if e[0] != ip))
                 if m.name == "ingress_dispatch" else m for m in table.maps)
    sets = tuple(NftSet(s.name, s.interval, s.elements | {ip}, s.comment)
                 if s.name == "ingress_pending" else s for s in table.sets)
    return dataclasses.replace(table, maps=maps, sets=sets)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=cluster_states(PODS, nodes=NODES), probe=probes())
def test_nftables_walk_agrees_with_the_reference_and_the_iptables_walk(
        state: ClusterState, probe: tuple[int, Protocol]) -> None:
    port, protocol = probe
    rs = compile_ruleset(state)
    table = build_table(rs, allow_mcast=True)
    wrong = []
    for src, src_ip in PODS:
        for dst, dst_ip in PODS:
            if src == dst:
                continue
            same = NODES[src] == NODES[dst]
            nft = explain_connection_nft(table, rs, src_ip, dst_ip, port, protocol,
                                         same_node=same, bridge_port=PORT)
            ipt = explain_connection(rs, src_ip, dst_ip, port, protocol, same_node=same)
            want = oracle.allowed(state, src, dst, port, protocol)
            if (nft.allowed != want or (nft.egress.status, nft.ingress.status)
                    != (ipt.egress.status, ipt.ingress.status)):
                wrong.append(f"{src} -> {dst}: oracle {want}\n{format_explanation(nft)}"
                             f"{format_explanation(ipt)}")
    assert not wrong, "\n".join(wrong)
