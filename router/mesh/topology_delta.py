"""Incremental topology updates between Python peers (an extension; Go never sees them).

Background: Go's topology gossip always sends a changed peer's *whole* summary,
connection list included. When a peer joins an N-peer full mesh every peer's
list grows by one and all N lists travel, each of N entries: O(N²) bytes per
join, and again on every hop of the gossip (weaveworks/mesh#108 reports 1–2 GB
of memory at about 300 peers).

Design: two Python peers that both advertise :data:`INCREMENTAL_TOPOLOGY_FEATURE`
in the handshake send each other :class:`IncrementalUpdate` messages instead,
on their direct connection only (topology gossip is neighbour-to-neighbour; each
hop re-encodes from its own table, so Go peers keep getting Go's format). An item
is either a full :class:`~router.mesh.summary.PeerSummary` or a :class:`PeerDelta`:
the new header (name, nickname, UID, Version, short ID) plus the connections
added or changed and the remotes removed, relative to a *base* summary that the
sender believes the receiver holds, identified by a 64-bit fingerprint of its
canonical content (a Version alone does not pin the content: Go may publish an
``established`` flag flip before it bumps the Version).

The receiver (:func:`apply_incremental_update`) turns every item into the full
summary it stands for and merges the batch with the unchanged Go rules
(:meth:`PeerTable.apply_update`), so the result is the table a full update
gives. A delta whose base it lacks is skipped when its own entry already wins
over the delta's header under the merge order (the full summary would be
rejected too); otherwise the name is reported in ``needs_full`` and the receiver
sends a :class:`FullSummaryRequest`, which the sender answers with full
summaries. The only difference left from a full update is harmless: a rejected
full summary would have left placeholder entries for unknown peers named in
its connection list, which nothing refers to and the next collection removes.

A new connection does not start with the whole topology either (Go sends every
summary down every new connection: a peer joining an N-peer full mesh receives N
copies of an O(N²) topology).  Each side sends a :class:`TopologyDigest` instead:
per peer, the merge order's fields and the fingerprint of the summary it holds
(about 25 bytes).  The receiver learns from it which bases the neighbour holds
(:meth:`IncrementalEncoder.note_digest`) and asks, with a :class:`SummaryRequest`,
for the summaries the neighbour has newer (:func:`wanted_from`); what the
neighbour lacks, the neighbour asks for in turn.  A :class:`PullTracker` keeps one
agent from asking several neighbours for the same summary at once (a joining
peer's connections all open together); a request lost with its connection is
asked again at the next digest or delta, and periodic gossip repairs the rest.

The sender keeps one :class:`IncrementalEncoder` per connection, remembering
by fingerprint the last summary of each peer it sent to (or received from) that
neighbour, and one :class:`SummaryHistory` shared by all of them holding the
last few summaries of each peer, so memory stays O(peers × depth) plus one
fingerprint per peer per connection. A delta is used when it lists fewer
connection changes than the full list; a base no longer in the history means a
full summary. Correctness never depends on the sender's guesses: the receiver
checks every base by fingerprint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

from router.mesh.names import PeerName
from router.mesh.peers import PeerTable, UpdateResult
from router.mesh.summary import (
    ConnectionSummary,
    PeerSummary,
    TopologyError,
    canonical,
    changed,
    supersedes,
)

INCREMENTAL_TOPOLOGY_FEATURE = "PyTopologyIncremental"
"""Handshake feature: the same :data:`INCREMENTAL_TOPOLOGY_VERSION` on both sides →
incremental updates; anything else → Go's format on that connection."""
INCREMENTAL_TOPOLOGY_VERSION = "3"
"""Version 3: digest entries have a fixed size.  Version 2: fingerprints are a sum of
per-connection digests (1 hashed the whole summary).  Two versions never read each
other's messages, so they do not mix: between them, Go's format."""
INCREMENTAL_TOPOLOGY_CHANNEL = "topology-incremental"
"""Gossip channel name for :class:`IncrementalUpdate` / :class:`FullSummaryRequest`."""


class Purpose(IntEnum):
    """Why a summary goes to a neighbour, which decides how it is encoded.  Where one
    summary is pending for several reasons, the highest wins."""

    REPAIR = 0
    """Periodic gossip: the neighbour most likely holds it; sent as a delta even on a
    base only guessed (our current summary itself), which costs a header."""
    NEWS = 1
    """Our own changes and relayed updates: left out where the neighbour holds it; on a
    base guessed where none is known (the summary we held before)."""
    ANSWER = 2
    """Asked for: on a base the neighbour is known to hold, else whole."""


def incremental_negotiated(ours: Mapping[str, str], theirs: Mapping[str, str]) -> bool:
    """Whether both handshakes advertised incremental topology updates."""
    return (ours.get(INCREMENTAL_TOPOLOGY_FEATURE) == INCREMENTAL_TOPOLOGY_VERSION
            and theirs.get(INCREMENTAL_TOPOLOGY_FEATURE) == INCREMENTAL_TOPOLOGY_VERSION)


@dataclass(frozen=True, slots=True)
class PeerDelta:
    """One peer's new summary, as changes to a base summary the receiver should hold."""

    name: PeerName
    base_version: int
    base_fingerprint: int
    nickname: str
    uid: int
    version: int
    short_id: int
    has_short_id: bool
    added: tuple[ConnectionSummary, ...]
    """Connections that are new or differ from the base's, by remote."""
    removed: tuple[PeerName, ...]
    """Remotes whose connection the base had and the new summary has not."""

    def __post_init__(self) -> None:
        PeerSummary(self.name, self.nickname, self.uid, self.version, self.short_id,
                    self.has_short_id)  # same range checks as a summary
        if not 0 <= self.base_fingerprint < 1 << 64:
            raise TopologyError(f"base fingerprint out of range: {self.base_fingerprint!r}")
        if {c.remote for c in self.added} & set(self.removed):
            raise TopologyError(f"delta for {self.name} both adds and removes a connection")


@dataclass(frozen=True, slots=True)
class IncrementalUpdate:
    """A topology update in the incremental format: at most one item per peer.

    ``pass_on``: items the receiver is asked to pass on to every neighbour of its own
    (a peer's news about itself, sent to one neighbour that relays it for all: see
    ``Mesh._send_own_topology``).  ``to_all``: the sender sent these to every neighbour
    of its own (so of its neighbours, only one passes them on to a peer that is not)."""

    items: tuple[PeerSummary | PeerDelta, ...]
    pass_on: frozenset[PeerName] = frozenset()
    to_all: bool = False

    def __post_init__(self) -> None:
        names = [item.name for item in self.items]
        if len(set(names)) != len(names):
            raise TopologyError("incremental update names a peer twice")
        if not self.pass_on <= set(names):
            raise TopologyError("incremental update asks to pass on a peer it does not name")


@dataclass(frozen=True, slots=True)
class FullSummaryRequest:
    """Receiver → sender: a delta's base was missing; send these peers' summaries again,
    whole, or as deltas on what the receiver does hold of them (``held``: name →
    fingerprint; names it holds nothing of are not in it)."""

    names: frozenset[PeerName]
    held: tuple[tuple[PeerName, int], ...] = ()

    def __post_init__(self) -> None:
        _check_held(self.names, self.held)


def _check_held(names: frozenset[PeerName], held: tuple[tuple[PeerName, int], ...]) -> None:
    for name, fingerprint in held:
        if name not in names:
            raise TopologyError(f"base held for {name}, which is not asked for")
        if not 0 <= fingerprint < 1 << 64:
            raise TopologyError(f"held fingerprint out of range: {fingerprint!r}")


@dataclass(frozen=True, slots=True)
class DigestEntry:
    """What a peer holds of one summary: the merge order's fields and the fingerprint."""

    name: PeerName
    uid: int
    version: int
    has_short_id: bool
    fingerprint: int

    def __post_init__(self) -> None:
        for what, value in (("UID", self.uid), ("Version", self.version),
                            ("fingerprint", self.fingerprint)):
            if not 0 <= value < 1 << 64:
                raise TopologyError(f"digest entry for {self.name}: {what} out of range: "
                                    f"{value!r}")


@dataclass(frozen=True, slots=True)
class TopologyDigest:
    """Sent when a connection starts, instead of the whole topology: what the sender
    holds, one entry per peer."""

    entries: tuple[DigestEntry, ...]

    def __post_init__(self) -> None:
        names = [entry.name for entry in self.entries]
        if len(set(names)) != len(names):
            raise TopologyError("topology digest names a peer twice")


@dataclass(frozen=True, slots=True)
class SummaryRequest:
    """Receiver of a digest → its sender: send these peers' summaries, as deltas on what
    the receiver holds of them where the sender still has that (``held``: name →
    fingerprint, as in :class:`FullSummaryRequest`), else whole."""

    names: frozenset[PeerName]
    held: tuple[tuple[PeerName, int], ...] = ()

    def __post_init__(self) -> None:
        _check_held(self.names, self.held)


@dataclass(frozen=True, slots=True)
class IncrementalResult:
    """The merge outcome, and the peers whose full summary must be asked for."""

    update: UpdateResult
    needs_full: frozenset[PeerName]


def summary_fingerprint(summary: PeerSummary) -> int:
    """64-bit BLAKE2b of the summary's canonical content (connections by remote)."""
    return summary.fingerprint


def digest_of(summaries: Iterable[PeerSummary], history: SummaryHistory) -> TopologyDigest:
    """The digest of these summaries (each is remembered as a base, as sending it would)."""
    entries = []
    for summary in summaries:
        fingerprint = history.remember(canonical(summary))
        entries.append(DigestEntry(summary.name, summary.uid, summary.version,
                                   summary.has_short_id, fingerprint))
    return TopologyDigest(tuple(entries))


def wanted_from(table: PeerTable, digest: TopologyDigest) -> tuple[DigestEntry, ...]:
    """The entries of ``digest`` whose summary would improve ``table``: peers it lacks,
    and peers whose entry loses to the digest's under the merge order.  About ourselves
    only another incarnation matters, while our Version has not passed its."""
    wanted = []
    for entry in digest.entries:
        current = table.get(entry.name)
        if entry.name == table.ourself:
            if (current is not None and entry.uid != current.uid
                    and entry.version >= current.version):
                wanted.append(entry)
            continue
        if current is None or supersedes(entry, current):
            wanted.append(entry)
    return tuple(wanted)


class PullTracker:
    """Which summaries this agent has asked a neighbour for and not yet got, so that
    the same summary is not asked of every neighbour at once.

    ``key`` is whatever names the connection asked (dropped with it).  A request is
    repeated when the connection asked goes, or after ``timeout`` seconds.  A digest
    offering something newer than what was asked for while the answer is on its way
    (a peer joining a full mesh: every member's summary changes as it connects, and
    its digests come in meanwhile) is asked for once the answer came, if news has not
    brought it by then, as a delta on the answer: not again whole at once."""

    def __init__(self, timeout: float = 5.0) -> None:
        self._timeout = timeout
        self._asked: dict[PeerName, tuple[DigestEntry, object, float]] = {}
        self._offered: dict[PeerName, tuple[DigestEntry, object]] = {}

    def choose(self, wanted: Iterable[DigestEntry], key: object, now: float
               ) -> frozenset[PeerName]:
        """The names to ask ``key`` for, out of ``wanted``; they count as asked."""
        chosen = set()
        for entry in wanted:
            asked = self._asked.get(entry.name)
            if asked is not None and asked[2] > now:
                offered = self._offered.get(entry.name, (asked[0], None))[0]
                if supersedes(entry, offered):
                    self._offered[entry.name] = (entry, key)
                continue
            self._asked[entry.name] = (entry, key, now + self._timeout)
            self._offered.pop(entry.name, None)
            chosen.add(entry.name)
        return frozenset(chosen)

    def received(self, table: PeerTable, names: Iterable[PeerName], now: float
                 ) -> dict[object, frozenset[PeerName]]:
        """Summaries of ``names`` were merged: requests they answered are done.  What a
        digest offered meanwhile that is still newer than ours is returned, by the key
        to ask it of (asked now)."""
        again: dict[object, set[PeerName]] = {}
        for name in names:
            asked = self._asked.get(name)
            current = table.get(name)
            if asked is None or current is None or supersedes(asked[0], current):
                continue
            del self._asked[name]
            offered = self._offered.pop(name, None)
            if offered is not None and supersedes(offered[0], current):
                self._asked[name] = (offered[0], offered[1], now + self._timeout)
                again.setdefault(offered[1], set()).add(name)
        return {key: frozenset(wanted) for key, wanted in again.items()}

    def dropped(self, key: object) -> None:
        """The connection ``key`` went: what was asked of it may be asked again."""
        for name in [n for n, (_, k, _) in self._asked.items() if k is key]:
            del self._asked[name]
        for name in [n for n, (_, k) in self._offered.items() if k is key]:
            del self._offered[name]

    def pending(self) -> frozenset[PeerName]:
        return frozenset(self._asked)


def diff(base: PeerSummary, target: PeerSummary) -> PeerDelta:
    """The delta that turns ``base`` into ``target`` (same peer)."""
    if base.name != target.name:
        raise TopologyError(f"delta between different peers: {base.name} → {target.name}")
    before, after = base.connections_by_remote(), target.connections_by_remote()
    added = tuple(after[r] for r in sorted(after)
                  if (held := before.get(r)) is not after[r] and held != after[r])
    removed = tuple(sorted(r for r in before if r not in after))
    return PeerDelta(target.name, base.version, summary_fingerprint(base), target.nickname,
                     target.uid, target.version, target.short_id, target.has_short_id,
                     added, removed)


def apply_delta(base: PeerSummary, delta: PeerDelta) -> PeerSummary:
    """The full summary ``delta`` stands for, given its base (connections sorted)."""
    if base.name != delta.name or summary_fingerprint(base) != delta.base_fingerprint:
        raise TopologyError(f"delta for {delta.name} does not apply to this base")
    header = PeerSummary(delta.name, delta.nickname, delta.uid, delta.version,
                         delta.short_id, delta.has_short_id)
    return changed(base, header, delta.removed, delta.added)


class SummaryHistory:
    """The last few summaries of every peer, with fingerprints: bases for deltas.

    One per agent, shared by every connection's :class:`IncrementalEncoder`, so
    memory is bounded by peers × ``depth`` summaries however many neighbours there
    are (a per-connection copy of each neighbour's view would be the O(N²) per
    connection that this extension exists to avoid). A base that has been pushed
    out just means a full summary is sent.
    """

    DELTAS_KEPT = 4096
    """Deltas computed, kept for the next neighbour that needs the same one (a change
    of ours goes to every neighbour on the same base); dropped all at once past this."""

    def __init__(self, depth: int = 4) -> None:
        if depth < 1:
            raise ValueError("history depth must be at least 1")
        self._depth = depth
        self._recent: dict[PeerName, list[tuple[int, PeerSummary]]] = {}
        self._deltas: dict[tuple[PeerName, int, int], PeerDelta] = {}

    def delta(self, base: PeerSummary, target: PeerSummary) -> PeerDelta:
        """:func:`diff`, computed once per pair of summaries."""
        key = (target.name, summary_fingerprint(base), summary_fingerprint(target))
        found = self._deltas.get(key)
        if found is None:
            if len(self._deltas) >= self.DELTAS_KEPT:
                self._deltas.clear()
            found = self._deltas[key] = diff(base, target)
        return found

    def remember(self, summary: PeerSummary) -> int:
        """Keep ``summary`` (canonical form) as a possible base; its fingerprint."""
        recent = self._recent.setdefault(summary.name, [])
        for fingerprint, known in recent:
            if known is summary:  # the table hands out one object per version
                return fingerprint
        fingerprint = summary_fingerprint(summary)
        if all(fp != fingerprint for fp, _ in recent):
            recent.append((fingerprint, canonical(summary)))
            del recent[:-self._depth]
        return fingerprint

    def lookup(self, name: PeerName, fingerprint: int) -> PeerSummary | None:
        return next((known for fp, known in self._recent.get(name, ()) if fp == fingerprint),
                    None)

    def previous(self, name: PeerName, fingerprint: int) -> PeerSummary | None:
        """The summary of ``name`` remembered last before the one with ``fingerprint``."""
        recent = self._recent.get(name, [])
        at = next((i for i, (fp, _) in enumerate(recent) if fp == fingerprint), len(recent))
        return recent[at - 1][1] if at > 0 else None

    def forget_peers(self, names: Iterable[PeerName]) -> None:
        """Drop peers that left the table (garbage-collected)."""
        for name in names:
            self._recent.pop(name, None)
        self._deltas.clear()


class IncrementalEncoder:
    """Per connection: which summary of each peer the neighbour last got from us
    (or sent us), by fingerprint; encodes against those bases."""

    def __init__(self, history: SummaryHistory) -> None:
        self._history = history
        self._known: dict[PeerName, int] = {}

    def encode(self, summaries: Iterable[PeerSummary],
               purpose: Purpose | Mapping[PeerName, Purpose] = Purpose.ANSWER,
               ) -> IncrementalUpdate:
        """Items for these summaries; afterwards they count as known to the neighbour.

        A delta is used when it lists fewer connection changes than the full list.  Its
        base is the summary the neighbour was last known to hold.  Where that is not in
        the history (the neighbour has had newer ones from others since) or nothing is
        known, it is guessed, by :class:`Purpose`: news goes on the summary we held
        before this one, which gossip has most likely brought the neighbour too; repair
        on our current one; an answer goes whole.  A wrong guess costs the neighbour's
        request for the whole summary.  News the neighbour holds is left out.
        """
        items: list[PeerSummary | PeerDelta] = []
        for summary in summaries:
            target = canonical(summary)
            why = purpose if isinstance(purpose, Purpose) else purpose[target.name]
            fingerprint = self._history.remember(target)
            known = self._known.get(target.name)
            if why is Purpose.NEWS and known == fingerprint:
                continue
            base = self._history.lookup(target.name, known) if known is not None else None
            if base is None and why is Purpose.NEWS:
                base = self._history.previous(target.name, fingerprint)
            elif base is None and why is Purpose.REPAIR:
                base = (target if known is None
                        else self._history.previous(target.name, fingerprint))
            delta = self._history.delta(base, target) if base is not None else None
            changes = len(delta.added) + len(delta.removed) if delta is not None else 0
            if delta is not None and changes < len(target.connections):
                items.append(delta)
            else:
                items.append(target)
            self._known[target.name] = fingerprint
        return IncrementalUpdate(tuple(items))

    def note_received(self, summaries: Iterable[PeerSummary]) -> None:
        """The neighbour sent us these, so it held them: usable as bases."""
        for summary in summaries:
            self._known[summary.name] = self._history.remember(canonical(summary))

    def note_digest(self, digest: TopologyDigest) -> None:
        """The neighbour's digest: what it holds, by fingerprint.  A summary we come to
        hold with that fingerprint (the same summary, however it reaches us) is then a
        base for deltas to it, and news it holds exactly is left out."""
        for entry in digest.entries:
            self._known[entry.name] = entry.fingerprint

    def forget(self, names: Iterable[PeerName]) -> None:
        """The neighbour lacks these (it asked for them): send them in full next time."""
        for name in names:
            self._known.pop(name, None)

    def note_request(self, request: FullSummaryRequest | SummaryRequest) -> None:
        """The neighbour asked for these again: what it holds of them (by fingerprint,
        where it said) is the base next time, else they go whole."""
        self.forget(request.names)
        for name, fingerprint in request.held:
            if self._history.lookup(name, fingerprint) is not None:
                self._known[name] = fingerprint


def resolve_items(table: PeerTable, items: Sequence[PeerSummary | PeerDelta],
                  history: SummaryHistory | None = None,
                  ) -> tuple[list[PeerSummary], frozenset[PeerName]]:
    """Full summaries for the items the table can resolve, and the names it cannot.

    A delta's base is looked for in the table, then among the summaries we held
    before (``history``): a neighbour that is behind on a peer (it has not had the
    newest version yet) still names a base we held once."""
    resolved: list[PeerSummary] = []
    needs_full: set[PeerName] = set()
    for item in items:
        if isinstance(item, PeerSummary):
            resolved.append(item)
            continue
        current = table.get(item.name)
        if item.name == table.ourself:
            # Only UID and Version of a summary about ourselves matter.
            resolved.append(PeerSummary(item.name, item.nickname, item.uid, item.version,
                                        item.short_id, item.has_short_id))
            continue
        if current is not None and not supersedes(item, current):
            continue  # it would lose to what we hold, as the full summary would
        base = current if current is not None and (
            summary_fingerprint(current) == item.base_fingerprint) else None
        if base is None and history is not None:
            base = history.lookup(item.name, item.base_fingerprint)
        if base is not None:
            resolved.append(apply_delta(base, item))
        else:
            needs_full.add(item.name)
    return resolved, frozenset(needs_full)


def apply_incremental_update(table: PeerTable, update: IncrementalUpdate,
                             history: SummaryHistory | None = None) -> IncrementalResult:
    """Merge an incremental update; see the module notes for the rules."""
    resolved, needs_full = resolve_items(table, update.items, history)
    result = table.apply_update(resolved)
    received = frozenset(item.name for item in update.items)
    return IncrementalResult(UpdateResult(received, result.new, result.changes), needs_full)
