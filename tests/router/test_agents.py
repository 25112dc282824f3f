"""Real ``weaver`` processes, each in its own node namespace on a fabric bridge: the mesh as
an operator sees it (``/report``, ``/status``, the ``weave`` CLI), through joins,
partitions, restarts, wrong passwords, and thirty agents at once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from common.lab.fabric import FabricLab
from tests.router.agents import (
    full_mesh,
    peer_name,
    report,
    routes,
    start,
    view,
    wait_full_mesh,
    wait_until,
    weave,
)

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def lab() -> Iterator[FabricLab]:
    with FabricLab(nodes=5) as running:
        yield running


@pytest.fixture
def clean(lab: FabricLab) -> Iterator[FabricLab]:
    """The lab with no agent running and no partition, before and after the test."""
    def reset() -> None:
        for (index, label), proc in list(lab.processes.items()):
            if proc.running():
                lab.stop(index, label)
        for a in range(lab.nodes):
            for b in range(lab.nodes):
                if a != b:
                    lab.heal(a, b)
    reset()
    yield lab
    reset()


def test_five_agents_form_one_mesh_and_agree_on_it(clean: FabricLab) -> None:
    lab = clean
    for i in range(5):
        start(lab, i)
    lab.wait_ready(range(5))
    wait_full_mesh(lab, range(5))

    def direct(i: int) -> dict[str, str]:
        return {peer_name(j): peer_name(j) if j != i else "00:00:00:00:00:00" for j in range(5)}
    # every peer is one hop away, and everybody says so (routes follow the topology
    # within the route recomputation delay)
    wait_until(lambda: all(routes(lab, i) == direct(i) for i in range(5)), 5, "direct routes")
    code, text = weave(lab, 0, "status")
    assert code == 0 and "Peers: 5 (with 20 established connections)" in text
    code, text = weave(lab, 2, "status", "connections")
    assert code == 0 and text.count("established sleeve") == 4 and "mtu=1438" in text
    code, text = weave(lab, 4, "status", "peers")
    assert code == 0 and all(f"{peer_name(j)}(node{j})" in text for j in range(5))


def test_a_chain_routes_through_the_middle(clean: FabricLab) -> None:
    """A and C cannot reach each other (a DROP in A's namespace): A still has a route to
    C through B, and says the direct attempt fails."""
    lab = clean
    lab.block(0, 2)
    for i in range(3):
        start(lab, i, peers=[j for j in range(3) if j != i])
    lab.wait_ready(range(3))
    wait_until(lambda: routes(lab, 0).get(peer_name(2)) == peer_name(1)
               and routes(lab, 2).get(peer_name(0)) == peer_name(1), 30, "routes via B")
    assert set(view(lab, 0)) == {peer_name(i) for i in range(3)}
    code, text = weave(lab, 0, "status", "connections")
    assert code == 0
    direct = [line for line in text.splitlines() if lab.node_ip(2) in line]
    assert direct and any(state in direct[0] for state in ("retrying", "failed",
                                                           "connecting")), text


def test_a_partition_heals(clean: FabricLab) -> None:
    """Four agents; {0, 1} and {2, 3} lose each other (the mesh notices when heartbeats
    stop: 60 s, as the original), then the network heals and the mesh is whole again."""
    lab = clean
    for i in range(4):
        start(lab, i, peers=[j for j in range(4) if j != i])
    lab.wait_ready(range(4))
    wait_full_mesh(lab, range(4))
    for a in (0, 1):
        for b in (2, 3):
            lab.block(a, b)
    halves = ((0, 1), (2, 3))

    def apart() -> bool:
        return all(peer_name(b) not in view(lab, a) and peer_name(b) not in routes(lab, a)
                   for ours, theirs in (halves, halves[::-1]) for a in ours for b in theirs)

    wait_until(apart, 150, "the two halves to lose each other")
    assert all(full_mesh(lab, half) for half in halves)
    for a in (0, 1):
        for b in (2, 3):
            lab.heal(a, b)
    wait_full_mesh(lab, range(4), timeout=90)


def test_a_restarted_agent_is_a_new_incarnation(clean: FabricLab) -> None:
    lab = clean
    for i in range(3):
        start(lab, i, peers=[j for j in range(3) if j != i])
    lab.wait_ready(range(3))
    wait_full_mesh(lab, range(3))
    before = view(lab, 0)[peer_name(2)][0]
    lab.kill(2)
    start(lab, 2, peers=[0, 1])
    lab.wait_ready([2])
    wait_until(lambda: view(lab, 0).get(peer_name(2), (before,))[0] != before
               and full_mesh(lab, range(3)), 60, "the new incarnation")
    uids = {view(lab, i)[peer_name(2)][0] for i in range(3)}
    assert len(uids) == 1 and before not in uids
    assert report(lab, 2)["Router"]["Name"] == peer_name(2)


def test_a_wrong_password_is_refused_with_the_reason_on_both_sides(clean: FabricLab) -> None:
    lab = clean
    start(lab, 0, peers=[1], password="s3cret")
    start(lab, 1, peers=[0], password="other")
    lab.wait_ready([0, 1])
    reason = "password"
    wait_until(lambda: all(reason in lab.process(i).current_log() for i in (0, 1)), 30,
               "the refusals")
    for i in (0, 1):
        lines = [line for line in lab.process(i).current_log().splitlines()
                 if "shutting down" in line]
        assert lines and all(reason in line for line in lines), lines
        assert view(lab, i).keys() == {peer_name(i)}


def test_connect_and_forget_change_the_targets(clean: FabricLab) -> None:
    lab = clean
    start(lab, 0, peers=[])
    start(lab, 1, peers=[])
    lab.wait_ready([0, 1])
    assert weave(lab, 0, "status", "targets") == (0, "")
    code, text = weave(lab, 0, "connect", lab.node_ip(1))
    assert code == 0, text
    wait_full_mesh(lab, [0, 1])
    assert weave(lab, 0, "status", "targets") == (0, f"{lab.node_ip(1)}\n")
    code, text = weave(lab, 0, "connect", "1.2.3.4:99999", "99999")
    assert code == 1 and text == ("address 99999: invalid port\n"
                                  "lookup 99999: no such host\n"), text
    code, text = weave(lab, 0, "forget", lab.node_ip(1))
    assert code == 0, text
    assert weave(lab, 0, "status", "targets") == (0, "")
    assert full_mesh(lab, [0, 1])  # forgetting a target keeps its connection


def test_thirty_agents_converge() -> None:
    """Each agent is given three others (a ring and a chord); discovery does the rest."""
    with FabricLab(nodes=30, prefix="gla30", fabric_cidr="192.168.78.0/24") as lab:
        for i in range(30):
            start(lab, i, peers=sorted({(i + 1) % 30, (i - 1) % 30, (i + 15) % 30}))
        lab.wait_ready(range(30), timeout=120)
        wait_full_mesh(lab, range(30), timeout=180)
