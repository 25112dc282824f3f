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
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class OverlayError(Exception):
    """An overlay refused a connection, or a forwarder's data path failed."""


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
    established: asyncio.Event
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
        self.established = asyncio.Event()
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
