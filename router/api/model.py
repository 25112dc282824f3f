"""What the agent reports about its mesh, as one immutable snapshot (pure values).

The fields and their names are the Go original's (``mesh.Status`` and weave's router
status), so ``/report`` keeps the JSON shape that existing scripts and dashboards read, and
the ``/status`` pages render from the same values.  The runtime fills a snapshot under its
own control (one event loop: no locking); renderers (:mod:`router.api.status`) only read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ConnectionStatus:
    """One connection of a peer, as the peer reports it (``Peers[].Connections[]``)."""

    name: str
    nickname: str
    address: str
    outbound: bool
    established: bool


@dataclass(frozen=True)
class PeerStatus:
    """One peer of the mesh as the topology knows it."""

    name: str
    nickname: str
    uid: int
    short_id: int
    version: int
    connections: tuple[ConnectionStatus, ...] = ()


@dataclass(frozen=True)
class UnicastRoute:
    dest: str
    via: str
    """"00:00:00:00:00:00" (the unknown name) for ourselves, as Go prints it."""


@dataclass(frozen=True)
class BroadcastRoute:
    source: str
    via: tuple[str, ...]


@dataclass(frozen=True)
class LocalConnection:
    """A connection of ours, or a target we are dialling (``Connections[]``).

    ``state``: established, pending (handshake done, data path not yet), connecting,
    retrying, failed, waiting.  ``info``: Go's ``"%-11v %-6v %v"`` text (encryption when
    a password is set, the overlay's name, the remote peer) or the target's error and
    retry time.  ``attrs``: the overlay's attributes (name, mtu, encrypted...)."""

    address: str
    outbound: bool
    state: str
    info: str
    attrs: dict[str, Any] | None = None


@dataclass(frozen=True)
class RouterStatus:
    """``mesh.Status`` (the ``Router`` part of ``/report``)."""

    protocol: str
    protocol_min_version: int
    protocol_max_version: int
    encryption: bool
    peer_discovery: bool
    name: str
    nickname: str
    port: int
    peers: tuple[PeerStatus, ...]
    unicast_routes: tuple[UnicastRoute, ...]
    broadcast_routes: tuple[BroadcastRoute, ...]
    connections: tuple[LocalConnection, ...]
    termination_count: int
    targets: tuple[str, ...]
    overlay_diagnostics: dict[str, Any] | None
    trusted_subnets: tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict)
    """Fields the data path adds to the ``Router`` object (``Interface``,
    ``CaptureStats``, ``MACs``...), already in their JSON form (``MACs[].LastSeen`` as
    RFC 3339 text).  Absent ones show as Go's zero values (``""``, ``null``)."""


@dataclass(frozen=True)
class VersionCheck:
    """Go's ``VersionCheck`` (the checkpoint call-out).  The agent does not call out, so
    the default (disabled) is what it reports; the fields are kept for the JSON shape."""

    enabled: bool = False
    success: bool = False
    new_version: str = ""
    next_check_at: datetime | None = None
    """None is Go's zero time (``0001-01-01T00:00:00Z``)."""


@dataclass(frozen=True)
class Report:
    """``/report``: readiness, version, the router's status and the other services'
    parts (``IPAM`` once the IPAM is in; each part already in its JSON form)."""

    ready: bool
    version: str
    router: RouterStatus
    services: dict[str, Any] = field(default_factory=dict)
    """``IPAM``, ``DNS``, ``Proxy``, ``Plugin``: each present part in its JSON form, in the
    order Go prints it (struct fields in their order; see :mod:`router.api.report` for the
    shapes it knows).  A missing part is left out of ``/report`` as Go's ``omitempty``."""
    version_check: VersionCheck = field(default_factory=VersionCheck)
