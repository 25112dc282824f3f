"""``npc demo``: policies enforced with real traffic in a lab of network namespaces.

Builds the pods of ``examples/cluster.yaml`` on two lab nodes, then applies the example
policies one after another -- each time by running ``npc apply`` inside every node's
namespace, exactly as an operator would -- and prints the reachability matrix after each.
Everything the demo creates lives in its own namespaces and is removed at the end.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from common.lab.lab import Lab
from common.lab.topology import LabPod
from npc.model.load import load_files

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PORTS = ((80, "TCP"), (81, "TCP"))


def _description(path: Path) -> str:
    lines = [line[1:].strip() for line in path.read_text().splitlines()
             if line.startswith("#")]
    return " ".join(lines)


def _npc_command() -> list[str]:
    found = shutil.which("npc")
    return [found] if found else [sys.executable, "-m", "npc.cli"]


def _apply(lab: Lab, files: list[Path], install_hooks: bool) -> None:
    argv = [*_npc_command(), "apply"]
    for f in files:
        argv += ["-f", str(f)]
    if install_hooks:
        argv.append("--install-hooks")
    for node in range(lab.topology.nodes):
        proc = lab.run_in_node(node, argv, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"npc apply failed on node {node}:\n{proc.stderr}")


def _show(lab: Lab, keys: list[str]) -> None:
    lab.flush_conntrack()
    for port, proto in PORTS:
        print(f"  {proto}/{port}")
        print(lab.matrix(port, proto, keys=keys).format(indent="    "))
        print()


def run_demo(examples: Path = EXAMPLES) -> int:
    cluster_file = examples / "cluster.yaml"
    loaded = load_files([cluster_file])
    if loaded.failed:
        for p in loaded.problems:
            print(f"npc demo: {p}", file=sys.stderr)
        return 1
    pods = [LabPod(p.key, int(p.node_name.rsplit("-", 1)[-1]), str(p.ipv4))
            for p in loaded.pods]
    keys = [p.key for p in pods]
    policies = sorted(f for f in examples.glob("[0-9]*.yaml"))
    print(f"npc demo: building a lab of 2 nodes and {len(pods)} pods "
          f"({', '.join(keys)})")
    with Lab(nodes=2, pods=pods, prefix="npcdemo") as lab:
        print(f"lab ready in {lab.build_seconds:.2f}s; '.' = connected, 'X' = blocked; "
              "rows are sources, columns destinations\n")
        _apply(lab, [cluster_file], install_hooks=True)
        print("== no policy: every pod reaches every pod")
        _show(lab, keys)
        applied = [cluster_file]
        for policy in policies:
            applied.append(policy)
            _apply(lab, applied, install_hooks=False)
            print(f"== + {policy.name}: {_description(policy)}")
            _show(lab, keys)
    print("npc demo: lab removed")
    return 0
