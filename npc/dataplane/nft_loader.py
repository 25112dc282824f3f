"""The nftables backend's work beside a full sync: new address sets created and filled
while the compile goes on, sets filled while the chains are staged, and the next sync's
bookkeeping worked out once the kernel holds the table.

The kernel's work on a netlink socket releases the interpreter lock, so filling sets
nothing refers to yet runs beside the compile at no cost to it; nothing refers to those
sets until the sync's final transaction, so the switch stays atomic.  Each worker is a
plain thread of its own, started by the syncing thread: a new thread inherits its
creator's network namespace, so it writes where the sync writes.  A worker's exception is
handed to the syncing thread, which raises it when it waits for the worker: the next sync
then reads the kernel back.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from npc.compile.ruleset import IpSet, Ruleset, SetKind
from npc.dataplane.nft_runner import Fill
from npc.render.nft import NftSet, NftTable, address_set
from npc.render.nft_diff import NftState, expected_state
from npc.render.nft_patch import Patching

Arg = TypeVar("Arg")


class Background(Generic[Arg]):
    """``work(arg)`` in a thread of its own, started once (it inherits the starting
    thread's network namespace); join() raises what it raised.  Once done, it holds
    neither ``work`` nor ``arg`` (what they refer to, a whole table say, may go)."""

    def __init__(self, work: Callable[[Arg], None], arg: Arg, name: str = "nft-fill") -> None:
        self._job: tuple[Callable[[Arg], None], Arg] | None = (work, arg)
        self._name = name
        self._thread: threading.Thread | None = None
        self._error: Exception | None = None

    def start(self) -> None:
        """Start the thread, unless it was started already."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        job, self._job = self._job, None
        try:
            assert job is not None  # started once
            work, arg = job
            work(arg)
        except Exception as exc:  # handed to the joining thread
            self._error = exc

    def join(self) -> None:
        """Wait for the work (if started) and raise what it raised."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error


class Gate:
    """Holds a thread back until another opens it, saying whether to go on."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._go = True

    def open(self, *, go: bool = True) -> None:
        """Let the waiting thread on, telling it ``go``; only the first opening counts."""
        if not self._event.is_set():
            self._go = go
            self._event.set()

    def wait(self) -> bool:
        """Wait until the gate opens; whether to go on."""
        self._event.wait()
        return self._go


class Bookkeeping:
    """What the next delta sync needs after a full sync of ``ruleset`` as ``want``: the
    state it leaves in the kernel and how member changes map onto it.  Worked out in a
    thread of its own, started once the kernel holds the table and waited for only when
    next needed: the sync returns at once, and the 20-50 ms (at 10,000 pods) of pure
    Python go while the controller waits for the next event.  (Started earlier, beside
    the writing, it took the interpreter lock from the rules' encoding.)"""

    def __init__(self, ruleset: Ruleset, want: NftTable) -> None:
        self._kept: list[tuple[NftState, Patching | None]] = []
        self._work = Background(lambda _: self._kept.append(
            (expected_state(want), Patching.build(ruleset, want))), None, "nft-bookkeeping")
        self._work.start()

    def result(self) -> tuple[NftState, Patching | None]:
        """Wait for the work: the state the full sync left and its patching index (None:
        pod events take the full path).  Raises what the work met."""
        self._work.join()  # raises what the work met
        [kept] = self._kept
        return kept


class SetLoader:
    """Creates and fills new address sets in a thread of its own while the compile goes
    on: the compile thread offers each set as the compiler completes it; the loader
    takes whatever has queued up and creates and fills those sets over netlink, the
    creation in the fill's first transaction (the socket releases the GIL, so the
    kernel's work runs beside the compile).  Sets the kernel already has are left to the
    final transaction (their changes must be atomic with the rules').  The thread
    inherits the syncing thread's network namespace."""

    def __init__(self, fill: Fill, existing: set[str]) -> None:
        self._fill = fill
        self._existing = existing
        self._queue: queue.SimpleQueue[NftSet | None] = queue.SimpleQueue()
        self._seen: dict[str, IpSet] = {}
        self.built: dict[str, NftSet] = {}
        """Ruleset set name → the address set made of it (loaded or already there)."""
        self.loaded: dict[str, set[str]] = {}
        """Set → the addresses it was filled with, once created and filled."""
        self.transactions = 0
        """Fill transactions written so far."""
        self.error: Exception | None = None
        """What the loader met (it then loads nothing more); :meth:`finish` raises it."""
        self._thread = threading.Thread(target=self._work, name="nft-set-loader", daemon=True)
        self._thread.start()

    def offer(self, ipset: IpSet) -> None:
        """The compiler completed ``ipset`` (a :data:`~npc.compile.compiler.SetListener`):
        queue its address set, if it makes one the kernel lacks."""
        self._seen[ipset.name] = ipset
        if ipset.kind is SetKind.LIST_SET and any(
                m.value not in self._seen for m in ipset.members):
            return  # not as the compiler promises: leave it to the final transaction
        nft_set = address_set(ipset, self._seen)
        if nft_set is None:
            return
        self.built[ipset.name] = nft_set
        if nft_set.name not in self._existing and self.error is None:
            self._queue.put(nft_set)

    def finish(self) -> dict[str, set[str]]:
        """Wait until every offered set is loaded; raise what the loader met, if anything
        (then the sets loaded so far are complete but unused)."""
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.loaded

    def _work(self) -> None:
        done = False
        while not done:
            batch = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._queue.get_nowait())
            done = None in batch
            sets = [s for s in batch if s is not None]
            if not sets or self.error is not None:
                continue
            try:
                self._load(sets)
            except Exception as exc:  # handed to the syncing thread by finish()
                self.error = exc

    def _load(self, sets: list[NftSet]) -> None:
        self._fill([(s.name, s.elements) for s in sets], [s.name for s in sets])
        self.transactions += 1
        for s in sets:
            self.loaded[s.name] = set(s.elements)
