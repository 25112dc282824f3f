"""The mesh's state as the status model (:mod:`router.api.model`) has it, taken in the
agent's loop (so it is one consistent moment)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from router.agent.connection import MeshConnection
from router.agent.mesh import Mesh
from router.api.model import (
    BroadcastRoute,
    ConnectionStatus,
    LocalConnection,
    PeerStatus,
    RouterStatus,
    UnicastRoute,
)
from router.mesh.protocol import PROTOCOL_MAX_VERSION, PROTOCOL_MIN_VERSION


def peers(mesh: Mesh) -> tuple[PeerStatus, ...]:
    nicknames = {s.name: s.nickname for s in mesh.table.summaries()}
    return tuple(
        PeerStatus(str(s.name), s.nickname, s.uid, s.short_id, s.version, tuple(
            ConnectionStatus(str(c.remote), nicknames.get(c.remote, ""), c.remote_tcp_addr,
                             c.outbound, c.established) for c in s.connections))
        for s in mesh.table.summaries())


def local_connection(mesh: Mesh, conn: MeshConnection) -> LocalConnection:
    """One of our connections as Go's status shows it: the overlay's name and the remote,
    preceded by whether its data is encrypted when a password is set."""
    attrs: dict[str, Any] | None = conn.overlay.attrs() if conn.overlay is not None else None
    name = (attrs or {}).get("name", "none")
    info = f"{name!s:<6} {conn.remote}({conn.remote_nickname})"
    if mesh.config.password is not None:
        encrypted = conn.untrusted()
        info = f"{'encrypted' if encrypted else 'unencrypted':<11} {info}"
        if encrypted and attrs is not None:
            attrs = {**attrs, "encrypted": True}
    return LocalConnection(conn.address, conn.outbound,
                           "established" if conn.established else "pending", info,
                           attrs or None)


def router_status(mesh: Mesh, *, targets: Sequence[str] = (),
                  target_states: Sequence[LocalConnection] = (),
                  termination_count: int = 0, port: int | None = None) -> RouterStatus:
    routes = mesh.routes
    return RouterStatus(
        protocol="weave", protocol_min_version=PROTOCOL_MIN_VERSION,
        protocol_max_version=PROTOCOL_MAX_VERSION,
        encryption=mesh.config.password is not None,
        peer_discovery=mesh.config.peer_discovery, name=str(mesh.name),
        nickname=mesh.config.nickname, port=mesh.config.port if port is None else port,
        peers=peers(mesh),
        unicast_routes=tuple(UnicastRoute(str(dest), str(via))
                             for dest, via in routes.unicast_table.items()),
        broadcast_routes=tuple(BroadcastRoute(str(source), tuple(str(h) for h in hops))
                               for source, hops in routes.computed_broadcasts().items()),
        connections=(*(local_connection(mesh, c) for c in mesh.connections.values()),
                     *target_states),
        termination_count=termination_count, targets=tuple(targets),
        overlay_diagnostics=mesh.overlay.diagnostics(),
        trusted_subnets=tuple(str(s) for s in mesh.config.trusted_subnets))
