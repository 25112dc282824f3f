"""Packet path: the rate of new TCP connections between two pods through the ``weave``
bridge with no policy, then with 1,000 policies installed (100 of them selecting the
destination), per backend, measured side by side in one lab.

Each round alternates "no policy" and "1,000 policies" for the same duration, several
times, and reports the median rates and their ratio (this machine is shared and noisy).
The last line of output is one JSON object with the figures and the targets.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.lab import Lab, LabPod, in_netns
from tests.cluster import Cluster, Enforcer, PodDef, lab_cluster, netpol

TARGETS = {"nftables": 0.9, "iptables": 0.8}
PORT = 8090


def policies(cluster: Cluster, total: int, selecting: int) -> None:
    """``selecting`` policies select the server pod (each allowing the client among other
    peers); the rest select other pods of the cluster (pods outside the lab: their rules
    are in the kernel, as in a big cluster, but no packet is for them)."""
    for i in range(selecting, total):
        cluster.pods[f"x/other-{i}"] = PodDef("x", f"other-{i}", f"10.40.{i // 250}.{i % 250 + 1}",
                                              "node-1", {"app": f"other-{i}"}, [])
    for i in range(total):
        target = {"pod": "b"} if i < selecting else {"app": f"other-{i}"}
        cluster.put_policy(netpol(f"x/p{i}", {
            "podSelector": {"matchLabels": target},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "a" if i == 0
                                                                    else f"peer-{i}"}}},
                                  {"ipBlock": {"cidr": f"192.168.{i % 250}.0/24"}}],
                         "ports": [{"port": PORT}, {"port": 1000 + i, "protocol": "UDP"}]}]}))


def connection_rate(lab: Lab, seconds: float) -> float:
    """New connections per second from x/a to x/b (each connect + close)."""
    dst = (lab.pod_ip("x/b"), PORT)
    fd = lab.netns_fd(lab.pod_ns("x/a"))
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        with in_netns(fd):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.connect(dst)
        sock.close()
        count += 1
    return count / seconds


def serve(lab: Lab, stop: threading.Event) -> threading.Thread:
    with in_netns(lab.netns_fd(lab.pod_ns("x/b"))):
        server = socket.create_server(("0.0.0.0", PORT), backlog=4096)
    server.settimeout(0.2)

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except TimeoutError:
                continue
        server.close()
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def measure(lab: Lab, mode: str, rounds: int, seconds: float) -> dict[str, Any]:
    enforcer = Enforcer(lab, mode)
    bare, loaded = lab_cluster(lab), lab_cluster(lab)
    policies(loaded, 1000, 100)
    base_state, loaded_state = bare.state(), loaded.state()
    without, with_ = [], []
    for _ in range(rounds):
        enforcer.apply(base_state)
        lab.flush_conntrack()
        without.append(connection_rate(lab, seconds))
        enforcer.apply(loaded_state)
        lab.flush_conntrack()
        with_.append(connection_rate(lab, seconds))
    enforcer.remove()
    backend = "nftables" if mode == "nftables" else "iptables"
    a, b = statistics.median(without), statistics.median(with_)
    return {"bench": "packet_path", "backend": backend, "policies": 1000,
            "selecting_destination": 100, "conn_per_s_no_policy": round(a),
            "conn_per_s_with_policies": round(b), "ratio": round(b / a, 3),
            "target": TARGETS[backend], "rounds": rounds, "seconds_per_sample": seconds}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.seconds = 1, 0.3
    pods = [LabPod("x/a", 0, "10.32.0.10"), LabPod("x/b", 0, "10.32.0.11")]
    results = []
    stop = threading.Event()
    with Lab(nodes=1, pods=pods, prefix="npbench") as lab:
        serve(lab, stop)
        print(f"{'backend':9} {'no policy /s':>13} {'1000 pol /s':>12} {'ratio':>6} {'target':>7}")
        for mode in ("nft", "nftables"):
            r = measure(lab, mode, args.rounds, args.seconds)
            results.append(r)
            print(f"{r['backend']:9} {r['conn_per_s_no_policy']:>13} "
                  f"{r['conn_per_s_with_policies']:>12} {r['ratio']:>6.3f} {r['target']:>7}",
                  flush=True)
        stop.set()
    print(json.dumps({"bench": "packet_path", "results": results, "targets": TARGETS}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
