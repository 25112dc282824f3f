"""The Go weaver's captured HTTP exchanges (tests/interop/data/go-http-*.json) as fixtures.

A captured ``/report`` body is the whole state Go rendered at that moment, so it is turned
back into a :class:`~router.api.model.Report` here; the tests then render from it and
compare with what Go answered, byte for byte.  Go fills several lists from maps, so two
requests a moment apart list the same peers, connections and targets in different orders:
:func:`ordered_like` puts a snapshot in the order a captured page shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

from router.api.model import (
    BroadcastRoute,
    ConnectionStatus,
    LocalConnection,
    PeerStatus,
    Report,
    RouterStatus,
    UnicastRoute,
    VersionCheck,
)

DATA = Path(__file__).resolve().parents[2] / "interop" / "data"
SCENARIOS = ("plain", "password")
GO_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "api_go_fixtures.json"


@cache
def go_fixtures() -> dict[str, Any]:
    """What Go's template, JSON and number formatting gave (fixtures/gen/statusgen)."""
    data: dict[str, Any] = json.loads(GO_FIXTURES.read_text())
    return data


@dataclass(frozen=True)
class Exchange:
    scenario: str
    phase: str
    node: int
    method: str
    path: str
    form: list[list[str]] | None
    request_headers: dict[str, str] | None
    status: int
    content_type: str | None
    body: str
    body_filter: str | None = None
    """Set when only part of the body was kept (``/metrics``: the ``weave_`` lines)."""

    @property
    def key(self) -> str:
        return f"{self.scenario}/{self.phase}/node{self.node}/{self.method} {self.path}"


@cache
def exchanges(scenario: str) -> tuple[Exchange, ...]:
    data = json.loads((DATA / f"go-http-{scenario}.json").read_text())
    return tuple(Exchange(scenario=scenario, **e) for e in data["exchanges"])


def all_exchanges() -> list[Exchange]:
    return [e for s in SCENARIOS for e in exchanges(s)]


def json_reports() -> list[Exchange]:
    return [e for e in all_exchanges() if e.path == "/report" and e.status == 200
            and (e.request_headers or {}).get("Accept") == "application/json"]


def report_for(scenario: str, phase: str, node: int = 0) -> Report:
    """The Report of the captured ``/report`` of that phase."""
    for e in json_reports():
        if (e.scenario, e.phase, e.node) == (scenario, phase, node):
            return parse_report(e.body)
    raise LookupError(f"no /report captured in {scenario}/{phase} on node{node}")


def _peer(p: dict[str, Any]) -> PeerStatus:
    return PeerStatus(p["Name"], p["NickName"], p["UID"], p["ShortID"], p["Version"],
                      tuple(ConnectionStatus(c["Name"], c["NickName"], c["Address"],
                                             c["Outbound"], c["Established"])
                            for c in p["Connections"] or ()))


def parse_report(body: str) -> Report:
    """A Go ``/report`` JSON back into the model."""
    top = json.loads(body)
    r = top["Router"]
    mesh_keys = ("Protocol", "ProtocolMinVersion", "ProtocolMaxVersion", "Encryption",
                 "PeerDiscovery", "Name", "NickName", "Port", "Peers", "UnicastRoutes",
                 "BroadcastRoutes", "Connections", "TerminationCount", "Targets",
                 "OverlayDiagnostics", "TrustedSubnets")
    router = RouterStatus(
        protocol=r["Protocol"], protocol_min_version=r["ProtocolMinVersion"],
        protocol_max_version=r["ProtocolMaxVersion"], encryption=r["Encryption"],
        peer_discovery=r["PeerDiscovery"], name=r["Name"], nickname=r["NickName"],
        port=r["Port"], peers=tuple(_peer(p) for p in r["Peers"] or ()),
        unicast_routes=tuple(UnicastRoute(u["Dest"], u["Via"]) for u in r["UnicastRoutes"] or ()),
        broadcast_routes=tuple(BroadcastRoute(b["Source"], tuple(b["Via"] or ()))
                               for b in r["BroadcastRoutes"] or ()),
        connections=tuple(LocalConnection(c["Address"], c["Outbound"], c["State"], c["Info"],
                                          c["Attrs"]) for c in r["Connections"] or ()),
        termination_count=r["TerminationCount"], targets=tuple(r["Targets"] or ()),
        overlay_diagnostics=r["OverlayDiagnostics"],
        trusted_subnets=tuple(r["TrustedSubnets"]),
        extra={k: v for k, v in r.items() if k not in mesh_keys})
    check = top["VersionCheck"]
    assert check["NextCheckAt"] == "0001-01-01T00:00:00Z", "captures have the check disabled"
    services = {k: top[k] for k in ("IPAM", "DNS", "Proxy", "Plugin") if k in top}
    return Report(top["Ready"], top["Version"], router, services,
                  VersionCheck(check["Enabled"], check["Success"], check["NewVersion"]))


def ordered_like(report: Report, *, peers: list[str] | None = None,
                 peer_connections: dict[str, list[str]] | None = None,
                 connections: list[str] | None = None,
                 targets: list[str] | None = None) -> Report:
    """The same snapshot with its map-ordered lists in the given orders (peer names,
    connection addresses per peer, our connections' addresses, targets)."""
    router = report.router
    peer_list = list(router.peers)
    if peers is not None:
        peer_list = [next(p for p in peer_list if p.name == n) for n in peers]
    if peer_connections is not None:
        peer_list = [replace(p, connections=tuple(
            next(c for c in p.connections if c.address == a)
            for a in peer_connections[p.name])) for p in peer_list]
    conns = list(router.connections)
    if connections is not None:
        conns = [next(c for c in conns if c.address == a) for a in connections]
    return replace(report, router=replace(
        router, peers=tuple(peer_list), connections=tuple(conns),
        targets=tuple(targets) if targets is not None else router.targets))


def consistent_with_report(scenario: str) -> list[tuple[Exchange, Report]]:
    """The exchanges taken while the state was that of their phase's ``/report``: those
    of the phase before its first request that changes something (a POST, PUT or DELETE),
    paired with that report."""
    reports = {(e.phase, e.node): parse_report(e.body) for e in json_reports()
               if e.scenario == scenario}
    pairs: list[tuple[Exchange, Report]] = []
    changed: set[str] = set()
    for e in exchanges(scenario):
        if e.method != "GET":
            changed.add(e.phase)
        elif e.phase not in changed and (e.phase, e.node) in reports:
            pairs.append((e, reports[(e.phase, e.node)]))
    return pairs


def ordered_like_page(report: Report, path: str, body: str) -> Report:
    """The report with its lists in the order a captured page shows them."""
    lines = body.splitlines()
    if path == "/status/peers":
        order: dict[str, list[str]] = {}
        current = ""
        for line in lines:
            if line.startswith(" "):
                order[current].append(line.split()[1])
            else:
                current = line.split("(")[0]
                order[current] = []
        return ordered_like(report, peers=list(order), peer_connections=order)
    if path == "/status/connections":
        return ordered_like(report, connections=[line.split()[1] for line in lines])
    if path == "/status/targets":
        return ordered_like(report, targets=lines)
    if path == "/status/ipam" and "IPAM" in report.services:
        owners = [line.split("(")[0] for line in lines]
        ipam = dict(report.services["IPAM"])
        entries = ipam.get("Entries") or []
        ipam["Entries"] = sorted(entries, key=lambda e: owners.index(e["Peer"])
                                 if e["Peer"] in owners else len(owners))
        return replace(report, services={**report.services, "IPAM": ipam})
    return report


def ours_differs(exchange: Exchange, body: str) -> bool:
    """Where we answer differently from the capture on purpose (issue 16): before a ring
    exists, Go's ``/status/ipam`` is empty; ours says what IPAM waits for (``idle``,
    ``priming``, ``awaiting consensus (quorum: Q, known: K)``)."""
    waiting = body.rstrip("\n")
    return (exchange.path == "/status/ipam" and exchange.status == 200
            and exchange.body == "" and body.endswith("\n") and body.count("\n") == 1
            and (waiting in ("idle", "priming")
                 or waiting.startswith("awaiting consensus (quorum: ")))
