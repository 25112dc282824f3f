"""Our own topology changes: batched with at most one update per batch delay, the first
after a quiet spell sent almost at once (:class:`router.agent.topology.PendingUpdates`).
Pure: a fake clock stands in for the event loop."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from router.agent.topology import PendingUpdates
from router.mesh.names import PeerName

US, A, B, C = (PeerName(0xAA0000000000 + i) for i in range(4))


@dataclass
class Timer:
    at: float
    callback: Callable[[], object]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeLoop:
    now: float = 100.0
    timers: list[Timer] = field(default_factory=list)

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        timer = Timer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        """Run the timers due within ``seconds``, in order."""
        end = self.now + seconds
        while due := sorted((t for t in self.timers if not t.cancelled and t.at <= end),
                            key=lambda t: t.at):
            timer = due[0]
            self.timers.remove(timer)
            self.now = timer.at
            timer.callback()
        self.now = end


def batches() -> tuple[FakeLoop, PendingUpdates, list[tuple[float, frozenset[PeerName]]]]:
    loop = FakeLoop()
    sent: list[tuple[float, frozenset[PeerName]]] = []
    pending = PendingUpdates(US, lambda names: sent.append((loop.now, names)),
                             delay=1.0, first_delay=0.1, loop=loop)
    return loop, pending, sent


def test_the_first_change_after_a_quiet_spell_goes_after_the_short_delay() -> None:
    loop, pending, sent = batches()
    pending.add(A)
    loop.advance(0.05)
    pending.add(B)  # the same burst: one update
    loop.advance(0.05)
    assert sent == [(100.1, frozenset({US, A, B}))]


def test_later_changes_wait_until_the_batch_delay_has_passed_since_the_last_send() -> None:
    loop, pending, sent = batches()
    pending.add(A)
    loop.advance(0.2)
    pending.add(B)
    loop.advance(0.5)
    pending.add(C)
    loop.advance(0.39)
    assert len(sent) == 1  # not before 1 s after the first send
    loop.advance(0.02)
    assert sent[1] == (101.1, frozenset({US, B, C}))


def test_a_storm_costs_at_most_one_update_per_batch_delay() -> None:
    loop, pending, sent = batches()
    for _ in range(200):
        pending.add(A)
        loop.advance(0.05)  # ten seconds of changes
    assert 10 <= len(sent) <= 11
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(sent)]
    assert min(gaps) >= 1.0 - 1e-9


def test_after_a_quiet_second_the_short_delay_applies_again() -> None:
    loop, pending, sent = batches()
    pending.add(A)
    loop.advance(3.0)
    pending.add(B)
    loop.advance(0.1)
    assert [when for when, _ in sent] == [100.1, 103.1]


def test_cancel_drops_the_pending_batch() -> None:
    loop, pending, sent = batches()
    pending.add(A)
    pending.cancel()
    loop.advance(5.0)
    assert sent == []
