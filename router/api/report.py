"""The report as Go's ``WeaveStatus`` value: what ``/report`` and its templates read.

Go builds ``/report`` from ``WeaveStatus{Ready, Version, VersionCheck, Router, IPAM, DNS,
Proxy, Plugin}`` (the last five pointers, left out of the JSON when nil).  ``Router`` is
weave's ``NetworkRouterStatus``: mesh's ``Status`` embedded (its fields promoted, so they
sit at the same level in JSON) followed by ``Interface``, ``CaptureStats`` and ``MACs``.
Which lists Go leaves nil when empty (JSON ``null``) follows how Go builds each one: the
peers' and our connections, the routes, a broadcast route's hops and the targets are
appended to nil slices; ``TrustedSubnets`` starts as an empty slice (``[]``).

:func:`weave_status` turns a :class:`~router.api.model.Report` into that tree of
:mod:`router.api.govalue` values; the services' parts arrive in JSON form and are given
their Go types from the shapes below (IPAM's ``Status``, DNS's), any other part is taken
as an ``interface{}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from router.api.gojson import marshal
from router.api.gotemplate import (
    Template,
    TemplateExecError,
    TemplateParseError,
    UnsupportedTemplate,
)
from router.api.govalue import (
    GoField,
    GoMap,
    GoNil,
    GoSlice,
    GoStruct,
    GoTime,
    GoValue,
    Shape,
    from_json,
)
from router.api.model import (
    LocalConnection,
    PeerStatus,
    Report,
    RouterStatus,
    VersionCheck,
)

STRING, INT, BOOL = Shape("string", "string"), Shape("int", "int"), Shape("bool", "bool")


def _struct(name: str, *fields: tuple[str, Shape], stringer: str | None = None) -> Shape:
    return Shape("struct", name, fields=fields, stringer=stringer)


def _slice(elem: Shape) -> Shape:
    return Shape("slice", "[]" + elem.name, elem=elem)


def _ptr(elem: Shape) -> Shape:
    return Shape("ptr", "*" + elem.name, elem=elem)


PAXOS_STATUS = _struct("paxos.Status", ("Elector", BOOL), ("KnownNodes", INT), ("Quorum", INT))
CIDR = _struct("address.CIDR", ("Addr", STRING), ("PrefixLen", INT),
               stringer="{Addr}/{PrefixLen}")
IPAM_STATUS = _struct(
    "ipam.Status",
    ("Paxos", _ptr(PAXOS_STATUS)), ("Range", STRING), ("RangeNumIPs", INT),
    ("ActiveIPs", INT), ("DefaultSubnet", STRING),
    ("Entries", _slice(_struct("ipam.EntryStatus", ("Token", STRING), ("Size", INT),
                               ("Peer", STRING), ("Nickname", STRING),
                               ("IsKnownPeer", BOOL), ("Version", INT)))),
    ("PendingClaims", _slice(_struct("ipam.ClaimStatus", ("Ident", STRING), ("CIDR", CIDR)))),
    ("PendingAllocates", _slice(STRING)))
DNS_STATUS = _struct(
    "nameserver.Status",
    ("Domain", STRING), ("Upstream", _slice(STRING)), ("Address", STRING), ("TTL", INT),
    ("Entries", _slice(_struct("nameserver.EntryStatus", ("Hostname", STRING),
                               ("Origin", STRING), ("ContainerID", STRING),
                               ("Address", STRING), ("Version", INT), ("Tombstone", INT)))))
SERVICE_SHAPES: dict[str, Shape] = {
    "IPAM": _ptr(IPAM_STATUS), "DNS": _ptr(DNS_STATUS),
    "Proxy": _ptr(Shape("any", "proxy.Status")), "Plugin": _ptr(Shape("any", "plugin.Status")),
}
"""The services in ``WeaveStatus`` order, with their Go types."""

ROUTER_EXTRAS: tuple[tuple[str, Shape], ...] = (
    ("Interface", STRING),
    ("CaptureStats", Shape("map", "map[string]int", elem=INT)),
    ("MACs", _slice(_struct("router.MACStatus", ("Mac", STRING), ("Name", STRING),
                            ("NickName", STRING), ("LastSeen", Shape("time", "time.Time"))))),
)
"""``NetworkRouterStatus``'s own fields, after the embedded ``mesh.Status``."""

ROUTER_OPAQUE = ("{{.Router}} would print the address of the *mesh.Status it embeds; "
                 "print its fields, or use {{json .Router}}")


def _strings(items: tuple[str, ...], *, nil_when_empty: bool = True) -> GoSlice:
    return GoSlice(tuple(items), nil=nil_when_empty and not items, type_name="[]string")


def _structs(name: str, items: list[GoStruct]) -> GoSlice:
    return GoSlice(tuple(items), nil=not items, type_name="[]" + name)


def _peer(peer: PeerStatus) -> GoStruct:
    connections = [GoStruct("mesh.connectionStatus", (
        GoField("Name", c.name), GoField("NickName", c.nickname), GoField("Address", c.address),
        GoField("Outbound", c.outbound), GoField("Established", c.established)))
        for c in peer.connections]
    return GoStruct("mesh.PeerStatus", (
        GoField("Name", peer.name), GoField("NickName", peer.nickname), GoField("UID", peer.uid),
        GoField("ShortID", peer.short_id), GoField("Version", peer.version),
        GoField("Connections", _structs("mesh.connectionStatus", connections))))


def _attrs(attrs: dict[str, Any] | None) -> GoValue:
    if attrs is None:
        return GoMap(nil=True)
    return from_json(Shape("map", "map[string]interface {}", elem=Shape("any")), attrs)


def _local_connection(conn: LocalConnection) -> GoStruct:
    return GoStruct("mesh.LocalConnectionStatus", (
        GoField("Address", conn.address), GoField("Outbound", conn.outbound),
        GoField("State", conn.state), GoField("Info", conn.info),
        GoField("Attrs", _attrs(conn.attrs))))


def router_fields(status: RouterStatus) -> tuple[GoField, ...]:
    """The fields of ``mesh.Status``, in its order."""
    unicast = [GoStruct("mesh.unicastRouteStatus", (GoField("Dest", r.dest), GoField("Via", r.via)))
               for r in status.unicast_routes]
    broadcast = [GoStruct("mesh.broadcastRouteStatus", (GoField("Source", r.source),
                                                        GoField("Via", _strings(r.via))))
                 for r in status.broadcast_routes]
    return (
        GoField("Protocol", status.protocol),
        GoField("ProtocolMinVersion", status.protocol_min_version),
        GoField("ProtocolMaxVersion", status.protocol_max_version),
        GoField("Encryption", status.encryption),
        GoField("PeerDiscovery", status.peer_discovery),
        GoField("Name", status.name), GoField("NickName", status.nickname),
        GoField("Port", status.port),
        GoField("Peers", _structs("mesh.PeerStatus", [_peer(p) for p in status.peers])),
        GoField("UnicastRoutes", _structs("mesh.unicastRouteStatus", unicast)),
        GoField("BroadcastRoutes", _structs("mesh.broadcastRouteStatus", broadcast)),
        GoField("Connections", _structs("mesh.LocalConnectionStatus",
                                        [_local_connection(c) for c in status.connections])),
        GoField("TerminationCount", status.termination_count),
        GoField("Targets", _strings(status.targets)),
        GoField("OverlayDiagnostics", from_json(Shape("any"), status.overlay_diagnostics)),
        GoField("TrustedSubnets", _strings(status.trusted_subnets, nil_when_empty=False)),
    )


def network_router_status(status: RouterStatus) -> GoStruct:
    """``*NetworkRouterStatus``: mesh's fields, then the data path's (``extra``)."""
    unknown = set(status.extra) - {name for name, _ in ROUTER_EXTRAS}
    if unknown:
        raise ValueError(f"Router extra fields Go does not have: {sorted(unknown)}")
    extras = tuple(GoField(name, from_json(shape, status.extra.get(name), f"Router.{name}")
                           if name in status.extra else from_json(shape, _absent(shape)))
                   for name, shape in ROUTER_EXTRAS)
    return GoStruct("router.NetworkRouterStatus", router_fields(status) + extras,
                    pointer=True, opaque=ROUTER_OPAQUE)


def _absent(shape: Shape) -> object:
    return "" if shape.kind == "string" else None


def version_check_text(check: VersionCheck) -> str:
    """What ``VersionCheck.String()`` says (the ``Version:`` line of ``/status``)."""
    when = check.next_check_at.strftime("%Y/%m/%d %H:%M:%S") if check.next_check_at else \
        "0001/01/01 00:00:00"
    if not check.enabled:
        return "version check update disabled"
    if not check.success:
        return f"failed to check latest version - see logs; next check at {when}"
    if check.new_version:
        return f"version {check.new_version} available - please upgrade!"
    return f"up to date; next check at {when}"


def _version_check(check: VersionCheck) -> GoStruct:
    at = check.next_check_at
    when = GoTime.zero() if at is None else GoTime(at.replace(microsecond=0),
                                                   at.microsecond * 1000)
    return GoStruct("main.VersionCheck", (
        GoField("Enabled", check.enabled), GoField("Success", check.success),
        GoField("NewVersion", check.new_version), GoField("NextCheckAt", when)),
        pointer=True, stringer=version_check_text(check), stringer_on_pointer=True)


def weave_status(report: Report) -> GoStruct:
    """``WeaveStatus`` for ``report``."""
    unknown = set(report.services) - set(SERVICE_SHAPES)
    if unknown:
        raise ValueError(f"services Go's report does not have: {sorted(unknown)}")
    services = tuple(
        GoField(name, from_json(shape, report.services[name], name)
                if name in report.services else GoNil(shape.name), omitempty=True)
        for name, shape in SERVICE_SHAPES.items())
    return GoStruct("main.WeaveStatus", (
        GoField("Ready", report.ready), GoField("Version", report.version),
        GoField("VersionCheck", _version_check(report.version_check), omitempty=True),
        GoField("Router", network_router_status(report.router), omitempty=True),
        *services))


def report_json(report: Report) -> str:
    """``/report`` with ``Accept: application/json``: indented by four spaces, no
    trailing newline."""
    return marshal(weave_status(report), "    ")


MUST_SUPPLY_FORMAT = "error: must supply one format parameter\n"
EXECUTION_FAILED = "error during template execution\n"


@dataclass(frozen=True)
class FormatAnswer:
    status: int
    body: str


def format_report(report: Report, formats: Sequence[str]) -> FormatAnswer:
    """``/report?format=TEMPLATE`` as Go answers it: 400 without exactly one ``format``
    or with a template Go cannot parse (Go's message); on a failure while executing,
    what was written so far followed by ``error during template execution`` (500 when
    nothing was written, else 200: Go had already sent its header).  A template this
    agent does not support gets 400 naming the construct."""
    if len(formats) != 1:
        return FormatAnswer(400, MUST_SUPPLY_FORMAT)
    try:
        template = Template.parse(formats[0])
        return FormatAnswer(200, template.execute(weave_status(report)))
    except TemplateParseError as exc:
        return FormatAnswer(400, f"{exc}\n")
    except UnsupportedTemplate as exc:
        return FormatAnswer(400, f"unsupported in weaver's report templates: {exc}\n")
    except RecursionError:  # Go allows 10000 levels of parentheses; Python's stack fewer
        return FormatAnswer(400, "unsupported in weaver's report templates: "
                                 "expressions nested this deep\n")
    except TemplateExecError as exc:
        if not exc.partial:
            return FormatAnswer(500, EXECUTION_FAILED)
        return FormatAnswer(200, exc.partial + EXECUTION_FAILED)
