"""Our own topology changes: batched, paced by a token bucket (one update per batch delay
on average, a few at once after a quiet spell), never sooner than a short delay after
the change (:class:`router.agent.topology.PendingUpdates`).  Pure: a fake clock stands
in for the event loop."""

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
    pending = PendingUpdates(US, lambda names: sent.append((round(loop.now, 6), names)),
                             delay=1.0, first_delay=0.1, burst=3, loop=loop)
    return loop, pending, sent


def test_a_change_goes_after_the_short_delay_with_the_rest_of_its_burst() -> None:
    loop, pending, sent = batches()
    pending.add(A)
    loop.advance(0.05)
    pending.add(B)  # the same burst: one update
    loop.advance(0.05)
    assert sent == [(100.1, frozenset({US, A, B}))]


def test_after_a_quiet_spell_a_few_updates_go_at_once_then_one_per_delay() -> None:
    loop, pending, sent = batches()
    for name in (A, B, C, A, B):
        pending.add(name)
        loop.advance(0.1)
    loop.advance(2.0)
    times = [when for when, _ in sent]
    assert times[:3] == [100.1, 100.2, 100.3]  # the saved tokens
    assert times[3] == 101.1  # 0.2 tokens left (refilled meanwhile): wait for a whole one
    assert [names for _, names in sent[:3]] == [frozenset({US, n}) for n in (A, B, C)]
    assert sent[3][1] == frozenset({US, A, B})  # what came meanwhile, merged


def test_a_storm_costs_one_update_per_delay_after_the_burst() -> None:
    loop, pending, sent = batches()
    for _ in range(200):
        pending.add(A)
        loop.advance(0.05)  # ten seconds of changes
    assert 3 + 9 <= len(sent) <= 3 + 11
    later = [when for when, _ in sent[3:]]
    gaps = [b - a for a, b in itertools.pairwise(later)]
    assert min(gaps) >= 1.0 - 1e-6


def test_the_bucket_refills_during_a_quiet_spell() -> None:
    loop, pending, sent = batches()
    for name in (A, B, C, A):
        pending.add(name)
        loop.advance(0.1)
    loop.advance(5.0)  # refills to the burst
    count = len(sent)
    for name in (A, B, C):
        pending.add(name)
        loop.advance(0.1)
    assert len(sent) == count + 3


def test_cancel_drops_the_pending_batch() -> None:
    loop, pending, sent = batches()
    pending.add(A)
    pending.cancel()
    loop.advance(5.0)
    assert sent == []


def test_while_held_an_update_waits_up_to_the_delay_and_goes_once_released() -> None:
    """A connection added, then established 0.3 s later: one update carrying both.
    One that is never established holds the update no longer than ``hold``."""
    loop = FakeLoop()
    sent: list[tuple[float, frozenset[PeerName]]] = []
    establishing = {"held": True}
    pending = PendingUpdates(US, lambda names: sent.append((round(loop.now, 6), names)),
                             delay=1.0, first_delay=0.1, burst=3, loop=loop,
                             held=lambda: establishing["held"], hold=1.0)
    pending.add(A)  # connection to A added
    loop.advance(0.3)
    assert sent == []
    establishing["held"] = False
    pending.add()  # established
    loop.advance(0.01)
    assert sent == [(100.3, frozenset({US, A}))]
    establishing["held"] = True
    pending.add(B)  # added; never established
    loop.advance(0.9)
    assert len(sent) == 1
    loop.advance(0.1)
    assert sent[1] == (101.31, frozenset({US, B}))  # added at 100.31
