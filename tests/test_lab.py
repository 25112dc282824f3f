"""Tests for common.lab against the real kernel (run as root; nothing is mocked or skipped).

Every test uses its own namespace prefix and a finalizer that removes leftovers,
so a failing test cannot leak namespaces into the next one.
"""

from __future__ import annotations

import struct
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence

import pytest

from common.kernel.netns import list_netns
from common.lab import (
    Comparison,
    Lab,
    LabPod,
    Matrix,
    ProbeResult,
    Protocol,
    cleanup_stale,
    compare,
    expect_all,
    ordered_pairs,
    retry_mismatches,
)
from common.lab.sctp import (
    CHUNK_INIT,
    CHUNK_INIT_ACK,
    build_init,
    build_init_ack,
    crc32c,
    parse_ipv4_sctp,
)

pytestmark = pytest.mark.kernel  # network namespaces, netfilter, real traffic

Pair = tuple[str, str]

SIX_PODS = [
    LabPod("x/a", 0, "10.32.0.10"),
    LabPod("x/b", 1, "10.32.0.11"),
    LabPod("x/c", 0, "10.32.0.12"),
    LabPod("y/a", 1, "10.32.1.10"),
    LabPod("y/b", 0, "10.32.1.11"),
    LabPod("y/c", 1, "10.32.1.12"),
]
NINE_PODS = [
    LabPod(f"{ns}/{name}", (3 * i + j) % 2, f"10.32.{i}.{10 + j}")
    for i, ns in enumerate("xyz")
    for j, name in enumerate("abc")
]
CHECKS: list[tuple[int, Protocol]] = [(80, "TCP"), (81, "UDP"), (80, "SCTP")]


def lab_namespaces(prefix: str) -> list[str]:
    return [ns for ns in list_netns() if ns.startswith(prefix + "-")]


@pytest.fixture
def prefix() -> Iterator[str]:
    """A fresh prefix; whatever the test leaves behind is removed afterwards."""
    value = "t" + uuid.uuid4().hex[:8]
    yield value
    cleanup_stale(value)


def assert_matrix(lab: Lab, expected: dict[Pair, bool], port: int, proto: Protocol) -> None:
    comparison = lab.validate(expected, port, proto, timeout=0.5)
    assert comparison.ok, "\n" + comparison.format()


# ---------------------------------------------------------------- pure helpers


def test_crc32c_vectors() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4
    assert crc32c(b"\xff" * 32) == 0x62A8AB43


def ipv4(payload: bytes) -> bytes:
    """Wrap an SCTP payload in an IPv4 header 10.32.0.1 -> 10.32.0.2 (as a raw socket sees it)."""
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        0,
        0,
        64,
        132,
        0,
        bytes([10, 32, 0, 1]),
        bytes([10, 32, 0, 2]),
    )
    return header + payload


def test_sctp_packets_roundtrip() -> None:
    init = parse_ipv4_sctp(ipv4(build_init(40000, 80, 0xDEADBEEF, 7)))
    assert init is not None and init.checksum_ok
    assert (init.chunk_type, init.vtag, init.init_tag) == (CHUNK_INIT, 0, 0xDEADBEEF)
    assert (init.src, init.dst, init.sport, init.dport) == ("10.32.0.1", "10.32.0.2", 40000, 80)
    ack_bytes = build_init_ack(80, 40000, 0xDEADBEEF, 0x01020304, 9, b"cookie!")
    assert len(ack_bytes) % 4 == 0
    ack = parse_ipv4_sctp(ipv4(ack_bytes))
    assert ack is not None and ack.checksum_ok
    assert (ack.chunk_type, ack.vtag, ack.init_tag) == (CHUNK_INIT_ACK, 0xDEADBEEF, 0x01020304)
    corrupted = bytearray(ack_bytes)
    corrupted[-1] ^= 1
    bad = parse_ipv4_sctp(ipv4(bytes(corrupted)))
    assert bad is not None and not bad.checksum_ok


def test_format_compare_and_retry() -> None:
    keys = ["x/a", "x/b", "y/a"]
    observed = Matrix(keys, 80, "TCP", {p: ProbeResult(True, "ok") for p in ordered_pairs(keys)})
    observed.results[("x/a", "y/a")] = ProbeResult(False, "timeout")
    assert observed.format().splitlines() == [
        "-   x/a x/b y/a",
        "x/a -   .   X",
        "x/b .   -   .",
        "y/a .   .   -",
    ]
    comparison = compare(expect_all(keys), observed)
    assert comparison.mismatches == [("x/a", "y/a")]
    assert "x/a -> y/a: expected connected, observed blocked (timeout)" in comparison.format()
    calls: list[list[Pair]] = []

    def fake(
        pairs: Sequence[Pair], port: int, proto: Protocol, timeout: float
    ) -> dict[Pair, ProbeResult]:
        calls.append(list(pairs))
        return {p: ProbeResult(True, "ok") for p in pairs}

    retried: Comparison = retry_mismatches(fake, comparison, 0.1)
    assert calls == [[("x/a", "y/a")]]
    assert retried.ok and retried.retried


# ---------------------------------------------------------------- kernel tests


def test_all_connected(prefix: str) -> None:
    begin = time.monotonic()
    with Lab(nodes=2, pods=SIX_PODS, prefix=prefix) as lab:
        built = time.monotonic() - begin
        assert lab_namespaces(prefix) == sorted(lab.topology.all_ns())
        out = lab.run_in_node(0, ["ip", "-o", "link", "show", "master", "weave"]).stdout
        assert "vethwe-bridge" in out and lab.pod_veth("x/a") in out
        for port, proto in [*CHECKS, (81, "TCP"), (80, "UDP"), (81, "SCTP")]:
            assert_matrix(lab, expect_all(lab.keys), port, proto)
        assert lab.probe("x/a", "y/c", 80, "sctp")
        assert not lab.probe("x/a", "y/c", 82, "udp")  # no server: ICMP port unreachable
        assert lab.probe_result("x/a", "y/c", 82, "udp").kind == "refused"
        assert lab.probe_result("x/a", "y/c", 82, "tcp").kind == "refused"
    print(f"\nbuild {built:.3f}s")


def blocked_by(rule_node: int, target: str, lab: Lab) -> Callable[[str, str], bool]:
    """Which pairs ``iptables -I FORWARD -d <target> -j DROP`` in ``rule_node`` blocks.

    br_netfilter hands every bridged IPv4 frame of a node to that node's FORWARD
    chain: same-node pod-to-pod traffic and traffic between a pod and
    vethwe-bridge alike.  A packet *to* the target crosses the rule's node if the
    target or the sender lives there; replies travel *to* the sender, so a pair
    sourced at the target is blocked when its reply crosses the rule's node.
    """

    def blocked(src: str, dst: str) -> bool:
        if target not in (src, dst):
            return False
        other = dst if src == target else src
        return rule_node in (lab.node_of(target), lab.node_of(other))

    return blocked


def test_forward_drop_cells(prefix: str) -> None:
    with Lab(nodes=2, pods=SIX_PODS, prefix=prefix) as lab:
        target = "x/a"  # on node 0, with x/c and y/b; x/b, y/a, y/c are on node 1
        drop = ["FORWARD", "-d", lab.pod_ip(target), "-j", "DROP"]
        # Rule in the target's node: its whole row and column (5 + 5 cells) are
        # blocked.  Rule in the other node: only pairs with a node-1 pod (3 + 3).
        for rule_node, n_blocked in ((0, 10), (1, 6)):
            lab.run_in_node(rule_node, ["iptables", "-I", *drop])
            lab.flush_conntrack()
            blocked = blocked_by(rule_node, target, lab)
            expected = {(s, d): not blocked(s, d) for s, d in ordered_pairs(lab.keys)}
            assert sum(not v for v in expected.values()) == n_blocked
            for port, proto in CHECKS:
                assert_matrix(lab, expected, port, proto)
            lab.run_in_node(rule_node, ["iptables", "-D", *drop])
        lab.flush_conntrack()
        assert_matrix(lab, expect_all(lab.keys), 80, "TCP")


def test_row_and_column_when_rule_on_target_node(prefix: str) -> None:
    with Lab(nodes=2, pods=SIX_PODS, prefix=prefix) as lab:
        lab.run_in_node(0, ["iptables", "-I", "FORWARD", "-d", lab.pod_ip("y/b"), "-j", "DROP"])
        matrix = lab.matrix(81, "UDP")
        for src, dst in ordered_pairs(lab.keys):
            assert matrix.connected(src, dst) == ("y/b" not in (src, dst)), matrix.format()
        assert {r.kind for r in matrix.failures().values()} == {"timeout"}


def test_nine_pods_timing(prefix: str) -> None:
    begin = time.monotonic()
    with Lab(nodes=2, pods=NINE_PODS, prefix=prefix) as lab:
        built = time.monotonic() - begin
        for key in ("x/a", "y/b", "z/c"):  # 3 targets: 42 of 72 cells blocked
            node = lab.node_of(key)
            lab.run_in_node(
                node, ["iptables", "-I", "FORWARD", "-d", lab.pod_ip(key), "-j", "DROP"]
            )
        times = {}
        for proto in ("TCP", "UDP", "SCTP"):
            start = time.monotonic()
            matrix = lab.matrix(80, proto, timeout=0.5)
            times[proto] = time.monotonic() - start
            assert len(matrix.failures()) == 42, matrix.format()
    print(
        f"\nbuild {built:.3f}s, 9x9 matrices: "
        + ", ".join(f"{k} {v:.3f}s" for k, v in times.items())
    )
    assert built < 3.0
    assert max(times.values()) < 2.5


# ---------------------------------------------------------------- lifecycle


def test_cleanup_after_exit_and_errors(prefix: str) -> None:
    pods = SIX_PODS[:2]
    with Lab(nodes=2, pods=pods, prefix=prefix):
        assert len(lab_namespaces(prefix)) == 5
    assert lab_namespaces(prefix) == []
    with pytest.raises(RuntimeError, match="boom"), Lab(nodes=2, pods=pods, prefix=prefix):
        raise RuntimeError("boom")
    assert lab_namespaces(prefix) == []
    with pytest.raises(KeyboardInterrupt), Lab(nodes=2, pods=pods, prefix=prefix):
        raise KeyboardInterrupt
    assert lab_namespaces(prefix) == []
    with pytest.raises(ValueError):  # bad input: nothing is created at all
        Lab(nodes=2, pods=[LabPod("x/a", 5, "10.32.0.10")], prefix=prefix)
    assert lab_namespaces(prefix) == []


def test_stale_cleanup_and_coexistence(prefix: str) -> None:
    other = prefix + "o"
    subprocess.run(["ip", "netns", "add", f"{prefix}-n7"], check=True)
    subprocess.run(["ip", "netns", "add", f"{other}-n0"], check=True)
    pods = SIX_PODS[:2]
    try:
        with Lab(nodes=2, pods=pods, prefix=prefix) as lab:
            assert f"{prefix}-n7" not in list_netns()  # removed at start
            assert f"{other}-n0" in list_netns()  # another prefix is left alone
            # Same pod addresses in a second lab: separate L2 segments, no clash.
            with Lab(nodes=2, pods=pods, prefix=other) as lab2:
                assert lab.pod_ns("x/a") != lab2.pod_ns("x/a")
                lab.run_in_node(0, ["iptables", "-I", "FORWARD", "-j", "DROP"])
                assert not lab.probe("x/a", "x/b", 80, "UDP")
                assert lab2.probe("x/a", "x/b", 80, "UDP")
        assert lab_namespaces(prefix) == [] and lab_namespaces(other) == []
    finally:
        cleanup_stale(other)
