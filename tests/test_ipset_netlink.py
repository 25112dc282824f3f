"""ipset member changes over netlink: the bytes are pyroute2's, the effect in the kernel is
that of the ``ipset restore`` lines they replace, and a pod event through the iptables
backend lands in the kernel exactly as the incremental compiler says."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_IPSET
from pyroute2.netlink.nfnetlink.ipset import IPSET_CMD_ADD, IPSET_CMD_DEL, ipset_msg

from common.kernel.exec import CommandError, SubprocessRunner
from common.kernel.netns import in_netns, open_netns
from common.lab.netns import scratch_netns
from npc.compile.compiler import Options
from npc.compile.incremental import IncrementalCompiler, PodChange
from npc.dataplane.ipset_netlink import IPSET_PROTOCOL, IpsetNetlink, MemberChange, encode
from npc.dataplane.iptables import IptablesBackend
from npc.model.objects import Pod
from npc.render.ipsets import parse_ipset_save
from tests.support.objects import ns, pod, policy
from tests.support.objects import state as compiled_state

pytestmark = pytest.mark.kernel  # network namespaces, netfilter, real traffic


def pyroute2_encoding(change: MemberChange, seq: int) -> bytes:
    data: list[list[object]] = [
        ["IPSET_ATTR_IP", {"attrs": [["IPSET_ATTR_IPADDR_IPV4", change.ip]]}]]
    if change.comment and not change.delete:
        data.append(["IPSET_ATTR_COMMENT", change.comment])
    msg = ipset_msg()
    msg["nfgen_family"] = socket.AF_INET
    msg["attrs"] = [["IPSET_ATTR_PROTOCOL", IPSET_PROTOCOL],
                    ["IPSET_ATTR_SETNAME", change.set_name],
                    ["IPSET_ATTR_DATA", {"attrs": data}]]
    cmd = IPSET_CMD_DEL if change.delete else IPSET_CMD_ADD
    msg["header"]["type"] = (NFNL_SUBSYS_IPSET << 8) | cmd
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
    msg["header"]["sequence_number"] = seq
    msg.encode()
    return bytes(msg.data)


changes = st.builds(
    MemberChange,
    set_name=st.text("abcdefghijklmnopqrstuvwxyz0123456789-+=_", min_size=1, max_size=31),
    ip=st.ip_addresses(v=4).map(str),
    comment=st.none() | st.text(st.characters(min_codepoint=32, max_codepoint=126),
                                max_size=200),
    delete=st.booleans())


@settings(max_examples=300, deadline=None)
@given(changes, st.integers(0, 2**32 - 1))
def test_messages_are_byte_for_byte_pyroute2s(change: MemberChange, seq: int) -> None:
    assert encode(change, seq) == pyroute2_encoding(change, seq)


@pytest.fixture
def netns() -> Iterator[str]:
    with scratch_netns("npcnl") as name:
        yield name


def ipset_save(netns: str) -> dict[str, dict[str, str]]:
    out = subprocess.run(["ip", "netns", "exec", netns, "ipset", "save"], check=True,
                         capture_output=True, text=True).stdout
    return {n: s.members for n, s in parse_ipset_save(out).items()}


def writer_in(netns: str) -> IpsetNetlink:
    with in_netns(open_netns(netns)):
        return IpsetNetlink()


def test_changes_have_the_effect_of_the_restore_lines(netns: str) -> None:
    """The same changes through netlink and through ``ipset restore`` leave identical
    sets: -exist adds update comments, deleting a missing member is no error, batches
    larger than one datagram all land."""
    runner = SubprocessRunner(["ip", "netns", "exec", netns])
    for name in ("weave-nl", "weave-txt"):
        runner(["ipset", "create", name, "hash:ip", "comment"])
        runner(["ipset", "add", name, "10.0.0.1", "comment", "old"])
        runner(["ipset", "add", name, "10.0.0.2", "comment", "gone"])
    def batch(name: str) -> list[MemberChange]:
        out = [MemberChange(name, "10.0.0.1", "namespace: a, pod: new comment"),
               MemberChange(name, "10.0.0.2", delete=True),
               MemberChange(name, "10.9.9.9", delete=True),  # not there: no error
               MemberChange(name, "10.0.0.3", None)]
        out += [MemberChange(name, str(ipaddress.IPv4Address("10.1.0.0") + i),
                             f"namespace: b, pod: p{i}") for i in range(700)]
        return out
    writer = writer_in(netns)
    try:
        writer(batch("weave-nl"))
    finally:
        writer.close()
    runner(["ipset", "restore"], "".join(c.as_restore_line() + "\n"
                                         for c in batch("weave-txt")))
    sets = ipset_save(netns)
    assert len(sets["weave-nl"]) == 702
    assert sets["weave-nl"] == sets["weave-txt"]
    assert sets["weave-nl"]["10.0.0.1"] == "namespace: a, pod: new comment"


def test_a_refused_change_is_a_command_error_naming_it(netns: str) -> None:
    SubprocessRunner(["ip", "netns", "exec", netns])(["ipset", "create", "weave-ok",
                                                      "hash:ip", "comment"])
    writer = writer_in(netns)
    try:
        with pytest.raises(CommandError) as caught:
            writer([MemberChange("weave-ok", "10.0.0.1", "fine"),
                    MemberChange("weave-missing", "10.0.0.2", "refused"),
                    MemberChange("weave-ok", "10.0.0.3", "after")])
    finally:
        writer.close()
    # Only the last change asks for an acknowledgement: the refusal is reported all the same.
    assert "weave-missing 10.0.0.2" in caught.value.describe()
    assert "1 of 3" in caught.value.describe()
    assert ipset_save(netns)["weave-ok"] == {"10.0.0.1": "fine", "10.0.0.3": "after"}


def test_pod_events_through_netlink_leave_the_kernel_as_compiled(netns: str) -> None:
    """Incremental syncs written over netlink: after each pod event, the kernel's sets are
    exactly the patched ruleset's (members and comments), and nothing was spawned."""
    runner = SubprocessRunner(["ip", "netns", "exec", netns])
    writer = writer_in(netns)
    state = compiled_state(
        ns("a", team="x"), ns("b", team="y"),
        pod("a/web", "10.32.0.1", {"app": "web"}), pod("b/db", "10.32.0.2", {"app": "db"}),
        policy("a/web", {"podSelector": {"matchLabels": {"app": "web"}},
                         "ingress": [{"from": [{"namespaceSelector": {
                             "matchLabels": {"team": "y"}}}]}]}))
    compiler = IncrementalCompiler(Options())
    backend = IptablesBackend(runner, mode="nft", member_writer=writer)
    try:
        backend.sync(compiler.full(state), full_check=True)
        pods = {p.key: p for p in state.pods}
        events = [
            PodChange(None, Pod("a", "web2", (("app", "web"),), ("10.32.0.3",))),
            PodChange(None, Pod("b", "db2", (("app", "db"),), ("10.32.0.4",))),
            PodChange(pods["a/web"], Pod("a", "web", (("app", "other"),), ("10.32.0.1",))),
            PodChange(pods["b/db"], None),
        ]
        spawned: list[list[str]] = []

        def no_spawning(argv: Sequence[str], input_text: str | None = None) -> str:
            spawned.append(list(argv))
            return ""
        backend.run = no_spawning
        for event in events:
            patched = compiler.patch([event])
            assert patched is not None, event
            ruleset, touched = patched
            assert touched
            report = backend.sync(ruleset, changed_sets=touched)
            assert report.ipset_lines == sum(len(v) for v in touched.values())
            assert spawned == []
            kernel = ipset_save(netns)
            for s in ruleset.sets:
                if s.kind.value == "hash:ip":
                    assert kernel[s.name] == {m.value: m.comment for m in s.members}, s.name
    finally:
        writer.close()
