"""Our ``weaver`` processes in a fabric lab (:mod:`common.lab.fabric`): starting them,
reading their ``/report``, waiting until their views of the mesh agree."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.lab.fabric import FabricLab, peer_name, wait_until
from common.lab.process import LabProcess

ROOT = Path(__file__).resolve().parents[2]


def weaver_argv(lab: FabricLab, index: int, peers: Sequence[int] | None = None,
                password: str | None = None, extra: Sequence[str] = ()) -> list[str]:
    """Node ``index``'s weaver command line; ``peers``: node indexes (default: all)."""
    if peers is None:
        peers = [i for i in range(lab.nodes) if i != index]
    argv = [sys.executable, "-m", "router.agent.main", "--name", peer_name(index),
            "--nickname", f"node{index}", "--db-prefix", str(lab.node_dir(index) / "weave-"),
            "--log-level", "debug"]
    if password is not None:
        argv += ["--password", password]
    return [*argv, *extra, *(lab.node_ip(i) for i in peers)]


def start(lab: FabricLab, index: int, peers: Sequence[int] | None = None,
          password: str | None = None, extra: Sequence[str] = ()) -> LabProcess:
    return lab.spawn(index, weaver_argv(lab, index, peers, password, extra),
                     env={"PYTHONPATH": str(ROOT)}, pid_namespace=False)


def report(lab: FabricLab, index: int) -> dict[str, Any]:
    reply = lab.http(index, "GET", "/report", headers={"Accept": "application/json"})
    body: dict[str, Any] = json.loads(reply.expect(200).body)
    return body


def view(lab: FabricLab, index: int) -> dict[str, tuple[int, tuple[tuple[str, bool], ...]]]:
    """What node ``index`` believes: each peer's UID and connections (remote, established)."""
    peers = report(lab, index)["Router"]["Peers"] or []
    return {p["Name"]: (p["UID"], tuple(sorted((c["Name"], c["Established"])
                                              for c in p["Connections"] or [])))
            for p in peers}


def routes(lab: FabricLab, index: int) -> dict[str, str]:
    return {r["Dest"]: r["Via"] for r in report(lab, index)["Router"]["UnicastRoutes"] or []}


def full_mesh(lab: FabricLab, nodes: Sequence[int]) -> bool:
    """Every node sees exactly ``nodes``, all pairwise connected and established, and all
    views agree."""
    names = {peer_name(i) for i in nodes}
    views = [view(lab, i) for i in nodes]
    for v in views:
        if set(v) != names or any(len(conns) != len(names) - 1 or not all(e for _, e in conns)
                                  for _, conns in v.values()):
            return False
    return all(v == views[0] for v in views)


def wait_full_mesh(lab: FabricLab, nodes: Sequence[int], timeout: float = 60.0) -> float:
    """Seconds until :func:`full_mesh` holds."""
    started = time.monotonic()
    wait_until(lambda: full_mesh(lab, nodes), timeout, f"a full mesh of {list(nodes)}", 0.1)
    return time.monotonic() - started


def weave(lab: FabricLab, index: int, *args: str) -> tuple[int, str]:
    """The ``weave`` CLI inside node ``index``: (exit code, stdout + stderr)."""
    done = lab.run_in_node(index, [sys.executable, "-m", "router.cli.weave", *args],
                           check=False)
    return done.returncode, done.stdout + done.stderr


__all__ = ["FabricLab", "full_mesh", "peer_name", "report", "routes", "start", "view",
           "wait_full_mesh", "wait_until", "weave"]
