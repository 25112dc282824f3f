"""The nftables backend's delta path: a pod event's set member changes become element
operations without building the table, and leave exactly what a full sync would."""

from __future__ import annotations

import gc
import itertools
import os
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyroute2.netlink import NLA_F_NESTED
from pyroute2.netlink.nfnetlink.nftsocket import nft_rule_msg

from common.kernel.netns import in_netns, open_netns
from common.kernel.nfnetlink import attr
from common.lab.netns import scratch_netns
from npc.compile.compiler import Options, SetListener, compile_ruleset
from npc.compile.incremental import IncrementalCompiler, PodChange, SetDeltas
from npc.compile.ruleset import IpSet, Member, Ruleset
from npc.dataplane import nft_netlink
from npc.dataplane.nft_expr import verdict
from npc.dataplane.nft_runner import LibNftables, NftError, Patch
from npc.dataplane.nftables import NftablesBackend
from npc.model.objects import ClusterState, Pod
from npc.model.parse import parse_network_policy, parse_pod
from npc.render import nft as nft_render
from npc.render.nft_diff import NftState, SetFill, expected_state, settled, state_differences
from tests.strategies import POD_LABELS, cluster_states, container_ports

Json = dict[str, Any]
KEYS = [f"{ns}/{p}" for ns in "xyz" for p in "abcdef"]
PODS = [(k, f"10.32.0.{10 + i}") for i, k in enumerate(KEYS)]
SPARE_IPS = [f"10.32.1.{i}" for i in range(1, 7)]


class NetnsNft:
    """libnftables in a scratch network namespace, recording each batch it commits."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        with in_netns(fd):
            self.nft = LibNftables()
        self.batches: list[list[Json]] = []
        self.fills: list[list[SetFill]] = []
        self.fail_next = False
        self.patches = 0

    def fill(self, sets: list[SetFill], new: Sequence[str] = ()) -> None:
        """The production fill (over netlink), recorded."""
        self.fills.append(sets)
        with in_netns(self.fd):
            self.nft.fill(sets, new)

    def __call__(self, commands: list[Json]) -> Json:
        if not (len(commands) == 1 and "list" in commands[0]):
            self._record(commands)
        with in_netns(self.fd):
            return self.nft(commands)

    def patch(self, patch: Patch) -> None:
        """The production pod-event transaction (over netlink), recorded as its JSON
        equivalent; :attr:`patches` counts them."""
        self.patches += 1
        self._record(as_commands(patch))
        with in_netns(self.fd):
            self.nft.patch(patch)

    def _record(self, commands: list[Json]) -> None:
        self.batches.append(commands)
        if self.fail_next:
            self.fail_next = False
            raise NftError("nft failed (1): injected", commands)


def decoded(expressions: bytes) -> list[Json]:
    """A rule's netlink expressions, decoded by pyroute2 (not by our encoder): a plain
    jump as libnftables JSON says it, anything else as (name, attributes) pairs."""
    message = nft_rule_msg(nft_netlink._numbered((nft_netlink._NEWRULE, 0, "inet", attr(
        nft_netlink._RULE_EXPRESSIONS | NLA_F_NESTED, expressions), ""), 1))
    message.decode()
    out: list[Json] = []
    for expression in message.get_attr("NFTA_RULE_EXPRESSIONS"):
        name, data = expression.get_attr("NFTA_EXPR_NAME"), expression.get_attr("NFTA_EXPR_DATA")
        verdict_ = data.get_attr("NFTA_IMMEDIATE_DATA") if name == "immediate" else None
        jump = verdict_.get_attr("NFTA_DATA_VERDICT") if verdict_ is not None else None
        if jump is not None and jump.get_attr("NFTA_VERDICT_CODE") == "NFT_JUMP":
            out.append({"jump": {"target": jump.get_attr("NFTA_VERDICT_CHAIN")}})
        else:
            out.append({name: dict(data["attrs"])})
    return out


def as_commands(patch: Patch) -> list[Json]:
    """What a netlink patch does, as libnftables JSON commands."""
    creates, elements, removes = patch
    t = {"family": "inet", "table": nft_render.TABLE}
    out: list[Json] = []
    for chain in creates:
        out.append({"add": {"chain": {**t, "name": chain.name}}})
        out += [{"add": {"rule": {**t, "chain": chain.name, "expr": decoded(expressions),
                                  **({"comment": comment} if comment else {})}}}
                for expressions, comment in chain.rules]
    out += [{"delete" if c.delete else "add": {"element": {**t, "name": c.name, "elem": [
        key if chain is None else [key, {"jump": {"target": chain}}]
        for key, chain in c.elements]}}} for c in elements]
    out += [{"flush": {"chain": {**t, "name": name}}} for name in removes]
    out += [{"delete": {"chain": {**t, "name": name}}} for name in removes]
    return out


@pytest.fixture(scope="module")
def nft_ns() -> Iterator[NetnsNft]:
    with scratch_netns("npcdelta") as name:
        fd = open_netns(name)
        try:
            yield NetnsNft(fd)
        finally:
            os.close(fd)


class Spy(NftablesBackend):
    """The production backend, counting how often it builds the whole table."""

    builds = 0

    def desired(self, ruleset: Ruleset, built: Mapping[str, nft_render.NftSet] | None = None
                ) -> nft_render.NftTable:
        self.builds += 1
        return super().desired(ruleset, built)


def fresh_backend(run: NetnsNft, *, netlink: bool = True) -> Spy:
    """The backend as production builds it (pod events over netlink), or as it runs
    through the ``nft`` command (every transaction JSON)."""
    backend = Spy(run, options=Options(), patch=run.patch if netlink else None)
    backend.remove_all()  # whatever an earlier example left
    run.batches.clear()
    return backend


def known(backend: NftablesBackend) -> NftState:
    """What the backend believes the kernel holds (it must believe something)."""
    state = backend.known_state()
    assert state is not None
    return state


def full_table(ruleset: Ruleset) -> nft_render.NftTable:
    return nft_render.build_table(ruleset, allow_mcast=Options().allow_mcast)


def full_state(ruleset: Ruleset) -> NftState:
    """What a full sync of ``ruleset`` leaves in the kernel."""
    return expected_state(full_table(ruleset))


def pending(state: NftState) -> set[str]:
    return state.sets["ingress_pending"] | state.sets["egress_pending"]


# ---- clusters and pod changes ------------------------------------------------------------
OVERLAPPING = [
    ("ingress", {"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]}),
    ("ingress", {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}),
    ("egress", {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["c"]}]}),
    ("egress", {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}),
]
"""Policies in every namespace whose selectors overlap: pods are in zero, one or several of
their target sets, so relabels move them between group chains (new and emptied ones)."""


def with_overlapping_policies(state: ClusterState) -> ClusterState:
    policies = []
    for ns in "xyz":
        for i, (kind, selector) in enumerate(OVERLAPPING):
            rule = {"from": [{"podSelector": {"matchLabels": {"tier": "c"}}}]} \
                if kind == "ingress" else {"to": [{"namespaceSelector": {}}]}
            policy, errors = parse_network_policy({
                "metadata": {"name": f"overlap-{i}", "namespace": ns},
                "spec": {"podSelector": selector, "policyTypes": [kind.capitalize()],
                         kind: [rule]}})
            assert not errors, errors
            policies.append(policy)
    return ClusterState(state.namespaces, state.pods, state.policies + tuple(policies))


def _labels(draw: st.DrawFn) -> dict[str, str]:
    return {k: draw(st.sampled_from(v)) for k, v in POD_LABELS.items() if draw(st.booleans())}


def _pod(draw: st.DrawFn, namespace: str, name: str, ip: str) -> Pod:
    """A new running pod; most declare no ports (named ports changing what a name
    resolves to make the compiler start over, which ends a run of delta syncs)."""
    ports = draw(st.one_of(st.just([]), st.just([]), container_ports()))
    return parse_pod({"metadata": {"name": name, "namespace": namespace,
                                   "labels": _labels(draw)},
                      "spec": {"containers": [{"name": "c", "ports": ports}]},
                      "status": {"phase": "Running", "podIP": ip}})


def _ips(draw: st.DrawFn) -> str:
    """Mostly a spare IP, sometimes one a pod has (a shared IP: compiled in full)."""
    return draw(st.sampled_from(SPARE_IPS + [ip for _, ip in PODS[:3]]))


def _change(draw: st.DrawFn, pods: dict[str, Pod], serial: Iterator[int]
            ) -> list[tuple[str, Pod | None]]:
    """One pod change (a move is two), applied to ``pods``."""
    kind = draw(st.sampled_from(["relabel", "relabel", "relabel", "create", "delete",
                                 "move", "ip", "finish"]))
    if kind == "create" or not pods:
        namespace, name = draw(st.sampled_from("xyz")), f"new{next(serial)}"
        key = f"{namespace}/{name}"
        pods[key] = _pod(draw, namespace, name, _ips(draw))
        return [(key, pods[key])]
    key = draw(st.sampled_from(sorted(pods)))
    if kind in ("delete", "move"):
        gone = pods.pop(key)
        if kind == "delete":
            return [(key, None)]
        # The same IP reappears in another namespace: it leaves one namespace's sets
        # (default-allow, namespace list:sets) and joins another's.
        namespace = draw(st.sampled_from([ns for ns in "xyz" if ns != gone.namespace]))
        name = f"new{next(serial)}"
        moved = f"{namespace}/{name}"
        pods[moved] = _pod(draw, namespace, name, str(gone.ipv4) if gone.ipv4 else _ips(draw))
        return [(key, None), (moved, pods[moved])]
    if kind == "relabel":
        pods[key] = replace(pods[key], labels=tuple(sorted(_labels(draw).items())))
    elif kind == "ip":
        pods[key] = replace(pods[key], ips=(_ips(draw),))
    else:
        pods[key] = replace(pods[key], phase="Succeeded")
    return [(key, pods[key])]


@st.composite
def change_batches(draw: st.DrawFn, state: ClusterState) -> list[list[tuple[str, Pod | None]]]:
    """Batches (one sync each) of pod changes: relabels (moving pods between policy
    groups and in or out of default-allow), creations (joining a namespace's set, hence the
    namespace list:sets), deletions, moves of an IP to another namespace, new IPs
    (sometimes one in use), finishing."""
    pods = {p.key: p for p in state.pods}
    serial = itertools.count(1)
    return [[c for _ in range(draw(st.integers(1, 3))) for c in _change(draw, pods, serial)]
            for _ in range(draw(st.integers(1, 12)))]


def exact_deltas(before: Ruleset, after: Ruleset) -> SetDeltas:
    """The least a caller may pass: only the members that differ (the compiler also
    repeats, for a changed pod, every set it stays in)."""
    old = before.set_by_name()
    out: SetDeltas = {}
    for s in after.sets:
        was = {m.value: m for m in old[s.name].members}
        now = {m.value: m for m in s.members}
        changes: dict[str, Member | None] = {ip: None for ip in was.keys() - now.keys()}
        changes.update((ip, m) for ip, m in now.items() if was.get(ip) != m)
        if changes:
            out[s.name] = changes
    return out


def written(batch: list[Json], unions: set[str]) -> Counter[str]:
    """What one transaction did, by kind of nft object (``unions``: list:set unions)."""
    out: Counter[str] = Counter()
    for command in batch:
        verb, what = next(iter(command.items()))
        obj, spec = next(iter(what.items()))
        name = spec.get("name", "")
        if obj == "element" and name.endswith("_dispatch"):
            out[f"{verb} dispatch element"] += 1
        elif obj == "element" and name.endswith("_pending"):
            out[f"{verb} pending element"] += 1
        elif obj == "element" and name.endswith("_default_allow"):
            out["default-allow element"] += 1
        elif obj == "element":
            out["union element" if name in unions else "set element"] += 1
        else:
            out[f"{verb} {obj}"] += 1
    return out


# ---- the property ------------------------------------------------------------------------
@pytest.mark.parametrize("netlink", [True, False], ids=["netlink", "json"])
def test_delta_syncs_leave_what_full_syncs_would(nft_ns: NetnsNft, netlink: bool) -> None:
    """After every batch of pod changes synced through the delta path, what the backend
    believes the kernel holds is what a full sync of the full compile would leave, once
    the pending pods are folded into the maps (:func:`settled`), and exactly that after a
    tidy; the kernel agrees each time.  Across the run, every kind of change must have
    been taken; in production (``netlink``) each as one netlink transaction, libnftables
    untouched."""
    seen: Counter[str] = Counter()

    @settings(max_examples=200, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        state = data.draw(cluster_states(PODS, max_policies=3, non_participants=True))
        if data.draw(st.booleans()):
            state = with_overlapping_policies(state)
        options = Options()
        inc = IncrementalCompiler(options)
        backend = fresh_backend(nft_ns, netlink=netlink)
        backend.sync(inc.full(state), full_check=True)
        pods = {p.key: p for p in state.pods}
        for batch in data.draw(change_batches(state)):
            changes = []
            for key, new in batch:
                changes.append(PodChange(pods.get(key), new))
                if new is None:
                    del pods[key]
                else:
                    pods[key] = new
            current = ClusterState(state.namespaces, tuple(pods.values()), state.policies)
            previous = inc.ruleset
            patched = inc.patch(changes)
            ruleset, touched = patched if patched is not None else (inc.full(current), None)
            if touched is not None and previous is not None and data.draw(st.booleans()):
                touched = exact_deltas(previous, ruleset)
            builds, batches, patches = backend.builds, len(nft_ns.batches), nft_ns.patches
            roles = backend.set_roles()
            assert roles is not None
            unions = {u for u, parts in roles.unions.items()
                      if not u.endswith("_default_allow")}
            backend.sync(ruleset, changed_sets=touched)
            table = full_table(compile_ruleset(current, options))
            want = expected_state(table)
            assert settled(known(backend), table.dispatch) == want
            assert state_differences(known(backend), backend.read_state()) == []
            index = backend.pending_pods()
            assert index is not None
            assert {ip for pods in index.values() for ip in pods} == pending(known(backend))
            if touched is not None and backend.builds == builds:
                seen["delta syncs"] += 1
                assert nft_ns.patches - patches == (len(nft_ns.batches) - batches
                                                    if netlink else 0)
                for b in nft_ns.batches[batches:]:
                    seen.update(written(b, unions))
            elif touched is not None:
                seen["delta fallbacks"] += 1
            else:
                seen["full compiles"] += 1
                assert not pending(known(backend))
            if data.draw(st.booleans()):
                batches, builds = len(nft_ns.batches), backend.builds
                folding = backend.untidy()
                assert (backend.tidy() is None) == (folding == 0)
                assert known(backend) == want and not pending(known(backend))
                assert state_differences(want, backend.read_state()) == []
                assert backend.untidy() == 0 and backend.builds == builds
                seen["tidies"] += folding > 0
                for b in nft_ns.batches[batches:]:
                    seen.update(written(b, unions))

    check()
    for kind in ("delta syncs", "add dispatch element", "delete dispatch element",
                 "add pending element", "delete pending element", "tidies",
                 "default-allow element", "set element", "union element", "add chain",
                 "delete chain"):
        assert seen[kind] > 0, (kind, seen)
    assert seen["delta syncs"] > 10 * seen["delta fallbacks"], seen


def test_union_sets_follow_their_member_sets(nft_ns: NetnsNft) -> None:
    """A namespace list:set's nft set is the union of its namespaces' pod sets: a pod
    joining or leaving one namespace changes it, through the delta path."""
    from tests.support.objects import ns, pod, policy, state

    base = state(ns("x", team="a"), ns("y", team="a"),
                 pod("x/a", "10.32.0.1"), pod("y/b", "10.32.0.2"), pod("x/t", "10.32.0.3",
                                                                       {"app": "t"}),
                 policy("x/from-team-a", {"podSelector": {"matchLabels": {"app": "t"}},
                                          "ingress": [{"from": [{"namespaceSelector": {
                                              "matchLabels": {"team": "a"}}}]}]}))
    inc = IncrementalCompiler(Options())
    backend = fresh_backend(nft_ns)
    backend.sync(inc.full(base), full_check=True)
    roles = backend.set_roles()
    assert roles is not None
    unions = [name for name in roles.unions
              if not name.endswith("_default_allow")]
    assert len(unions) == 1
    assert known(backend).sets[unions[0]] == {"10.32.0.1", "10.32.0.2", "10.32.0.3"}
    leaving = next(p for p in base.pods if p.key == "y/b")
    patched = inc.patch([PodChange(leaving, None)])
    assert patched is not None
    builds = backend.builds
    backend.sync(patched[0], changed_sets=patched[1])
    assert backend.builds == builds
    assert known(backend).sets[unions[0]] == {"10.32.0.1", "10.32.0.3"}
    assert state_differences(known(backend), backend.read_state()) == []


# ---- what a pod event writes -------------------------------------------------------------
def web_cluster(extra: list[dict[str, Any]]) -> ClusterState:
    from tests.support.objects import ns, pod, policy, state

    return state(ns("x"), *(pod(f"x/p{i}", f"10.32.0.{i + 1}", {"app": "web"}) for i in range(4)),
                 policy("x/web", {"podSelector": {"matchLabels": {"app": "web"}},
                                  "ingress": [{"from": [{"podSelector": {}}]}]}), *extra)


def test_a_pod_event_writes_only_elements_without_building_the_table(
        nft_ns: NetnsNft, monkeypatch: pytest.MonkeyPatch) -> None:
    inc = IncrementalCompiler(Options())
    backend = fresh_backend(nft_ns)
    backend.sync(inc.full(web_cluster([])), full_check=True)
    nft_ns.batches.clear()

    def forbidden(*args: object, **kwargs: object) -> nft_render.NftTable:
        raise AssertionError("the delta path built the whole table")

    monkeypatch.setattr(NftablesBackend, "desired", forbidden)
    monkeypatch.setattr(nft_render, "build_table", forbidden)
    new = parse_pod({"metadata": {"name": "p9", "namespace": "x", "labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "c"}]},
                     "status": {"phase": "Running", "podIP": "10.32.0.9"}})
    patched = inc.patch([PodChange(None, new)])
    assert patched is not None
    report = backend.sync(patched[0], changed_sets=patched[1])
    (batch,) = nft_ns.batches
    assert all(set(c) <= {"add", "delete"} and set(next(iter(c.values()))) == {"element"}
               for c in batch), batch
    assert report.commands == 1 and report.ipset_lines == len(batch) > 0
    assert report.chains_rewritten == [] and report.drift == []
    assert pending(known(backend)) == {"10.32.0.9"} and backend.untidy() == 1
    assert state_differences(known(backend), backend.read_state()) == []
    # Folding the pending pod into the map is elements only too.
    nft_ns.batches.clear()
    tidied = backend.tidy()
    assert tidied is not None and tidied.commands == 1 and tidied.chains_rewritten == []
    (batch,) = nft_ns.batches
    assert all(set(next(iter(c.values()))) == {"element"} for c in batch), batch
    monkeypatch.undo()
    assert known(backend) == full_state(patched[0])
    assert state_differences(known(backend), backend.read_state()) == []


def test_a_failed_delta_transaction_makes_the_next_sync_read_the_kernel(
        nft_ns: NetnsNft) -> None:
    inc = IncrementalCompiler(Options())
    backend = fresh_backend(nft_ns)
    state = web_cluster([])
    backend.sync(inc.full(state), full_check=True)
    old = next(p for p in state.pods if p.key == "x/p0")
    patched = inc.patch([PodChange(old, None)])
    assert patched is not None
    nft_ns.fail_next = True
    with pytest.raises(NftError):
        backend.sync(patched[0], changed_sets=patched[1])
    assert backend.known_state() is None
    report = backend.sync(patched[0])  # as the controller retries: compiled again
    assert report.commands == 3 and report.ipset_lines > 0  # read back, then repaired
    assert known(backend) == full_state(patched[0])
    assert state_differences(known(backend), backend.read_state()) == []


# ---- element batches over netlink --------------------------------------------------------
def _without_nested_flags(attrs: bytes) -> bytes:
    """Netlink attributes with NLA_F_NESTED cleared (pyroute2 does not set it)."""
    out, offset = b"", 0
    while offset + 4 <= len(attrs):
        length, kind = struct.unpack_from("=HH", attrs, offset)
        payload = attrs[offset + 4: offset + length]
        if kind & NLA_F_NESTED:
            payload = _without_nested_flags(payload)
        padded = (length + 3) & ~3
        out += struct.pack("=HH", length, kind & ~NLA_F_NESTED) + payload + attrs[
            offset + length: offset + padded]
        offset += padded
    return out


def test_element_messages_are_pyroute2s_bytes() -> None:
    from pyroute2.netlink.nfnetlink.nftsocket import nft_set_elem_list_msg

    def theirs(kind: int, flags: int, name: str, elements: list[Json]) -> bytes:
        msg = nft_set_elem_list_msg()
        msg["nfgen_family"] = 1  # NFPROTO_INET
        msg["header"]["type"] = (10 << 8) | kind  # NFNL_SUBSYS_NFTABLES
        msg["header"]["flags"] = flags
        msg["header"]["sequence_number"] = 7
        msg["attrs"] = [("NFTA_SET_ELEM_LIST_TABLE", "weave-npc"),
                        ("NFTA_SET_ELEM_LIST_SET", name),
                        ("NFTA_SET_ELEM_LIST_ELEMENTS", elements)]
        msg.encode()
        return bytes(msg.data)

    def key(ip: str) -> tuple[str, Json]:
        return ("NFTA_SET_ELEM_KEY", {"attrs": [("NFTA_DATA_VALUE", socket.inet_aton(ip))]})

    def jump(chain: str) -> tuple[str, Json]:
        return ("NFTA_SET_ELEM_DATA", {"attrs": [("NFTA_DATA_VERDICT", {"attrs": [
            ("NFTA_VERDICT_CODE", -3), ("NFTA_VERDICT_CHAIN", chain)]})]})

    add, create, ack, request = 12, 0x400, 0x4, 0x1
    cases = [
        (nft_netlink.ElementCommand(False, "inet", "weave-npc", "s_1", (("10.32.0.1", None),
                                                              ("10.32.0.20", None))),
         theirs(add, request | ack | create, "s_1", [{"attrs": [key("10.32.0.1")]},
                                                     {"attrs": [key("10.32.0.20")]}])),
        (nft_netlink.ElementCommand(True, "inet", "weave-npc", "s_1", (("10.32.0.1", None),)),
         theirs(14, request | ack, "s_1", [{"attrs": [key("10.32.0.1")]}])),
        (nft_netlink.ElementCommand(False, "inet", "weave-npc", "ingress_dispatch",
                           (("10.32.0.1", "ingress-0123456789ab"),)),
         theirs(add, request | ack | create, "ingress_dispatch",
                [{"attrs": [key("10.32.0.1"), jump("ingress-0123456789ab")]}])),
    ]
    for command, expected in cases:
        ours = nft_netlink.encode(command, 7)
        assert ours[:20] == expected[:20]  # nlmsghdr and nfgenmsg
        assert _without_nested_flags(ours[20:]) == expected[20:]


def test_only_element_batches_take_the_netlink_path() -> None:
    t = {"family": "inet", "table": "weave-npc"}
    elements: list[Json] = [{"add": {"element": {**t, "name": "s", "elem": ["10.32.0.1"]}}},
                {"delete": {"element": {**t, "name": "m", "elem": ["10.32.0.2"]}}},
                {"add": {"element": {**t, "name": "m", "elem": [
                    ["10.32.0.2", {"jump": {"target": "ingress-x"}}]]}}}]
    assert nft_netlink.element_commands(elements) == [
        nft_netlink.ElementCommand(False, "inet", "weave-npc", "s", (("10.32.0.1", None),)),
        nft_netlink.ElementCommand(True, "inet", "weave-npc", "m", (("10.32.0.2", None),)),
        nft_netlink.ElementCommand(False, "inet", "weave-npc", "m", (("10.32.0.2", "ingress-x"),))]
    others: list[Json] = [
        {"add": {"table": {"family": "inet", "name": "weave-npc"}}},
        {"flush": {"chain": {**t, "name": "c"}}},
        {"add": {"element": {**t, "name": "n", "elem": [{"prefix": {"addr": "10.0.0.0",
                                                                   "len": 8}}]}}},
        {"add": {"element": {**t, "name": "m", "elem": [["10.32.0.2", {"goto": {
            "target": "c"}}]]}}},
        {"delete": {"element": {**t, "name": "m", "elem": [["10.32.0.2", {"jump": {
            "target": "c"}}]]}}},
        {"add": {"element": {**t, "name": "s", "elem": ["fe80::1"]}}},
        {"add": {"element": {**t, "name": "s", "elem": ["10.32.0.1"], "comment": "x"}}},
    ]
    for other in others:
        assert nft_netlink.element_commands([*elements, other]) is None, other
    assert nft_netlink.element_commands([]) is None


def test_a_switch_that_removes_chains_splits_into_elements_and_removals() -> None:
    """A full sync's last transaction (element changes, then chains removed, as
    :func:`~npc.render.nft_diff.chain_removals` writes them) goes over netlink as a patch;
    anything else in the tail leaves it whole."""
    t = {"family": "inet", "table": "weave-npc"}
    elements: list[Json] = [{"add": {"element": {**t, "name": "s", "elem": ["10.32.0.1"]}}}]
    tail: list[Json] = [{"flush": {"chain": {**t, "name": "a"}}},
                        {"flush": {"chain": {**t, "name": "b"}}},
                        {"delete": {"chain": {**t, "name": "a"}}},
                        {"delete": {"chain": {**t, "name": "b"}}}]
    assert nft_netlink.removals([*elements, *tail], "weave-npc") == (elements, ["a", "b"])
    assert nft_netlink.removals(tail, "weave-npc") == ([], ["a", "b"])
    assert nft_netlink.removals(elements, "weave-npc") == (elements, [])
    not_removals: list[list[Json]] = [
        [*tail[:1], *tail[2:]],  # b deleted without a flush
        [tail[1], tail[0], *tail[2:]],  # flushed in another order
        [*tail[:2], {"delete": {"chain": {**t, "name": "a", "handle": 3}}}, tail[3]],
        [{"flush": {"chain": {"family": "inet", "table": "other", "name": "a"}}},
         {"delete": {"chain": {"family": "inet", "table": "other", "name": "a"}}}],
    ]
    for commands in not_removals:
        changes, gone = nft_netlink.removals([*elements, *commands], "weave-npc")
        assert nft_netlink.element_commands(changes) is None or gone == [], commands


def test_a_refused_netlink_batch_changes_nothing(nft_ns: NetnsNft) -> None:
    backend = fresh_backend(nft_ns)
    backend.sync(compile_ruleset(web_cluster([])), full_check=True)
    t = {"family": "inet", "table": "weave-npc"}
    batch: list[Json] = [{"add": {"element": {**t, "name": "ingress_default_allow",
                                  "elem": ["10.32.9.1"]}}},
             {"delete": {"element": {**t, "name": "ingress_default_allow",
                                     "elem": ["10.32.9.2"]}}}]  # not there
    assert nft_netlink.element_commands(batch) is not None
    before = backend.read_state()
    with pytest.raises(NftError, match="No such file or directory"):
        nft_ns(batch)
    assert backend.read_state() == before


def test_a_large_element_batch_over_netlink(nft_ns: NetnsNft) -> None:
    """Thousands of set and map elements in one transaction over netlink, read back as
    written, then deleted again."""
    backend = fresh_backend(nft_ns)
    backend.sync(compile_ruleset(web_cluster([])), full_check=True)
    chain = next(iter(known(backend).maps["ingress_dispatch"].values()))
    # Several messages per command, and a datagram beyond the default socket buffer.
    ips = [f"10.40.{i // 256}.{i % 256}" for i in range(6000)]
    t = {"family": "inet", "table": "weave-npc"}
    add: list[Json] = [
        {"add": {"element": {**t, "name": "egress_default_allow", "elem": ips}}},
        {"add": {"element": {**t, "name": "ingress_dispatch", "elem": [
            [ip, {"jump": {"target": chain}}] for ip in ips]}}}]
    remove: list[Json] = [{"delete": {"element": {**t, "name": name, "elem": ips}}}
                          for name in ("egress_default_allow", "ingress_dispatch")]
    assert nft_netlink.element_commands(add) is not None
    assert nft_netlink.element_commands(remove) is not None
    before = backend.read_state()
    nft_ns(add)
    grown = backend.read_state()
    assert grown.sets["egress_default_allow"] == before.sets["egress_default_allow"] | set(ips)
    assert grown.maps["ingress_dispatch"] == {**before.maps["ingress_dispatch"],
                                              **dict.fromkeys(ips, chain)}
    nft_ns(remove)
    assert backend.read_state() == before


def test_jump_chains_over_netlink_are_what_libnftables_writes(nft_ns: NetnsNft) -> None:
    """A pod's new group chain goes over netlink: the kernel then holds what libnftables
    writes for the same commands (rules, order, comment), and the removal of chains that
    jump to each other, in any order, goes in one transaction; a refused one changes
    nothing and names what the kernel refused."""
    backend = fresh_backend(nft_ns)
    backend.sync(compile_ruleset(web_cluster([])), full_check=True)
    t = {"family": "inet", "table": nft_render.TABLE}
    nft_ns([{"add": {"chain": {**t, "name": name}}} for name in ("t1", "t2")])
    rules = (("t1", "#0123456789ab first"), ("t2", ""), ("t1", ""))
    nft_ns.patch(([nft_netlink.NewChain("g-netlink", tuple(
        (verdict("jump", target), comment) for target, comment in rules))], [], []))
    nft_ns([{"add": {"chain": {**t, "name": "g-json"}}},
            *({"add": {"rule": {**t, "chain": "g-json", "expr": [{"jump": {"target": target}}],
                                **({"comment": comment} if comment else {})}}}
              for target, comment in rules)])

    def chains() -> dict[str, list[Json]]:
        listing = nft_ns([{"list": {"table": {"family": "inet", "name": nft_render.TABLE}}}])
        out: dict[str, list[Json]] = {item["chain"]["name"]: [] for item in listing["nftables"]
                                      if "chain" in item}
        for item in listing["nftables"]:
            if "rule" in item:
                out[item["rule"]["chain"]].append({k: v for k, v in item["rule"].items()
                                                   if k not in ("chain", "handle")})
        return out

    before = chains()
    assert before["g-netlink"] == before["g-json"] and len(before["g-json"]) == 3
    assert backend.read_state().chains["g-netlink"] == "0123456789ab"
    with pytest.raises(NftError, match="flush chain inet weave-npc nowhere: No such file"):
        nft_ns.patch(([], [], ["t1", "g-json", "g-netlink", "nowhere"]))
    assert chains() == before
    nft_ns.patch(([], [], ["t1", "g-json", "g-netlink"]))
    after = chains()
    assert {"t1", "g-json", "g-netlink"}.isdisjoint(after) and after["t2"] == []
    assert after == {k: v for k, v in before.items() if k not in ("t1", "g-json", "g-netlink")}


# ---- new sets filled over netlink before the transaction that uses them ---------------------
def big_cluster() -> ClusterState:
    """Enough pods that one set spans several fill messages and transactions."""
    from tests.support.objects import ns, pod, policy, state

    count = 2 * nft_netlink.FILL_BYTES // 16 + 7
    pods = [pod(f"x/p{i}", f"10.33.{i // 250}.{i % 250 + 1}",
                {"app": "db" if i % 10 == 0 else "web"}) for i in range(count)]
    return state(ns("x"), ns("y", team="a"), *pods,
                 policy("x/web", {"podSelector": {"matchLabels": {"app": "web"}},
                                  "ingress": [{"from": [{"podSelector": {"matchLabels": {
                                      "app": "db"}}}]}]}),
                 policy("x/db", {"podSelector": {"matchLabels": {"app": "db"}},
                                 "policyTypes": ["Ingress", "Egress"],
                                 "egress": [{"to": [{"ipBlock": {
                                     "cidr": "10.0.0.0/8", "except": ["10.9.0.0/16"]}}]}]}))


def hooked(batch: list[Json]) -> bool:
    """Whether ``batch`` creates a base chain (one the kernel runs packets through)."""
    return any("hook" in c.get("add", {}).get("chain", {}) for c in batch)


@pytest.mark.parametrize("netlink_chains", [True, False], ids=["netlink", "libnftables"])
def test_new_sets_are_filled_before_the_transaction_that_uses_them(nft_ns: NetnsNft,
                                                                    netlink_chains: bool) -> None:
    """A full sync with a fill: what nothing reaches yet is staged (new sets declared,
    chains and rules in batches), new address sets filled over netlink (in several
    messages and transactions when large), then one transaction makes it live; the kernel
    ends as the single transaction would leave it.  In production (``netlink_chains``)
    the new chains, and the group chains' jumps, are one netlink transaction."""
    ruleset = compile_ruleset(big_cluster(), Options())
    backend = NftablesBackend(nft_ns, options=Options(), fill=nft_ns.fill,
                              patch=nft_ns.patch if netlink_chains else None)
    backend.remove_all()
    nft_ns.batches.clear()
    nft_ns.fills.clear()
    nft_ns.patches = 0
    report = backend.sync(ruleset, full_check=True)
    assert backend.read_state() == full_state(ruleset)
    assert report.ipset_lines > 0
    chains = [c for b in nft_ns.batches for c in b if "chain" in c.get("add", {})
              and "hook" not in c["add"]["chain"]]
    assert chains
    if netlink_chains:  # recorded as the batch it stands for
        assert nft_ns.patches == 1
        [patched] = [b for b in nft_ns.batches if any("chain" in c["add"] for c in b)
                     and not hooked(b)]
        assert all(c in patched for c in chains)
        groups = {c["add"]["rule"]["chain"] for c in patched if "rule" in c["add"]}
        # Group and target chains, and the pending chains (named after their content).
        assert groups and all(name.count("-") == 1 or "-pending-" in name for name in groups)
        assert not any(c.get("add", {}).get("rule", {}).get("chain") in groups
                       for b in nft_ns.batches if b is not patched for c in b)
    else:
        assert nft_ns.patches == 0

    # Sets fill once declared, maps once the chains they jump to exist: in that order.
    *set_fills, map_fills = nft_ns.fills
    fills = [f for call in nft_ns.fills for f in call]
    assert all(isinstance(elements, Mapping) for _, elements in map_fills)
    assert not any(isinstance(elements, Mapping) for call in set_fills for _, elements in call)
    filled = {name for name, _ in fills}
    assert max(len(elements) for _, elements in fills) * 16 > nft_netlink.FILL_BYTES
    *staged, final = nft_ns.batches
    assert hooked(final) and not any(hooked(b) for b in staged)
    declared = {c["add"][kind]["name"] for b in staged for c in b
                for kind in ("set", "map") if kind in c["add"]}
    assert filled <= declared
    assert not any("element" in c.get("add", {}) and c["add"]["element"]["name"] in filled
                   for b in nft_ns.batches for c in b)
    assert any("rule" in c["add"] for b in staged for c in b)
    # Interval sets (ipBlocks) are not filled over netlink.
    interval = {s.name for s in nft_render.build_table(ruleset, allow_mcast=True).sets
                if s.interval}
    assert interval and not interval & filled

    # A repeat writes nothing; the same sync without a fill leaves the same kernel.
    again = backend.sync(ruleset, full_check=True)
    assert again.ipset_lines == 0 and not again.chains_rewritten
    plain = NftablesBackend(nft_ns, options=Options())
    plain.remove_all()
    plain.sync(ruleset, full_check=True)
    assert plain.read_state() == full_state(ruleset)


@pytest.mark.parametrize("streamed", [False, True], ids=["sync", "sync_compiling"])
def test_after_the_fail_closed_table_the_switch_is_elements_only(nft_ns: NetnsNft,
                                                                 streamed: bool) -> None:
    """npc run's first sync: prepare() left the fail-closed table (empty sets, no egress
    policy); the sync with egress policies stages the rest, and the transaction that
    makes it live holds element changes only (so it goes over netlink: whether egress
    is filtered at all is an element of egress_open, not a different chain)."""
    ruleset = compile_ruleset(big_cluster(), Options())
    assert any("Egress" in p.directions for p in ruleset.policies)
    backend = NftablesBackend(nft_ns, options=Options(), fill=nft_ns.fill, patch=nft_ns.patch)
    backend.remove_all()
    backend.prepare(compile_ruleset(ClusterState(), Options()))
    assert backend.read_state().sets["egress_open"] == {"0.0.0.0"}
    nft_ns.batches.clear()
    if streamed:  # every address set loads beside the compile: the rest is staged still
        collecting: list[bool] = []

        def compile_big(on_set: SetListener | None) -> Ruleset:
            collecting.append(gc.isenabled())
            return compile_ruleset(big_cluster(), Options(), on_set)
        backend.sync_compiling(compile_big)
        # The cyclic collector waits for the end of the sync (its objects mostly live on).
        assert collecting == [False] and gc.isenabled()
    else:
        backend.sync(ruleset)
    final = nft_ns.batches[-1]
    # Elements, then the old pending chains removed (their names tell their content).
    changes, gone = nft_netlink.removals(final, nft_render.TABLE)
    assert nft_netlink.element_commands(changes) is not None, final
    assert sorted(gone) == ["egress-pending-da39a3ee5e6b", "ingress-pending-da39a3ee5e6b"]
    assert {"delete": {"element": {"family": "inet", "table": "weave-npc",
                                   "name": "egress_open", "elem": ["0.0.0.0"]}}} in final
    assert sum(len(c["add"]["element"]["elem"]) for c in final if "add" in c) > 5000
    assert backend.read_state() == full_state(ruleset)


def test_a_failed_transaction_after_the_fill_is_repaired_by_the_next_sync(
        nft_ns: NetnsNft) -> None:
    """Everything is staged and filled but the transaction making it live fails: nothing
    the kernel runs packets through refers to it, and the next sync (reading the kernel
    back) completes the table."""
    ruleset = compile_ruleset(web_cluster([]), Options())
    backend = NftablesBackend(nft_ns, options=Options(), fill=nft_ns.fill, patch=nft_ns.patch)
    backend.remove_all()
    nft_ns.fills.clear()
    real = nft_ns.__call__

    def failing(commands: list[Json]) -> Json:
        if hooked(commands):
            raise NftError("nft failed (1): injected", commands)
        return real(commands)

    backend.run = failing
    with pytest.raises(NftError, match="injected"):
        backend.sync(ruleset, full_check=True)
    half = backend.read_state()
    assert half.chains and not {"forward", "input"} & set(half.chains)
    for name, elements in nft_ns.fills[0]:
        if isinstance(elements, dict):  # a map, filled after its chains were made
            assert half.maps[name] == elements
        else:
            assert half.sets[name] == set(elements)
    backend.run = real
    backend.sync(ruleset)
    assert backend.read_state() == full_state(ruleset)
    assert backend.differences(ruleset) == []


def test_sets_load_beside_the_compile(nft_ns: NetnsNft) -> None:
    """sync_compiling: each new address set is created and filled while the compile
    goes on; the kernel ends as a plain sync leaves it, and a repeat writes nothing."""
    state = big_cluster()
    backend = NftablesBackend(nft_ns, options=Options(), fill=nft_ns.fill, patch=nft_ns.patch)
    backend.remove_all()
    nft_ns.batches.clear()
    nft_ns.fills.clear()
    offered: list[str] = []

    def compile_(on_set: SetListener | None) -> Ruleset:
        def spy(ipset: IpSet) -> None:
            offered.append(ipset.name)
            assert on_set is not None
            on_set(ipset)
        return compile_ruleset(state, Options(), spy)

    ruleset, report = backend.sync_compiling(compile_, full_check=True)
    assert backend.read_state() == full_state(ruleset)
    loaded = {name for batch in nft_ns.fills for name, _ in batch}
    by_name = ruleset.set_by_name()
    address_sets = {s.name for s in (nft_render.address_set(i, by_name) for i in ruleset.sets) if s}
    assert offered and address_sets <= loaded
    # The loader took every address set; the sync's own fills only the merged ones,
    # then the (new) dispatch maps.
    assert [{name for name, _ in batch} for batch in nft_ns.fills[-2:]] == [
        {"ingress_default_allow", "egress_default_allow", "egress_open", "ingress_pending",
         "egress_pending"},
        {"ingress_dispatch", "egress_dispatch", "ingress_pending_chain", "egress_pending_chain"}]
    assert report.ipset_lines >= len(address_sets)
    again = backend.sync(ruleset, full_check=True)
    assert again.ipset_lines == 0 and not again.chains_rewritten


def test_a_failing_loader_or_compile_leaves_the_next_sync_to_repair(
        nft_ns: NetnsNft) -> None:
    state = big_cluster()
    backend = NftablesBackend(nft_ns, options=Options(), fill=nft_ns.fill, patch=nft_ns.patch)
    backend.remove_all()

    def refuse(sets: list[SetFill], new: Sequence[str] = ()) -> None:
        raise NftError("nft failed (netlink fill): injected")

    def refuse_chains(patch: Patch) -> None:
        raise NftError("nft failed (netlink): chains injected")

    backend.fill = refuse
    with pytest.raises(NftError, match="injected"):  # in the loader
        backend.sync_compiling(lambda on_set: compile_ruleset(state, Options(), on_set))
    with pytest.raises(NftError, match="injected"):  # beside the staged rules
        backend.sync(compile_ruleset(state, Options()))
    assert not any(t.name == "nft-fill" for t in threading.enumerate())
    backend.fill, backend.patch = nft_ns.fill, refuse_chains
    backend.remove_all()  # the failed syncs made the chains already
    with pytest.raises(NftError, match="chains injected"):  # the staged chains
        backend.sync(compile_ruleset(state, Options()))
    backend.patch = nft_ns.patch

    def broken(on_set: SetListener | None) -> Ruleset:
        compile_ruleset(state, Options(), on_set)
        raise RuntimeError("compile failed")

    with pytest.raises(RuntimeError, match="compile failed"):
        backend.sync_compiling(broken)
    assert not any(t.name == "nft-set-loader" for t in threading.enumerate())
    ruleset, _ = backend.sync_compiling(lambda on_set: compile_ruleset(state, Options(),
                                                                       on_set))
    assert backend.read_state() == full_state(ruleset)
    assert backend.differences(ruleset) == []


def test_a_refused_fill_names_the_set(nft_ns: NetnsNft) -> None:
    with in_netns(nft_ns.fd):
        nft_ns.nft([{"add": {"table": {"family": "inet", "name": "weave-npc"}}}])
        with pytest.raises(NftError, match="add element inet weave-npc nosuchset: No such"):
            nft_ns.nft.fill([("nosuchset", ["10.1.2.3"])])
        nft_ns.nft([{"delete": {"table": {"family": "inet", "name": "weave-npc"}}}])


@given(st.lists(st.ip_addresses(v=4).map(str), max_size=40, unique=True))
def test_address_messages_equal_element_messages(addresses: list[str]) -> None:
    assert nft_netlink.encode_addresses("weave-npc", "s", addresses, 9) == nft_netlink.encode(
        nft_netlink.ElementCommand(False, "inet", "weave-npc", "s",
                          tuple((a, None) for a in addresses)), 9)
