"""The state DB (router.ipam.store): round trips, setting aside what no longer fits,
unreadable files, and a real crash test (kill -9 during writes)."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from ipaddress import IPv4Interface
from pathlib import Path

import pytest

from router.ipam.messages import Entry, Range, Ring
from router.ipam.store import FILE_NAME, Owned, Store, StoreError

ROOT = Path(__file__).resolve().parents[3]
US, THEM = 0x0A0000000001, 0x0B0000000002
UNIVERSE = Range(0x0A200000, 0x0A300000)  # 10.32.0.0/12
NOW = 1_700_000_000.0


def ring(peer: int = US, universe: Range = UNIVERSE) -> Ring:
    middle = (universe.start + universe.end) // 2
    return Ring(universe.start, universe.end, peer,
                (Entry(universe.start, peer, 3, 1000), Entry(middle, THEM, 1, 5)),
                (peer, THEM))


def cidr(text: str) -> IPv4Interface:
    return IPv4Interface(text)


@pytest.fixture
def prefix() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="weave-store-") as directory:
        yield os.path.join(directory, "weave-net")


def open_store(prefix: str) -> Store:
    return Store.open(prefix, clock=lambda: NOW)


def fill(prefix: str, peer: int = US, universe: Range = UNIVERSE) -> None:
    with open_store(prefix) as store:
        store.save_peer_name(peer)
        store.save_ring(ring(peer, universe))
        store.set_owned("pod-a", [cidr("10.32.0.1/12"), cidr("10.32.0.9/12")], True)
        store.set_owned("weave:expose", [cidr("10.32.0.2/12")], False)


# -- round trips -------------------------------------------------------------------------


def test_everything_written_is_read_back(prefix: str) -> None:
    fill(prefix)
    with open_store(prefix) as store:
        store.set_owned("pod-b", [cidr("10.32.0.3/12")], True)
        store.set_owned("pod-b", [cidr("10.32.0.4/12")], True)  # replaces
        store.set_owned("pod-c", [cidr("10.32.0.5/12")], True)
        store.delete_owned("pod-c")
        store.delete_owned("never-there")
        store.save_direct_peers(["10.0.0.2", "10.0.0.1:6783"])
        store.set_flag("peer-reclaim", "ok")
    with open_store(prefix) as store:
        persisted = store.load(US, UNIVERSE)
    assert persisted.peer_name == US and persisted.ring == ring()
    assert persisted.owned == {
        "pod-a": Owned(True, (cidr("10.32.0.1/12"), cidr("10.32.0.9/12"))),
        "pod-b": Owned(True, (cidr("10.32.0.4/12"),)),
        "weave:expose": Owned(False, (cidr("10.32.0.2/12"),)),
    }
    assert persisted.direct_peers == ("10.0.0.2", "10.0.0.1:6783")
    assert persisted.flags == {"peer-reclaim": "ok"}
    assert persisted.notices == ()


def test_a_new_db_is_empty_and_takes_our_name(prefix: str) -> None:
    with open_store(prefix) as store:
        assert store.peer_name() is None and store.flag("peer-reclaim") is None
        persisted = store.load(US, UNIVERSE)
        assert (persisted.ring, dict(persisted.owned), persisted.direct_peers) == (None, {}, ())
        assert store.peer_name() == US
    assert store.path == prefix + FILE_NAME


def test_a_write_is_committed_before_it_returns(prefix: str) -> None:
    with open_store(prefix) as writer, open_store(prefix) as reader:
        writer.set_flag("peer-reclaim", "ok")
        assert reader.flag("peer-reclaim") == "ok"
    db = sqlite3.connect(prefix + FILE_NAME)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_a_ring_without_entries_is_no_ring(prefix: str) -> None:
    with open_store(prefix) as store:
        store.save_ring(Ring(UNIVERSE.start, UNIVERSE.end, US, (), ()))
        persisted = store.load(US, UNIVERSE)
    assert persisted.ring is None and persisted.notices == ()


def test_gos_bolt_file_beside_ours_is_left_alone(prefix: str) -> None:
    bolt = Path(prefix + "data.db")
    bolt.write_bytes(b"\x00bolt-ish" * 100)
    fill(prefix)
    with open_store(prefix) as store:
        assert store.load(US, UNIVERSE).ring == ring()
    assert bolt.read_bytes() == b"\x00bolt-ish" * 100


# -- setting aside -----------------------------------------------------------------------


@pytest.mark.parametrize(("saved_as", "ring_peer", "universe", "says"), [
    (THEM, THEM, UNIVERSE, "saved by peer 0b:00:00:00:00:02, and we are 0a:00:00:00:00:01"),
    (US, THEM, UNIVERSE, "the ring belongs to peer 0b:00:00:00:00:02"),
    (US, US, Range(0x0A000000, 0x0A010000),
     "the ring covers 10.0.0.0-10.1.0.0, and our range is 10.32.0.0-10.48.0.0"),
], ids=["other-peer-name", "ring-of-other-peer", "other-range"])
def test_state_that_is_not_ours_is_set_aside(prefix: str, saved_as: int, ring_peer: int,
                                             universe: Range, says: str) -> None:
    fill(prefix, saved_as, universe)
    if ring_peer != saved_as:
        with open_store(prefix) as store:
            store.save_ring(ring(ring_peer, universe))
    with open_store(prefix) as store:
        store.set_flag("peer-reclaim", "ok")
        persisted = store.load(US, UNIVERSE)
    assert persisted.ring is None and dict(persisted.owned) == {}
    assert persisted.flags == {"peer-reclaim": "ok"}
    (notice,) = persisted.notices
    assert says in notice and "2 address owner(s)" in notice and "set_aside" in notice
    with open_store(prefix) as store:
        again = store.load(US, UNIVERSE)
    assert again.notices == () and again.peer_name == US
    db = sqlite3.connect(prefix + FILE_NAME)
    try:
        at, reason, gob, owned = db.execute(
            "SELECT at, reason, ring, owned FROM set_aside").fetchone()
    finally:
        db.close()
    assert at == NOW and says in reason and gob
    assert json.loads(owned)["pod-a"] == {"cidrs": ["10.32.0.1/12", "10.32.0.9/12"],
                                          "is_container": True}


def test_a_ring_that_does_not_decode_is_set_aside(prefix: str) -> None:
    fill(prefix)
    db = sqlite3.connect(prefix + FILE_NAME)
    try:
        with db:
            db.execute("UPDATE ring SET gob = ?", (b"\x07not gob",))
    finally:
        db.close()
    with open_store(prefix) as store:
        persisted = store.load(US, UNIVERSE)
    assert persisted.ring is None and "does not decode" in persisted.notices[0]


def test_state_set_aside_on_request(prefix: str) -> None:
    fill(prefix)
    with open_store(prefix) as store:
        notice = store.set_aside_state("another node reclaimed our addresses")
        persisted = store.load(US, UNIVERSE)
    assert "another node reclaimed" in notice
    assert persisted.ring is None and dict(persisted.owned) == {} and persisted.notices == ()


# -- unreadable files --------------------------------------------------------------------


def moved_aside(prefix: str) -> list[str]:
    directory, base = os.path.split(prefix + FILE_NAME)
    return sorted(n for n in os.listdir(directory) if n.startswith(base + ".corrupt-"))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign"])
def test_an_unreadable_file_is_moved_aside_and_replaced(prefix: str, damage: str) -> None:
    path = Path(prefix + FILE_NAME)
    if damage == "garbage":
        path.write_bytes(os.urandom(8192))
    elif damage == "truncated":
        with open_store(prefix) as store:
            for n in range(300):
                store.set_owned(f"pod-{n}", [cidr(f"10.32.{n // 250}.{n % 250 + 1}/12")], True)
        data = path.read_bytes()
        assert not Path(prefix + FILE_NAME + "-wal").exists() and len(data) > 8192
        path.write_bytes(data[: len(data) // 2])
    else:
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE other (x)")
        db.close()
    before = path.read_bytes()
    with open_store(prefix) as store:
        persisted = store.load(US, UNIVERSE)
        assert store.load(US, UNIVERSE).notices == ()  # reported once
        store.set_flag("fresh", "yes")
    (notice,) = persisted.notices
    assert store.recovery == notice
    (aside,) = moved_aside(prefix)
    assert aside == "weave-netdata.sqlite3.corrupt-20231114T221320Z"
    assert f"state DB {path} was unreadable" in notice and aside in notice
    assert Path(os.path.dirname(prefix), aside).read_bytes() == before
    with open_store(prefix) as store:
        assert store.flag("fresh") == "yes" and store.load(US, UNIVERSE).notices == ()


def test_a_db_from_a_newer_agent_is_refused_untouched(prefix: str) -> None:
    fill(prefix)
    db = sqlite3.connect(prefix + FILE_NAME)
    db.execute("PRAGMA user_version = 99")
    db.close()
    before = Path(prefix + FILE_NAME).read_bytes()
    with pytest.raises(StoreError, match=r"data\.sqlite3 has schema version 99"):
        open_store(prefix)
    assert Path(prefix + FILE_NAME).read_bytes() == before and moved_aside(prefix) == []


def test_a_missing_directory_is_a_clear_error(prefix: str) -> None:
    with pytest.raises(StoreError, match=r"nowhere/weave-netdata\.sqlite3.*does not exist"):
        open_store(os.path.join(os.path.dirname(prefix), "nowhere", "weave-net"))


# -- batches -----------------------------------------------------------------------------


def owned_rows(prefix: str) -> list[str]:
    """The IDs in the file, as another process sees them."""
    db = sqlite3.connect(prefix + FILE_NAME)
    try:
        return [row[0] for row in db.execute("SELECT ident FROM owned ORDER BY ident")]
    finally:
        db.close()


def test_a_batch_is_one_transaction_when_it_ends(prefix: str) -> None:
    later = Ring(UNIVERSE.start, UNIVERSE.end, US,
                 (Entry(UNIVERSE.start, US, 4, 999), Entry(UNIVERSE.end - 16, THEM, 2, 5)),
                 (US, THEM))
    with open_store(prefix) as store:
        store.load(US, UNIVERSE)
        store.set_owned("pod-gone", [cidr("10.32.0.7/12")], True)
        statements: list[str] = []
        store._db.set_trace_callback(statements.append)
        with store.batch():
            store.set_owned("pod-a", [cidr("10.32.0.1/12")], True)
            store.save_ring(ring())
            with store.batch():  # a nested batch joins the outer one
                store.set_owned("pod-b", [cidr("10.32.0.2/12")], True)
                store.delete_owned("pod-gone")
            store.save_ring(later)  # the last ring is the one written
            store.set_owned("pod-b", [cidr("10.32.0.3/12")], False)
            store.set_owned("pod-c", [cidr("10.32.0.4/12")], True)
            store.delete_owned("pod-c")
            assert owned_rows(prefix) == ["pod-gone"]  # nothing written yet
        assert statements.count("COMMIT") == 1
        assert sum("INTO ring" in s for s in statements) == 1
        store.flush()  # nothing kept: nothing to do
        assert statements.count("COMMIT") == 1
    with open_store(prefix) as store:
        persisted = store.load(US, UNIVERSE)
    assert persisted.ring == later
    assert persisted.owned == {"pod-a": Owned(True, (cidr("10.32.0.1/12"),)),
                               "pod-b": Owned(False, (cidr("10.32.0.3/12"),))}


def test_a_batch_ended_by_an_exception_still_writes(prefix: str) -> None:
    with open_store(prefix) as store:
        store.load(US, UNIVERSE)
        with pytest.raises(RuntimeError), store.batch():
            store.set_owned("pod-a", [cidr("10.32.0.1/12")], True)
            raise RuntimeError("the step failed after its write")
        assert owned_rows(prefix) == ["pod-a"]


def test_flush_commits_what_the_batch_kept_so_far(prefix: str) -> None:
    with open_store(prefix) as store:
        store.load(US, UNIVERSE)
        with store.batch():
            store.set_owned("pod-a", [cidr("10.32.0.1/12")], True)
            store.flush()
            assert owned_rows(prefix) == ["pod-a"]
            store.set_owned("pod-b", [cidr("10.32.0.2/12")], True)
            assert owned_rows(prefix) == ["pod-a"]
        assert owned_rows(prefix) == ["pod-a", "pod-b"]


def test_state_set_aside_in_a_batch_takes_what_it_kept(prefix: str) -> None:
    with open_store(prefix) as store:
        store.load(US, UNIVERSE)
        with store.batch():
            store.set_owned("pod-a", [cidr("10.32.0.1/12")], True)
            store.save_ring(ring())
            store.set_aside_state("reclaimed by another node")
        assert owned_rows(prefix) == []
        persisted = store.load(US, UNIVERSE)
    assert persisted.ring is None and dict(persisted.owned) == {}


# -- crash test --------------------------------------------------------------------------

WRITER = """
import sys
from ipaddress import IPv4Interface
from router.ipam.store import Store
store = Store.open(sys.argv[1])
n = int(sys.argv[2])
batched = sys.argv[3] == "batched"
while True:
    address = [IPv4Interface(f"10.32.{n // 250 % 250}.{n % 250 + 1}/12")]
    if batched:  # as the agent's steps: two writes, one transaction
        with store.batch():
            store.set_owned(f"pod-{n}", address, True)
            store.set_owned(f"other-{n}", address, False)
    else:
        store.set_owned(f"pod-{n}", address, True)
    print(n, flush=True)
    n += 1
"""


@pytest.mark.kernel
@pytest.mark.parametrize("mode", ["single", "batched"])
def test_every_reported_write_survives_kill_9(prefix: str, mode: str) -> None:
    """A child writes owned addresses one transaction at a time (or one batch at a time)
    and prints each ID once its call (or batch) returned; we kill -9 it at random
    moments, then every printed ID must be in the DB, and the DB must open without
    complaint."""
    rng = random.Random()
    committed: set[int] = set()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _round in range(5):
        child = subprocess.Popen([sys.executable, "-c", WRITER, prefix, str(len(committed)),
                                  mode],
                                 stdout=subprocess.PIPE, text=True, env=env)
        assert child.stdout is not None
        first = child.stdout.readline()
        assert first, "the writer died before its first write"
        try:
            child.wait(timeout=rng.uniform(0.0, 0.3))
        except subprocess.TimeoutExpired:
            child.kill()
        assert child.wait() == -9
        reported = {int(line) for line in [first, *child.stdout.read().split()]}
        child.stdout.close()
        committed |= reported
        with open_store(prefix) as store:
            persisted = store.load(US, UNIVERSE)
        assert persisted.notices == ()
        missing = committed - {int(ident.removeprefix("pod-")) for ident in persisted.owned
                               if ident.startswith("pod-")}
        assert not missing, f"reported but lost: {sorted(missing)[:10]}"
    assert len(committed) >= 5
