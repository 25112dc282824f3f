"""Our weaver and the Go weaver 2.8.1 in one mesh (not run in CI: the Go binary is built
from sources CI cannot download, by tests/interop/build-go-weave.sh).

Three lab nodes: ours on 0 and 2, Go on 1.  For a run without and a run with a password:

1. the handshake: every connection established (sleeve), seen alike by both kinds;
2. one topology: the Peers of ``/report`` agree on every node (names, UIDs, connections);
3. routes through a Go peer: 0 and 2 cannot reach each other (a DROP in 0's namespace),
   yet each has a route to the other via the Go peer, on both kinds' reports;
4. a Go peer restart: it comes back with a new UID, which our agents adopt, and the mesh
   is whole again;
5. ``/status`` and ``/status/connections`` of both kinds, side by side.

Run as root from the repository root: ``.venv/bin/python -m tests.interop.mesh_interop``.
"""

from __future__ import annotations

import sys
import time

from tests.interop.golab import GoLab, exit_on_sigterm, peer_name, wait_until
from tests.router.agents import report, routes, start, view

OURS = (0, 2)
GO = 1


def views_agree(lab: GoLab, nodes: range) -> bool:
    seen = [view(lab, i) for i in nodes]
    return all(len(v) == len(nodes) for v in seen) and all(v == seen[0] for v in seen)


def all_established(lab: GoLab, i: int, expected: int) -> bool:
    conns = report(lab, i)["Router"]["Connections"] or []
    established = [c for c in conns if c["State"] == "established"]
    return len(established) == expected


def step(text: str, started: float) -> None:
    print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)


def run(password: str | None) -> None:
    title = "with a password" if password else "without a password"
    print(f"===== ours (nodes 0, 2) and Go (node 1), {title}")
    started = time.monotonic()
    with GoLab(nodes=3) as lab:
        lab.block(0, 2)
        lab.start_go_weaver(GO, peers=[lab.node_ip(i) for i in OURS], password=password)
        for i in OURS:
            start(lab, i, peers=[GO, 2 - i], password=password)
        lab.wait_ready(range(3))
        wait_until(lambda: all(all_established(lab, i, 1 if i in OURS else 2)
                               for i in range(3)), 60, "every connection established")
        step("handshakes done; every connection established (0-2 blocked)", started)
        wait_until(lambda: views_agree(lab, range(3)), 60, "one topology")
        step("one topology: /report Peers agree on all three nodes", started)
        for i in range(3):
            kind = "Go  " if i == GO else "ours"
            v = view(lab, i)
            print(f"  {kind} node{i}: " + "; ".join(
                f"{name} uid={uid} conns={[c for c, _ in conns]}" for name, (uid, conns)
                in sorted(v.items())))
        wait_until(lambda: routes(lab, 0).get(peer_name(2)) == peer_name(GO)
                   and routes(lab, 2).get(peer_name(0)) == peer_name(GO), 30, "routes")
        step(f"routes through the Go peer: node0 -> {peer_name(2)} via "
             f"{routes(lab, 0)[peer_name(2)]}; node2 -> {peer_name(0)} via "
             f"{routes(lab, 2)[peer_name(0)]}", started)
        go_routes = routes(lab, GO)
        print(f"  Go's own routes: {go_routes}")
        for i in range(3):
            print(f"--- node{i} ({'Go' if i == GO else 'ours'}) /status/connections")
            print(lab.status(i, "connections").rstrip())
        before = view(lab, 0)[peer_name(GO)][0]
        lab.restart(GO)
        lab.wait_ready([GO])
        wait_until(lambda: view(lab, 0).get(peer_name(GO), (before,))[0] != before
                   and views_agree(lab, range(3))
                   and all(all_established(lab, i, 1 if i in OURS else 2) for i in range(3)),
                   90, "the Go peer's new incarnation")
        after = view(lab, 2)[peer_name(GO)][0]
        step(f"Go peer restarted: UID {before} -> {after}, adopted by both of ours; mesh "
             "whole again", started)
        for i in (0, GO):
            print(f"--- node{i} ({'Go' if i == GO else 'ours'}) /status")
            print(lab.status(i).rstrip())
    print(f"===== {title}: OK")


def mismatch() -> None:
    """Go has a password; ours on node 0 has none, ours on node 2 another one: refused,
    and said so on each side."""
    print("===== password mismatches: Go (node 1) 's3cret', node 0 none, node 2 'other'")
    with GoLab(nodes=3) as lab:
        lab.start_go_weaver(GO, peers=[], password="s3cret")
        start(lab, 0, peers=[GO])
        start(lab, 2, peers=[GO], password="other")
        lab.wait_ready(range(3))
        wait_until(lambda: all("shutting down" in lab.process(i).current_log() for i in OURS),
                   30, "the refusals")
        time.sleep(1)
        for i in (0, 2, GO):
            kind = "Go  " if i == GO else "ours"
            lines = [line for line in lab.process(i).current_log().splitlines()
                     if "shutting down" in line or "decrypt" in line.lower()]
            for line in lines[:2]:
                print(f"  {kind} node{i}: {line.split(' ', 3)[-1]}")
        assert all(view(lab, i).keys() == {peer_name(i)} for i in range(3))
    print("===== password mismatches: refused on both sides, OK")


def main() -> int:
    exit_on_sigterm()
    run(None)
    run("s3cret")
    mismatch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
