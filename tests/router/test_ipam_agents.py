"""IPAM across real agents in network namespaces: consensus, thousands of concurrent
allocations with no address given twice, a partition during allocations, every agent
killed at once and restarted, rmpeer of a dead peer on two survivors at once, donation to
a peer with no space, claims in another peer's range, and a two-node cluster that must not
split its ring."""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from common.lab.fabric import FabricLab, peer_name
from tests.router.agents import report, start, wait_full_mesh, wait_until, weave

pytestmark = pytest.mark.kernel

RANGE = ipaddress.IPv4Network("10.40.0.0/20")
IPAM_ARGS = ("--ipalloc-range", str(RANGE), "--ipalloc-timeout", "20")


@pytest.fixture(scope="module")
def lab() -> Iterator[FabricLab]:
    with FabricLab(nodes=6) as running:
        yield running


def forget_state(lab: FabricLab, nodes: Sequence[int]) -> None:
    """Remove what earlier tests' agents kept on these nodes."""
    for index in nodes:
        for path in lab.node_dir(index).glob("weave-*"):
            path.unlink()


def start_ipam(lab: FabricLab, index: int, peers: Sequence[int], *extra: str) -> None:
    start(lab, index, peers=peers, extra=[*IPAM_ARGS, *extra])


def allocate(lab: FabricLab, index: int, ident: str, timeout: float = 40.0,
             retry: bool = False) -> str:
    """``retry``: ask again after a timeout (503), as the CNI plugin's caller does."""
    reply = lab.http(index, "POST", f"/ip/{ident}", timeout=timeout)
    if retry and reply.status == 503:
        reply = lab.http(index, "POST", f"/ip/{ident}", timeout=timeout)
    assert reply.status == 200, f"node {index} {ident}: {reply.status} {reply.text}"
    return reply.text


def allocate_many(lab: FabricLab, jobs: Sequence[tuple[int, str]]) -> dict[str, str]:
    """Allocate every (node, ID) at once, 16 requests in flight; ID → address."""
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda job: allocate(lab, *job), jobs))
    return {ident: address for (_, ident), address in zip(jobs, answers, strict=True)}


def owned(lab: FabricLab, index: int) -> dict[str, list[str]]:
    body: Any = lab.http(index, "GET", "/ip").expect(200).json()
    return {m["containerid"]: m["addrs"] for m in body["owned"] or []}


def ring(lab: FabricLab, index: int) -> list[tuple[str, int, str]]:
    entries = report(lab, index)["IPAM"]["Entries"] or []
    return [(e["Token"], e["Size"], e["Peer"]) for e in entries]


def rings_agree(lab: FabricLab, nodes: Sequence[int]) -> bool:
    views = [ring(lab, i) for i in nodes]
    return bool(views[0]) and all(v == views[0] for v in views)


def assert_unique(addresses: dict[str, str]) -> None:
    seen: dict[str, str] = {}
    for ident, cidr in addresses.items():
        address = cidr.split("/")[0]
        assert ipaddress.IPv4Address(address) in RANGE, (ident, cidr)
        assert address not in seen, f"{address} given to {seen.get(address)} and {ident}"
        seen[address] = ident


def everything_owned(lab: FabricLab, nodes: Sequence[int]) -> dict[str, str]:
    """Every allocation held by ``nodes`` (each ID holds one address)."""
    found: dict[str, str] = {}
    for index in nodes:
        for ident, addrs in owned(lab, index).items():
            assert len(addrs) == 1 and ident not in found, (index, ident, addrs)
            found[ident] = addrs[0]
    return found


def no_tracebacks(lab: FabricLab, nodes: Sequence[int]) -> None:
    for index in nodes:
        log = lab.process(index).log_text()
        assert "Traceback" not in log, log[-3000:]


def test_a_cluster_allocates_without_duplicates_through_faults(lab: FabricLab) -> None:
    first = range(5)
    forget_state(lab, range(6))
    for i in first:
        start_ipam(lab, i, [j for j in first if j != i], "--ipalloc-init", "consensus=5")
    lab.wait_ready(first)
    wait_full_mesh(lab, first)
    assert "Status: idle" in lab.status(0)

    # 2,000 allocations spread over five peers at once; consensus happens on the way
    jobs = [(n % 5, f"pod-{n}") for n in range(2000)]
    allocated = allocate_many(lab, jobs)
    assert_unique(allocated)
    assert everything_owned(lab, first) == allocated
    wait_until(lambda: rings_agree(lab, first), 20, "the five rings to agree")
    for i in first:
        assert "Status: ready" in lab.status(i)

    # a partition {0, 1} | {2, 3, 4} during allocations, then heal
    for a, b in itertools.product((0, 1), (2, 3, 4)):
        lab.block(a, b)
        lab.block(b, a)
    allocated |= allocate_many(lab, [(n % 5, f"split-{n}") for n in range(500)])
    for a, b in itertools.product((0, 1), (2, 3, 4)):
        lab.heal(a, b)
        lab.heal(b, a)
    wait_full_mesh(lab, first, timeout=90)
    wait_until(lambda: rings_agree(lab, first), 30, "the rings to converge after the heal")
    assert_unique(allocated)
    assert everything_owned(lab, first) == allocated

    # every agent killed at once (#2719), restarted: nothing forgotten, nothing reused
    for i in first:
        lab.kill(i)
    for i in first:
        lab.process(i).start()
    lab.wait_ready(first)
    wait_full_mesh(lab, first, timeout=60)
    assert everything_owned(lab, first) == allocated
    allocated |= allocate_many(lab, [(n % 5, f"after-{n}") for n in range(200)])
    assert_unique(allocated)

    # node 4 dies for good; rmpeer on two survivors at once must not split the ring
    lost = set(owned(lab, 4))
    lab.kill(4)
    survivors = [0, 1, 2, 3]
    wait_until(lambda: all(peer_name(4) not in
                           {p["Name"] for p in report(lab, i)["Router"]["Peers"]}
                           for i in survivors), 60, "node 4 to be forgotten")
    with ThreadPoolExecutor(2) as pool:
        outputs = list(pool.map(lambda i: weave(lab, i, "rmpeer", peer_name(4)), (0, 1)))
    assert all(code == 0 and "IPs taken over from" in out for code, out in outputs), outputs
    wait_until(lambda: rings_agree(lab, survivors), 30, "one ring after two rmpeers")
    assert peer_name(4) not in {peer for _, size, peer in ring(lab, 0) if size}
    for ident in lost:
        allocated.pop(ident)
    allocated |= allocate_many(lab, [(n % 4, f"reuse-{n}") for n in range(300)])
    assert_unique(allocated)
    assert everything_owned(lab, survivors) == allocated
    no_tracebacks(lab, survivors)

    # a peer that joins after consensus has no space: it gets a donation
    start_ipam(lab, 5, survivors)
    lab.wait_ready([5])
    donated = allocate(lab, 5, "late-pod")
    assert peer_name(5) in {peer for _, size, peer in ring(lab, 5) if size}
    allocated["late-pod"] = donated
    assert_unique(allocated)

    # a claim of an address in another peer's range: the owner hands it over
    taken = {cidr.split("/")[0] for cidr in allocated.values()}
    wanted = next(address for token, size, peer in ring(lab, 0) if peer == peer_name(2)
                  for address in (ipaddress.IPv4Address(token) + size - 2,)
                  if str(address) not in taken)
    reply = lab.http(0, "PUT", f"/ip/claimed/{wanted}/20", timeout=30)
    assert reply.status == 204, reply.text
    assert owned(lab, 0)["claimed"] == [f"{wanted}/20"]
    reply = lab.http(3, "PUT", f"/ip/other/{wanted}/20", timeout=30)
    assert reply.status == 400, reply.text
    no_tracebacks(lab, [0, 1, 2, 3, 5])
    for i in [0, 1, 2, 3, 5]:
        lab.stop(i)


def test_two_nodes_need_each_other_for_consensus(lab: FabricLab) -> None:
    """The original's Kubernetes default (consensus=1 with two nodes) let each node make
    its own ring; ours waits for the other, and says so."""
    forget_state(lab, [0, 1])
    start_ipam(lab, 0, [1], "--ipalloc-init", "consensus=1", "--ipalloc-timeout", "2")
    lab.wait_ready([0])
    reply = lab.http(0, "POST", "/ip/first", timeout=20)
    assert reply.status == 503
    assert "awaiting consensus (quorum: 2, known: 1)" in reply.text
    ready = lab.http(0, "GET", "/readyz", port=6782)
    assert ready.status == 503 and "awaiting consensus (quorum: 2" in ready.text, ready.text
    assert "Status: awaiting consensus (quorum: 2, known: 1)" in lab.status(0)
    start_ipam(lab, 1, [0], "--ipalloc-init", "consensus=1")
    lab.wait_ready([1])
    wait_full_mesh(lab, [0, 1])
    both = {allocate(lab, 0, "a", retry=True), allocate(lab, 1, "b", retry=True)}
    assert len(both) == 2
    wait_until(lambda: rings_agree(lab, [0, 1]), 20, "one ring on both nodes")
    assert {peer for _, _, peer in ring(lab, 0)} == {peer_name(0), peer_name(1)}
    assert lab.http(0, "GET", "/readyz", port=6782).status == 200
    for i in (0, 1):
        lab.stop(i)
