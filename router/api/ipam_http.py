"""IPAM's routes on the API address, with the original's paths, verbs, bodies and codes.

What Go's weaver 2.8.1 answers (``ipam/http.go``, ``prog/weaver/discovery.go``), and so this:

* ``POST /ip/{id}`` and ``POST /ip/{id}/{net}/{len}``: allocate in the default subnet or
  the given one; 200 ``a.b.c.d/len``.  ``PUT /ip/{id}/{ip}/{len}``: claim; 204.
  ``GET /ip/{id}[/{net}/{len}]``: the ID's addresses there, space-separated (empty body
  when none).  ``GET /ip``: ``{"owned":[{"containerid":…,"addrs":[…]}]}``.
  ``DELETE /ip/{id}`` frees all of an ID's addresses, ``DELETE /ip/{id}/{ip}`` one; 204.
* ``GET /ipinfo/defaultsubnet``, ``GET /ipinfo/tracker``; ``GET /ring`` (prime: answers
  once a ring exists); ``DELETE /peer`` (leave: our ranges go to an heir; 204) and
  ``DELETE /peer/{name or nickname}`` (rmpeer: ``N IPs taken over from X``).
* A request that cannot be done is 400 with the reason (``Unable to claim: …``,
  ``Delete: no addresses for …``), a cancelled one 200 ``cancelled``.  New: a request that
  waited its time out is 503 with what it waited for (the original waited forever).
* A path that matches no route is 404, a route asked with another method 405 (gorilla/mux).

The handlers run in the server's threads; :class:`IpamApi` is what they call, and its
implementation hands the work to the agent's loop and waits for the answer.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Protocol
from urllib.parse import unquote

from common.service.http import JSON, HttpServer, Request, Response
from router.api.http import METHOD_NOT_ALLOWED, NOT_FOUND, go_error, sniff_content_type
from router.ipam.address import parse_cidr as parse_cidr_text
from router.ipam.config import parse_subnet
from router.ipam.errors import Cancelled, IpamError, TimedOut


class IpamApi(Protocol):
    """What the routes ask of the allocator (called from the server's threads)."""

    @property
    def default_subnet(self) -> str: ...

    @property
    def tracker(self) -> str: ...

    def allocate(self, ident: str, subnet: ipaddress.IPv4Network | None) -> str:
        """An address for ``ident`` (its existing one if it has one there), as a CIDR."""
        ...

    def claim(self, ident: str, address: ipaddress.IPv4Interface,
              no_error_on_unknown: bool) -> None: ...

    def lookup(self, ident: str, subnet: ipaddress.IPv4Network | None) -> list[str]: ...

    def owned(self) -> dict[str, list[str]]: ...

    def free(self, ident: str, address: ipaddress.IPv4Address) -> None: ...

    def delete(self, ident: str) -> None: ...

    def prime(self) -> None: ...

    def leave(self) -> None: ...

    def rmpeer(self, peer: str) -> int:
        """How many addresses we took over from ``peer`` (a name or nickname)."""
        ...


class BadInput(ValueError):
    """A path element that is not what the route needs (Go's parse error text)."""


def parse_cidr(text: str, *, subnet: bool) -> ipaddress.IPv4Interface:
    """An address with its prefix length, or for ``subnet`` a subnet to allocate in."""
    try:
        if subnet:
            return ipaddress.IPv4Interface(parse_subnet(text))
        cidr = parse_cidr_text(text)
        return ipaddress.IPv4Interface((cidr.addr, cidr.prefix_len))
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def parse_ip(text: str) -> ipaddress.IPv4Address:
    """``address.ParseIP``: IPv4, or IPv6's IPv4-mapped form."""
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        raise BadInput(f"invalid IP Address: {text}") from None
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is None:
            raise BadInput(f"invalid IP Address: {text}")
        return parsed.ipv4_mapped
    return parsed


def _written(text: str) -> Response:
    """A body written with no Content-Type: Go's server sniffs one."""
    body = text.encode()
    return Response(200, body, sniff_content_type(body))


def _failed(error: IpamError, prefix: str = "") -> Response:
    if isinstance(error, Cancelled):
        return _written("cancelled")
    return go_error(prefix + str(error), 503 if isinstance(error, TimedOut) else 400)


Route = Callable[[IpamApi, Request, list[str]], Response]


def _allocate(api: IpamApi, _: Request, args: list[str]) -> Response:
    ident, *net = args
    subnet = parse_cidr("/".join(net), subnet=True).network if net else None
    try:
        return _written(api.allocate(ident, subnet))
    except IpamError as exc:
        return _failed(exc)


def _claim(api: IpamApi, request: Request, args: list[str]) -> Response:
    ident, ip, length = args
    address = parse_cidr(f"{ip}/{length}", subnet=False)
    try:
        api.claim(ident, address, request.arg("noErrorOnUnknown") == "true")
    except IpamError as exc:
        return _failed(exc, "Unable to claim: ")
    return Response(204, b"", "")


def _lookup(api: IpamApi, _: Request, args: list[str]) -> Response:
    ident, *net = args
    subnet = parse_cidr("/".join(net), subnet=True).network if net else None
    return _written(" ".join(api.lookup(ident, subnet)))


def _free(api: IpamApi, _: Request, args: list[str]) -> Response:
    ident, ip = args
    address = parse_ip(ip)
    try:
        api.free(ident, address)
    except IpamError as exc:
        return _failed(exc, "Unable to free: ")
    return Response(204, b"", "")


def _delete(api: IpamApi, _: Request, args: list[str]) -> Response:
    try:
        api.delete(args[0])
    except IpamError as exc:
        return _failed(exc)
    return Response(204, b"", "")


IP_ROUTES: dict[int, dict[str, Route]] = {
    1: {"POST": _allocate, "GET": _lookup, "DELETE": _delete},
    2: {"DELETE": _free},
    3: {"POST": _allocate, "PUT": _claim, "GET": _lookup},
}
"""The routes under ``/ip/``, by how many path elements follow it."""


def _ip_handler(api: IpamApi) -> Callable[[Request], Response]:
    def serve(request: Request) -> Response:
        args = [unquote(part) for part in request.path[len("/ip/"):].split("/")]
        routes = IP_ROUTES.get(len(args)) if all(args) else None
        if routes is None:
            return NOT_FOUND
        route = routes.get(request.method)
        if route is None:
            return METHOD_NOT_ALLOWED
        try:
            return route(api, request, args)
        except BadInput as exc:
            return go_error(str(exc), 400)
    return serve


def _owned(api: IpamApi) -> Response:
    owned = [{"containerid": ident, "addrs": addrs}
             for ident, addrs in sorted(api.owned().items())]
    body = json.dumps({"owned": owned or None}, separators=(",", ":")) + "\n"
    return Response(200, body.encode(), JSON)


def _rmpeer(api: IpamApi, request: Request) -> Response:
    peer = unquote(request.path[len("/peer/"):])
    if not peer or "/" in peer:
        return NOT_FOUND
    return _written(f"{api.rmpeer(peer)} IPs taken over from {peer}\n")


def _prime(api: IpamApi) -> Response:
    try:
        api.prime()
    except IpamError as exc:
        return _failed(exc)
    return Response(200, b"", "")


def _leave(api: IpamApi) -> Response:
    api.leave()
    return Response(204, b"", "")


def register_ipam(server: HttpServer, api: IpamApi) -> None:
    """Every IPAM route of the API address."""
    handler = _ip_handler(api)
    for method in ("GET", "POST", "PUT", "DELETE"):
        server.route(method, "/ip/", handler, prefix=True)
    server.route("GET", "/ip", lambda _: _owned(api))
    server.route("GET", "/ipinfo/defaultsubnet", lambda _: _written(api.default_subnet))
    server.route("GET", "/ipinfo/tracker", lambda _: _written(api.tracker + "\n"))
    server.route("GET", "/ring", lambda _: _prime(api))
    server.route("DELETE", "/peer", lambda _: _leave(api))
    server.route("DELETE", "/peer/", lambda request: _rmpeer(api, request), prefix=True)


__all__ = ["IP_ROUTES", "IpamApi", "parse_cidr", "parse_ip", "register_ipam"]
