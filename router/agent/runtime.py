"""The agent's parts put together in its event loop: identity, the mesh, the listener with
its accept-rate limit, the connection maker that dials targets, and the actions the HTTP
API asks for (status snapshots, connect, forget).

The connection maker (:mod:`router.mesh.connection_maker`) only decides; this module does
what it says: dials each address it names (with a timeout the original lacked: a target
that never answers shows ``retrying``, not a ``connecting`` forever), reports how each
dial and connection ended, re-reads the topology after every change, and wakes it when it
asks to be woken.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import time
from collections.abc import Coroutine, Sequence
from typing import Any

from common.service.logs import Logger
from router.agent.connection import ConnectionClosed, MeshConnection
from router.agent.identity import LocalIdentity, local_identity
from router.agent.identity_host import live_host
from router.agent.ipam import Ipam
from router.agent.mesh import ConnectToSelf, Mesh, MeshConfig, NameCollision
from router.agent.overlay import Overlay
from router.agent.settings import Settings
from router.agent.snapshot import router_status
from router.api.model import Report, RouterStatus
from router.datapath.sleeve import SleeveOverlay
from router.datapath.switch import OverlaySwitch
from router.mesh.connection_maker import (
    ConnectionMaker,
    OurConnection,
    Plan,
    TerminationCause,
    reported_connections,
)
from router.mesh.go_text import GoClock
from router.mesh.peer_address import PeerAddressError, no_such_host, resolve_peers

DIAL_TIMEOUT = 10.0
STREAM_LIMIT = 16 * 1024
"""What a mesh connection's reader holds before it stops reading the socket (twice this;
asyncio's default is 64 KiB): with a hundred connections, a busy agent buffered megabytes
it then kept as heap, where the kernel's socket buffers would have held them."""
VERSION = "2.8.1"
"""The Weave Net release whose protocol, API and outputs the agent keeps."""


def peer_identity(settings: Settings) -> LocalIdentity:
    return local_identity(settings.name, settings.nickname, "weave", settings.host_root,
                          live_host())


def default_overlay(identity: LocalIdentity, settings: Settings, log: Logger) -> Overlay:
    """The data path: sleeve (user-space UDP on the mesh port) behind the overlay switch,
    as the original offers it when it has no kernel datapath; fastdp joins it later."""
    return OverlaySwitch([("sleeve", SleeveOverlay(int(identity.name), log,
                                                   port=settings.port))], log)


def lookup_host(host: str) -> list[str]:
    """A host name's addresses, in the resolver's order (Go's ``net.LookupIP``).  Go takes
    only dotted quads as IPv4 literals; the C resolver would also read ``99999`` or
    ``0x7f.1`` as addresses (inet_aton's forms), which Go looks up as names and fails."""
    try:
        socket.inet_aton(host)
        ipaddress.IPv4Address(host)
    except OSError:
        pass  # not an inet_aton form: a name (or IPv6) for the resolver
    except ValueError:
        raise no_such_host(host) from None
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise no_such_host(host) from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class Agent:
    def __init__(self, settings: Settings, identity: LocalIdentity, log: Logger,
                 overlay: Overlay | None = None, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.identity = identity
        self.log = log
        self.rng = rng or random.Random()
        self.mesh = Mesh(MeshConfig(
            identity.name, identity.nickname, port=settings.port,
            password=settings.password_bytes(), conn_limit=settings.conn_limit,
            peer_discovery=not settings.no_discovery,
            trusted_subnets=settings.trusted_subnets,
            gossip_interval=settings.gossip_interval,
            incremental_topology=not settings.no_incremental_topology),
            overlay or default_overlay(identity, settings, log), log, self.rng,
            uid=identity.uid, short_id=identity.short_id)
        self.maker = ConnectionMaker(identity.name, jitter=self.rng.randrange,
                                     mesh_port=settings.port,
                                     discovery=not settings.no_discovery,
                                     conn_limit=settings.conn_limit)
        self.ipam = (Ipam(settings, self.mesh, log, self.rng,
                          targets=lambda: len(self.maker.targets(active_only=True)))
                     if settings.ipalloc_range is not None else None)
        self.started_ns = time.monotonic_ns()
        self._server: asyncio.Server | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_accept_ns = 0
        self.mesh.on_connection_change.append(self._connection_changed)
        self.mesh.on_routes_changed.append(self._topology_changed)

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        self.log.info(f"Command line options: {self._described_options()}")
        self.log.info(f"Communication between peers is "
                      f"{'encrypted' if self.mesh.config.password else 'unencrypted'}.")
        self.log.info(f"Our name is {self.mesh.name}({self.mesh.config.nickname})")
        await self.mesh.overlay.start()
        self._server = await asyncio.start_server(self._accept, host=None,
                                                  port=self.settings.port, limit=STREAM_LIMIT)
        self.mesh.start()
        if self.ipam is not None:
            self.ipam.start()
        self.log.info(f"Listening for mesh connections on port {self.settings.port}")
        await self.connect(self.settings.peers, replace=False)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.ipam is not None:
            await self.ipam.stop()
        await self.mesh.stop()
        self.log.info("weaver stopped")

    def _described_options(self) -> str:
        s = self.settings
        return (f"--port={s.port} --conn-limit={s.conn_limit} --nickname="
                f"{self.mesh.config.nickname} --name={self.mesh.name}"
                + (" --no-discovery" if s.no_discovery else "")
                + (f" {' '.join(s.peers)}" if s.peers else ""))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- the connection maker's plans -------------------------------------------------------
    def _now(self) -> int:
        return time.monotonic_ns()

    def _apply(self, plan: Plan) -> None:
        for dial in plan.dial:
            self._spawn(self._dial(dial.address, dial.accept_new_peer))
        for refusal in plan.refused:
            self.log.info(f"->[{refusal.address}] attempting connection failed: "
                          f"{refusal.error}")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if plan.next_check_at is not None:
            delay = max(0.0, (plan.next_check_at - self._now()) / 1e9)
            self._timer = asyncio.get_running_loop().call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._apply(self.maker.tick(self._now()))

    async def _dial(self, address: str, accept_new_peer: bool) -> None:
        host, _, port = address.rpartition(":")
        self.log.info(f"->[{address}] attempting connection")
        try:
            async with asyncio.timeout(DIAL_TIMEOUT):
                reader, writer = await asyncio.open_connection(host.strip("[]"), int(port),
                                                               limit=STREAM_LIMIT)
        except (OSError, TimeoutError, ValueError) as exc:
            error = describe_dial(address, exc)
            self.log.info(f"->[{address}] error during connection attempt: {error}")
            self._apply(self.maker.connection_aborted(address, error, self._now()))
            return
        self.mesh.serve(reader, writer, outbound=True, address=address,
                        accept_new_peer=accept_new_peer)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        host, port = str(peer[0]), int(peer[1])
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.log.info(f"->[{address}] connection accepted")
        # the original's token bucket: 20 at once, then one per 50 ms
        now = self._now()
        if self._next_accept_ns > now:
            await asyncio.sleep((self._next_accept_ns - now) / 1e9)
        self._next_accept_ns = max(now, self._next_accept_ns) + 50_000_000
        conn = self.mesh.serve(reader, writer, outbound=False, address=address)
        self._apply(self.maker.inbound_accepted(OurConnection(id(conn), address, False)))

    def _connection_changed(self, conn: MeshConnection, added: bool,
                            error: Exception | None = None) -> None:
        ours = OurConnection(id(conn), conn.address, conn.outbound, conn.remote)
        if added:
            self._apply(self.maker.connection_created(ours))
            return
        cause = (TerminationCause.NAME_COLLISION if isinstance(error, NameCollision)
                 else TerminationCause.CONNECT_TO_SELF if isinstance(error, ConnectToSelf)
                 else TerminationCause.OTHER)
        text = str(error) if error is not None else "closed"
        self._apply(self.maker.connection_terminated(ours, text, self._now(), cause))

    def _topology_changed(self) -> None:
        self._apply(self.maker.topology_changed(
            reported_connections(self.mesh.table, self.mesh.connections), self._now()))

    # ---- what the API asks -------------------------------------------------------------------
    async def connect(self, peers: Sequence[str], *, replace: bool) -> list[str]:
        """``POST /connect``: add (or with ``replace``, set) the direct peers; Go's error
        text for each refused one."""
        loop = asyncio.get_running_loop()
        direct, errors = await loop.run_in_executor(None, resolve_peers, list(peers),
                                                    lookup_host)
        self._apply(self.maker.initiate_connections(direct, replace, self._now()))
        return list(errors)

    def forget(self, peers: Sequence[str]) -> None:
        """``POST /forget``: drop the direct peers (their connections stay)."""
        self._apply(self.maker.forget_connections(peers, self._now()))

    def router_status(self) -> RouterStatus:
        clock = GoClock(time.time_ns(), self._now(), self.started_ns)
        return router_status(self.mesh, targets=self.maker.targets(),
                             target_states=self.maker.status_entries(clock),
                             termination_count=self.maker.termination_count)

    def report(self) -> Report:
        services = {} if self.ipam is None else {"IPAM": self.ipam.status()}
        return Report(True, VERSION, self.router_status(), services)

    def not_ready(self) -> str | None:
        """None when the agent is ready; else what it waits for (``/readyz``)."""
        return None if self.ipam is None else self.ipam.readiness()


def describe_dial(address: str, error: BaseException) -> str:
    """A failed dial in Go's words where they are known (``connect: connection refused``)."""
    if isinstance(error, TimeoutError):
        return f"dial tcp {address}: i/o timeout"
    if isinstance(error, ConnectionRefusedError):
        return f"dial tcp {address}: connect: connection refused"
    if isinstance(error, PeerAddressError | ValueError):
        return str(error)
    if isinstance(error, OSError) and error.strerror:
        return f"dial tcp {address}: connect: {error.strerror.lower()}"
    return str(error) or type(error).__name__


__all__ = ["VERSION", "Agent", "ConnectionClosed", "peer_identity"]
