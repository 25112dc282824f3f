"""How far each watched kind is known to be current, in resourceVersions (pure).

A real API server has one resourceVersion counter (etcd's revision), but each kind's watch
moves only when that kind changes: a list served from the watch cache and a bookmark both
carry the newest version *of that kind*, which on a quiet cluster stays far behind the
global one.  So a kind's own position says little about a write of another kind.  What a
bookmark (or a completed list) does say is: "every event of this kind up to *now* has been
delivered".  That is what makes a quiet kind count as caught up:

* ``position``: the highest resourceVersion of the kind seen (list, event or bookmark);
  every event of the kind up to it has arrived (a watch is ordered).
* ``covered``: at least ``position``, and raised by a bookmark or a list to the highest
  version seen of *any* kind before it arrived: those versions existed at the server when
  the bookmark was sent, and the kind had no event after ``position`` by then.  An event
  never raises it: more events of the kind may still be on their way.
* ``confirmations``: bookmarks and lists so far.  A write the controller never sees (a
  kind it does not watch, or one that changed nothing it watches) still existed when a
  caller asked to wait for it; a confirmation that arrives after the caller asked proves
  the kind has nothing up to that write left to deliver.

:func:`caught_up` combines the two for ``/status?wait=RV``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Progress:
    position: int = 0
    covered: int = 0
    confirmations: int = 0

    @property
    def through(self) -> int:
        """Every write of the kind up to this resourceVersion has been delivered."""
        return max(self.position, self.covered)

    def event(self, resource_version: int) -> Progress:
        return replace(self, position=max(self.position, resource_version))

    def confirmed(self, resource_version: int, highest_seen: int) -> Progress:
        """A bookmark or a complete list at ``resource_version``, arriving when the
        highest version seen of any kind was ``highest_seen``."""
        position = max(self.position, resource_version)
        return Progress(position, max(self.covered, position, highest_seen),
                        self.confirmations + 1)


def caught_up(resource_version: int, applied: Mapping[str, Progress],
              asked: Mapping[str, Progress], kinds: Iterable[str]) -> bool:
    """Whether the kernel reflects every write of ``kinds`` up to ``resource_version``:
    per kind, what was applied covers it, or a confirmation that arrived after the caller
    asked (``asked``: the progress seen then) has been applied."""
    for kind in kinds:
        done = applied.get(kind, Progress())
        before = asked.get(kind, Progress())
        if done.through < resource_version and done.confirmations <= before.confirmations:
            return False
    return True


def overall(applied: Mapping[str, Progress], kinds: Iterable[str]) -> int:
    """The resourceVersion every kind is known to be current through (0 if a kind has not
    been listed yet)."""
    return min((applied.get(kind, Progress()).through for kind in kinds), default=0)
