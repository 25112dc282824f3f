"""Replays what weave 2.8.1's own ring, space and address code did (``fixtures/ipam_ring.json``,
written by ``fixtures/gen/ipamring``): first rings, grants, free reports, transfers and
merges from simulated peers, space operations, address splits, and ring gob bytes.

Merges where Go failed are checked against our rules instead: Go's "Received update for
IP range I own" becomes a repair that keeps the stretch; its "reporting too much free
space" (a merged entry whose free count exceeds its now shorter stretch) is no failure
at all, the count being clamped when read and sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from router.ipam.address import Range
from router.ipam.messages import RING, Entry
from router.ipam.rangeset import RangeSet
from router.ipam.ring import Ring
from router.ipam.space import Space, SpaceError
from router.mesh.gob import TypeIds, decode, encode

FIXTURES = json.loads((Path(__file__).parents[1] / "fixtures" / "ipam_ring.json").read_text())
GO_FIRST_TYPE_ID = 64
"""The generator ran on Go 1.26, whose first user gob type id is 64."""


def ring_of(case: dict[str, Any]) -> Ring:
    return Ring(case["start"], case["end"], case["peer"],
                tuple(Entry(*e) for e in case["entries"]), tuple(case["seeds"] or ()))


def ranges_of(pairs: list[list[int]] | None) -> list[Range]:
    return [Range(start, end) for start, end in pairs or []]


def ops(kind: str, failed: bool = False) -> list[dict[str, Any]]:
    return [o for o in FIXTURES["ops"] if o["op"] == kind and bool(o.get("error")) == failed]


def test_the_fixtures_cover_every_operation() -> None:
    counts = {kind: len(ops(kind)) for kind in ("grant", "report_free", "transfer", "merge")}
    assert min(counts.values()) >= 10, counts
    assert len(ops("merge", failed=True)) >= 3


@pytest.mark.parametrize("case", FIXTURES["claim"],
                         ids=[f"{c['end'] - c['start']}-addrs-{len(c['peers'])}-peers"
                              for c in FIXTURES["claim"]])
def test_claim_for_peers_as_go(case: dict[str, Any]) -> None:
    claimed = Ring(case["start"], case["end"], case["peers"][0]).claim_for_peers(case["peers"])
    assert claimed == ring_of(case["ring"])
    assert claimed.owned_ranges() == ranges_of(case["ring"]["owned"])


def test_grants_reports_and_transfers_as_go() -> None:
    for case in ops("grant"):
        start, end, peer = case["args"]
        granted = ring_of(case["ring"]).grant_range_to_host(start, end, peer)
        assert granted == ring_of(case["result"])
    for case in ops("report_free"):
        report = {int(token): free for token, free in case["report"].items()}
        assert ring_of(case["ring"]).report_free(report) == ring_of(case["result"])
    for case in ops("transfer"):
        moved_ring, moved = ring_of(case["ring"]).transfer(*case["args"])
        assert moved_ring == ring_of(case["result"])
        assert moved == ranges_of(case.get("ranges"))
        assert moved_ring.owned_ranges() == ranges_of(case["result"]["owned"])


def in_use_as_go(case: dict[str, Any]) -> Any:
    """Go's hasAllocations on the receiving peer's space: anything not free there."""
    free = RangeSet.of(ranges_of(case.get("free")))
    return lambda r: free.count(r) != r.size


def test_merges_go_accepted_give_go_s_ring() -> None:
    for case in ops("merge"):
        result = ring_of(case["ring"]).merge(ring_of(case["theirs"]), in_use_as_go(case))
        go = ring_of(case["result"])
        assert result.conflicts == ()
        # Go cuts our own free counts to our stretches when merging; we cut when sending.
        assert result.ring.to_message() == go.to_message()
        assert result.ring.owned_ranges() == ranges_of(case["result"]["owned"])
        assert result.changed == bool(case.get("updated"))


def test_merges_go_refused_keep_what_is_in_use() -> None:
    for case in ops("merge", failed=True):
        ours, in_use = ring_of(case["ring"]), in_use_as_go(case)
        result = ours.merge(ring_of(case["theirs"]), in_use)
        if case["error"].startswith("Merge of incoming data causes"):
            assert "too much free space" in case["error"] and result.conflicts == ()
        else:
            assert result.conflicts
        for part in ours.owned_ranges():
            for addr in range(part.start, part.end):
                if in_use(Range(addr, addr + 1)):
                    assert result.ring.owner(addr) == ours.peer


@pytest.mark.parametrize("run", range(len(FIXTURES["space"])))
def test_space_operations_as_go(run: int) -> None:
    space = Space()
    base = 0x0A000100
    space.add(Range.of_size(base, 100))
    space.add(Range.of_size(base + 128, 64))
    for step in FIXTURES["space"][run]:
        op, args, ok = step["op"], step["args"], step["ok"]
        if op == "allocate":
            got = space.allocate_in(Range(*args), 0.0)
            assert (got is not None) == ok and (not ok or got == step["result"][0])
        elif op in ("free", "claim"):
            assert _succeeds(space, op, args[0]) == ok
        else:
            gift = space.donate(Range(*args), 0.0)
            assert (gift is not None) == ok
            assert not ok or gift == Range(*step["result"])
        assert (space.free_count(), space.allocated_count()) == (step["free"], step["owned"])


def _succeeds(space: Space, op: str, addr: int) -> bool:
    try:
        if op == "free":
            space.free(addr, 0.0)
        else:
            space.claim(addr)
    except SpaceError:
        return False
    return True


def test_address_splits_as_go() -> None:
    for case in FIXTURES["address"]:
        r = Range(case["start"], case["end"])
        assert r.biggest_cidr_block() == Range(*case["result"])
        assert [str(c) for c in r.cidrs()] == case["cidrs"]
        assert r.as_cidr_string() == case["text"]


@pytest.mark.parametrize("case", FIXTURES["gob"],
                         ids=[f"{len(c['ring']['entries'])}-entries" for c in FIXTURES["gob"]])
def test_ring_gob_bytes_as_go(case: dict[str, Any]) -> None:
    ring = ring_of(case["ring"])
    wire = bytes.fromhex(case["hex"])
    assert encode(RING, ring.to_message(), type_ids=TypeIds(GO_FIRST_TYPE_ID)) == wire
    assert Ring.from_message(decode(RING, wire)) == ring
