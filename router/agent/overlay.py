"""The seam between a mesh connection and the data path that carries pods' frames to the
peer at its other end (the "overlay": sleeve over UDP, later fastdp over VXLAN).

As in the Go original (mesh's ``Overlay``): once the handshake is done, the connection asks
the overlay to prepare a per-connection forwarder, giving it what the handshake learned
(the remote peer, addresses, the connection UID that keys heartbeats, the session key when
the link is not trusted) and a way to send control messages over the TCP connection (tags
1-3 and 7).  The connection counts as *established* once the forwarder says its data path
works; the forwarder's failure ends the connection.  Control messages the peer sends come
back through :meth:`OverlayConnection.control_message`.

:class:`NullOverlay` carries nothing and is established at once (the mesh alone, as in
tests of the control plane).

Lifecycle: the agent builds its overlay, ``await overlay.start()`` (sockets are opened
there, so a port in use is reported at startup), then, per connection,
``prepare_connection`` → ``confirm`` → events → ``stop``; ``overlay.stop()`` at exit.
A forwarder reports failure by resolving ``failed`` with an :class:`OverlayError` naming
the cause (a result, not an exception, so nobody has to await it).

Establishment is a :class:`Latch`, not an :class:`asyncio.Event`: whoever watches it (the
overlay switch, then the mesh connection) runs when it is set, in the same step.  Through
events, each hop waited for the next turn of the event loop, four turns from the
forwarder's ``ConnectionEstablished`` to the mesh; on an agent that had just dialled a
hundred peers each turn ran every connection's pending work first, and a join waited
about a second for its connections to count as established.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

Watcher = Callable[[], None]


class OverlayError(Exception):
    """An overlay refused a connection, or a forwarder's data path failed."""


class Latch:
    """A flag that is set once, whose watchers run as it is set (in the caller's step).

    A watcher that raises is reported to the event loop's exception handler, and the
    others still run: the setter (a datagram handler, say) is not the watcher's caller
    in any sense that could handle the error.
    """

    def __init__(self) -> None:
        self._set = False
        self._watchers: list[Watcher] = []
        self._event: asyncio.Event | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            _run_watcher(watcher)
        if self._event is not None:
            self._event.set()

    def watch(self, watcher: Watcher) -> Callable[[], None]:
        """Run ``watcher`` when the latch is set (now, if it is); returns what stops the
        watch."""
        if self._set:
            _run_watcher(watcher)
            return _nothing
        self._watchers.append(watcher)

        def unwatch() -> None:
            if watcher in self._watchers:
                self._watchers.remove(watcher)
        return unwatch

    async def wait(self) -> None:
        if self._set:
            return
        if self._event is None:
            self._event = asyncio.Event()
        await self._event.wait()


def _run_watcher(watcher: Watcher) -> None:
    try:
        watcher()
    except Exception as exc:  # reported; the other watchers still run
        asyncio.get_running_loop().call_exception_handler(
            {"message": "an overlay establishment watcher failed", "exception": exc})


def _nothing() -> None:
    pass


@dataclass(frozen=True)
class OverlayConnectionParams:
    remote_name: int
    remote_nickname: str
    local_addr: tuple[str, int]
    remote_addr: tuple[str, int]
    outbound: bool
    conn_uid: int
    """Both ends' ConnIDs XORed: the same number at both ends."""
    session_key: bytes | None
    """The connection's session key when either end does not trust the other (its data
    path is then encrypted); None otherwise."""
    send_control: Callable[[int, bytes], None]
    """Send a control message (protocol tag, body) to the peer over the connection."""
    features: Mapping[str, str]
    """The peer's handshake features (``Overlays`` says which overlays it has)."""


class OverlayConnection(Protocol):
    established: Latch
    """Set once the data path to the peer works."""
    failed: asyncio.Future[Exception]
    """Resolved with the reason (an OverlayError) when the data path gives up; the
    connection then ends."""

    def confirm(self) -> None:
        """The connection is registered: the forwarder may start (heartbeats...)."""

    def control_message(self, tag: int, body: bytes) -> None:
        """A control message from the peer (tags 1-3 and 7)."""

    def attrs(self) -> dict[str, Any]:
        """For status: the overlay's name, MTU, whether it is encrypted..."""

    async def stop(self) -> None:
        """Stop sending and receiving for this connection (idempotent)."""


class Overlay(Protocol):
    async def start(self) -> None:
        """Open what the overlay needs (sockets...); once, before any connection.
        Raises OSError when that fails (e.g. the UDP port is taken)."""

    def add_features(self, features: dict[str, str]) -> None:
        """Add what the peer must know (e.g. ``Overlays``) to our handshake features."""

    async def prepare_connection(self, params: OverlayConnectionParams) -> OverlayConnection:
        """A forwarder for one connection; raises OverlayError to refuse the connection.
        The forwarder stays passive (sends nothing) until ``confirm``."""

    def diagnostics(self) -> dict[str, Any] | None:
        """``OverlayDiagnostics`` of ``/report``."""

    async def stop(self) -> None: ...


class NullConnection:
    """Carries nothing; established at once."""

    def __init__(self) -> None:
        self.established = Latch()
        self.established.set()
        self.failed: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

    def confirm(self) -> None:
        pass

    def control_message(self, tag: int, body: bytes) -> None:
        pass

    def attrs(self) -> dict[str, Any]:
        return {}

    async def stop(self) -> None:
        pass


class NullOverlay:
    async def start(self) -> None:
        pass

    def add_features(self, features: dict[str, str]) -> None:
        pass

    async def prepare_connection(self, params: OverlayConnectionParams) -> OverlayConnection:
        return NullConnection()

    def diagnostics(self) -> dict[str, Any] | None:
        return None

    async def stop(self) -> None:
        pass
