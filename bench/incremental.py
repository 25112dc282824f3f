"""Incremental latency: from a write to the API server to npc's kernel reflecting it.

For each backend and size: pods created, relabelled and deleted (``--events`` of each);
policies created and deleted (``--policy-events`` of each) — one at a time, each timed
until ``/status`` reports the kernel applied that resourceVersion (a sync completes only
after its kernel transaction returned).  Prints p50/p99 per event kind, the p99 ratio
between sizes, and npc's peak RSS.  The last line of output is one JSON object with the
figures and the targets.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
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


def events(run: Running, pods: int, count: int, policy_count: int
           ) -> dict[str, list[float]]:
    api = run.api
    m = max(1, pods // 100)
    out: dict[str, list[float]] = {k: [] for k in ("pod-create", "pod-relabel", "pod-delete",
                                                   "policy-create", "policy-delete")}
    for k in range(count):
        i = pods + k
        body = {"metadata": {"name": f"new{k}", "namespace": f"ns{i % m}",
                             "labels": {"app": f"a{k % 20}", "tier": "t1"}},
                "spec": {"containers": [{"name": "c", "ports": [
                    {"name": "http", "containerPort": 80}]}]},
                "status": {"phase": "Running", "podIP": pod_ip(i)}}
        out["pod-create"].append(timed(run, lambda b=body: api.create("Pod", b), "pods"))
        out["pod-relabel"].append(timed(run, lambda k=k, i=i: api.set_labels(
            "Pod", f"ns{i % m}", f"new{k}", {"app": f"a{(k + 7) % 20}", "tier": "t0"}), "pods"))
        out["pod-delete"].append(timed(run, lambda k=k, i=i: api.delete(
            "Pod", f"ns{i % m}", f"new{k}"), "pods"))
    for k in range(policy_count):
        pol = policy(10_000 + k, m)
        pol["metadata"]["name"] = f"bench-{k}"
        out["policy-create"].append(timed(run, lambda p=pol: api.create("NetworkPolicy", p),
                                             "networkpolicies"))
        meta = pol["metadata"]
        out["policy-delete"].append(timed(run, lambda n=meta: api.delete(
            "NetworkPolicy", n["namespace"], n["name"]), "networkpolicies"))
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
    for backend in args.backends.split(","):
        for size in args.sizes.split(","):
            pods, policies = (int(x) for x in size.split(":"))
            with running(pods, policies, backend) as run:
                lat = events(run, pods, args.events, args.policy_events)
                rss = run.peak_rss_mb()
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
