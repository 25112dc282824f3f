"""The mesh at scale: real ``weaver`` processes, one per node namespace of a fabric lab.

For each size N (10, 30, 100 by default):

* **start**: N agents, each given every other node as a peer (as ``KUBE_PEERS`` does),
  started in waves of ``--wave`` agents (10 up to 30 agents, else 1), each wave once the
  previous one is in the mesh: a rolling start, as a DaemonSet's is (a hundred agents
  dialling each other at once on two shared cores is a formation storm no real cluster
  has, since each node has its own CPU); the seconds until every agent sees the whole
  full mesh established;
* **join**: one more agent, given every node; the seconds from its listening (as it
  logs it; it dials at once) to every agent (itself included) seeing the N+1 full mesh,
  from the agents' own logs (each logs the topology's size at every route recomputation,
  at debug level), so nothing polls the agents while they work;
* **death**: that agent killed (``kill -9``); the seconds until every other agent's
  topology is the N full mesh again;
* **bytes and messages per event**: the mesh port's TCP bytes sent by all nodes during
  the join and the death (iptables counters in each node's namespace: the same measure for
  the Go weaver, headers and acknowledgements included), less what the quiet mesh sends in
  as long (heartbeats, periodic gossip: measured for ten seconds before the join), and our
  agents' gossip message counts (``weave_gossip_*``); the bytes per agent, and how they
  grow with N (the exponent between the first and last size: 1 is O(N) per agent);
* **memory**: each agent's RSS once the mesh is whole;
* **CPU**: what all agents spent on the join (from /proc), and the most one agent spent:
  with N agents on this machine's two cores a join waits for all of it, on real nodes
  each agent only for its own.

``--full-topology`` runs our agents with ``--no-incremental-topology`` as well, side by
side, at the sizes up to 30: the original's topology format and relaying, to show what
ours saves (at 100 that format moves about a gigabyte a join, which is all this
benchmark would measure).  ``--go``
runs the Go weaver at the first size (10) when its binary exists (tests/interop/build-go-
weave.sh), for the same figures.  Every run is processes in namespaces (no in-process
shortcut).  The last line of output is one JSON object with every figure and the targets.

Usage: ``bench/mesh.py [--sizes 10,30,100] [--wave 10] [--full-topology] [--go] [--smoke]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.lab.fabric import FabricLab, peer_name, wait_until
from common.lab.signals import exit_on_sigterm
from tests.router.agents import start

TARGETS = {"join_converged_seconds_max_at_100": 2.0, "rss_mb_max": 60.0,
           "join_bytes_per_agent_growth_exponent_max": 1.3}
WAVE = 10
"""Agents started at once up to 30 agents (one at a time beyond: ten dialling a mesh of
ninety at once on two shared cores overloaded the machine until handshakes timed out);
the next wave waits for this one to be in the mesh."""
IDLE_SECONDS = 10.0
"""How long the quiet mesh's traffic is measured (2 s with --smoke)."""
SLOW_LOGS = Path(os.environ.get("MESH_BENCH_LOGS", "/tmp/mesh-bench-logs"))
"""Where the agents' logs of a start that took far longer than usual are kept."""


GO_WEAVER = Path(os.environ.get("GO_WEAVER", "/work/go-weave/bin/weaver"))
ROUTES = re.compile(r"^DEBU: (\S+ \S+) routes recomputed: peers=(\d+) connections=(\d+) "
                    r"established=(\d+)")
COUNT_COMMENT = "bench-mesh-bytes"


@dataclass
class Result:
    kind: str
    peers: int
    start_seconds: float
    join_seconds: float
    death_seconds: float
    join_bytes: int
    join_bytes_per_agent: int
    death_bytes: int
    idle_bytes_per_second: int
    join_messages: int | None
    join_gossip_bytes: int | None
    """Of join_bytes, the gossip messages themselves (the rest: TCP/IP headers,
    acknowledgements, encryption, heartbeats, handshakes)."""
    death_messages: int | None
    death_gossip_bytes: int | None
    rss_mb_mean: float
    rss_mb_max: float
    join_cpu_seconds: float
    """CPU time (user + system) all agents spent from the newcomer's start until the
    join converged: on shared cores the join waits for this, on real nodes each agent
    only for its own share (``join_cpu_ms_per_member_max``)."""
    join_cpu_ms_per_member_max: float
    """The most CPU one agent of the mesh spent on the join."""
    join_cpu_ms_newcomer: float
    """The newcomer's CPU, its start-up (the interpreter, imports) included."""


def cpu_seconds(lab: FabricLab, nodes: Sequence[int]) -> dict[int, float]:
    """Each agent's CPU time so far (user + system, from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for i in nodes:
        fields = Path(f"/proc/{lab.process(i).target_pid()}/stat").read_text()
        after_name = fields[fields.rindex(")") + 2:].split()
        out[i] = (int(after_name[11]) + int(after_name[12])) / tick
    return out


def stamp(text: str) -> float:
    return datetime.strptime(text, "%Y/%m/%d %H:%M:%S.%f").timestamp()


class RouteLog:
    """The "routes recomputed" lines of every agent's log, read as they come (each log is
    read from where the last look stopped: a hundred agents' debug logs grow to
    megabytes, and reading them whole every half second loaded the machine)."""

    def __init__(self, lab: FabricLab) -> None:
        self.lab = lab
        self._offsets: dict[int, int] = {}
        self.events: dict[int, list[tuple[float, int, int, int]]] = {}

    def refresh(self, index: int) -> list[tuple[float, int, int, int]]:
        path = self.lab.process(index).log_path
        offset = self._offsets.get(index, 0)
        try:
            with open(path, "rb") as log:
                log.seek(offset)
                data = log.read()
        except FileNotFoundError:
            data = b""
        complete = data.rfind(b"\n") + 1
        self._offsets[index] = offset + complete
        events = self.events.setdefault(index, [])
        for line in data[:complete].decode(errors="replace").splitlines():
            m = ROUTES.match(line)
            if m:
                events.append((stamp(m[1]), int(m[2]), int(m[3]), int(m[4])))
        return events

    def converged_at(self, index: int, peers: int, after: float) -> float | None:
        """When node ``index`` first logged a topology of ``peers`` in a full mesh, after
        ``after`` (epoch seconds); None if not yet."""
        full = peers * (peers - 1)
        return next((when for when, *topology in self.refresh(index)
                     if topology == [peers, full, full] and when >= after), None)


def listening_at(lab: FabricLab, index: int) -> float:
    """When the agent on node ``index`` logged that it listens (epoch seconds)."""
    for line in lab.process(index).current_log().splitlines():
        if "Listening for mesh connections" in line:
            return stamp(line[6:32])
    raise RuntimeError(f"node {index} has not logged that it listens")


def wait_logged(routes: RouteLog, lab: FabricLab, nodes: Sequence[int], peers: int,
                after: float, timeout: float) -> float:
    """Seconds from ``after`` until the last of ``nodes`` logged the full mesh."""
    found: dict[int, float] = {}

    def done() -> bool:
        for i in nodes:
            if i not in found and (when := routes.converged_at(i, peers, after)) is not None:
                found[i] = when
        return len(found) == len(nodes)

    wait_until(done, timeout, f"{len(nodes)} agents to see {peers} peers", 0.5)
    return max(found.values()) - after


def status_full(lab: FabricLab, nodes: Sequence[int], peers: int) -> bool:
    want = f"Peers: {peers} (with {peers * (peers - 1)} established connections)"
    return all(want in lab.status(i) for i in nodes)


def wait_polled(lab: FabricLab, nodes: Sequence[int], peers: int, after: float,
                timeout: float) -> float:
    """For the Go weaver (whose logs do not say): poll ``/status`` until it holds."""
    wait_until(lambda: status_full(lab, nodes, peers), timeout,
               f"{len(nodes)} agents to see {peers} peers", 0.1)
    return time.time() - after


def count_bytes(lab: FabricLab, nodes: Sequence[int], reset: bool) -> int:
    """TCP bytes the nodes sent from or to the mesh port since the last reset."""
    total = 0
    for i in nodes:
        rules = lab.run_in_node(i, ["iptables", "-w", "-L", "OUTPUT", "-v", "-x", "-n"]).stdout
        if COUNT_COMMENT not in rules:
            for flag in ("--sport", "--dport"):
                lab.run_in_node(i, ["iptables", "-w", "-I", "OUTPUT", "-p", "tcp", flag, "6783",
                                    "-m", "comment", "--comment", COUNT_COMMENT])
            continue
        total += sum(int(line.split()[1]) for line in rules.splitlines()
                     if COUNT_COMMENT in line)
        if reset:
            lab.run_in_node(i, ["iptables", "-w", "-Z", "OUTPUT"])
    return total


def gossip_sent(lab: FabricLab, nodes: Sequence[int]) -> tuple[int, int]:
    """Gossip messages and bytes our agents sent (weave_gossip_*_sent_total)."""
    messages = size = 0
    for i in nodes:
        text = lab.http(i, "GET", "/metrics", port=6782, timeout=30).text
        for line in text.splitlines():
            if line.startswith("weave_gossip_messages_sent_total"):
                messages += int(float(line.rsplit(" ", 1)[1]))
            elif line.startswith("weave_gossip_bytes_sent_total"):
                size += int(float(line.rsplit(" ", 1)[1]))
    return messages, size


def rss_mb(lab: FabricLab, nodes: Sequence[int]) -> list[float]:
    out = []
    for i in nodes:
        pid = lab.process(i).target_pid()
        status = Path(f"/proc/{pid}/status").read_text()
        kb = int(next(line.split()[1] for line in status.splitlines()
                      if line.startswith("VmRSS:")))
        out.append(kb / 1024)
    return out


def slow_start(peers: int) -> float:
    """A start longer than this is kept for a look (usually: 2 s for 10 agents, 7 s for
    30, about 2 minutes for 100; twice, at 10 agents, one took 40-50 s)."""
    return max(20.0, 2.5 * peers)


def keep_logs(lab: FabricLab, nodes: Sequence[int], kind: str, seconds: float) -> None:
    """Copy the agents' logs of a slow start, and say where (on stderr)."""
    slug = re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")
    where = SLOW_LOGS / f"{slug}-{len(nodes)}-{datetime.now():%Y%m%d-%H%M%S}"
    where.mkdir(parents=True, exist_ok=True)
    for i in nodes:
        shutil.copy(lab.process(i).log_path, where / f"node{i}.log")
    print(f"{kind}, {len(nodes)} agents: the start took {seconds:.1f} s; their logs are "
          f"in {where}", file=sys.stderr, flush=True)


def run_size(kind: str, peers: int, spawn: Callable[[FabricLab, int, list[int]], None],
             logged: bool, idle_seconds: float = IDLE_SECONDS, wave: int | None = None
             ) -> Result:
    if wave is None:
        wave = WAVE if peers <= 30 else 1
    nodes = list(range(peers))
    newcomer = peers
    with FabricLab(nodes=peers + 1, prefix=f"glb{os.getpid()}",
                   fabric_cidr="192.168.79.0/24") as lab:
        waiter = functools.partial(wait_logged, RouteLog(lab)) if logged else wait_polled
        count_bytes(lab, range(peers + 1), reset=True)  # installs the counters
        began = time.time()
        for first in range(0, peers, wave):
            members = nodes[first:first + wave]
            for i in members:
                spawn(lab, i, [j for j in range(peers + 1) if j != i])
            lab.wait_ready(members, timeout=300)
            if first + len(members) == 1:
                continue  # one agent alone: no topology change to log
            started = waiter(lab, nodes[:first + len(members)], first + len(members),
                             began, 600)
        if started > slow_start(peers):
            keep_logs(lab, nodes, kind, started)
        sizes = rss_mb(lab, nodes)
        time.sleep(2)
        count_bytes(lab, range(peers + 1), reset=True)
        quiet = time.time()
        time.sleep(idle_seconds)
        idle_rate = count_bytes(lab, range(peers + 1), reset=True) / (time.time() - quiet)
        messages_before = gossip_sent(lab, nodes) if logged else None  # newcomer: 0
        cpu_before = cpu_seconds(lab, nodes)
        window = time.time()
        spawn(lab, newcomer, nodes)
        lab.wait_ready([newcomer], timeout=120)
        # From the newcomer's listening (it dials at once), not from its API answering:
        # on loaded cores the join can be whole before the API answers.
        ready = listening_at(lab, newcomer) if logged else time.time()
        joined = waiter(lab, [*nodes, newcomer], peers + 1, ready, 300)
        cpu_after = cpu_seconds(lab, [*nodes, newcomer])
        join_cpu = {i: cpu_after[i] - cpu_before.get(i, 0.0) for i in cpu_after}
        time.sleep(3)  # what the join still sends after convergence counts too
        join_bytes = net(count_bytes(lab, range(peers + 1), reset=True), idle_rate, window)
        messages_joined = gossip_sent(lab, [*nodes, newcomer]) if logged else None
        members_joined = gossip_sent(lab, nodes) if logged else None
        killed = window = time.time()
        lab.kill(newcomer)
        died = waiter(lab, nodes, peers, killed, 300)
        time.sleep(3)
        death_bytes = net(count_bytes(lab, nodes, reset=True), idle_rate, window)
        messages_died = gossip_sent(lab, nodes) if logged else None
    join_messages = join_gossip = death_messages = death_gossip = None
    if messages_before is not None and messages_joined is not None:
        join_messages = messages_joined[0] - messages_before[0]
        join_gossip = messages_joined[1] - messages_before[1]
    if members_joined is not None and messages_died is not None:
        death_messages = messages_died[0] - members_joined[0]
        death_gossip = messages_died[1] - members_joined[1]
    return Result(kind, peers, round(started, 3), round(joined, 3), round(died, 3),
                  join_bytes, join_bytes // (peers + 1), death_bytes, round(idle_rate),
                  join_messages, join_gossip, death_messages, death_gossip,
                  round(sum(sizes) / len(sizes), 1), round(max(sizes), 1),
                  round(sum(join_cpu.values()), 2),
                  round(1000 * max(join_cpu[i] for i in nodes), 1),
                  round(1000 * join_cpu[newcomer], 1))


def net(counted: int, idle_rate: float, since: float) -> int:
    """Bytes counted since ``since``, less what the quiet mesh sends in as long."""
    return max(0, round(counted - idle_rate * (time.time() - since)))


def growth_exponent(results: Sequence[Result]) -> float | None:
    """How join bytes per agent grow with N between the first and last size
    (1.0 is linear)."""
    if len(results) < 2 or not results[0].join_bytes_per_agent:
        return None
    first, last = results[0], results[-1]
    return round(math.log(last.join_bytes_per_agent / first.join_bytes_per_agent)
                 / math.log(last.peers / first.peers), 2)


def ours(extra: Sequence[str] = ()) -> Callable[[FabricLab, int, list[int]], None]:
    def spawn(lab: FabricLab, index: int, peer_nodes: list[int]) -> None:
        start(lab, index, peers=peer_nodes, extra=extra)
    return spawn


def go(lab: FabricLab, index: int, peer_nodes: list[int]) -> None:
    from tests.interop.golab import go_weaver_argv

    argv = go_weaver_argv(GO_WEAVER, peer_name(index), f"node{index}",
                          lab.node_dir(index) / "weave-",
                          peers=[lab.node_ip(j) for j in peer_nodes])
    lab.spawn(index, argv, env={"CHECKPOINT_DISABLE": "1"})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,30,100")
    parser.add_argument("--wave", type=int, default=None,
                        help=f"agents started at once (default {WAVE} up to 30 agents, else 1)")
    parser.add_argument("--full-topology", action="store_true")
    parser.add_argument("--go", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI)")
    args = parser.parse_args()
    exit_on_sigterm()  # a killed run still stops its agents and removes its lab
    sizes = [3, 5] if args.smoke else [int(n) for n in args.sizes.split(",")]
    idle = 2.0 if args.smoke else IDLE_SECONDS
    results: list[Result] = []
    for n in sizes:
        results.append(run_size("ours", n, ours(), True, idle, args.wave))
        print(json.dumps(asdict(results[-1])), flush=True)
        if args.full_topology and n <= 30:
            results.append(run_size("ours, original topology format", n,
                                    ours(["--no-incremental-topology"]), True, idle,
                                    args.wave))
            print(json.dumps(asdict(results[-1])), flush=True)
    if args.go and GO_WEAVER.exists():
        results.append(run_size("go weaver 2.8.1", sizes[0], go, False, idle, args.wave))
        print(json.dumps(asdict(results[-1])), flush=True)
    print(f"{'kind':34} {'peers':>5} {'start s':>8} {'join s':>7} {'death s':>8} "
          f"{'join B':>10} {'B/agent':>8} {'death B':>9} {'join msg':>8} {'RSS MB':>7} "
          f"{'join CPU s':>10}")
    for r in results:
        print(f"{r.kind:34} {r.peers:>5} {r.start_seconds:>8.2f} {r.join_seconds:>7.2f} "
              f"{r.death_seconds:>8.2f} {r.join_bytes:>10} {r.join_bytes_per_agent:>8} "
              f"{r.death_bytes:>9} "
              f"{r.join_messages if r.join_messages is not None else '-':>8} "
              f"{r.rss_mb_max:>7.1f} {r.join_cpu_seconds:>10.2f}")
    mine = [r for r in results if r.kind == "ours"]
    original = [r for r in results if r.kind == "ours, original topology format"]
    growth = growth_exponent(mine)
    limit = TARGETS["join_bytes_per_agent_growth_exponent_max"]
    summary: dict[str, Any] = {
        "bench": "mesh", "wave": args.wave or f"{WAVE} up to 30 agents, else 1",
        "results": [asdict(r) for r in results],
        "targets": TARGETS,
        "join_bytes_per_agent_growth_exponent": growth,
        "join_bytes_per_agent_growth_exponent_original_format": growth_exponent(original),
        "met": {
            "join_at_100": next((r.join_seconds <= TARGETS["join_converged_seconds_max_at_100"]
                                 for r in mine if r.peers == 100), None),
            "rss": all(r.rss_mb_max <= TARGETS["rss_mb_max"] for r in mine),
            "linear_bytes": growth <= limit if growth is not None else None}}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
