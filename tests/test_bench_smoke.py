"""Every benchmark script runs at a tiny size and ends with its JSON line, so the scripts
cannot rot.  Timings are not judged here: bench/run-all is where figures come from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel  # network namespaces, netfilter, real traffic

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", ["full_sync", "incremental", "packet_path", "memory",
                                    "gob_topology", "mesh", "ipam"])
def test_benchmark_smoke(script: str) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / f"{script}.py"), "--smoke"],
                          capture_output=True, text=True, timeout=600, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    closing = json.loads(proc.stdout.strip().splitlines()[-1])
    assert closing["bench"] == script
    assert closing["results"] and closing["targets"]
    if script == "full_sync":  # two sizes ten times apart: the scaling figure is there
        assert set(closing["scaling"]) == {"iptables", "nftables"}


def test_full_sync_runs_a_size_only_where_memory_allows() -> None:
    from bench.full_sync import memory_allows

    assert memory_allows(10)
    assert not memory_allows(10**12)  # 64 PB of pods' worth: skipped, said so
