"""Pure tests of the compiler: names, membership, rule shapes, determinism, fail-closed."""

from __future__ import annotations

from typing import Any

import pytest

from npc.compile import names
from npc.compile.compiler import Options, compile_ruleset
from npc.compile.ruleset import L4, InSet, Ruleset, SetKind
from npc.render import dump
from tests.support.objects import BASE, pod, policy, state


def members(ruleset: Ruleset, source: str) -> set[str]:
    return {m.value for m in ruleset.set_by_name()[names.set_name(source)].members}


@pytest.mark.parametrize(("source", "expected"), [
    ("ingress-default-allow:default", "weave-;rGqyMIl1HN^cfDki~Z$3]6!N"),
    ("egress-default-allow:default", "weave-s_+ChJId4Uy_$}G;WdH|~TK)I"),
    (":app=source", "weave-I239Zp%sCvoVt*D6u=A!2]YEk"),
    ("source:", "weave-HboJG1fGgG]/SR%k9H#hv5e96"),
    ("default:run=bar", "weave-bZ~x=yBgzH)Ht()K*Uv3z{M]Y"),
    ("default:ipblock-except:192.168.48.1/32 192.168.48.2/32",
     "weave-j:W$5om!$8JS})buYAD7q^#sX"),
], ids=["ingress-default", "egress-default", "ns-selector", "all-pods", "pod-selector",
        "except"])
def test_set_names_match_original_vectors(source: str, expected: str) -> None:
    assert names.set_name(source) == expected
    assert len(expected) <= 31


def test_no_policy_everything_default_allowed() -> None:
    rs = compile_ruleset(state(*BASE))
    assert members(rs, "ingress-default-allow:x") == {"10.32.0.1", "10.32.0.2"}
    assert members(rs, "egress-default-allow:y") == {"10.32.0.3"}
    assert rs.chain(names.INGRESS_CHAIN).rules == ()
    # No egress policy: blocked egress is neither logged nor dropped.
    assert len(rs.chain(names.EGRESS_CHAIN).rules) == 6


def test_policy_types_decide_isolation_direction() -> None:
    egress_only = policy("x/p", {"podSelector": {"matchLabels": {"app": "a"}},
                                 "policyTypes": ["Egress"]})
    rs = compile_ruleset(state(*BASE, egress_only))
    assert members(rs, "ingress-default-allow:x") == {"10.32.0.1", "10.32.0.2"}
    assert members(rs, "egress-default-allow:x") == {"10.32.0.2"}
    assert len(rs.chain(names.EGRESS_CHAIN).rules) == 8  # NFLOG + DROP appear


def test_named_port_resolves_per_destination_pod() -> None:
    p = policy("x/p", {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]})
    rs = compile_ruleset(state(*BASE, p))
    rules = rs.chain(names.INGRESS_CHAIN).rules
    ports = sorted(next(m.port_low for m in r.matches if isinstance(m, L4)) or 0 for r in rules)
    assert ports == [80, 8080]
    assert members(rs, "named-port+tcp:http=80") == {"10.32.0.1"}
    assert members(rs, "named-port+tcp:http=8080") == {"10.32.0.2"}


def test_unresolvable_named_port_allows_nothing_but_isolates() -> None:
    p = policy("x/p", {"podSelector": {}, "ingress": [{"ports": [{"port": "nope"}]}]})
    rs = compile_ruleset(state(*BASE, p))
    assert rs.chain(names.INGRESS_CHAIN).rules == ()
    assert members(rs, "ingress-default-allow:x") == set()


def test_named_port_wrong_protocol_allows_nothing() -> None:
    p = policy("x/p", {"podSelector": {}, "ingress": [{"ports": [{"port": "dns"}]}]})
    assert compile_ruleset(state(*BASE, p)).chain(names.INGRESS_CHAIN).rules == ()


def test_end_port_is_a_range() -> None:
    p = policy("x/p", {"podSelector": {}, "ingress": [{"ports": [
        {"port": 80, "endPort": 90, "protocol": "SCTP"}]}]})
    (rule,) = compile_ruleset(state(*BASE, p)).chain(names.INGRESS_CHAIN).rules
    l4 = next(m for m in rule.matches if isinstance(m, L4))
    assert (l4.protocol.value, l4.port_low, l4.port_high) == ("SCTP", 80, 90)


def test_policy_selecting_no_pods_does_nothing() -> None:
    p = policy("x/p", {"podSelector": {"matchLabels": {"app": "zzz"}}, "ingress": [{}]})
    rs = compile_ruleset(state(*BASE, p))
    assert rs.chain(names.INGRESS_CHAIN).rules == ()
    assert members(rs, "ingress-default-allow:x") == {"10.32.0.1", "10.32.0.2"}


@pytest.mark.parametrize("extra", [
    {"phase": "Succeeded"}, {"phase": "Failed"}, {"host_network": True}],
    ids=["succeeded", "failed", "host-network"])
def test_non_participating_pods_are_in_no_set(extra: dict[str, Any]) -> None:
    p = policy("x/p", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]})
    rs = compile_ruleset(state(*BASE, pod("x/gone", "10.32.0.9", {}, **extra), p))
    assert all("10.32.0.9" not in {m.value for m in s.members} for s in rs.sets)


def test_colliding_selectors_of_the_original_get_distinct_sets() -> None:
    """weave-npc hashed all three of these peers to one name (reference §2.3).  The first
    two mean the same (all pods of matching namespaces) and share one list:set; the third
    (pods labelled team=a in any namespace) is a hash:ip set of its own."""
    peers = [{"namespaceSelector": {"matchLabels": {"team": "a"}}},
             {"namespaceSelector": {"matchLabels": {"team": "a"}}, "podSelector": {}},
             {"namespaceSelector": {}, "podSelector": {"matchLabels": {"team": "a"}}}]
    p = policy("x/p", {"podSelector": {}, "ingress": [{"from": peers}]})
    rs = compile_ruleset(state(*BASE, p))
    used = {m.set_name for r in rs.chain(names.INGRESS_CHAIN).rules for m in r.matches
            if isinstance(m, InSet) and m.direction.value == "src"}
    assert len(used) == 2
    kinds = sorted(rs.set_by_name()[n].kind.value for n in used)
    assert kinds == ["hash:ip", "list:set"]
    pods_labelled = rs.set_by_name()[names.set_name("nsel+psel:|team=a")]
    assert pods_labelled.members == ()


def test_rejected_policy_isolates_and_is_reported() -> None:
    bad = policy("x/bad", {"podSelector": {"matchLabels": {"app": "a"}},
                           "ingress": [{"ports": [{"port": 80, "endPort": 10}]}]})
    rs = compile_ruleset(state(*BASE, bad))
    assert members(rs, "ingress-default-allow:x") == {"10.32.0.2"}
    assert rs.chain(names.INGRESS_CHAIN).rules == ()
    assert any("x/bad" in str(p) for p in rs.problems)


def test_shared_ip_stays_isolated() -> None:
    """Two pods with one IP (a stale Pending one): the isolated one wins (fail closed)."""
    p = policy("x/p", {"podSelector": {"matchLabels": {"app": "a"}}})
    twin = pod("x/twin", "10.32.0.1", {"app": "other"}, phase="Pending")
    rs = compile_ruleset(state(*BASE, twin, p))
    assert "10.32.0.1" not in members(rs, "ingress-default-allow:x")


def test_shared_ip_member_is_named_after_the_first_pod() -> None:
    """Pods sharing an IP give one member, commented with the first in (namespace, name)
    order, whichever order the set's pods were gathered in."""
    first = pod("x/a-first", "10.32.0.9", {"app": "s"}, phase="Pending")
    second = pod("x/b-second", "10.32.0.9", {"app": "s"})
    p = policy("x/p", {"podSelector": {"matchLabels": {"app": "s"}}})
    for objs in ((*BASE, first, second, p), (*BASE, second, first, p)):
        rs = compile_ruleset(state(*objs))
        target = rs.set_by_name()[rs.policies[0].target_set]
        assert [(m.value, m.comment) for m in target.members] == [
            ("10.32.0.9", "namespace: x, pod: a-first")]


def test_namespace_list_set_falls_back_to_hash_set_when_too_many() -> None:
    p = policy("x/p", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]})
    rs = compile_ruleset(state(*BASE, p), Options(max_list_size=1))
    src_sets = [rs.set_by_name()[m.set_name] for r in rs.chain(names.INGRESS_CHAIN).rules
                for m in r.matches if isinstance(m, InSet) and m.direction.value == "src"]
    assert [s.kind for s in src_sets] == [SetKind.HASH_IP]
    assert {m.value for m in src_sets[0].members} == {"10.32.0.1", "10.32.0.2", "10.32.0.3"}


def test_ipv6_block_matches_no_ipv4_traffic() -> None:
    p = policy("x/p", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "::/0"}}]}]})
    rs = compile_ruleset(state(*BASE, p))
    assert rs.chain(names.INGRESS_CHAIN).rules == ()
    assert members(rs, "ingress-default-allow:x") == set()


def test_identical_rules_of_two_policies_are_merged_with_both_origins() -> None:
    spec: dict[str, Any] = {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}
    rs = compile_ruleset(state(*BASE, policy("x/p1", spec), policy("x/p2", spec)))
    (rule,) = rs.chain(names.INGRESS_CHAIN).rules
    assert [o.policy for o in rule.origins] == ["x/p1", "x/p2"]


def test_long_selectors_fit_the_comment_limit() -> None:
    long = {f"k{i:02d}": "v" * 60 for i in range(8)}
    p = policy("x/p", {"podSelector": {"matchLabels": long},
                       "ingress": [{"from": [{"podSelector": {"matchLabels": long}}]}]})
    objs = (*BASE, pod("x/l", "10.32.0.8", long), p)
    from npc.render.iptables import comment_text
    for chain in compile_ruleset(state(*objs)).chains:
        assert all(len(comment_text(r).encode()) < 256 for r in chain.rules)


def test_compilation_is_deterministic_and_order_independent() -> None:
    p1 = policy("x/p1", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {
        "cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "10.0.0.0/16"]}}]}]})
    p2 = policy("y/p2", {"podSelector": {}, "egress": [{"to": [{"namespaceSelector": {}}]}],
                         "policyTypes": ["Egress"]})
    a = compile_ruleset(state(*BASE, p1, p2))
    b = compile_ruleset(state(p2, *reversed(BASE), p1))
    assert a == b
    assert dump.to_restore(a, 1024) == dump.to_restore(b, 1024)
    assert dump.to_json(a) == dump.to_json(b)


@pytest.mark.parametrize("allow", [True, False], ids=["mcast-on", "mcast-off"])
def test_multicast_switch(allow: bool) -> None:
    rs = compile_ruleset(state(*BASE), Options(allow_mcast=allow))
    for chain in (names.MAIN_CHAIN, names.EGRESS_CHAIN):
        has = any("224.0.0.0/4" in repr(r.matches) for r in rs.chain(chain).rules)
        assert has is allow


def test_bridge_port_name_is_configurable() -> None:
    rs = compile_ruleset(state(*BASE), Options(bridge_port="vethwe-other"))
    assert "vethwe-other" in repr(rs.chain(names.MAIN_CHAIN).rules)
    assert "vethwe-other" in repr(rs.chain(names.EGRESS_CHAIN).rules)
