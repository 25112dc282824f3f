"""IPAM in the agent: the allocator on the ``IPallocation`` gossip channel, its store, its
5-second tick, and the requests of the HTTP API with their deadlines.

Everything here runs in the agent's event loop except :class:`IpamBridge`, whose methods
the HTTP server's threads call: each hands its work to the loop and waits for the answer.

Each thing the allocator is asked to do (a request, a gossip message, the tick, a change
of peers or routes) is one step in a :meth:`~router.ipam.store.Store.batch`: its writes
are committed together when the step ends, before the loop moves on, so before the
request's answer (its waiting coroutine resumes later) and before any message the step
queued leaves (connections write in their own tasks): one sync per allocation.
A request that must wait (for consensus, for space from a peer) waits at most
``--ipalloc-timeout`` and then fails with what it waited for, e.g. ``Allocate for X timed
out after 30s: awaiting consensus (quorum: 2, known: 1)``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from common.service.logs import Logger
from router.agent.gossip import GossipData
from router.agent.mesh import GossipChannel, Mesh
from router.agent.settings import Settings
from router.ipam.allocator import Allocator, Config, Owned
from router.ipam.errors import IpamError, TimedOut
from router.ipam.messages import Range
from router.ipam.operations import Done, Operation
from router.ipam.store import Store
from router.mesh.names import PeerName
from router.mesh.summary import PeerSummary

CHANNEL = "IPallocation"
TICK = 5.0
T = TypeVar("T")


class IpamData:
    """What IPAM gossips: always the allocator's state at the moment it is sent, so
    merging two is keeping one (Go's ``ipamGossipData``)."""

    def __init__(self, encode: Callable[[], bytes]) -> None:
        self._encode = encode

    def encode(self) -> list[bytes]:
        return [self._encode()]

    def merge(self, other: GossipData) -> GossipData:
        return self


class IpamGossiper:
    """The channel's side of the allocator (Go's ``Allocator`` as a ``mesh.Gossiper``);
    each message is one step of the store."""

    def __init__(self, allocator: Allocator, store: Store) -> None:
        self.allocator = allocator
        self.store = store

    def on_unicast(self, source: PeerName, payload: bytes) -> None:
        with self.store.batch():
            self.allocator.on_unicast(source, payload)

    def on_broadcast(self, source: PeerName, payload: bytes) -> GossipData | None:
        with self.store.batch():
            self.allocator.on_broadcast(source, payload)
        return IpamData(self.allocator.encode)

    def gossip(self) -> GossipData | None:
        return IpamData(self.allocator.encode)

    def on_gossip(self, payload: bytes) -> GossipData | None:
        with self.store.batch():
            self.allocator.on_gossip(payload)
        return None  # the original never relays IPAM gossip


class ChannelTransport:
    """Sends on the mesh's channel of that name (looked up when sending, so the channel
    can be registered with the gossiper that uses this transport)."""

    def __init__(self, mesh: Mesh, name: str) -> None:
        self.mesh = mesh
        self.name = name

    def _channel(self) -> GossipChannel:
        return self.mesh.channels[self.name]

    def broadcast(self, encode: Callable[[], bytes]) -> None:
        self._channel().gossip_broadcast(IpamData(encode))

    def unicast(self, destination: PeerName, payload: bytes) -> bool:
        try:
            self._channel().gossip_unicast(destination, payload)
        except KeyError:
            return False
        return True


class Ipam:
    """IPAM's part of the agent."""

    def __init__(self, settings: Settings, mesh: Mesh, log: Logger, rng: random.Random,
                 targets: Callable[[], int]) -> None:
        assert settings.ipalloc_range is not None
        self.settings = settings
        self.log = log
        self.universe = settings.ipalloc_range
        default = settings.default_subnet
        assert default is not None
        self.default_subnet: ipaddress.IPv4Network = default
        self.timeout = settings.ipalloc_timeout
        mode = settings.ipalloc_init
        self.mesh = mesh
        self.store = Store.open(settings.db_prefix)
        config = Config(
            name=mesh.name, uid=mesh.uid, nickname=mesh.config.nickname,
            universe=self.universe, quorum=lambda: mode.quorum(targets()),
            is_known_peer=lambda name: name in mesh.table, seeds=mode.seeds,
            observer=mode.kind == "observer")
        self.allocator = Allocator(config, ChannelTransport(mesh, CHANNEL), self.store, log,
                                   clock=time.monotonic, wall=time.time, rng=rng)
        mesh.new_gossip(CHANNEL, IpamGossiper(self.allocator, self.store))
        mesh.on_peer_gone.append(self._peer_gone)
        mesh.on_routes_changed.append(self._routes_changed)
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        start = int(self.universe.network_address)
        persisted = self.store.load(int(self.mesh.name),
                                    Range(start, start + self.universe.num_addresses))
        for line in persisted.notices:
            self.log.warning(f"[allocator {self.mesh.name}] {line}")
        self.allocator.start(persisted.ring, {
            ident: Owned(owned.is_container, [str(c) for c in owned.cidrs])
            for ident, owned in persisted.owned.items()})
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        self.store.close()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            with self.store.batch():
                self.allocator.tick()

    def _peer_gone(self, peer: PeerSummary) -> None:
        with self.store.batch():
            self.allocator.peer_gone(peer.name)

    def _routes_changed(self) -> None:
        with self.store.batch():
            self.allocator.routes_changed()

    # ---- requests that may wait ------------------------------------------------------
    async def _wait(self, start: Callable[[Done], Operation]) -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def done(answer: str | None, error: IpamError | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(answer or "")

        with self.store.batch():
            op = start(done)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            reason = self.allocator.waiting_for()
            with self.store.batch():
                self.allocator.withdraw(op, TimedOut(
                    f"{op.kind} for {op.ident or 'the ring'} timed out after "
                    f"{self.timeout:g}s: {reason}"))
            return await future

    async def allocate(self, ident: str, subnet: ipaddress.IPv4Network | None) -> str:
        return await self._wait(lambda done: self.allocator.allocate(
            ident, subnet or self.default_subnet, True, done))

    async def claim(self, ident: str, address: ipaddress.IPv4Interface,
                    no_error_on_unknown: bool) -> None:
        await self._wait(lambda done: self.allocator.claim(
            ident, address, True, no_error_on_unknown, done))

    async def prime(self) -> None:
        await self._wait(self.allocator.prime)

    def status(self) -> dict[str, object]:
        return self.allocator.status(self.default_subnet)

    def readiness(self) -> str | None:
        """None when ready; else what IPAM waits for."""
        return self.allocator.not_ready()


class IpamBridge:
    """:class:`router.api.ipam_http.IpamApi` for the HTTP threads."""

    def __init__(self, ipam: Ipam, loop: asyncio.AbstractEventLoop) -> None:
        self.ipam = ipam
        self.loop = loop
        self.margin = 5.0

    def _run(self, work: Callable[[], Awaitable[T]], timeout: float) -> T:
        async def run() -> T:
            return await work()
        try:
            return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)
        except FutureTimeout:
            raise TimedOut("the agent did not answer in time") from None

    def _call(self, work: Callable[[], T]) -> T:
        async def run() -> T:
            with self.ipam.store.batch():
                return work()
        return self._run(run, self.margin * 2)

    def _waiting(self, work: Callable[[], Awaitable[T]]) -> T:
        return self._run(work, self.ipam.timeout + self.margin)

    @property
    def default_subnet(self) -> str:
        return str(self.ipam.default_subnet)

    @property
    def tracker(self) -> str:
        return ""

    def allocate(self, ident: str, subnet: ipaddress.IPv4Network | None) -> str:
        return self._waiting(lambda: self.ipam.allocate(ident, subnet))

    def claim(self, ident: str, address: ipaddress.IPv4Interface,
              no_error_on_unknown: bool) -> None:
        self._waiting(lambda: self.ipam.claim(ident, address, no_error_on_unknown))

    def lookup(self, ident: str, subnet: ipaddress.IPv4Network | None) -> list[str]:
        return self._call(lambda: self.ipam.allocator.lookup(
            ident, subnet or self.ipam.default_subnet))

    def owned(self) -> dict[str, list[str]]:
        return self._call(self.ipam.allocator.owned_addresses)

    def free(self, ident: str, address: ipaddress.IPv4Address) -> None:
        self._call(lambda: self.ipam.allocator.free(ident, address))

    def delete(self, ident: str) -> None:
        self._call(lambda: self.ipam.allocator.delete(ident))

    def prime(self) -> None:
        self._waiting(self.ipam.prime)

    def leave(self) -> None:
        self._call(self.ipam.allocator.leave)

    def rmpeer(self, peer: str) -> int:
        return self._call(lambda: self.ipam.allocator.rmpeer(peer))


__all__ = ["CHANNEL", "Ipam", "IpamBridge"]
