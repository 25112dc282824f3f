"""Smoke check of the harness: three Go weavers form a mesh, one restarts with a new UID.

Run as root after ``tests/interop/build-go-weave.sh``::

    /work/main/.venv/bin/python -m tests.interop.go_mesh_smoke [--only password|plain]

Two rounds, each in a fresh lab: every weaver with the same ``--password``, then
none with a password.  Per round: wait until each node has two established
connections, print ``/status``, ``/status/peers`` and ``/status/connections`` of
every node, restart node 1, and check that node 0's ``/report`` lists node 1
under the same name with a different UID and that the mesh is whole again; then
block node 0 <-> node 2 (iptables DROP), check that node 0 routes to node 2 via
node 1, heal, and wait for the direct connection.
Exits non-zero on the first failed check (after cleaning up).
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.interop.golab import GoLab, exit_on_sigterm, peer_name, wait_until

NODES = 3
PASSWORD = "interop-secret"


def converged(lab: GoLab, index: int) -> bool:
    """Whether node ``index`` knows NODES peers, each with NODES-1 established connections.

    Its own connections count once the handshake is done; the others' only once
    their topology gossip has arrived, so this is "the mesh is whole, as seen from here".
    """
    router = lab.report(index)["Router"]
    assert isinstance(router, dict)
    peers = router.get("Peers") or []
    assert isinstance(peers, list)
    if len(peers) != NODES:
        return False
    for peer in peers:
        conns = peer.get("Connections") or []
        if sum(1 for c in conns if c.get("Established")) != NODES - 1:
            return False
    return True


def peer_uids(lab: GoLab, index: int) -> dict[str, int]:
    """Peer name -> UID as node ``index`` knows them (``/report`` Router.Peers)."""
    router = lab.report(index)["Router"]
    assert isinstance(router, dict)
    peers = router.get("Peers") or []
    assert isinstance(peers, list)
    return {str(p["Name"]): int(p["UID"]) for p in peers if isinstance(p, dict)}


def wait_full_mesh(lab: GoLab, timeout: float = 40.0) -> float:
    """Wait until every node sees the whole mesh established; returns seconds taken."""
    begin = time.monotonic()
    for i in range(NODES):

        def whole(i: int = i) -> bool:
            return converged(lab, i)

        wait_until(whole, timeout, f"node {i} to see the full mesh")
    return time.monotonic() - begin


def route_via(lab: GoLab, index: int, dest: str) -> str | None:
    """Next hop from node ``index`` to peer ``dest`` (``/report`` Router.UnicastRoutes)."""
    router = lab.report(index)["Router"]
    assert isinstance(router, dict)
    for route in router.get("UnicastRoutes") or []:
        if route.get("Dest") == dest:
            return str(route.get("Via"))
    return None


def established_to(lab: GoLab, index: int, peer_ip: str) -> bool:
    """Whether node ``index`` has an established connection whose address is ``peer_ip``."""
    router = lab.report(index)["Router"]
    assert isinstance(router, dict)
    return any(
        str(c.get("Address", "")).split(":")[0] == peer_ip and c.get("State") == "established"
        for c in router.get("Connections") or []
    )


def partition_and_heal(lab: GoLab) -> None:
    """Block node 0 <-> node 2: the mesh routes 0 -> 2 via node 1; heal: direct again."""
    ip2, name1, name2 = lab.node_ip(2), peer_name(1), peer_name(2)
    print("blocking traffic between node 0 and node 2 (iptables DROP in node 0)")
    begin = time.monotonic()
    lab.block(0, 2)
    wait_until(lambda: not established_to(lab, 0, ip2), 90.0, "node 0 to drop node 2")
    print(f"node 0 lost its connection to node 2 after {time.monotonic() - begin:.1f}s")
    wait_until(lambda: route_via(lab, 0, name2) == name1, 30.0, "node 0 to route via node 1")
    print(f"node 0's unicast route to {name2}: via {route_via(lab, 0, name2)}")
    print("--- node 0 /status/connections during the partition")
    print(lab.status(0, "connections").rstrip())
    begin = time.monotonic()
    lab.heal(0, 2)
    wait_until(lambda: established_to(lab, 0, ip2), 90.0, "node 0 to reconnect to node 2")
    print(f"healed; direct connection back after {time.monotonic() - begin:.1f}s")
    print(f"full mesh again after {wait_full_mesh(lab):.1f}s")


def print_node(lab: GoLab, index: int) -> None:
    print(f"--- node {index} ({lab.node_ip(index)}) /status")
    print(lab.status(index).rstrip())
    print(f"--- node {index} /status/peers")
    print(lab.status(index, "peers").rstrip())
    print(f"--- node {index} /status/connections")
    print(lab.status(index, "connections").rstrip())


def run_round(password: str | None) -> None:
    title = "with --password" if password else "without password"
    print(f"===== round: 3 Go weavers {title}")
    with GoLab(nodes=NODES) as lab:
        for i in range(NODES):
            lab.start_go_weaver(i, password=password, ipalloc_init=f"consensus={NODES}")
        lab.wait_ready(range(NODES))
        print(f"full mesh after {wait_full_mesh(lab):.1f}s")
        for i in range(NODES):
            print_node(lab, i)
        before = peer_uids(lab, 0)
        name1 = peer_name(1)
        print(f"node 0 sees {name1} with UID {before[name1]}; restarting node 1")
        lab.restart(1)
        lab.wait_ready([1])

        def new_uid() -> int | None:
            uid = peer_uids(lab, 0).get(name1)
            return uid if uid is not None and uid != before[name1] else None

        uid_after = wait_until(new_uid, 40.0, "node 0 to learn node 1's new UID")
        print(f"node 0 now sees {name1} with UID {uid_after} (was {before[name1]})")
        own_uid = peer_uids(lab, 1)[name1]
        if own_uid != uid_after:
            raise SystemExit(f"node 1 reports its UID as {own_uid}, node 0 as {uid_after}")
        print(f"full mesh again after {wait_full_mesh(lab):.1f}s")
        print_node(lab, 0)
        partition_and_heal(lab)
    print(f"===== round {title}: OK (cleaned up)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["password", "plain"])
    args = parser.parse_args(argv)
    exit_on_sigterm()
    if args.only in (None, "password"):
        run_round(PASSWORD)
    if args.only in (None, "plain"):
        run_round(None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
