"""Incremental latency: from a write to the API server to npc's kernel reflecting it.

For each backend and size: pods created, relabelled and deleted (``--events`` of each);
policies created and deleted (``--policy-events`` of each) — one at a time, each timed
until ``/status`` reports the kernel applied that resourceVersion (a sync completes only
after its kernel transaction returned).  Every size's npc runs at once and takes the same
events in turn (this machine's load drifts from one minute to the next: timing the sizes
one after the other would put the drift into the ratio between them).  Prints p50/p99
per event kind, the p99 ratio between sizes, and npc's peak RSS.  The last line of output
is one JSON object with the figures and the targets.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cluster_gen import pod_ip, policy
from bench.controller_run import Running, running

TARGETS = {"pod_event_p99_ms_max": 10.0, "p99_ratio_10k_to_1k_max": 1.5}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def timed(run: Running, write: Any, kind: str) -> float:
    start = time.perf_counter()
    obj = write()
    rv = int(obj["metadata"]["resourceVersion"])
    run.wait_applied(rv, kind=kind)
    return (time.perf_counter() - start) * 1000


KINDS = ("pod-create", "pod-relabel", "pod-delete", "policy-create", "policy-delete")
Event = tuple[str, Callable[[], Any], str]
"""An event: its kind, the write to the API server, and the watch that brings it."""


def events(run: Running, pods: int, count: int, policy_count: int) -> Iterator[Event]:
    """The events for the npc of a cluster of ``pods`` pods, in order."""
    api = run.api
    m = max(1, pods // 100)
    for k in range(count):
        i = pods + k
        body = {"metadata": {"name": f"new{k}", "namespace": f"ns{i % m}",
                             "labels": {"app": f"a{k % 20}", "tier": "t1"}},
                "spec": {"containers": [{"name": "c", "ports": [
                    {"name": "http", "containerPort": 80}]}]},
                "status": {"phase": "Running", "podIP": pod_ip(i)}}
        where = (f"ns{i % m}", f"new{k}")
        yield "pod-create", partial(api.create, "Pod", body), "pods"
        yield "pod-relabel", partial(api.set_labels, "Pod", *where, {
            "app": f"a{(k + 7) % 20}", "tier": "t0"}), "pods"
        yield "pod-delete", partial(api.delete, "Pod", *where), "pods"
    for k in range(policy_count):
        pol = policy(10_000 + k, m)
        pol["metadata"]["name"] = f"bench-{k}"
        meta = pol["metadata"]
        yield "policy-create", partial(api.create, "NetworkPolicy", pol), "networkpolicies"
        yield "policy-delete", partial(api.delete, "NetworkPolicy", meta["namespace"],
                                       meta["name"]), "networkpolicies"


def side_by_side(runs: list[tuple[Running, int]], count: int, policy_count: int
                 ) -> list[dict[str, list[float]]]:
    """Each run's latencies by kind: the runs take their events in turn (which goes first
    alternates)."""
    out: list[dict[str, list[float]]] = [{k: [] for k in KINDS} for _ in runs]
    streams = [events(run, pods, count, policy_count) for run, pods in runs]
    for step, turn in enumerate(zip(*streams, strict=True)):
        order = list(range(len(runs)))
        if step % 2:
            order.reverse()
        for j in order:
            kind, write, watched = turn[j]
            out[j][kind].append(timed(runs[j][0], write, watched))
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000:100,10000:1000")
    parser.add_argument("--backends", default="iptables,nftables")
    parser.add_argument("--events", type=int, default=200,
                        help="pod events of each kind (a p99 needs a few hundred)")
    parser.add_argument("--policy-events", type=int, default=40,
                        help="policy events of each kind (each is a full compile)")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.events, args.policy_events = "200:20", 3, 3
    results: list[dict[str, Any]] = []
    print(f"{'backend':9} {'pods':>6} {'event':14} {'p50 ms':>8} {'p99 ms':>8}")
    clusters = [(int(pods), int(policies)) for pods, policies in
                (size.split(":") for size in args.sizes.split(","))]
    for backend in args.backends.split(","):
        with contextlib.ExitStack() as stack:
            runs = [(stack.enter_context(running(pods, policies, backend)), pods)
                    for pods, policies in clusters]
            latencies = side_by_side(runs, args.events, args.policy_events)
            peaks = [run.peak_rss_mb() for run, _ in runs]
        for (pods, policies), lat, rss in zip(clusters, latencies, peaks, strict=True):
            for kind, values in lat.items():
                r = {"bench": "incremental", "backend": backend, "pods": pods,
                     "policies": policies, "event": kind, "n": len(values),
                     "p50_ms": round(statistics.median(values), 2),
                     "p99_ms": round(percentile(values, 99), 2), "peak_rss_mb": round(rss, 1)}
                results.append(r)
                print(f"{backend:9} {pods:>6} {kind:14} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}",
                      flush=True)
            print(f"{backend:9} {pods:>6} peak RSS of npc run: {rss:.1f} MB", flush=True)
    ratios = {}
    for backend in args.backends.split(","):
        sizes = sorted({r["pods"] for r in results if r["backend"] == backend})
        if len(sizes) >= 2:
            for kind in ("pod-create", "pod-relabel", "pod-delete"):
                lo, hi = (next(r["p99_ms"] for r in results if r["backend"] == backend
                               and r["pods"] == s and r["event"] == kind)
                          for s in (sizes[0], sizes[-1]))
                ratios[f"{backend}:{kind}"] = round(hi / lo, 2)
    print(f"p99 ratio largest/smallest size: {ratios}")
    print(json.dumps({"bench": "incremental", "results": results, "p99_ratios": ratios,
                      "targets": TARGETS}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
