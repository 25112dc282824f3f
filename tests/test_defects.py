"""One test per defect of the original weave-npc (reference: weave-npc.md §4 and the code
reading list), each proven with real traffic in the lab where it is about enforcement."""

from __future__ import annotations

import re
import socket

import pytest

from common.lab import Lab, in_netns
from npc.compile import names
from npc.dataplane.iptables import IptablesBackend
from tests.cluster import Cluster, Enforcer, lab_cluster, netpol

pytestmark = pytest.mark.kernel  # network namespaces, netfilter, real traffic


def reach(lab: Lab, src: str, dst: str, port: int = 80, proto: str = "TCP") -> bool:
    return lab.probe(src, dst, port, proto, timeout=0.5)


def enforce(enforcer: Enforcer, lab: Lab, cluster: Cluster) -> None:
    enforcer.apply(cluster.state())
    lab.flush_conntrack()


def test_named_port_resolves_per_pod_and_never_fails_open(lab: Lab, enforcer: Enforcer) -> None:
    """#3032: the original rejected policies with named ports, leaving their pods open.
    Here "web" is 80 on x/a and 81 on x/b; the policy opens exactly those."""
    cluster = lab_cluster(lab)
    cluster.pods["x/a"].ports = [(80, "TCP", "web")]
    cluster.pods["x/b"].ports = [(81, "TCP", "web")]
    cluster.put_policy(netpol("x/web-only", {"podSelector": {}, "ingress": [
        {"ports": [{"port": "web"}]}]}))
    enforce(enforcer, lab, cluster)
    assert [reach(lab, "y/a", "x/a", p) for p in (80, 81)] == [True, False]
    assert [reach(lab, "y/a", "x/b", p) for p in (80, 81)] == [False, True]
    assert [reach(lab, "y/a", "x/c", p) for p in (80, 81)] == [False, False]


def test_end_port_range_is_enforced(lab: Lab, enforcer: Enforcer) -> None:
    """The original ignored endPort and allowed only ``port``."""
    cluster = lab_cluster(lab)
    cluster.put_policy(netpol("x/range", {"podSelector": {"matchLabels": {"pod": "a"}},
                                          "ingress": [{"ports": [
                                              {"port": 80, "endPort": 81, "protocol": "UDP"},
                                              {"port": 79, "endPort": 80, "protocol": "SCTP"}]}]}))
    enforce(enforcer, lab, cluster)
    assert [reach(lab, "z/b", "x/a", p, "UDP") for p in (80, 81)] == [True, True]
    assert [reach(lab, "z/b", "x/a", p, "SCTP") for p in (80, 81)] == [True, False]
    assert reach(lab, "z/b", "x/a", 80, "TCP") is False


def test_policy_types_change_on_update_takes_effect(lab: Lab, enforcer: Enforcer) -> None:
    """The original kept isolation keyed by selector, so changing policyTypes did nothing."""
    cluster = lab_cluster(lab)
    spec = {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"]}
    cluster.put_policy(netpol("x/iso", spec))
    enforce(enforcer, lab, cluster)
    assert (reach(lab, "y/b", "x/a"), reach(lab, "x/a", "y/b")) == (False, True)
    cluster.put_policy(netpol("x/iso", {**spec, "policyTypes": ["Egress"]}))
    enforce(enforcer, lab, cluster)
    assert (reach(lab, "y/b", "x/a"), reach(lab, "x/a", "y/b")) == (True, False)


def test_selectors_that_collided_in_the_original_mean_what_they_say(
        lab: Lab, enforcer: Enforcer) -> None:
    """The original hashed {namespaceSelector: team=a} (a list:set) and
    {namespaceSelector: {}, podSelector: team=a} (a hash:ip) to the same set name."""
    cluster = lab_cluster(lab)
    cluster.namespaces["y"]["team"] = "a"
    cluster.pods["z/c"].labels["team"] = "a"
    cluster.put_policy(netpol("x/from-team-ns", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]}]}))
    cluster.put_policy(netpol("x/from-team-pods", {
        "podSelector": {"matchLabels": {"pod": "b"}},
        "ingress": [{"from": [{"namespaceSelector": {},
                               "podSelector": {"matchLabels": {"team": "a"}}}]}]}))
    enforce(enforcer, lab, cluster)
    assert [reach(lab, s, "x/a") for s in ("y/a", "y/c", "z/c", "z/a")] == [
        True, True, False, False]
    assert [reach(lab, s, "x/b") for s in ("y/a", "z/c", "z/a")] == [False, True, False]


def test_namespace_relabel_refreshes_combined_selectors(lab: Lab, enforcer: Enforcer) -> None:
    """The original refreshed only list:sets when namespace labels changed."""
    cluster = lab_cluster(lab)
    cluster.put_policy(netpol("x/combined", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": "dev"}},
                               "podSelector": {"matchLabels": {"pod": "b"}}}]}]}))
    enforce(enforcer, lab, cluster)
    assert reach(lab, "y/b", "x/a") is False
    cluster.namespaces["y"]["env"] = "dev"
    enforce(enforcer, lab, cluster)
    assert (reach(lab, "y/b", "x/a"), reach(lab, "z/b", "x/a")) == (True, False)
    del cluster.namespaces["y"]["env"]
    cluster.namespaces["z"]["env"] = "dev"
    enforce(enforcer, lab, cluster)
    assert (reach(lab, "y/b", "x/a"), reach(lab, "z/b", "x/a")) == (False, True)


def test_egress_stays_closed_across_a_restart(lab: Lab, enforcer: Enforcer) -> None:
    """The original flushed WEAVE-NPC-EGRESS at start, opening egress until an egress
    policy was processed again.  A fresh backend (a restarted process) applying the same
    state writes nothing, so counters survive and egress never opens."""
    cluster = lab_cluster(lab)
    cluster.put_policy(netpol("x/no-egress", {"podSelector": {"matchLabels": {"pod": "a"}},
                                              "policyTypes": ["Egress"]}))
    enforce(enforcer, lab, cluster)
    assert reach(lab, "x/a", "y/a") is False
    restarted = Enforcer(lab, enforcer.mode)
    _, reports = restarted.apply(cluster.state())
    assert not any(r.changed for r in reports)
    assert reach(lab, "x/a", "y/a") is False


def test_namespace_delete_and_recreate(lab: Lab, enforcer: Enforcer) -> None:
    """The original crashed on an existing set or a nil namespace (#3247, #3718, #3836)."""
    cluster = lab_cluster(lab)
    cluster.put_policy(netpol("y/deny", {"podSelector": {}}))
    enforce(enforcer, lab, cluster)
    assert reach(lab, "x/a", "y/a") is False
    gone = lab_cluster(lab, [k for k in lab.keys if not k.startswith("y/")])
    enforce(enforcer, lab, gone)
    if enforcer.is_nftables:  # one default-allow set for all namespaces
        text = enforcer.kernel_text(0)
        assert not any(lab.pod_ip(k) in text for k in lab.keys if k.startswith("y/"))
    else:
        backend = enforcer.backends[0]
        assert isinstance(backend, IptablesBackend)
        assert names.set_name("ingress-default-allow:y") not in backend.read_state().sets
    enforce(enforcer, lab, lab_cluster(lab))  # recreated, without the policy
    assert reach(lab, "x/a", "y/a") is True


def test_external_flush_is_repaired_by_the_next_apply(lab: Lab, enforcer: Enforcer) -> None:
    """The original never reconciled with the kernel (#3764, #3919)."""
    cluster = lab_cluster(lab)
    cluster.put_policy(netpol("x/only-from-y", {"podSelector": {}, "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {names_label(): "y"}}}]}]}))
    enforce(enforcer, lab, cluster)
    assert (reach(lab, "y/a", "x/a"), reach(lab, "z/a", "x/a")) == (True, False)
    node = lab.node_of("x/a")
    enforcer.break_ingress(node, f":{names_label()}=y")
    assert reach(lab, "y/a", "x/a") is False  # broken by the outside flush
    _, reports = enforcer.apply(cluster.state())
    assert reports[node].drift and reports[node].chains_rewritten  # found and repaired
    assert reports[node].ipset_lines > 0
    lab.flush_conntrack()
    assert (reach(lab, "y/a", "x/a"), reach(lab, "z/a", "x/a")) == (True, False)


def strip(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]


_COUNTER = re.compile(r"^\[(\d+):(\d+)\]|counter packets (\d+) bytes (\d+)")


def counters(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """A kernel listing's lines with their counters zeroed, and each line's counter
    (packets, bytes; (0, 0) when it has none)."""
    lines, counts = [], []
    for line in strip(text):
        m = _COUNTER.search(line)
        numbers = [int(g) for g in m.groups() if g is not None] if m else [0, 0]
        counts.append((numbers[0], numbers[1]))
        lines.append(_COUNTER.sub(lambda m: "[0:0]" if m.group(1) else
                                  "counter packets 0 bytes 0", line))
    return lines, counts


def names_label() -> str:
    return "kubernetes.io/metadata.name"


def test_rejected_policy_isolates_and_others_stay_enforced(lab: Lab,
                                                          enforcer: Enforcer) -> None:
    """Bad input fails closed for its own targets and costs nothing else."""
    cluster = lab_cluster(lab)
    cluster.put_policy(netpol("x/broken", {"podSelector": {"matchLabels": {"pod": "a"}},
                                           "ingress": [{"ports": [{"port": 81, "endPort": 80}]}]}))
    cluster.put_policy(netpol("y/good", {"podSelector": {}, "ingress": [
        {"from": [{"podSelector": {}}]}]}))
    loaded = cluster.load()
    assert loaded.failed
    enforcer.apply(loaded.state())
    lab.flush_conntrack()
    assert [reach(lab, "z/a", d) for d in ("x/a", "x/b", "y/a")] == [False, True, False]
    assert reach(lab, "y/b", "y/a") is True


def test_ipv6_block_and_long_selectors_apply_cleanly(lab: Lab, enforcer: Enforcer) -> None:
    """An IPv6 ipBlock made the original's iptables call fail; a long selector overflowed
    the 256-byte rule comment.  Both now apply, and the rest of the rule still works."""
    long = {f"key-{i:02d}": "v" * 60 for i in range(6)}
    cluster = lab_cluster(lab)
    cluster.pods["y/a"].labels.update(long)
    cluster.put_policy(netpol("x/mixed", {"podSelector": {}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "fd00::/8"}},
        {"namespaceSelector": {}, "podSelector": {"matchLabels": long}}]}]}))
    enforce(enforcer, lab, cluster)
    assert (reach(lab, "y/a", "x/a"), reach(lab, "y/b", "x/a")) == (True, False)


def test_many_namespaces_fit_a_namespace_selector(lab: Lab, enforcer: Enforcer) -> None:
    """#3289: a list:set of the kernel's default size 8 was full after 8 namespaces."""
    cluster = lab_cluster(lab)
    for i in range(20):
        cluster.namespaces[f"extra-{i}"] = {names_label(): f"extra-{i}", "team": "t"}
    cluster.namespaces["z"]["team"] = "t"
    cluster.put_policy(netpol("x/from-team", {"podSelector": {}, "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {"team": "t"}}}]}]}))
    enforce(enforcer, lab, cluster)
    assert (reach(lab, "z/a", "x/b"), reach(lab, "y/a", "x/b")) == (True, False)


def test_before_the_first_sync_traffic_to_pods_is_blocked(lab: Lab, enforcer: Enforcer) -> None:
    """With weaver's hooks in place and npc's chains empty, nothing reaches a pod: the
    layout is fail-closed by construction (reference §1.4)."""
    enforcer.remove()
    enforcer.prepare()  # what npc run does at start: empty chains (and the hooks)
    lab.flush_conntrack()
    assert (reach(lab, "x/a", "y/a"), reach(lab, "x/a", "x/c")) == (False, False)
    enforce(enforcer, lab, lab_cluster(lab))
    assert (reach(lab, "x/a", "y/a"), reach(lab, "x/a", "x/c")) == (True, True)


def test_established_connection_survives_a_new_deny_policy(lab: Lab,
                                                           enforcer: Enforcer) -> None:
    """Policy is checked on NEW packets: an established flow keeps working after a deny
    policy lands (as in every iptables implementation), new connections are blocked."""
    cluster = lab_cluster(lab)
    enforce(enforcer, lab, cluster)
    with in_netns(lab.netns_fd(lab.pod_ns("x/a"))):
        listener = socket.create_server(("0.0.0.0", 8080))
    with in_netns(lab.netns_fd(lab.pod_ns("y/a"))):
        client = socket.create_connection((lab.pod_ip("x/a"), 8080), timeout=2)
    server, _ = listener.accept()
    try:
        cluster.put_policy(netpol("x/deny", {"podSelector": {}}))
        enforcer.apply(cluster.state())
        assert reach(lab, "y/b", "x/a") is False
        client.sendall(b"ping")
        server.settimeout(2)
        assert server.recv(4) == b"ping"
        server.sendall(b"pong")
        assert client.recv(4) == b"pong"
    finally:
        for s in (client, server, listener):
            s.close()


def test_counters_preserved_when_nothing_changes(lab: Lab, enforcer: Enforcer) -> None:
    cluster = lab_cluster(lab)
    enforce(enforcer, lab, cluster)
    assert reach(lab, "x/a", "y/b") is True
    node = lab.node_of("y/b")
    before = enforcer.kernel_text(node)
    enforcer.apply(cluster.state())
    after = enforcer.kernel_text(node)
    # Background packets (IPv6 neighbour discovery of the lab's new links) may move
    # counters between the two reads: the rules must be the same, no counter may go back
    # (a rewritten rule starts from 0).
    (rules_before, counts_before), (rules_after, counts_after) = map(counters, (before, after))
    assert rules_before == rules_after
    assert all(a >= b for b, a in zip(counts_before, counts_after, strict=True)), (
        [(line, b, a) for line, b, a in zip(rules_after, counts_before, counts_after,
                                             strict=True) if a < b])
    if enforcer.is_nftables:
        counted = [line for line in strip(after) if "pods no ingress policy selects" in line
                   and "packets 0 " not in line]
    else:
        counted = [line for line in strip(after) if line.startswith("[")
                   and not line.startswith("[0:0]") and "-A WEAVE-NPC-DEFAULT" in line]
    assert counted, "the probe's packets should be counted, and still be"


def test_selector_moving_from_peer_to_target_isolates(lab: Lab, enforcer: Enforcer) -> None:
    """The original left anything whose key was unchanged untouched on update, so making a
    selector that was a peer into the target kept its pods in default-allow."""
    cluster = lab_cluster(lab)
    cluster.put_policy(netpol("x/p", {"podSelector": {"matchLabels": {"pod": "a"}},
                                      "ingress": [{"from": [
                                          {"podSelector": {"matchLabels": {"pod": "b"}}}]}]}))
    enforce(enforcer, lab, cluster)
    assert (reach(lab, "x/b", "x/a"), reach(lab, "x/c", "x/a"), reach(lab, "x/c", "x/b")) == (
        True, False, True)
    cluster.put_policy(netpol("x/p", {"podSelector": {"matchLabels": {"pod": "b"}},
                                      "ingress": [{"from": [
                                          {"podSelector": {"matchLabels": {"pod": "a"}}}]}]}))
    enforce(enforcer, lab, cluster)
    assert (reach(lab, "x/a", "x/b"), reach(lab, "x/c", "x/b"), reach(lab, "x/c", "x/a")) == (
        True, False, True)


def test_egress_to_the_nodes_own_addresses_is_not_filtered(lab: Lab,
                                                           enforcer: Enforcer) -> None:
    """weave-npc's contract: a pod under a deny-all egress policy still reaches its node
    (kubelet, node-local DNS), via INPUT → WEAVE-NPC-EGRESS → addrtype LOCAL."""
    cluster = lab_cluster(lab)
    cluster.put_policy(netpol("x/no-egress", {"podSelector": {}, "policyTypes": ["Egress"]}))
    enforce(enforcer, lab, cluster)
    node = lab.node_of("x/a")
    with in_netns(lab.netns_fd(lab.node_ns(node))):
        listener = socket.create_server((lab.node_ip(node), 8081))
    try:
        with in_netns(lab.netns_fd(lab.pod_ns("x/a"))):
            conn = socket.create_connection((lab.node_ip(node), 8081), timeout=2)
        conn.close()
        assert reach(lab, "x/a", "y/a") is False
    finally:
        listener.close()
