"""The peer table replays Go's update sequences and ends up where Go did, step by step.

Each scenario (fixtures/topology/updates.json) starts a table for one peer and
applies gossip updates, garbage collections, handshakes (references) and local
connection changes. After every step we compare the whole table (header,
connections, local references), the short ID index, the received / new name sets,
the peers removed, whether short IDs were invalidated and whether our own summary
changed.
"""

from __future__ import annotations

from typing import Any

import pytest

from router.mesh.peers import PeerTable, TableChanges
from router.mesh.summary import ConnectionSummary
from tests.router.topology_fixtures import ScriptedRandom, load, name, summary

SCENARIOS: list[dict[str, Any]] = load("updates.json")


def run_step(table: PeerTable, step: dict[str, Any]) -> tuple[dict[str, Any], TableChanges | None]:
    """Apply one fixture step; return the observed names and the table's changes."""
    observed: dict[str, Any] = {"received": [], "new": []}
    op = step["op"]
    changes: TableChanges | None
    if op == "update":
        result = table.apply_update([summary(raw) for raw in step["summaries"]])
        observed["received"] = sorted(str(n) for n in result.received)
        observed["new"] = sorted(str(n) for n in result.new)
        changes = result.changes
    elif op == "gc":
        changes = table.garbage_collect()
    elif op == "fetch":
        peer = step["peer"]
        short_id = peer["short_id"] if peer["has_short_id"] else None
        fetched, changes = table.fetch_with_default(name(peer["name"]), peer["nickname"],
                                                    peer["uid"], short_id)
        observed["fetched"] = fetched
    elif op == "dereference":
        table.dereference(name(step["remote"]))
        changes = None
    elif op == "add_connection":
        changes = table.add_local_connection(ConnectionSummary(
            name(step["remote"]), step["addr"], step.get("outbound", False), False))
    elif op == "establish":
        changes = table.set_local_connection_established(name(step["remote"]))
    elif op == "delete_connection":
        changes = table.delete_local_connection(name(step["remote"]))
    else:
        raise AssertionError(op)
    return observed, changes


def table_rows(table: PeerTable) -> list[dict[str, Any]]:
    return [{"name": str(s.name), "nickname": s.nickname, "uid": s.uid, "version": s.version,
             "short_id": s.short_id, "has_short_id": s.has_short_id,
             "connections": [[str(c.remote), c.remote_tcp_addr, c.outbound, c.established]
                             for c in s.connections],
             "local_refs": table.local_ref_count(s.name)} for s in table.summaries()]


def short_id_rows(table: PeerTable) -> list[dict[str, Any]]:
    return [{"id": sid, "principal": "" if principal is None else str(principal),
             "others": sorted(str(o) for o in others)}
            for sid, (principal, others) in sorted(table.short_id_entries().items())]


def check_changes(step: dict[str, Any], expected: dict[str, Any],
                  changes: TableChanges | None) -> None:
    if changes is None:
        assert not expected["removed"] and not expected["invalidated"]
        assert not expected["local_changed"]
        return
    assert sorted(str(p.name) for p in changes.removed) == expected["removed"]
    if expected["invalidation_order_dependent"]:
        # Go's answer depends on map order; we report the invalidation.
        assert changes.short_ids_invalidated
    else:
        assert changes.short_ids_invalidated == expected["invalidated"]
    assert changes.local_peer_changed == expected["local_changed"], step["op"]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["id"] for s in SCENARIOS])
def test_replay_matches_go(scenario: dict[str, Any]) -> None:
    ours = scenario["ourself"]
    rng = ScriptedRandom()
    table = PeerTable(name(ours["name"]), ours["nickname"], ours["uid"], ours["short_id"], rng)
    for index, (step, expected) in enumerate(zip(scenario["steps"], scenario["results"],
                                                 strict=True)):
        if expected["self_short_id_reassigned_to"] is not None:
            rng.script = [expected["self_short_id_reassigned_to"]]
        observed, changes = run_step(table, step)
        context = f"step {index}: {step['op']}"
        assert observed["received"] == expected["received"], context
        assert observed["new"] == expected["new"], context
        check_changes(step, expected, changes)
        assert rng.script == [], f"{context}: Go re-picked our short ID and we did not"
        assert table_rows(table) == expected["table"], context
        assert short_id_rows(table) == expected["short_ids"], context
        if "fetched" in observed:
            fetched = expected["fetched"]
            assert str(observed["fetched"].name) == fetched["name"]
            assert observed["fetched"].uid == fetched["uid"]
            assert observed["fetched"].version == fetched["version"]


def test_fixtures_cover_the_interesting_paths() -> None:
    """The generated scenarios exercise every rule at least a few times."""
    results = [r for s in SCENARIOS for r in s["results"]]
    assert sum(r["self_short_id_reassigned_to"] is not None for r in results) >= 5
    assert sum(bool(r["removed"]) for r in results) >= 20
    assert sum(r["invalidated"] and not r["invalidation_order_dependent"] for r in results) >= 20
    assert sum(len(r["received"]) > len(r["new"]) for r in results) >= 50
    ops = {step["op"] for s in SCENARIOS for step in s["steps"]}
    assert ops == {"update", "gc", "fetch", "dereference", "add_connection", "establish",
                   "delete_connection"}
