"""Which peers to dial and when: Go's ``connectionMaker`` as a pure state machine.

Background (mesh ``connection_maker.go``, ``status.go``): the connection maker keeps

* the **direct peers**, keyed by the text the user gave (command line, ``POST
  /connect``; ``replace`` empties the list first; ``POST /forget`` removes entries but
  closes nothing). ``/status/targets`` and the persisted peer list are these texts;
* **targets**, keyed by the address to dial, each *waiting* (for its retry time),
  *attempting* (a dial or handshake in progress), *connected* or *suspended* (a direct
  target that is not wanted for now, keeping its backoff);
* our **connections** (inbound and outbound, once added to the local peer).

On every check (a command, a failure, a termination, a topology change, the timer) the
wanted addresses are collected: each direct peer's address (the mesh port filled in
when none was given) unless the peer was given *without* a port and an inbound
connection from that IP exists (with an explicit port, even the mesh port, it is kept);
with discovery, for every connection another peer reports to a peer we are not
connected to (and that is not us), its address when that peer dialled it, else its IP
with the mesh port (``"%s:%d"``: an IPv6 IP gets no brackets, as in Go). An address one
of our connections already has is never wanted. Waiting or suspended targets that are
not wanted are suspended if direct, else dropped; wanted ones are waiting again, and
dialled once their time has come. A new target is dialled at once. Attempting and
connected targets are left alone until their connection ends.

Backoff: a new target, or one named again by ``InitiateConnections``, has a 2 s
interval ``i`` and is due now. Each failed dial or handshake sets the retry time to
``now + i/2 + rand[0, i)`` (so within ``[i/2, 3i/2)``), then ``i = min(i*3/2, 6 min)``,
in integer nanoseconds like Go's Durations. A connection that ends more than one minute
after its target's retry time is retried at once with a fresh interval; a peer-name
collision or a connection to ourselves is never retried (until named again). Every
termination but a connection to ourselves counts in ``TerminationCount``.

Status entries (``makeLocalConnectionStatusSlice``) for targets: waiting →
``failed`` "<error>, retry: <time>" (``waiting`` "until: <time>" if it never failed;
the time is ``never`` for a target that is not retried); attempting → ``connecting``
"" or ``retrying`` "<last error>"; connected and suspended ones are not shown.

Design: a synchronous object the runtime owns and calls on its event loop; it never
dials, sleeps or reads a clock. Time is integer monotonic nanoseconds passed in with
each event; the random part of the backoff comes from an injected :data:`Jitter`.
Every event returns a :class:`Plan`: the addresses to dial now, the targets refused by
the connection limit, and when to call :meth:`ConnectionMaker.tick` next. Deliberate
differences from Go, where Go's behaviour is an accident of its concurrency:

* the connection limit counts dials in progress as well as connections, so one check
  never dials past it (Go checks each dial against the connections alone, so a burst
  of dials can overshoot and the surplus is refused only after both handshakes); a
  target over the limit fails with Go's ``Connection limit reached (N)`` and backs off,
  as Go's refused dial does. Direct targets get the room first, then by address;
* lists come out sorted (Go prints its maps' random order).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from router.api.model import LocalConnection
from router.mesh.go_text import GoClock
from router.mesh.names import PeerName
from router.mesh.peer_address import MESH_PORT, DirectPeer, PeerAddressError, split_host_port
from router.mesh.peers import PeerTable

SECOND = 1_000_000_000
INITIAL_INTERVAL = 2 * SECOND
MAX_INTERVAL = 6 * 60 * SECOND
RESET_AFTER = 60 * SECOND
"""A connection ending this long after its target's retry time is retried at once."""
DEFAULT_CONN_LIMIT = 200
"""``--conn-limit``; 0 means no limit."""

Jitter = Callable[[int], int]
"""Go's ``rand.Int63n(n)``: a uniformly random integer in ``[0, n)``."""


def connection_limit_message(limit: int) -> str:
    """Go's refusal when the connection limit is reached (dial or add)."""
    return f"Connection limit reached ({limit})"


class TargetState(enum.Enum):
    WAITING = "waiting"
    ATTEMPTING = "attempting"
    CONNECTED = "connected"
    SUSPENDED = "suspended"


class TerminationCause(enum.Enum):
    """Why a connection ended, as far as the retry policy cares."""

    OTHER = "other"
    NAME_COLLISION = "name collision"
    """Go's ``peerNameCollisionError``: not retried, counted."""
    CONNECT_TO_SELF = "connect to self"
    """Go's ``errConnectToSelf``: not retried, not counted."""


@dataclass(frozen=True, slots=True)
class Target:
    """A snapshot of one target."""

    address: str
    state: TargetState
    last_error: str | None
    try_after: int | None
    """Monotonic ns of the next try; None: never (Go's zero time)."""
    try_interval: int
    """The interval the next failure draws its delay from, ns."""


class _Target:
    __slots__ = ("last_error", "state", "try_after", "try_interval")

    def __init__(self) -> None:
        self.state = TargetState.WAITING
        self.last_error: str | None = None
        self.try_after: int | None = None
        self.try_interval = 0

    def next_try_now(self, now: int) -> None:
        self.try_after = now
        self.try_interval = INITIAL_INTERVAL

    def next_try_never(self) -> None:
        self.try_after = None
        self.try_interval = MAX_INTERVAL

    def next_try_later(self, now: int, jitter: Jitter) -> None:
        drawn = jitter(self.try_interval)
        if not 0 <= drawn < self.try_interval:
            raise ValueError(f"jitter({self.try_interval}) returned {drawn}, not in [0, n)")
        self.try_after = now + self.try_interval // 2 + drawn
        self.try_interval = min(self.try_interval * 3 // 2, MAX_INTERVAL)

    def failed(self, error: str) -> None:
        self.state = TargetState.WAITING
        self.last_error = error


@dataclass(frozen=True, slots=True)
class OurConnection:
    """One of our connections, as the runtime identifies it to the connection maker."""

    conn_id: int
    """Any identity the runtime keeps unique among live connections."""
    address: str
    """The remote TCP address: the target address for an outbound connection, the
    peer's ``ip:port`` (Go's ``TCPAddr.String()``) for an inbound one."""
    outbound: bool
    remote: PeerName | None = None
    """The remote peer, once known (required for :meth:`ConnectionMaker.connection_created`)."""


@dataclass(frozen=True, slots=True)
class ReportedConnection:
    """What the topology says: ``peer`` reports a connection to ``remote``."""

    peer: PeerName
    remote: PeerName
    address: str
    """The remote TCP address as ``peer`` sees it."""
    outbound: bool
    """``peer`` dialled it (so ``address`` is a listening address)."""


def reported_connections(table: PeerTable, connected: Iterable[PeerName]
                         ) -> tuple[ReportedConnection, ...]:
    """What the peer table reports of the peers that are neither us nor ``connected``
    (the only ones discovery looks at): looked up remote by remote, since a full mesh
    of N reports N² connections and this runs at every topology change."""
    others = table.names() - {table.ourself, *connected}
    return tuple(ReportedConnection(peer, conn.remote, conn.remote_tcp_addr, conn.outbound)
                 for peer, conn in table.connections_to(others))


@dataclass(frozen=True, slots=True)
class Dial:
    address: str
    accept_new_peer: bool
    """A direct target: the remote may be a peer we do not know yet. A discovered one
    must already be in the peer table (Go's ``acceptNewPeer``)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A due target not dialled because of the connection limit (log it as a failed dial)."""

    address: str
    error: str


@dataclass(frozen=True, slots=True)
class Plan:
    """What the runtime does after an event: dial these now, call ``tick`` at ``next_check_at``."""

    dial: tuple[Dial, ...] = ()
    refused: tuple[Refusal, ...] = ()
    next_check_at: int | None = None
    """Monotonic ns of the earliest retry; None: no timer (Go's ``maxDuration``)."""


class ConnectionMaker:
    """Direct peers, targets and their backoff, our connections; see the module docstring.

    Contract: every method taking ``now`` needs a monotonic clock in integer ns that
    never goes back. The runtime dials each :attr:`Plan.dial` address once (logging
    ``->[address] attempting connection``, and each :attr:`Plan.refused` entry as a
    failed attempt) and reports back: :meth:`connection_aborted` if no TCP connection
    came of it (resolving, the limit, the dial); otherwise, whatever happens to the
    handshake, :meth:`connection_terminated` when the TCP connection ends, preceded by
    :meth:`connection_created` if it was added to the local peer. Inbound connections
    are reported with the last two, and with :meth:`inbound_accepted` as soon as the
    TCP connection is accepted. :meth:`topology_changed` takes the peer table's
    current connections whenever that table changes. ``Plan.next_check_at`` replaces
    any timer set before.
    """

    def __init__(self, ourself: PeerName, *, jitter: Jitter, mesh_port: int = MESH_PORT,
                 discovery: bool = True, conn_limit: int = DEFAULT_CONN_LIMIT) -> None:
        self._ourself = ourself
        self._jitter = jitter
        self._port = mesh_port
        self._discovery = discovery
        self._limit = conn_limit
        self._direct: dict[str, DirectPeer] = {}
        self._targets: dict[str, _Target] = {}
        self._connections: dict[int, OurConnection] = {}
        self._accepted: dict[int, str] = {}
        """Inbound connections in their handshake: id -> the remote's IP."""
        self._reported: tuple[ReportedConnection, ...] = ()
        self._termination_count = 0
        self._next_check_at: int | None = None

    # ------------------------------------------------------------------ reading

    @property
    def termination_count(self) -> int:
        return self._termination_count

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def targets(self, active_only: bool = False) -> tuple[str, ...]:
        """The direct peers as given (Go's ``Targets``), sorted; ``active_only`` leaves
        out those whose target is never retried (collision, ourselves)."""
        return tuple(sorted(peer for peer, direct in self._direct.items()
                            if not (active_only and self._never_retried(direct))))

    def _never_retried(self, direct: DirectPeer) -> bool:
        target = self._targets.get(direct.target_address(self._port))
        return target is not None and target.try_after is None

    def target(self, address: str) -> Target | None:
        found = self._targets.get(address)
        if found is None:
            return None
        return Target(address, found.state, found.last_error, found.try_after,
                      found.try_interval)

    def snapshot(self) -> dict[str, Target]:
        """Every target, by address."""
        return {address: t for address in sorted(self._targets)
                if (t := self.target(address)) is not None}

    def status_entries(self, clock: GoClock) -> tuple[LocalConnection, ...]:
        """The targets' part of the status ``Connections`` list, sorted by address."""
        entries: list[LocalConnection] = []
        for address in sorted(self._targets):
            target = self._targets[address]
            error = target.last_error
            if target.state is TargetState.WAITING:
                until = "never" if target.try_after is None else clock.time_string(
                    target.try_after)
                state, info = ("waiting", f"until: {until}") if error is None else (
                    "failed", f"{error}, retry: {until}")
            elif target.state is TargetState.ATTEMPTING:
                state, info = ("connecting", "") if error is None else ("retrying", error)
            else:
                continue
            entries.append(LocalConnection(address, True, state, info, None))
        return tuple(entries)

    # ------------------------------------------------------------------ commands

    def initiate_connections(self, peers: Iterable[DirectPeer], replace: bool,
                             now: int) -> Plan:
        """Add direct peers (``replace``: instead of the current ones); a peer whose
        target exists is due now with a fresh interval, whatever its state."""
        if replace:
            self._direct = {}
        for peer in peers:
            self._direct[peer.peer] = peer
            target = self._targets.get(peer.target_address(self._port))
            if target is not None:
                target.next_try_now(now)
        return self._check(now)

    def forget_connections(self, peers: Iterable[str], now: int) -> Plan:
        """Remove direct peers by their text; connections stay open."""
        for peer in peers:
            self._direct.pop(peer, None)
        return self._check(now)

    # ------------------------------------------------------------------ events

    def inbound_accepted(self, conn: OurConnection) -> Plan:
        """An inbound TCP connection was accepted; its handshake follows.

        A direct peer given without a port is not dialled while a connection from its
        IP is registered (Go's rule); here also while one is in its handshake.  Peers
        that dial each other at once (a restarted peer and its neighbours, all
        retrying) otherwise both handshake, and the tie-break by connection UID then
        shuts one down, often the one already established: Go logs "Multiple
        connections" and sets the connection up twice."""
        if (host := _host_of(conn.address)) is not None and not conn.outbound:
            self._accepted[conn.conn_id] = host
        return Plan(next_check_at=self._next_check_at)

    def connection_created(self, conn: OurConnection) -> Plan:
        """A connection was added to the local peer. Go does not re-check here."""
        if conn.remote is None:
            raise ValueError("connection_created needs the remote peer")
        self._accepted.pop(conn.conn_id, None)
        self._connections[conn.conn_id] = conn
        target = self._targets.get(conn.address) if conn.outbound else None
        if target is not None:
            target.state = TargetState.CONNECTED
        return Plan(next_check_at=self._next_check_at)

    def connection_aborted(self, address: str, error: str, now: int) -> Plan:
        """A dial or handshake to ``address`` failed before the connection was added."""
        target = self._targets.get(address)
        if target is not None:
            target.failed(error)
            target.next_try_later(now, self._jitter)
        return self._check(now)

    def connection_terminated(self, conn: OurConnection, error: str, now: int,
                              cause: TerminationCause = TerminationCause.OTHER) -> Plan:
        """A connection ended (or its handshake failed after the dial succeeded)."""
        if cause is not TerminationCause.CONNECT_TO_SELF:
            self._termination_count += 1
        self._connections.pop(conn.conn_id, None)
        self._accepted.pop(conn.conn_id, None)
        target = self._targets.get(conn.address) if conn.outbound else None
        if target is not None:
            target.failed(error)
            if cause is not TerminationCause.OTHER:
                target.next_try_never()
            elif target.try_after is None or now > target.try_after + RESET_AFTER:
                target.next_try_now(now)
            else:
                target.next_try_later(now, self._jitter)
        return self._check(now)

    def topology_changed(self, reported: Iterable[ReportedConnection], now: int) -> Plan:
        """The peer table changed: remember what it reports, and re-check."""
        self._reported = tuple(reported)
        return self._check(now)

    def tick(self, now: int) -> Plan:
        """The timer fired (or any other reason to re-check)."""
        return self._check(now)

    # ------------------------------------------------------------------ the check

    def _check(self, now: int) -> Plan:
        wanted: set[str] = set()
        direct: set[str] = set()
        connected_peers = {c.remote for c in self._connections.values()}
        connected_addresses = {c.address for c in self._connections.values()}
        inbound_ips = {_host_of(c.address) for c in self._connections.values()
                       if not c.outbound} - {None} | set(self._accepted.values())

        def want(address: str) -> None:
            if address in connected_addresses:
                return
            wanted.add(address)
            if address not in self._targets:
                target = self._targets[address] = _Target()
                target.next_try_now(now)

        for peer in self._direct.values():
            address = peer.target_address(self._port)
            direct.add(address)
            if not (peer.port == 0 and peer.ip and peer.ip in inbound_ips):
                want(address)
        if self._discovery:
            for address in self._discovered(connected_peers):
                want(address)
        return self._connect_to_targets(wanted, direct, now)

    def _discovered(self, connected_peers: set[PeerName | None]) -> list[str]:
        found: list[str] = []
        for conn in self._reported:
            if (conn.peer == self._ourself or conn.remote == self._ourself
                    or conn.remote in connected_peers):
                continue
            if conn.outbound:
                found.append(conn.address)
            elif (host := _host_of(conn.address)) is not None:
                found.append(f"{host}:{self._port}")
        return found

    def _connect_to_targets(self, wanted: set[str], direct: set[str], now: int) -> Plan:
        due: list[str] = []
        for address, target in list(self._targets.items()):
            if target.state not in (TargetState.WAITING, TargetState.SUSPENDED):
                continue
            if address not in wanted:
                if address in direct:
                    target.state = TargetState.SUSPENDED
                else:
                    del self._targets[address]
                continue
            if target.try_after is None:
                continue
            target.state = TargetState.WAITING
            if target.try_after <= now:
                due.append(address)
        dials, refused = self._dial(due, direct, now)
        self._next_check_at = min(
            (t.try_after for t in self._targets.values()
             if t.state is TargetState.WAITING and t.try_after is not None
             and t.try_after > now), default=None)
        return Plan(dials, refused, self._next_check_at)

    def _dial(self, due: list[str], direct: set[str],
              now: int) -> tuple[tuple[Dial, ...], tuple[Refusal, ...]]:
        room: int | None = None
        if self._limit:
            attempting = sum(t.state is TargetState.ATTEMPTING for t in self._targets.values())
            room = self._limit - len(self._connections) - attempting
        dials: list[Dial] = []
        refused: list[Refusal] = []
        for address in sorted(due, key=lambda a: (a not in direct, a)):
            target = self._targets[address]
            if room is not None and room <= 0:
                error = connection_limit_message(self._limit)
                target.failed(error)
                target.next_try_later(now, self._jitter)
                refused.append(Refusal(address, error))
                continue
            target.state = TargetState.ATTEMPTING
            dials.append(Dial(address, address in direct))
            if room is not None:
                room -= 1
        return tuple(dials), tuple(refused)


def _host_of(address: str) -> str | None:
    """The host part of ``host:port`` (Go's ``SplitHostPort``), None if it is not one."""
    try:
        return split_host_port(address)[0]
    except PeerAddressError:
        return None
