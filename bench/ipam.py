"""IPAM with real agents: ``weaver`` processes, one per node namespace of a fabric lab,
asked over their HTTP API (``POST /ip/{id}``, answered ``a.b.c.d/len``) by a client whose
sockets are made inside the node's namespace (:mod:`common.lab.http`: one connection a
request), as the CNI plugin asks its node's agent.

Figures:

* **local allocation latency** (p50/p99 in ms, HTTP included: connecting, asking, reading
  the answer): a lab of 3 peers (``--ipalloc-init consensus=3``, range 10.40.0.0/16);
  once the first allocation has made the ring, ``--allocations`` allocations one after
  another on node 0, which owns space.  Interleaved with them, the same client on two
  cheaper routes: ``GET /ipinfo/defaultsubnet`` (*HTTP only*: the server answers from its
  thread) and ``GET /ip/{id}`` (*lookup*: the hop to the agent's event loop and back, no
  write).  What an allocation adds over a lookup is the allocator and its synced writes;
* **allocations per second** on node 0: the sequential ones above (back to back), and
  ``--concurrent-allocations`` more with 8 requests in flight (their latency too);
* **donation latency**: allocations the peer could not make from its own space, each
  measured.  In a second lab (3 peers, range 10.41.0.0/22): the first allocation on each
  of ``--late`` peers started after consensus (it has the ring, no space), then
  allocations on node 0 until 90% of the range is used: each time node 0's space runs
  out it asks a peer for some (a unicast there; the donor's ring back).  An allocation
  needed a donation when its address is outside what node 0 owned before it (read from
  ``/report`` between allocations, outside the timings);
* **time to consensus** at each of ``--sizes``: N agents with ``--ipalloc-init
  consensus=N``, all started (in waves of 10) and in a full mesh first; the seconds from
  the first allocation request (on node 0) to its answer, and until every agent has the
  ring (``/report`` polled: to within a sweep over the agents);
* **ring gossip bytes**: ``weave_gossip_bytes_sent_total`` (and ``_messages_``) of
  every agent (``/metrics``) for the ``IPallocation`` channel (its gossip and broadcasts)
  and ``(unicast)`` (where the mesh counts unicasts: only IPAM's, e.g. a ring sent to a
  peer that still proposes), summed: from just before the first request until 2 s after
  every agent has the ring (*during consensus*: total, and the most one agent sent), then
  at rest for ``--rest`` seconds (default 60: two periodic gossips), per minute;
* ``--go``: the Go weaver 2.8.1 (``tests/interop/build-go-weave.sh`` builds
  /work/go-weave/bin/weaver) in the same two allocation labs with the same client: its
  latencies and rates, and consensus at 3, beside ours.

Our agents run at ``--log-level info`` (the Go weaver's default).  Targets: local
allocation p99 ≤ 5 ms (HTTP included), consensus at 30 peers ≤ 3 s.  The last line of
output is one JSON object with every figure, the targets and the commit measured.

Usage: ``bench/ipam.py [--sizes 3,10,30] [--allocations 500]
[--concurrent-allocations 1000] [--late 3] [--rest 60] [--go] [--smoke]``.
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.lab.fabric import FabricLab, peer_name, wait_until
from common.lab.http import HttpReply
from common.lab.signals import exit_on_sigterm
from tests.router.agents import report, start

TARGETS = {"local_allocation_p99_ms_max": 5.0, "consensus_seconds_max_at_30": 3.0}
PEERS = 3
"""Peers of the allocation labs."""
LOCAL_RANGE = "10.40.0.0/16"
SMALL_RANGE = "10.41.0.0/22"
"""The donation lab's range: small, so node 0 runs out of space often."""
SMOKE_SMALL_RANGE = "10.41.0.0/24"
FILL = 0.9
"""How much of the donation lab's range node 0 fills (beyond that the donors' free space
is a few addresses, and asking one that has just given its last is a 5-second retry)."""
IN_FLIGHT = 8
WARMUP = 20
WAVE = 10
"""Agents started at once (the next wave once these are in the mesh)."""
GOSSIP_SETTLE = 2.0
"""Seconds after every agent has the ring that still count as the consensus's gossip."""
METRICS_PORT = 6782
CHANNELS = ("IPallocation", "(unicast)")
GO_WEAVER = Path(os.environ.get("GO_WEAVER", "/work/go-weave/bin/weaver"))
ROOT = Path(__file__).resolve().parents[1]

Spawn = Callable[[FabricLab, int, Sequence[int], str, str], None]
"""Start an agent: (lab, node, peer nodes, --ipalloc-range, --ipalloc-init)."""


def ours(lab: FabricLab, index: int, peers: Sequence[int], ipam_range: str,
         init: str) -> None:
    start(lab, index, peers=peers, extra=["--log-level", "info", "--ipalloc-range",
                                          ipam_range, "--ipalloc-init", init])


def go(lab: FabricLab, index: int, peers: Sequence[int], ipam_range: str, init: str) -> None:
    from tests.interop.golab import go_weaver_argv

    argv = go_weaver_argv(GO_WEAVER, peer_name(index), f"node{index}",
                          lab.node_dir(index) / "weave-",
                          peers=[lab.node_ip(j) for j in peers], ipalloc_init=init,
                          ipalloc_range=ipam_range)
    lab.spawn(index, argv, env={"CHECKPOINT_DISABLE": "1"})


# ---- measuring ----------------------------------------------------------------------------

def timed(lab: FabricLab, index: int, method: str, path: str,
          timeout: float = 60.0) -> tuple[float, HttpReply]:
    """One request and its seconds, HTTP included (connect, ask, read the answer)."""
    began = time.perf_counter()
    reply = lab.http(index, method, path, timeout=timeout)
    return time.perf_counter() - began, reply


def ok(seconds_reply: tuple[float, HttpReply], what: str) -> tuple[float, str]:
    seconds, reply = seconds_reply
    if reply.status != 200:
        raise RuntimeError(f"{what}: HTTP {reply.status} {reply.text.strip()[:300]}")
    return seconds, reply.text.strip()


def allocate(lab: FabricLab, index: int, ident: str,
             timeout: float = 60.0) -> tuple[float, str]:
    """Seconds and the answer (``a.b.c.d/len``) of ``POST /ip/{ident}`` on node ``index``."""
    return ok(timed(lab, index, "POST", f"/ip/{ident}", timeout),
              f"node {index} POST /ip/{ident}")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest rank (p99 of 100 values is the 99th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def latency(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """Count, p50, p99, max and mean in milliseconds (None when nothing was measured)."""
    if not seconds:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    return {"n": len(seconds), "p50_ms": round(1000 * percentile(seconds, 0.5), 3),
            "p99_ms": round(1000 * percentile(seconds, 0.99), 3),
            "max_ms": round(1000 * max(seconds), 3),
            "mean_ms": round(1000 * sum(seconds) / len(seconds), 3)}


def status_full(lab: FabricLab, nodes: Sequence[int]) -> bool:
    """Every node's ``/status`` says the nodes are a full mesh (ours and Go's alike)."""
    n = len(nodes)
    want = f"Peers: {n} (with {n * (n - 1)} established connections)"
    return all(want in lab.status(i) for i in nodes)


def start_mesh(lab: FabricLab, spawn: Spawn, nodes: Sequence[int], ipam_range: str,
               init: str) -> None:
    """Start agents on ``nodes`` (each given all the others), ``WAVE`` at a time, each
    wave once the previous ones are a full mesh; return once all are."""
    for first in range(0, len(nodes), WAVE):
        members = nodes[first:first + WAVE]
        for i in members:
            spawn(lab, i, [j for j in nodes if j != i], ipam_range, init)
        lab.wait_ready(members, timeout=300)
        up = nodes[:first + len(members)]
        wait_until(functools.partial(status_full, lab, up), 300,
                   f"{len(up)} agents in a full mesh", 0.5)


def ring(lab: FabricLab, index: int) -> list[tuple[str, int, str]]:
    """Node ``index``'s ring from ``/report`` (token, size, owner); empty: none yet."""
    entries = (report(lab, index).get("IPAM") or {}).get("Entries") or []
    return [(e["Token"], e["Size"], e["Peer"]) for e in entries]


def owned_ranges(lab: FabricLab, index: int) -> list[tuple[int, int]]:
    """The ranges [start, end) node ``index``'s ring gives it."""
    me = peer_name(index)
    return [(int(ipaddress.IPv4Address(token)), int(ipaddress.IPv4Address(token)) + size)
            for token, size, peer in ring(lab, index) if peer == me and size]


def rings_agree(lab: FabricLab, nodes: Sequence[int]) -> bool:
    views = [ring(lab, i) for i in nodes]
    return bool(views[0]) and all(v == views[0] for v in views)


def ipam_gossip(lab: FabricLab, nodes: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Each agent's IPAM messages sent so far: (messages, bytes) of the ``IPallocation``
    channel's gossip and broadcasts and of unicasts (counted as channel ``(unicast)``:
    only IPAM sends any)."""
    out = {}
    for i in nodes:
        text = lab.http(i, "GET", "/metrics", port=METRICS_PORT, timeout=30).text
        counts = {"messages": 0, "bytes": 0}
        for line in text.splitlines():
            for unit in counts:
                for channel in CHANNELS:
                    if line.startswith(f'weave_gossip_{unit}_sent_total{{channel="{channel}"}}'):
                        counts[unit] += int(float(line.rsplit(" ", 1)[1]))
        out[i] = (counts["messages"], counts["bytes"])
    return out


def gossip_between(before: dict[int, tuple[int, int]],
                   after: dict[int, tuple[int, int]]) -> tuple[int, int, int]:
    """Messages and bytes all agents sent between two readings, and the most bytes one
    agent sent."""
    per_agent = {i: (after[i][0] - before[i][0], after[i][1] - before[i][1]) for i in after}
    return (sum(m for m, _ in per_agent.values()), sum(b for _, b in per_agent.values()),
            max(b for _, b in per_agent.values()))


def new_lab(nodes: int) -> FabricLab:
    return FabricLab(nodes=nodes, prefix=f"glb{os.getpid()}", fabric_cidr="192.168.78.0/24")


# ---- the allocation labs --------------------------------------------------------------------

@dataclass
class Allocation:
    kind: str
    peers: int
    consensus_seconds: float
    """The local lab's first allocation: consensus among its 3 peers."""
    http_only: dict[str, float | int | None]
    """``GET /ipinfo/defaultsubnet``, interleaved with the allocations."""
    lookup: dict[str, float | int | None]
    """``GET /ip/{id}``, interleaved with the allocations."""
    local: dict[str, float | int | None]
    sequential_per_second: float
    concurrent: dict[str, float | int | None]
    """Each request's latency with 8 in flight."""
    concurrent_per_second: float
    donation: dict[str, float | int | None]
    """Every allocation that needed a donation: the late peers' first ones and node 0's
    in the small range."""
    late_first_ms: list[float]
    """The first allocation of each peer started after consensus."""
    exhaustion_allocations: int
    """Allocations node 0 made in the small range (of which ``donation`` less the late
    peers' needed a donation)."""


def run_local(spawn: Spawn, sequential: int,
              concurrent: int) -> tuple[float, list[float], list[float], list[float],
                                        list[float], float]:
    """Consensus at 3, then HTTP-only, lookup and allocation latencies interleaved, then
    allocations with ``IN_FLIGHT`` in flight (their latencies, and the seconds they took)."""
    nodes = list(range(PEERS))
    with new_lab(PEERS) as lab:
        start_mesh(lab, spawn, nodes, LOCAL_RANGE, f"consensus={PEERS}")
        consensus, _ = allocate(lab, 0, "first")
        for i in range(WARMUP):
            allocate(lab, 0, f"warm-{i}")
        http_only, lookup, local = [], [], []
        for i in range(sequential):
            http_only.append(ok(timed(lab, 0, "GET", "/ipinfo/defaultsubnet"),
                                "GET /ipinfo/defaultsubnet")[0])
            lookup.append(ok(timed(lab, 0, "GET", "/ip/first"), "GET /ip/first")[0])
            local.append(allocate(lab, 0, f"seq-{i}")[0])
        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            began = time.perf_counter()
            parallel = list(pool.map(lambda i: allocate(lab, 0, f"par-{i}")[0],
                                     range(concurrent)))
            parallel_seconds = time.perf_counter() - began
        answered = ok(timed(lab, 0, "GET", "/ip"), "GET /ip")[1]
        owned = json.loads(answered)["owned"] or []
        if len(owned) != 1 + WARMUP + sequential + concurrent:
            raise RuntimeError(f"node 0 owns {len(owned)} allocations, not "
                               f"{1 + WARMUP + sequential + concurrent}")
    return consensus, http_only, lookup, local, parallel, parallel_seconds


def run_donation(spawn: Spawn, late: int,
                 small_range: str) -> tuple[list[float], list[float], int]:
    """The late peers' first allocations, then node 0's donations while it fills
    ``FILL`` of ``small_range``; and how many allocations node 0 made there."""
    nodes = list(range(PEERS))
    universe = ipaddress.IPv4Network(small_range)
    with new_lab(PEERS + late) as lab:
        start_mesh(lab, spawn, nodes, small_range, f"consensus={PEERS}")
        allocate(lab, 0, "first")
        wait_until(lambda: rings_agree(lab, nodes), 60, "the rings to agree")
        late_first = []
        for j in range(PEERS, PEERS + late):
            spawn(lab, j, nodes, small_range, f"consensus={PEERS}")
            lab.wait_ready([j], timeout=120)
            up = list(range(j + 1))
            wait_until(functools.partial(status_full, lab, up), 120,
                       f"{len(up)} agents in a full mesh", 0.2)
            wait_until(functools.partial(ring, lab, j), 60, f"node {j} to have the ring", 0.1)
            if owned_ranges(lab, j):
                raise RuntimeError(f"late node {j} owns space before its first allocation")
            seconds, cidr = allocate(lab, j, f"late-{j}")
            late_first.append(seconds)
        mine = owned_ranges(lab, 0)
        used = 1 + late
        donations = []
        made = 0
        while used < FILL * (universe.num_addresses - 2):
            seconds, cidr = allocate(lab, 0, f"fill-{made}")
            address = int(ipaddress.IPv4Interface(cidr).ip)
            if not any(start <= address < end for start, end in mine):
                donations.append(seconds)
                mine = owned_ranges(lab, 0)
            used += 1
            made += 1
    return late_first, donations, made


def run_allocation(kind: str, spawn: Spawn, sequential: int, concurrent: int, late: int,
                   small_range: str) -> Allocation:
    consensus, http_only, lookup, local, parallel, parallel_seconds = run_local(
        spawn, sequential, concurrent)
    late_first, donations, made = run_donation(spawn, late, small_range)
    return Allocation(
        kind, PEERS, round(consensus, 3), latency(http_only), latency(lookup), latency(local),
        round(len(local) / sum(local), 1), latency(parallel),
        round(len(parallel) / parallel_seconds, 1), latency([*late_first, *donations]),
        [round(1000 * s, 2) for s in late_first], made)


# ---- consensus at scale ---------------------------------------------------------------------

@dataclass
class Consensus:
    kind: str
    peers: int
    consensus_seconds: float
    """From the first allocation request to its answer."""
    ring_everywhere_seconds: float
    """From that request until every agent's ``/report`` showed a ring."""
    gossip_messages: int
    gossip_bytes: int
    """``IPallocation`` bytes all agents sent, during consensus (until 2 s after every
    agent had the ring)."""
    gossip_bytes_per_agent_max: int
    rest_messages_per_minute: float
    rest_bytes_per_minute: float
    """All agents together, at rest (the ring made, nothing asked)."""
    rest_bytes_per_minute_per_agent_max: float


def run_consensus(kind: str, spawn: Spawn, peers: int, rest: float) -> Consensus:
    nodes = list(range(peers))
    with new_lab(peers) as lab:
        start_mesh(lab, spawn, nodes, LOCAL_RANGE, f"consensus={peers}")
        before = ipam_gossip(lab, nodes)
        began = time.perf_counter()
        consensus, _ = allocate(lab, 0, "first", timeout=120)
        seen: dict[int, float] = {}

        def everyone() -> bool:
            for i in nodes:
                if i not in seen and ring(lab, i):
                    seen[i] = time.perf_counter() - began
            return len(seen) == len(nodes)

        wait_until(everyone, 120, f"all {peers} agents to have the ring", 0.05)
        wait_until(lambda: rings_agree(lab, nodes), 60, "the rings to agree")
        time.sleep(GOSSIP_SETTLE)
        during = gossip_between(before, ipam_gossip(lab, nodes))
        quiet = ipam_gossip(lab, nodes)
        began_rest = time.perf_counter()
        time.sleep(rest)
        after_rest = ipam_gossip(lab, nodes)
        minutes = (time.perf_counter() - began_rest) / 60
        resting = gossip_between(quiet, after_rest)
    return Consensus(kind, peers, round(consensus, 3), round(max(seen.values()), 3),
                     during[0], during[1], during[2], round(resting[0] / minutes, 1),
                     round(resting[1] / minutes, 1), round(resting[2] / minutes, 1))


# ---- the report -------------------------------------------------------------------------------

def commit() -> str:
    """The commit measured (``-dirty`` when tracked files differ from it)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()
    head = git("rev-parse", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def ms(figures: dict[str, float | int | None], key: str) -> str:
    value = figures[key]
    return "-" if value is None else f"{value:.2f}"


def pair(figures: dict[str, float | int | None]) -> str:
    return f"{ms(figures, 'p50_ms')}/{ms(figures, 'p99_ms')}"


def print_tables(allocations: Sequence[Allocation], consensus: Sequence[Consensus]) -> None:
    print(f"{'allocation (ms)':18} {'consensus3 s':>12} {'HTTP p50/p99':>13} "
          f"{'lookup p50/p99':>15} {'local p50/p99':>14} {'seq/s':>7} "
          f"{'8-flight p50/p99':>17} {'8-flight/s':>10} {'donation n p50/p99/max':>26}")
    for a in allocations:
        donation = f"{a.donation['n']} {pair(a.donation)}/{ms(a.donation, 'max_ms')}"
        print(f"{a.kind:18} {a.consensus_seconds:>12.3f} {pair(a.http_only):>13} "
              f"{pair(a.lookup):>15} {pair(a.local):>14} {a.sequential_per_second:>7.0f} "
              f"{pair(a.concurrent):>17} {a.concurrent_per_second:>10.0f} {donation:>26}")
    for a in allocations:
        print(f"{a.kind}: late peers' first allocations (ms): {a.late_first_ms}; node 0 made "
              f"{a.exhaustion_allocations} allocations in the small range")
    if consensus:
        print(f"{'consensus':18} {'peers':>5} {'consensus s':>11} {'ring everywhere s':>17} "
              f"{'gossip msgs':>11} {'gossip B':>9} {'B/agent max':>11} {'rest B/min':>10} "
              f"{'rest B/min/agent max':>20}")
    for c in consensus:
        print(f"{c.kind:18} {c.peers:>5} {c.consensus_seconds:>11.3f} "
              f"{c.ring_everywhere_seconds:>17.3f} {c.gossip_messages:>11} "
              f"{c.gossip_bytes:>9} {c.gossip_bytes_per_agent_max:>11} "
              f"{c.rest_bytes_per_minute:>10.0f} {c.rest_bytes_per_minute_per_agent_max:>20.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,10,30", help="peers for time to consensus")
    parser.add_argument("--allocations", type=int, default=500,
                        help="sequential allocations timed on one peer")
    parser.add_argument("--concurrent-allocations", type=int, default=1000,
                        help=f"allocations made {IN_FLIGHT} in flight")
    parser.add_argument("--late", type=int, default=3,
                        help="peers started after consensus (their first allocation)")
    parser.add_argument("--rest", type=float, default=60.0,
                        help="seconds the ring's gossip at rest is measured")
    parser.add_argument("--go", action="store_true",
                        help="the Go weaver's allocation labs too (when its binary exists)")
    parser.add_argument("--smoke", action="store_true", help="tiny and fast (CI)")
    args = parser.parse_args()
    exit_on_sigterm()  # a killed run still stops its agents and removes its lab
    small_range = SMALL_RANGE
    sizes = [int(n) for n in args.sizes.split(",")]
    if args.smoke:
        args.allocations, args.concurrent_allocations, args.late = 20, 40, 1
        args.rest, sizes, small_range = 3.0, [3], SMOKE_SMALL_RANGE
    measured = commit()
    print(f"commit {measured}", flush=True)
    kinds: list[tuple[str, Spawn]] = [("ours", ours)]
    if args.go and GO_WEAVER.exists():
        kinds.append(("go weaver 2.8.1", go))
    elif args.go:
        print(f"no Go weaver at {GO_WEAVER}: ours only", flush=True)
    allocations: list[Allocation] = []
    for kind, spawn in kinds:
        allocations.append(run_allocation(kind, spawn, args.allocations,
                                          args.concurrent_allocations, args.late,
                                          small_range))
        print(json.dumps(asdict(allocations[-1])), flush=True)
    consensus: list[Consensus] = []
    for n in sizes:
        consensus.append(run_consensus("ours", ours, n, args.rest))
        print(json.dumps(asdict(consensus[-1])), flush=True)
    print_tables(allocations, consensus)
    mine = allocations[0]
    p99 = mine.local["p99_ms"]
    at_30 = next((c.consensus_seconds for c in consensus if c.peers == 30), None)
    met: dict[str, bool | None] = {
        "local_allocation_p99": None if p99 is None
        else p99 <= TARGETS["local_allocation_p99_ms_max"],
        "consensus_at_30": None if at_30 is None
        else at_30 <= TARGETS["consensus_seconds_max_at_30"]}
    print(f"targets: local allocation p99 {p99} ms <= "
          f"{TARGETS['local_allocation_p99_ms_max']} ms: {verdict(met['local_allocation_p99'])}; "
          f"consensus at 30 peers {at_30} s <= {TARGETS['consensus_seconds_max_at_30']} s: "
          f"{verdict(met['consensus_at_30'])}")
    summary: dict[str, Any] = {
        "bench": "ipam", "commit": measured,
        "results": {"allocation": [asdict(a) for a in allocations],
                    "consensus": [asdict(c) for c in consensus]},
        "targets": TARGETS, "met": met}
    print(json.dumps(summary))
    return 0


def verdict(met: bool | None) -> str:
    return "not measured" if met is None else "met" if met else "MISSED"


if __name__ == "__main__":
    sys.exit(main())
