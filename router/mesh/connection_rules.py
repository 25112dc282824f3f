"""Admission rules for mesh connections: remote identity, duplicates, the limit, accept rate.

Background (mesh ``connection.go`` ``registerRemote``, ``local_peer.go``
``handleAddConnection``, ``router.go`` and ``token_bucket.go``):

* **Who is on the other end** (:func:`register_remote_refusal`), checked right after the
  handshake, in this order: a dial to a *discovered* target (not a direct peer) must
  reach a peer already in the peer table (``Found unknown remote name: <name> at
  <address>``); a remote with our name but another UID is a name collision (``local
  "<us>" and remote "<them>" peer names collision``, never retried); a remote that is us
  is a connection to ourselves (``cannot connect to ourself``, never retried and not
  counted as a termination).
* **Adding the connection** (:func:`add_connection_verdict`): if a connection to the same
  peer exists, the one with the lower connection UID wins. Both ends compute the same
  UID for a connection (each side's random ``ConnID`` XOR the other's), so both keep
  the same one. Winning shuts the old one down; losing refuses the new one; equal UIDs
  shut both. All three use ``Multiple connections to <remote> added to <us>``. Then the
  connection limit is checked against the connections we hold (after any removal):
  ``Connection limit reached (N)``; 0 means no limit. The limit is soft: peers beyond it
  are still reached through others, over multi-hop routes.
* **Accept rate** (:class:`AcceptLimiter`): after each accepted TCP connection the
  listener waits for a token from a bucket of 20, refilled one per 50 ms.

Peers print as Go's ``Peer.String()``: ``name(nickname)`` (:func:`peer_display`).

Design: predicates returning a reason (or None), and a token bucket on an injected
integer-nanosecond monotonic clock; the runtime acts (closes, logs, sleeps).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from router.mesh.connection_maker import TerminationCause, connection_limit_message
from router.mesh.go_text import go_quote
from router.mesh.names import PeerName

ACCEPT_MAX_TOKENS: Final = 20
ACCEPT_TOKEN_DELAY: Final = 50_000_000
"""ns between accept tokens (50 ms)."""


def peer_display(name: PeerName, nickname: str) -> str:
    """Go's ``Peer.String()``."""
    return f"{name}({nickname})"


# ---------------------------------------------------------------- remote identity


class RefusalKind(enum.Enum):
    UNKNOWN_PEER = "unknown peer"
    NAME_COLLISION = "name collision"
    CONNECT_TO_SELF = "connect to self"


@dataclass(frozen=True, slots=True)
class RemoteRefusal:
    kind: RefusalKind
    message: str

    @property
    def termination_cause(self) -> TerminationCause:
        """How :meth:`ConnectionMaker.connection_terminated` must treat this end."""
        return {RefusalKind.NAME_COLLISION: TerminationCause.NAME_COLLISION,
                RefusalKind.CONNECT_TO_SELF: TerminationCause.CONNECT_TO_SELF,
                }.get(self.kind, TerminationCause.OTHER)


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """A peer as the handshake names it (or as we are)."""

    name: PeerName
    uid: int
    nickname: str

    def __str__(self) -> str:
        return peer_display(self.name, self.nickname)


def register_remote_refusal(ourself: PeerIdentity, remote: PeerIdentity, *,
                            remote_known: bool, accept_new_peer: bool,
                            remote_address: str) -> RemoteRefusal | None:
    """Why Go's ``registerRemote`` refuses the remote of a new connection, or None.

    ``remote_known``: the peer table holds ``remote.name`` (ourselves included).
    ``accept_new_peer``: inbound, or dialled as a direct peer. ``remote`` carries the
    nickname from the handshake (the collision message prints it).
    """
    if not accept_new_peer and not remote_known:
        return RemoteRefusal(RefusalKind.UNKNOWN_PEER,
                             f"Found unknown remote name: {remote.name} at {remote_address}")
    if remote.name == ourself.name and remote.uid != ourself.uid:
        return RemoteRefusal(
            RefusalKind.NAME_COLLISION,
            f"local {go_quote(str(ourself))} and remote {go_quote(str(remote))} "
            "peer names collision")
    if remote.name == ourself.name:
        return RemoteRefusal(RefusalKind.CONNECT_TO_SELF, "cannot connect to ourself")
    return None


def is_restarted_peer(known_uid: int | None, handshake_uid: int) -> bool:
    """Go logs "connection added (restarted peer)" when the table's UID for the remote
    differs from the handshake's (``known_uid`` None: the peer was new)."""
    return known_uid is not None and known_uid != handshake_uid


def connection_added_message(restarted_peer: bool, reachable_before: bool) -> str:
    """The log line of a connection added (``reachable_before``: a unicast route existed)."""
    if restarted_peer:
        return "connection added (restarted peer)"
    return "connection added" if reachable_before else "connection added (new peer)"


# ---------------------------------------------------------------- duplicates and the limit


class TieBreak(enum.Enum):
    WON = "won"
    LOST = "lost"
    TIED = "tied"


def break_tie(conn_uid: int, other_uid: int) -> TieBreak:
    """Go's ``breakTie``: the connection with the lower UID wins."""
    if conn_uid < other_uid:
        return TieBreak.WON
    return TieBreak.LOST if other_uid < conn_uid else TieBreak.TIED


def duplicate_connection_message(remote: str, ourself: str) -> str:
    """The error both duplicates are closed or refused with (peers as ``name(nick)``)."""
    return f"Multiple connections to {remote} added to {ourself}"


@dataclass(frozen=True, slots=True)
class AddVerdict:
    """What to do with a new connection to a peer (Go's ``handleAddConnection``)."""

    close_existing: str | None = None
    """Shut the existing connection to that peer down with this error (and delete it)."""
    refuse: str | None = None
    """Refuse the new connection with this error; None: add it."""


def add_connection_verdict(*, conn_uid: int, existing_uid: int | None, connection_count: int,
                           conn_limit: int, remote: str, ourself: str) -> AddVerdict:
    """Decide on adding a connection with UID ``conn_uid``.

    ``existing_uid``: the UID of the connection we hold to the same peer, None if none
    (or if it is this very connection, which Go accepts as a no-op). ``connection_count``:
    the connections we hold, the existing one included.
    """
    close_existing = None
    if existing_uid is not None:
        duplicate = duplicate_connection_message(remote, ourself)
        outcome = break_tie(conn_uid, existing_uid)
        if outcome is TieBreak.LOST:
            return AddVerdict(refuse=duplicate)
        if outcome is TieBreak.TIED:
            return AddVerdict(close_existing=duplicate, refuse=duplicate)
        close_existing = duplicate
        connection_count -= 1
    if conn_limit and connection_count >= conn_limit:
        return AddVerdict(close_existing, connection_limit_message(conn_limit))
    return AddVerdict(close_existing)


# ---------------------------------------------------------------- accept rate


class AcceptLimiter:
    """Go's accept token bucket on an injected clock (integer monotonic ns).

    After accepting a connection, the listener sleeps :meth:`wait` ns before the next
    accept. Tokens are stamped one interval apart; a full bucket's oldest token is
    stamped ``capacity`` intervals ago (truncated to a multiple of the interval), and
    a token whose stamp has come is free. So, as in Go, ``capacity + 1`` accepts pass
    at once after a quiet spell, then one per interval. Go truncates wall time since
    year 1, we truncate the monotonic reading: only the phase of the stamps differs.
    """

    def __init__(self, now: int, capacity: int = ACCEPT_MAX_TOKENS,
                 token_interval: int = ACCEPT_TOKEN_DELAY) -> None:
        if capacity <= 0 or token_interval <= 0:
            raise ValueError("capacity and token_interval must be positive")
        self._interval = token_interval
        self._refill = token_interval * capacity
        self._earliest_unspent = self._full_bucket_token(now)

    def _full_bucket_token(self, now: int) -> int:
        """The token time that stands for a full bucket (Go truncates it to the interval)."""
        moment = now - self._refill
        return moment - moment % self._interval

    def wait(self, now: int) -> int:
        """Take a token: how long to sleep first (ns). The state assumes that sleep happens."""
        sleep = max(0, self._earliest_unspent - now)
        after_sleep = now + sleep
        self._earliest_unspent = max(self._earliest_unspent,
                                     self._full_bucket_token(after_sleep)) + self._interval
        return sleep
