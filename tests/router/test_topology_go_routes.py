"""Routes agree with Go's for every generated topology and viewpoint (fixtures from Go).

fixtures/topology/routes.json holds full meshes, chains, rings, stars, a grid and
random graphs of 1–40 peers with asymmetric, non-established and disconnected parts
and references to peers nobody describes; for up to ten viewpoints each, Go's
unicast and unicastAll tables, broadcast and broadcastAll hops for every source,
and the size and candidates of its random gossip neighbour subset.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from router.mesh.peers import PeerTable
from router.mesh.routes import Routes
from tests.router.topology_fixtures import load, name, summary, topology_of

TOPOLOGIES: list[dict[str, Any]] = load("routes.json")


def as_text(table: Any) -> dict[str, str]:
    return {str(dst): str(hop) for dst, hop in table.items()}


@pytest.mark.parametrize("topology", TOPOLOGIES, ids=[t["id"] for t in TOPOLOGIES])
def test_routes_agree_with_go(topology: dict[str, Any]) -> None:
    topo = topology_of(topology["peers"])
    for view in topology["views"]:
        routes = Routes(topo, name(view["ourself"]))
        assert as_text(routes.unicast_table) == view["unicast"]
        assert as_text(routes.unicast_all_table) == view["unicast_all"]
        for source, hops in view["broadcast"].items():
            assert [str(h) for h in routes.broadcast(name(source))] == hops, source
        for source, hops in view["broadcast_all"].items():
            assert [str(h) for h in routes.broadcast_all(name(source))] == hops, source
        rng = random.Random(7)
        for subset in view["neighbour_subsets"]:
            chosen = routes.gossip_neighbours(name(subset["except"]), rng)
            assert len(chosen) == subset["size"]
            assert len(set(chosen)) == len(chosen)
            assert {str(c) for c in chosen} <= set(subset["candidates"])


def test_fixtures_include_the_hard_cases() -> None:
    ids = " ".join(t["id"] for t in TOPOLOGIES)
    for kind in ("full-mesh-40", "chain", "ring", "star", "grid", "-c2", "-c3"):
        assert kind in ids
    sizes = {len(t["peers"]) for t in TOPOLOGIES}
    assert min(sizes) == 1 and max(sizes) == 40
    # some routes differ between unicast and unicastAll (asymmetry, non-established)
    differing = sum(v["unicast"] != v["unicast_all"] for t in TOPOLOGIES for v in t["views"])
    assert differing > 20


@pytest.mark.parametrize("topology", TOPOLOGIES[::3], ids=[t["id"] for t in TOPOLOGIES[::3]])
def test_a_peer_table_built_from_gossip_routes_as_go_does(topology: dict[str, Any]) -> None:
    """The same topologies, learnt the way the agent learns them: our own connections
    added locally, everyone else's summaries by gossip."""
    by_name = {raw["name"]: summary(raw) for raw in topology["peers"]}
    for view in topology["views"]:
        ours = by_name[view["ourself"]]
        table = PeerTable(ours.name, ours.nickname, ours.uid, ours.short_id, random.Random(1))
        table.apply_update([s for s in by_name.values() if s.name != ours.name])
        for conn in ours.connections:
            if conn.remote != ours.name:
                table.fetch_with_default(conn.remote, "", 1, None)
                table.add_local_connection(conn)
        routes = Routes(table.topology(), ours.name)
        assert as_text(routes.unicast_table) == view["unicast"]
        assert as_text(routes.unicast_all_table) == view["unicast_all"]
        for source, hops in view["broadcast"].items():
            assert [str(h) for h in routes.broadcast(name(source))] == hops, source
