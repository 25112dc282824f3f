#!/usr/bin/env python3
"""Gob: encoding and decoding a mesh topology update of N peers, each connected to K
others (a full mesh is K = N - 1), in CPython. The last line of output is one JSON
object with the figures and the target (decode a 100-peer full mesh in under 10 ms)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from router.mesh.messages import (
    ConnectionSummary,
    PeerSummary,
    TopologyPeer,
    decode_topology,
    encode_topology,
)

TARGET_MS = 10.0


def topology(peers: int, connections: int) -> list[TopologyPeer]:
    """``peers`` peers named 0a:00:00:00:00:NN, each connected to the next ``connections``."""
    names = [(0x0A0000000000 + i).to_bytes(6, "big") for i in range(peers)]
    out = []
    for i in range(peers):
        conns = tuple(
            ConnectionSummary(names[j], f"10.32.0.{j + 1}:6783", i < j, j % 3 != 0)
            for j in ((i + d) % peers for d in range(1, connections + 1))
        )
        summary = PeerSummary(names[i], f"node-{i}", 0x1234567890ABCDEF + i, i + 1, i, True)
        out.append(TopologyPeer(summary, conns))
    return out


def best_ms(action: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100:99,100:10,100:3")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.repeat = "10:9", 2
    results = []
    for size in args.sizes.split(","):
        peers, connections = (int(x) for x in size.split(":"))
        sample = topology(peers, connections)
        data = encode_topology(sample)
        assert decode_topology(data) == sample
        encode_ms = best_ms(partial(encode_topology, sample), args.repeat)
        decode_ms = best_ms(partial(decode_topology, data), args.repeat)
        results.append({"bench": "gob_topology", "peers": peers, "connections": connections,
                        "bytes": len(data), "encode_ms": round(encode_ms, 2),
                        "decode_ms": round(decode_ms, 2)})
        print(f"{peers} peers x {connections} connections ({len(data)} bytes): "
              f"encode {encode_ms:.2f} ms, decode {decode_ms:.2f} ms", flush=True)
    print(json.dumps({"bench": "gob_topology", "results": results,
                      "targets": {"decode_100_peer_full_mesh_ms_max": TARGET_MS}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
