"""Peer addresses as the weaver's command line and ``POST /connect`` take them.

Background (mesh ``connection_maker.go`` ``InitiateConnections``, Go's ``net``): a peer
is written ``host[:port]``. Go splits it with ``net.SplitHostPort``; when that fails the
whole text is the host and the port is ``"0"``, Go's marker for "no port given" (so
``1.2.3.4:0`` and ``1.2.3.4:`` mean the same as ``1.2.3.4``). An empty host, or a port
with anything but Unicode letters and digits, is refused with ``invalid peer name "…",
should be host[:port]``. Otherwise Go resolves ``host + ":" + port`` with
``net.ResolveTCPAddr("tcp", …)``: the text is split again (IPv6 hosts therefore fail
with ``too many colons in address``: the brackets were taken off and not put back), the
port is looked up (digits, or a service name from Go's built-in table: ``http``…; out of
range gives ``address 99999: invalid port``, an unknown name ``lookup tcp/x: unknown
port``), then the host: an IP literal is taken as is, a name is looked up and its first
IPv4 address taken (the first of any kind if it has none, or the first non-IPv4 one when
the text held a ``[``). The resolved address is what the connection maker keeps; the
target it dials is that address with the mesh port filled in when none was given,
printed as Go's ``TCPAddr.String()`` (``[v6]:port`` for IPv6). Every refused peer adds
one error; the others are still taken (``POST /connect`` answers 400 with one line per
error and yet connects to the good peers).

Design: parsing is pure and exact (:func:`parse_peer`); name lookup is the caller's
(:data:`HostLookup`, called only for hosts that are not IP literals), so the runtime can
run it off the event loop. ``/etc/services`` is not read: service names beyond Go's
built-in table are refused as unknown ports.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from router.mesh.go_text import go_quote

MESH_PORT: Final = 6783
"""The default mesh port: TCP for the control plane, UDP for sleeve."""

_GO_TCP_SERVICES: Final = {
    "ftp": 21, "ftps": 990, "gopher": 70, "http": 80, "https": 443, "imap2": 143,
    "imap3": 220, "imaps": 993, "pop3": 110, "pop3s": 995, "smtp": 25,
    "submissions": 465, "ssh": 22, "telnet": 23,
}
_PORT_CUTOFF: Final = 1 << 30
_PORT_MAX: Final = (1 << 32) - 1


class PeerAddressError(ValueError):
    """A peer address Go refuses; ``str()`` is Go's error text."""


def _address_error(address: str, why: str) -> PeerAddressError:
    return PeerAddressError(f"address {address}: {why}")


def no_such_host(host: str) -> PeerAddressError:
    """The error Go's resolver gives for a name that does not resolve."""
    return PeerAddressError(f"lookup {host}: no such host")


def split_host_port(hostport: str) -> tuple[str, str]:
    """Go's ``net.SplitHostPort``: (host, port), brackets of ``[host]:port`` removed."""
    colon = hostport.rfind(":")
    if colon < 0:
        raise _address_error(hostport, "missing port in address")
    start, after_host = 0, 0
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise _address_error(hostport, "missing ']' in address")
        if end + 1 == len(hostport):
            raise _address_error(hostport, "missing port in address")
        if end + 1 != colon:
            why = "too many colons in address" if hostport[end + 1] == ":" \
                else "missing port in address"
            raise _address_error(hostport, why)
        host = hostport[1:end]
        start, after_host = 1, end + 1
    else:
        host = hostport[:colon]
        if ":" in host:
            raise _address_error(hostport, "too many colons in address")
    if "[" in hostport[start:]:
        raise _address_error(hostport, "unexpected '[' in address")
    if "]" in hostport[after_host:]:
        raise _address_error(hostport, "unexpected ']' in address")
    return host, hostport[colon + 1:]


def join_host_port(host: str, port: int | str) -> str:
    """Go's ``net.JoinHostPort``: brackets around a host that contains a colon."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_digits(service: str) -> int | None:
    """Go's ``parsePort``: the number (saturating), or None when it is not digits."""
    negative = service.startswith("-")
    digits = service[1:] if service.startswith(("+", "-")) else service
    value = 0
    for char in digits:
        if not "0" <= char <= "9":
            return None
        if value >= _PORT_CUTOFF:  # saturated: Go stops reading here
            value = _PORT_MAX
            break
        value = value * 10 + ord(char) - ord("0")
        if value > _PORT_MAX:
            value = _PORT_MAX
            break
    if not negative:
        return _PORT_CUTOFF - 1 if value >= _PORT_CUTOFF else value
    return -_PORT_CUTOFF if value > _PORT_CUTOFF else -value


def lookup_tcp_port(service: str) -> int:
    """Go's ``net.LookupPort("tcp", service)`` with the built-in service table."""
    port = _parse_digits(service) if service else 0
    if port is None:
        folded = service.lower() if service.isascii() else None
        port = _GO_TCP_SERVICES.get(folded) if folded is not None else None
        if port is None:
            raise PeerAddressError(f"lookup tcp/{service}: unknown port")
    if not 0 <= port <= 65535:
        raise _address_error(service, "invalid port")
    return port


def go_ip_string(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """Go's ``net.IP.String()``: IPv4 (also IPv4-mapped IPv6) dotted, IPv6 compressed."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _ip_literal(host: str) -> str | None:
    """The host as Go prints the IP it parses (``netip.ParseAddr``), or None."""
    try:
        return go_ip_string(ipaddress.ip_address(host))
    except ValueError:
        return None


def _is_go_alnum(text: str) -> bool:
    return all(unicodedata.category(c).startswith("L") or unicodedata.category(c) == "Nd"
               for c in text)


@dataclass(frozen=True, slots=True)
class PeerSpec:
    """A peer whose text passed Go's checks; the host may still need a lookup."""

    peer: str
    """The text as given: the key of the direct-peer list (``/status/targets``)."""
    host: str
    """The host as ``ResolveTCPAddr`` sees it (an IP literal or a name; empty is Go's nil IP)."""
    port: int
    """0 when no port was given (the mesh port is used)."""
    prefer_ipv6: bool = False
    """Go's ``forResolve``: the resolved text held a ``[``, so a name's first non-IPv4
    address is taken."""

    @property
    def ip_literal(self) -> str | None:
        return _ip_literal(self.host)


@dataclass(frozen=True, slots=True)
class DirectPeer:
    """A resolved peer: what the connection maker keeps for one direct target."""

    peer: str
    ip: str
    """Go's ``IP.String()`` of the resolved address; empty for Go's nil IP."""
    port: int
    """0 when no port was given."""

    def target_address(self, mesh_port: int = MESH_PORT) -> str:
        """The address dialled (Go's ``completeAddr``: ``TCPAddr.String()``)."""
        return join_host_port(self.ip, self.port or mesh_port)


HostLookup = Callable[[str], Sequence[str]]
"""Resolves a host name to its IP addresses in the resolver's order; raises
:class:`PeerAddressError` with Go's text (e.g. :func:`no_such_host`) on failure."""


def parse_peer(peer: str) -> PeerSpec:
    """Check ``peer`` as ``InitiateConnections`` does, up to the host lookup."""
    try:
        host, port_text = split_host_port(peer)
    except PeerAddressError:
        host, port_text = peer, "0"
    if not host or not _is_go_alnum(port_text):
        raise PeerAddressError(f"invalid peer name {go_quote(peer)}, should be host[:port]")
    joined = f"{host}:{port_text}"
    resolved_host, resolved_port = split_host_port(joined)
    return PeerSpec(peer, resolved_host, lookup_tcp_port(resolved_port), "[" in joined)


def resolve_peer(spec: PeerSpec, lookup: HostLookup) -> DirectPeer:
    """Resolve the host of ``spec``: a literal as is, a name through ``lookup``."""
    if not spec.host:
        return DirectPeer(spec.peer, "", spec.port)
    literal = spec.ip_literal
    if literal is not None:
        return DirectPeer(spec.peer, literal, spec.port)
    found = [ip for ip in (_ip_literal(text) for text in lookup(spec.host)) if ip is not None]
    if not found:
        raise no_such_host(spec.host)
    wanted = [ip for ip in found if (":" in ip) == spec.prefer_ipv6]
    return DirectPeer(spec.peer, (wanted or found)[0], spec.port)


def resolve_peers(peers: Iterable[str],
                  lookup: HostLookup) -> tuple[tuple[DirectPeer, ...], tuple[str, ...]]:
    """Every peer Go would take, and Go's error text for each refused one, in order."""
    taken: list[DirectPeer] = []
    errors: list[str] = []
    for peer in peers:
        try:
            taken.append(resolve_peer(parse_peer(peer), lookup))
        except PeerAddressError as error:
            errors.append(str(error))
    return tuple(taken), tuple(errors)
