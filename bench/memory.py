#!/usr/bin/env python3
"""Memory: peak RSS (VmHWM) of ``npc run`` once it has synced a generated cluster, per
backend.  The last line of output is one JSON object with the figures and the target."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.controller_run import running

TARGET_MB = 150.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="10000:1000")
    parser.add_argument("--backends", default="iptables,nftables")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.size = "200:20"
    pods, policies = (int(x) for x in args.size.split(":"))
    results = []
    for backend in args.backends.split(","):
        with running(pods, policies, backend) as run:
            rss = run.peak_rss_mb()
        results.append({"bench": "memory", "backend": backend, "pods": pods,
                        "policies": policies, "peak_rss_mb": round(rss, 1),
                        "target_mb": TARGET_MB})
        print(f"{backend:9} {pods} pods {policies} policies: peak RSS {rss:.1f} MB "
              f"(target <= {TARGET_MB:.0f} MB)", flush=True)
    print(json.dumps({"bench": "memory", "results": results, "targets": {"peak_rss_mb_max":
                                                                        TARGET_MB}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
