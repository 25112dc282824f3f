"""Policy rules encoded as nf_tables expressions (npc/dataplane/nft_expr.py): every form
the encoder takes, written over netlink and through libnftables into the same kernel,
must list the same; every other form is left to libnftables."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyroute2.netlink import NLA_F_NESTED, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE
from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_NFTABLES

from common.kernel.netns import in_netns, open_netns
from common.kernel.nfnetlink import HEADER, NFGEN, attr, message, open_socket, text
from common.lab.netns import scratch_netns
from npc.compile.compiler import Options, compile_ruleset
from npc.dataplane import nft_netlink
from npc.dataplane.nft_expr import COMMENT_BYTES, rule_expressions
from npc.dataplane.nft_runner import LibNftables, NftError, netlink_chains
from npc.render import nft as nft_render
from npc.render.nft_diff import NftState, set_spec, table_commands
from tests.strategies import cluster_states

Json = dict[str, Any]
_GETRULE, _RULE_EXPRESSIONS, _NFPROTO_INET = 7, 4, 1  # NFT_MSG_GETRULE, NFTA_RULE_*, NFPROTO_*
T = {"family": "inet", "table": "exprtest"}
TABLE = {"family": "inet", "name": "exprtest"}


def match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def ip(field: str) -> Json:
    return {"payload": {"protocol": "ip", "field": field}}


L4PROTO = {"meta": {"key": "l4proto"}}
DPORT = {"payload": {"protocol": "th", "field": "dport"}}


def prefix(cidr: str) -> Any:
    address, length = cidr.split("/")
    return address if length == "32" else {"prefix": {"addr": address, "len": int(length)}}


# Every prefix length (whole bytes load fewer bytes, others mask, /0 masks everything).
PREFIXES = [prefix(str(ipaddress.IPv4Network(("172.31.15.7", n), strict=False)))
            for n in range(33)]
FORMS: list[list[Json]] = [
    [match(ip("saddr"), "@a"), {"counter": None}, {"accept": None}],
    [match(ip("daddr"), "@a", "!="), {"counter": None}, {"accept": None}],
    [match(ip("saddr"), "@a"), match(ip("daddr"), "@b", "!="), {"counter": None},
     {"goto": {"target": "passed"}}],
    [match(L4PROTO, "tcp"), match(DPORT, 80), {"counter": None}, {"accept": None}],
    [match(L4PROTO, "udp"), match(DPORT, {"range": [1000, 2000]}), {"counter": None},
     {"accept": None}],
    [match(L4PROTO, "sctp"), {"counter": None}, {"drop": None}],
    [match(L4PROTO, "tcp"), match(ip("saddr"), "@a"), match(DPORT, 65535),
     {"counter": None}, {"jump": {"target": "passed"}}],
    [{"jump": {"target": "passed"}}],
    [{"counter": None}, {"accept": None}],
    *([match(ip(field), p), {"counter": None}, {"accept": None}]
      for field, p in zip(("saddr", "daddr") * 17, PREFIXES, strict=False)),
    [match(ip("daddr"), prefix("10.0.0.0/8")), match(ip("saddr"), prefix("192.168.1.0/24")),
     match(L4PROTO, "udp"), match(DPORT, {"range": [0, 65535]}), {"counter": None},
     {"accept": None}],
]
LEFT_TO_LIBNFTABLES: list[Json] = [
    {"expr": [match({"ct": {"key": "state"}}, ["new"], "in"), {"accept": None}]},
    {"expr": [match(ip("saddr"), "10.0.0.1", "!="), {"accept": None}]},
    {"expr": [match(ip("saddr"), "10.0.0.1/8"), {"accept": None}]},  # host bits set
    {"expr": [match(ip("saddr"), "@a"), {"log": {"group": 86}}, {"drop": None}]},
    {"expr": [match(L4PROTO, "icmp"), {"accept": None}]},
    {"expr": [match(DPORT, 70000), {"accept": None}]},
    {"expr": [match(DPORT, {"range": [1, "x"]}), {"accept": None}]},
    {"expr": [{"counter": None}]},  # no verdict last
    {"expr": []},
    {"expr": [{"accept": None}], "handle": 4},
    {"expr": [{"accept": None}], "family": "ip"},
    {"expr": [{"accept": None}], "comment": "x" * (COMMENT_BYTES + 1)},
]


def test_pure_forms_encode_and_others_are_left_to_libnftables() -> None:
    for expr in FORMS:
        assert rule_expressions({"expr": expr}), expr
    for rule in LEFT_TO_LIBNFTABLES:
        assert rule_expressions(rule) is None, rule
    assert rule_expressions({"expr": [{"accept": None}], "comment": "x" * COMMENT_BYTES})


@pytest.fixture(scope="module")
def netns_fd() -> Iterator[int]:
    with scratch_netns("npcexpr") as name:
        fd = open_netns(name)
        try:
            yield fd
        finally:
            os.close(fd)


def listed_rules(nft: LibNftables, chain: str) -> list[Json]:
    listing = nft([{"list": {"chain": {**T, "name": chain}}}])
    return [{k: v for k, v in item["rule"].items() if k not in ("chain", "handle")}
            for item in listing["nftables"] if "rule" in item]


def kernel_dump(kind: int, attrs: bytes) -> list[dict[int, bytes]]:
    """The objects an NFT_MSG_GET* dump of ``kind`` returns, each as attribute number →
    value, as the kernel encodes what it holds (equal bytes mean equal objects)."""
    sock = open_socket(5)
    try:
        sock.send(message((NFNL_SUBSYS_NFTABLES << 8) | kind, NLM_F_REQUEST | NLM_F_DUMP,
                          1, _NFPROTO_INET, 0, attrs))
        out: list[dict[int, bytes]] = []
        while True:
            data, offset = sock.recv(1 << 20), 0
            while offset < len(data):
                length, kind_ = HEADER.unpack_from(data, offset)[:2]
                if kind_ == NLMSG_DONE:
                    return out
                position = offset + HEADER.size + NFGEN.size
                found: dict[int, bytes] = {}
                while position < offset + length:
                    size, number = struct.unpack_from("=HH", data, position)
                    found[number & ~NLA_F_NESTED] = data[position + 4:position + size]
                    position += (size + 3) & ~3
                out.append(found)
                offset += (length + 3) & ~3
    finally:
        sock.close()


def kernel_expressions(chain: str) -> list[bytes]:
    """The expressions of each rule of ``chain`` as the kernel dumps them (its own
    encoding of what it holds: equal bytes mean equal bytecode)."""
    rules = kernel_dump(_GETRULE, attr(1, text(T["table"])) + attr(2, text(chain)))
    return [rule[_RULE_EXPRESSIONS] for rule in rules]


def written_both_ways(fd: int, rules: list[Json]) -> tuple[list[Json], list[Json]]:
    """``rules`` written into a new chain through libnftables and into another over
    netlink (one transaction, as a full sync stages them): both chains as listed, once
    the kernel's bytecode of the two is found equal."""
    with in_netns(fd):
        nft = LibNftables()
        with contextlib.suppress(NftError):  # what the previous example left
            nft([{"delete": {"table": TABLE}}])
        nft([{"add": {"table": TABLE}},
             *({"add": {"set": {**T, "name": n, "type": "ipv4_addr"}}} for n in "ab"),
             *({"add": {"chain": {**T, "name": n}}} for n in ("passed", "via-json"))])
        nft([{"add": {"rule": {**T, "chain": "via-json", **r}}} for r in rules])
        encoded = [(rule_expressions(r), r.get("comment", "")) for r in rules]
        assert all(e is not None for e, _ in encoded)
        link = nft_netlink.NftNetlink()
        try:
            link.patch("exprtest", [nft_netlink.NewChain("via-netlink", tuple(
                (e, c) for e, c in encoded if e is not None))], [], [])
        finally:
            link.close()
        assert kernel_expressions("via-netlink") == kernel_expressions("via-json")
        return listed_rules(nft, "via-json"), listed_rules(nft, "via-netlink")


def test_every_form_lists_as_libnftables_writes_it(netns_fd: int) -> None:
    rules = [{"expr": expr, **({"comment": f"rule {i}"} if i % 3 else {})}
             for i, expr in enumerate(FORMS)]
    via_json, via_netlink = written_both_ways(netns_fd, rules)
    assert len(via_json) == len(FORMS)
    assert via_netlink == via_json


ADDRESS_RIGHT = st.one_of(
    st.sampled_from(["@a", "@b"]),
    st.builds(lambda a, n: prefix(f"{a}/{n}"), st.ip_addresses(v=4).map(str),
              st.integers(0, 32)).filter(lambda p: rule_expressions(
                  {"expr": [match(ip("saddr"), p), {"accept": None}]}) is not None))
TERMS = st.one_of(
    st.builds(lambda f, r, neg: match(ip(f), r, "!=" if neg and str(r).startswith("@")
                                      else "=="),
              st.sampled_from(["saddr", "daddr"]), ADDRESS_RIGHT, st.booleans()),
    st.sampled_from(["tcp", "udp", "sctp"]).map(lambda p: match(L4PROTO, p)),
    st.integers(0, 65535).map(lambda p: match(DPORT, p)),
    st.tuples(st.integers(0, 65535), st.integers(0, 65535)).map(
        lambda b: match(DPORT, {"range": sorted(b)})),
    st.just({"counter": None}))
VERDICTS = st.sampled_from([{"accept": None}, {"drop": None}, {"goto": {"target": "passed"}},
                            {"jump": {"target": "passed"}}])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.builds(lambda terms, last, comment: {
    "expr": [*terms, last], **({"comment": comment} if comment else {})},
    st.lists(TERMS, max_size=5), VERDICTS,
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)),
    min_size=1, max_size=8))
def test_generated_rules_list_as_libnftables_writes_them(netns_fd: int, rules: list[Json]
                                                         ) -> None:
    rules = [r for r in rules if rule_expressions(r) is not None]
    if rules:
        via_json, via_netlink = written_both_ways(netns_fd, rules)
        assert via_netlink == via_json


@settings(max_examples=30, deadline=None)
@given(cluster_states([(f"ns{i % 2}/p{i}", f"10.32.0.{i + 1}") for i in range(6)],
                      max_policies=6, non_participants=True))
def test_every_policy_chain_goes_over_netlink(state: Any) -> None:
    """What the renderer writes into group and target chains is all in the encoded forms:
    a full sync gives libnftables none of their rules (only the static chains')."""
    options = Options()
    want = nft_render.build_table(compile_ruleset(state, options), allow_mcast=options.allow_mcast)
    commands = table_commands(want, NftState(), bridge_port=options.bridge_port)
    structure = [c for c in commands if {"chain", "rule"} & c.get("add", {}).keys()
                 and c["add"].get("chain", c["add"].get("rule", {})).get("family") == "inet"]
    base = {c["add"]["chain"]["name"] for c in structure if "hook" in c["add"].get("chain", {})}
    regular = [c for c in structure if c["add"].get("chain", {}).get("name") not in base
               and c["add"].get("rule", {}).get("chain") not in base]
    chains, rest = netlink_chains(regular)
    policy_chains = {c.name for c in chains
                     if c.name.startswith(("ingress-", "egress-")) and c.name != "egress-passed"}
    assert not {c["add"]["rule"]["chain"] for c in rest} & policy_chains
    static = {c.name for c in nft_render._static_chains(True)}
    assert {c["add"]["rule"]["chain"] for c in rest} <= static


_GETSET, _SET_NAME, _SET_HANDLE, _SET_COUNT = 10, 2, 16, 20  # NFT_MSG_GETSET, NFTA_SET_*


def test_address_sets_created_over_netlink_are_those_libnftables_creates(
        netns_fd: int) -> None:
    """The loader's sets (table and sets created in the fill's first transaction) hold
    what ``add set`` through libnftables makes: the kernel dumps the same attributes
    (the name and handle aside), and they fill and list alike."""
    with in_netns(netns_fd):
        nft = LibNftables()
        with contextlib.suppress(NftError):
            nft([{"delete": {"table": TABLE}}])
        spec = set_spec(nft_render.NftSet("via-json", False, frozenset(), "pods: x"))
        link = nft_netlink.NftNetlink()
        try:  # the table too: it does not exist yet
            link.fill(T["table"], [("via-netlink", ["10.1.0.1", "10.1.0.2"])],
                      ["via-netlink", "empty"])
            link.fill(T["table"], [], ["empty"])  # an existing set: no error, as "add"
        finally:
            link.close()
        nft([{"add": {"set": {**spec, "table": T["table"]}}},
             {"add": {"element": {**T, "name": "via-json", "elem": ["10.1.0.1", "10.1.0.2"]}}}])
        dumped = {found[_SET_NAME]: {k: v for k, v in found.items()
                                     if k not in (_SET_NAME, _SET_HANDLE)}
                  for found in kernel_dump(_GETSET, attr(1, text(T["table"])))}
        assert set(dumped) == {text(n) for n in ("via-json", "via-netlink", "empty")}
        assert dumped[text("via-netlink")] == dumped[text("via-json")]
        assert {k: v for k, v in dumped[text("empty")].items() if k != _SET_COUNT} == {
            k: v for k, v in dumped[text("via-json")].items() if k != _SET_COUNT}
        listed = {item["set"]["name"]: item["set"] for item in nft([{"list": {"table": TABLE}}])[
            "nftables"] if "set" in item}
        assert listed["via-netlink"] == {**listed["via-json"], "name": "via-netlink",
                                         "handle": listed["via-netlink"]["handle"]}
        nft([{"delete": {"table": TABLE}}])
