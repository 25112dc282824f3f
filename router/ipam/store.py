"""The agent's state DB: the one place IPAM state (and the few other things weave keeps
across restarts) touches the disk.

Background (weave 2.8.1, ``db/boltdb.go``): the Go weaver keeps a BoltDB at
``<db-prefix>data.db`` (``/weavedb/weave-netdata.db`` in Kubernetes, a host path) with
one bucket holding gob values: a format version, our peer name, the ring, the owned
addresses (container ID → {IsContainer, CIDRs}), the direct peers (connection targets)
and ``flag:<name>`` entries (``peer-reclaim``, set by ``launch.sh``). The ring and the
owned map are rewritten whole on every change. At start a ring saved under another
peer name or for another range is deleted. Deleting the file is the usual manual cure
for a ring in conflict with its peers.

Design:

* **SQLite, stdlib ``sqlite3``, WAL, ``synchronous=FULL``**, in ``<db-prefix>data.sqlite3``.
  SQLite needs no dependency, every write below is in a transaction that is on disk
  before the call returns, or inside a batch before the batch ends (the HTTP answer to
  an allocation depends on it), it survives ``kill -9`` and power loss in WAL mode with
  FULL sync, and an operator can read it with the ``sqlite3`` shell. LMDB would mean a
  C extension for no gain at this size (a ring of a few hundred entries, one row per
  pod). WAL lets ``weave`` helpers read flags while the agent runs.
* **Not Go's file name.** A Go weaver's bolt file may sit at ``<db-prefix>data.db`` when
  a node moves to us; we never open, misread or overwrite it (it stays there for a
  rollback). A fresh DB starts with no ring, so the node gets space from its peers.
* **One transaction per step.** Inside :meth:`Store.batch` (the agent opens one around
  each thing the allocator does: a request, a gossip message, a tick) the ring and owned
  writes are kept and made in one transaction when the batch ends, the ring once
  (its last value): one sync per allocation instead of two. The agent answers requests
  and its messages leave only after the step, so after the commit. Outside a batch
  every write is committed at once.
* **Rows, not blobs, except the ring**, which is kept as the gob bytes Go would write
  (``messages.RING``), with its owner and range in columns so validity is checked
  without decoding. Owned addresses are one row per ID and one per CIDR.
* **Set aside, never delete.** A ring saved under another peer name or range (and the
  owned addresses that went with it) moves to table ``set_aside`` with the time and
  the reason, and :meth:`Store.load` reports it in one line for the log.
* **Unreadable file.** A file SQLite calls corrupt or not a database (torn, truncated,
  garbage, foreign) is renamed to ``<file>.corrupt-<UTC time>`` with its WAL and a
  fresh DB is started, reported likewise. Anything else (missing directory,
  permissions, a DB from a newer version of us) raises :class:`StoreError` naming
  the file and the cause: the agent exits with that message instead of looping.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Interface
from typing import Final

from router.ipam.messages import RING, Range, Ring
from router.mesh.gob import GobError, decode, encode
from router.mesh.names import PeerName

FILE_NAME: Final = "data.sqlite3"
"""Appended to ``--db-prefix`` (Go's bolt file is ``data.db``)."""
SCHEMA_VERSION: Final = 1
"""``PRAGMA user_version``; a file with a higher one is refused, not rewritten."""
APPLICATION_ID: Final = 0x77656176
"""``PRAGMA application_id`` ("weav"): marks the file as ours."""
_CORRUPT_CODES: Final = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})

_SCHEMA: Final = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE ring (only INTEGER PRIMARY KEY CHECK (only = 1), peer_name TEXT NOT NULL,
                   range_start INTEGER NOT NULL, range_end INTEGER NOT NULL,
                   gob BLOB NOT NULL);
CREATE TABLE owned (ident TEXT PRIMARY KEY, is_container INTEGER NOT NULL);
CREATE TABLE owned_cidrs (ident TEXT NOT NULL, position INTEGER NOT NULL,
                          cidr TEXT NOT NULL, PRIMARY KEY (ident, position));
CREATE TABLE direct_peers (position INTEGER PRIMARY KEY, peer TEXT NOT NULL);
CREATE TABLE flags (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE set_aside (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,
                        reason TEXT NOT NULL, peer_name TEXT, range_start INTEGER,
                        range_end INTEGER, ring BLOB, owned TEXT NOT NULL);
"""


class StoreError(Exception):
    """The state DB cannot be used; the message names the file and the cause."""


@dataclasses.dataclass(frozen=True, slots=True)
class Owned:
    """Go's ``ownedData``: the addresses one ID holds, in the order it got them."""

    is_container: bool
    cidrs: tuple[IPv4Interface, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Persisted:
    """What :meth:`Store.load` found, after setting aside what no longer fits."""

    peer_name: PeerName | None
    """The name the DB was last used under (now the current one)."""
    ring: Ring | None
    """None when there is none we may use (never saved, empty, or set aside)."""
    owned: Mapping[str, Owned]
    direct_peers: tuple[str, ...]
    flags: Mapping[str, str]
    notices: tuple[str, ...]
    """One line each for the log: what was set aside or recovered, and where it is."""


class Store:
    """An open state DB. Every write is one committed, synced transaction (inside
    :meth:`batch`: all of the batch's ring and owned writes are one, at its end).

    One user at a time: the allocator serialises its calls, from whichever thread it
    runs on. Other processes (the ``weave`` helpers) may read and set flags meanwhile;
    a writer waits up to five seconds for another's transaction."""

    def __init__(self, path: str, db: sqlite3.Connection, clock: Callable[[], float],
                 recovery: str | None) -> None:
        """Use :meth:`open`."""
        self.path = path
        self._db = db
        self._clock = clock
        self.recovery = recovery
        """Set when :meth:`open` had to move an unreadable file aside: the log line."""
        self._recovery_reported = False
        self._batches = 0
        """How many :meth:`batch` blocks are open (nested ones join the outermost)."""
        self._pending_ring: Ring | None = None
        self._pending_owned: dict[str, tuple[tuple[IPv4Interface, ...], bool] | None] = {}
        """Owned writes kept by the open batch: ID → (CIDRs, is container), None: deleted."""

    @classmethod
    def open(cls, db_prefix: str, *, clock: Callable[[], float] = time.time) -> Store:
        """Open (creating if need be) ``<db_prefix>data.sqlite3``. An unreadable file is
        moved aside and replaced by a fresh one; :meth:`load` reports it."""
        path = db_prefix + FILE_NAME
        try:
            return cls(path, _connect(path), clock, None)
        except _Unreadable as unreadable:
            moved_to = _move_aside(path, clock())
            recovery = (f"state DB {path} was unreadable ({unreadable.cause}); moved it to "
                        f"{moved_to} and started a fresh one")
            try:
                return cls(path, _connect(path), clock, recovery)
            except _Unreadable as again:
                raise StoreError(f"cannot create state DB {path}: {again.cause}") from again

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------

    def load(self, peer_name: int, universe: Range) -> Persisted:
        """Everything persisted, checked against who and where we are now: a ring (and
        the owned addresses with it) saved under another peer name or for another range
        is set aside. Records ``peer_name`` as the DB's owner from now on."""
        ours = PeerName(peer_name)
        self.flush()
        with self._transaction() as db:
            notices = [self.recovery] if self.recovery and not self._recovery_reported else []
            self._recovery_reported = True
            reason = self._mismatch(db, ours, universe)
            ring: Ring | None = None
            if reason is None:
                ring, reason = self._stored_ring(db)
            if reason is not None:
                notices.append(self._set_aside(db, reason))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('peer_name', ?)", (str(ours),))
            return Persisted(peer_name=ours, ring=ring, owned=_owned(db),
                             direct_peers=_direct_peers(db), flags=_flags(db),
                             notices=tuple(notices))

    def peer_name(self) -> PeerName | None:
        """The name the DB was last used under, if any (for the identity's choice)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'peer_name'").fetchone()
        return None if row is None else PeerName.parse(row[0])

    def flag(self, name: str) -> str | None:
        """Go's ``weaveutil get-db-flag``."""
        row = self._db.execute("SELECT value FROM flags WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    # -- writing -----------------------------------------------------------------------

    def save_peer_name(self, name: int) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('peer_name', ?)",
                       (str(PeerName(name)),))

    def save_ring(self, ring: Ring) -> None:
        """Replace the ring (its owner ``ring.peer`` is our name)."""
        if self._batches:
            self._pending_ring = ring
            return
        with self._transaction() as db:
            _write_ring(db, ring)

    def set_owned(self, ident: str, cidrs: Sequence[IPv4Interface], is_container: bool) -> None:
        """Replace what ``ident`` owns."""
        if self._batches:
            self._pending_owned[ident] = (tuple(cidrs), is_container)
            return
        with self._transaction() as db:
            _write_owned(db, ident, cidrs, is_container)

    def delete_owned(self, ident: str) -> None:
        if self._batches:
            self._pending_owned[ident] = None
            return
        with self._transaction() as db:
            _delete_owned(db, ident)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Keep the ring and owned writes made inside, and make them in one transaction
        (one sync) when the block ends, even by an exception; a nested block joins the
        outer one. Reads do not see the kept writes (the allocator never reads back).
        Whoever opens a batch must not answer or send what depends on its writes before
        it ends (or :meth:`flush`)."""
        self._batches += 1
        try:
            yield
        finally:
            self._batches -= 1
            if not self._batches:
                self.flush()

    def flush(self) -> None:
        """Commit what the open batch kept so far (nothing to do outside one). A failed
        commit raises :class:`StoreError` once; what it held is not tried again."""
        ring, self._pending_ring = self._pending_ring, None
        owned, self._pending_owned = self._pending_owned, {}
        if ring is None and not owned:
            return
        with self._transaction() as db:
            if ring is not None:
                _write_ring(db, ring)
            for ident, held in owned.items():
                if held is None:
                    _delete_owned(db, ident)
                else:
                    _write_owned(db, ident, *held)

    def save_direct_peers(self, peers: Sequence[str]) -> None:
        """Replace the connection targets (``weave connect``/``forget``), in order."""
        with self._transaction() as db:
            db.execute("DELETE FROM direct_peers")
            db.executemany("INSERT INTO direct_peers VALUES (?, ?)", list(enumerate(peers)))

    def set_flag(self, name: str, value: str) -> None:
        """Go's ``weaveutil set-db-flag``."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO flags VALUES (?, ?)", (name, value))

    def set_aside_state(self, reason: str) -> str:
        """Move the ring and the owned addresses to ``set_aside`` (what ``launch.sh``
        does with ``rm`` when another node has reclaimed our space); the log line."""
        self.flush()  # what a batch kept goes aside too
        with self._transaction() as db:
            return self._set_aside(db, reason)

    # -- inside ------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as error:
            raise StoreError(f"state DB {self.path}: {error}") from error

    def _mismatch(self, db: sqlite3.Connection, ours: PeerName, universe: Range) -> str | None:
        """Why the stored ring is not ours to use, if it is not."""
        row = db.execute("SELECT value FROM meta WHERE key = 'peer_name'").fetchone()
        if row is not None and row[0] != str(ours):
            return f"it was saved by peer {row[0]}, and we are {ours}"
        ring = db.execute("SELECT peer_name, range_start, range_end FROM ring").fetchone()
        if ring is None:
            return None
        if ring[0] != str(ours):
            return f"the ring belongs to peer {ring[0]}, and we are {ours}"
        if (ring[1], ring[2]) != (universe.start, universe.end):
            return (f"the ring covers {_range_text(ring[1], ring[2])}, and our range is "
                    f"{_range_text(universe.start, universe.end)}")
        return None

    def _stored_ring(self, db: sqlite3.Connection) -> tuple[Ring | None, str | None]:
        """The stored ring, or why it cannot be used (it does not decode)."""
        row = db.execute("SELECT gob FROM ring").fetchone()
        if row is None:
            return None, None
        try:
            ring = decode(RING, bytes(row[0]))
        except GobError as error:
            return None, f"the ring does not decode ({error})"
        return (ring if ring.entries else None), None

    def _set_aside(self, db: sqlite3.Connection, reason: str) -> str:
        ring = db.execute("SELECT peer_name, range_start, range_end, gob FROM ring").fetchone()
        owned = {ident: {"is_container": o.is_container, "cidrs": [str(c) for c in o.cidrs]}
                 for ident, o in _owned(db).items()}
        db.execute("INSERT INTO set_aside (at, reason, peer_name, range_start, range_end, "
                   "ring, owned) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (self._clock(), reason, *(ring or (None, None, None, None)),
                    json.dumps(owned, sort_keys=True)))
        db.execute("DELETE FROM ring")
        db.execute("DELETE FROM owned")
        db.execute("DELETE FROM owned_cidrs")
        return (f"set aside the persisted ring and {len(owned)} address owner(s) in "
                f"{self.path} (table set_aside): {reason}")


class _Unreadable(Exception):
    """SQLite says the file is corrupt or not a database (or not ours)."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def _connect(path: str) -> sqlite3.Connection:
    """Open ``path``, check it is a sound DB of ours, create the schema if it is new."""
    if not os.path.isdir(os.path.dirname(path) or "."):
        raise StoreError(f"cannot open state DB {path}: directory "
                         f"{os.path.dirname(path)!r} does not exist")
    try:
        db = sqlite3.connect(path, isolation_level=None, timeout=5.0,
                             check_same_thread=False)
    except sqlite3.Error as error:
        raise StoreError(f"cannot open state DB {path}: {error}") from error
    try:
        _prepare(db, path)
    except BaseException:
        db.close()
        raise
    return db


def _prepare(db: sqlite3.Connection, path: str) -> None:
    """Check the file before changing anything in it, then set WAL and FULL sync, and
    create the schema in a new file (checking again inside the transaction, in case
    another process got there first)."""
    try:
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise _Unreadable(f"integrity check: {check}")
        is_new = _is_new(db, path)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        if is_new:
            db.execute("BEGIN IMMEDIATE")
            try:
                if _is_new(db, path):
                    _create_schema(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
    except sqlite3.Error as error:
        if error.sqlite_errorcode & 0xFF in _CORRUPT_CODES:
            raise _Unreadable(str(error)) from error
        raise StoreError(f"cannot open state DB {path}: {error}") from error


def _is_new(db: sqlite3.Connection, path: str) -> bool:
    """True for an empty file; False for a DB of ours we can use; raises otherwise."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    application = db.execute("PRAGMA application_id").fetchone()[0]
    tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if version == 0 and application == 0 and tables == 0:
        return True
    if application != APPLICATION_ID:
        raise _Unreadable("it is an SQLite file, but not a weave state DB")
    if version > SCHEMA_VERSION:
        raise StoreError(f"state DB {path} has schema version {version}, newer than this "
                         f"agent's {SCHEMA_VERSION}; use a newer agent, or move the file "
                         "away to start afresh (the node then gets addresses from its peers)")
    return False


def _create_schema(db: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _move_aside(path: str, now: float) -> str:
    """Rename the file (and its WAL and shared-memory files) to ``.corrupt-<time>``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    moved_to = f"{path}.corrupt-{stamp}"
    try:
        for suffix in ("-wal", "-shm", ""):
            if os.path.exists(path + suffix):
                os.replace(path + suffix, moved_to + suffix)
    except OSError as error:
        raise StoreError(f"state DB {path} is unreadable and cannot be moved aside: "
                         f"{error}") from error
    return moved_to


def _write_ring(db: sqlite3.Connection, ring: Ring) -> None:
    db.execute("INSERT OR REPLACE INTO ring VALUES (1, ?, ?, ?, ?)",
               (str(PeerName(ring.peer)), ring.start, ring.end, encode(RING, ring)))


def _write_owned(db: sqlite3.Connection, ident: str, cidrs: Sequence[IPv4Interface],
                 is_container: bool) -> None:
    _delete_owned(db, ident)
    db.execute("INSERT INTO owned VALUES (?, ?)", (ident, int(is_container)))
    db.executemany("INSERT INTO owned_cidrs VALUES (?, ?, ?)",
                   [(ident, i, str(cidr)) for i, cidr in enumerate(cidrs)])


def _delete_owned(db: sqlite3.Connection, ident: str) -> None:
    db.execute("DELETE FROM owned WHERE ident = ?", (ident,))
    db.execute("DELETE FROM owned_cidrs WHERE ident = ?", (ident,))


def _owned(db: sqlite3.Connection) -> dict[str, Owned]:
    cidrs: dict[str, list[IPv4Interface]] = {}
    for ident, cidr in db.execute("SELECT ident, cidr FROM owned_cidrs "
                                  "ORDER BY ident, position"):
        cidrs.setdefault(ident, []).append(IPv4Interface(cidr))
    return {ident: Owned(bool(is_container), tuple(cidrs.get(ident, ())))
            for ident, is_container in db.execute("SELECT ident, is_container FROM owned "
                                                  "ORDER BY ident")}


def _direct_peers(db: sqlite3.Connection) -> tuple[str, ...]:
    return tuple(row[0] for row in db.execute("SELECT peer FROM direct_peers "
                                              "ORDER BY position"))


def _flags(db: sqlite3.Connection) -> dict[str, str]:
    return dict(db.execute("SELECT name, value FROM flags ORDER BY name").fetchall())


def _range_text(start: int, end: int) -> str:
    return f"{IPv4Address(start)}-{IPv4Address(end)}"
