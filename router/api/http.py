"""The agent's HTTP API for status, report, metrics and connections, answered as Go does.

Routes are registered on a :class:`common.service.http.HttpServer` given callables: one
that returns a fresh :class:`~router.api.model.Report` per request, and the runtime's
``connect`` and ``forget``.  The server calls them from its own threads, one per request:
``snapshot`` must return an immutable value without touching the event loop's state
(e.g. the latest snapshot the loop published), and ``connect``/``forget`` must hand the
work to the loop (``asyncio.run_coroutine_threadsafe``) and may wait for its answer.
What Go's weaver 2.8.1 answers, and so this:

* ``GET /status``, ``/status/peers``, ``/status/connections``, ``/status/targets``,
  ``/status/ipam``, ``/status/dns``: text/plain, 503 instead of 200 while the agent is not
  ready (with the same body), and ``500 error during template execution`` when the page
  cannot be made (``/status/dns`` without DNS).  An empty page has no Content-Type.
* ``GET /report`` with ``Accept: application/json`` (that exact value): the indented JSON.
  Otherwise ``?format=TEMPLATE`` (:func:`router.api.report.format_report`); its output's
  Content-Type is sniffed as Go's server sniffs (text, HTML...), none when empty.
* ``POST /connect`` (form ``peer=`` repeated, ``replace=true``): 200 with an empty body,
  or 400 with the runtime's errors one per line (``address 99999: invalid port``).
  ``POST /forget``: always 200.
* ``GET /metrics``: :func:`router.api.metrics.render_metrics`.
* A path nobody serves: ``404 page not found``; a served path with another method: 405
  with an empty body (gorilla/mux); errors carry ``X-Content-Type-Options: nosniff``.

:func:`api_server` makes a server with those 404/405 answers; :func:`register_api` puts
every route of the API address (``--http-addr``) on it, :func:`register_status_addr` the
read-only subset Go serves on ``--status-addr`` (status pages, report, metrics).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client.registry import CollectorRegistry

from common.service.http import JSON, TEXT, Handler, HttpServer, Request, Response
from router.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from router.api.metrics import render_metrics
from router.api.model import Report
from router.api.report import EXECUTION_FAILED, format_report, report_json
from router.api.status import (
    StatusSection,
    TemplateFailure,
    render_connections,
    render_peers,
    render_status,
    render_targets,
)
from router.api.status_services import STANDARD_SECTIONS, render_dns, render_ipam

Snapshot = Callable[[], Report]
Connect = Callable[[list[str], bool], list[str]]
"""``connect(addresses, replace)``: the errors, one text per bad address (Go's wording)."""
Forget = Callable[[list[str]], None]

NOSNIFF = {"X-Content-Type-Options": "nosniff"}
NOT_FOUND = Response(404, b"404 page not found\n", TEXT, NOSNIFF)
METHOD_NOT_ALLOWED = Response(405, b"", "")


def api_server(address: tuple[str, int], *, allow: Callable[[str], bool] | None = None,
               name: str = "weave-api") -> HttpServer:
    """An :class:`HttpServer` that answers unknown paths and methods as Go's weaver."""
    return HttpServer(address, allow=allow, name=name, not_found=NOT_FOUND,
                      method_not_allowed=METHOD_NOT_ALLOWED)


def go_error(text: str, status: int) -> Response:
    """``http.Error``: the text and a newline, text/plain, nosniff."""
    return Response(status, (text + "\n").encode(), TEXT, NOSNIFF)


_HTML_TAGS = (b"<!DOCTYPE HTML", b"<HTML", b"<HEAD", b"<SCRIPT", b"<IFRAME", b"<H1", b"<DIV",
              b"<FONT", b"<TABLE", b"<A", b"<STYLE", b"<TITLE", b"<B", b"<BODY", b"<BR", b"<P",
              b"<!--")
_PREFIXES = ((b"%PDF-", "application/pdf"), (b"%!PS-Adobe-", "application/postscript"),
             (b"\xfe\xff", "text/plain; charset=utf-16be"),
             (b"\xff\xfe", "text/plain; charset=utf-16le"),
             (b"\xef\xbb\xbf", "text/plain; charset=utf-8"),
             (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"),
             (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
             (b"\x1f\x8b\x08", "application/x-gzip"), (b"PK\x03\x04", "application/zip"))
_BINARY = frozenset([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)])


def sniff_content_type(body: bytes) -> str:
    """The Content-Type Go's server gives a body written without one
    (``http.DetectContentType``, for the signatures text can carry); "" when empty."""
    if not body:
        return ""
    head = body[:512]
    stripped = head.lstrip(b"\t\n\x0c\r ")
    for tag in _HTML_TAGS:
        rest = stripped[len(tag):len(tag) + 1]
        if stripped[:len(tag)].upper() == tag and rest in (b" ", b">"):
            return "text/html; charset=utf-8"
    if stripped.startswith(b"<?xml"):
        return "text/xml; charset=utf-8"
    for prefix, kind in _PREFIXES:
        if head.startswith(prefix):
            return kind
    if any(byte in _BINARY for byte in head):
        return "application/octet-stream"
    return "text/plain; charset=utf-8"


def _page(snapshot: Snapshot, render: Callable[[Report], str]) -> Handler:
    def serve(_: Request) -> Response:
        report = snapshot()
        status = 200 if report.ready else 503
        try:
            body = render(report).encode()
        except TemplateFailure:
            return go_error(EXECUTION_FAILED.rstrip("\n"), status if status != 200 else 500)
        return Response(status, body, TEXT if body else "")
    return serve


def _report(snapshot: Snapshot) -> Handler:
    def serve(request: Request) -> Response:
        if "application/json" in request.header("Accept"):
            return Response(200, report_json(snapshot()).encode(), JSON)
        answer = format_report(snapshot(), request.query.get("format", []))
        body = answer.body.encode()
        if answer.status != 200 or answer.body.endswith(EXECUTION_FAILED):
            return Response(answer.status, body, TEXT, NOSNIFF)
        return Response(200, body, sniff_content_type(body))
    return serve


def register_status(server: HttpServer, snapshot: Snapshot,
                    sections: Sequence[StatusSection] = STANDARD_SECTIONS) -> None:
    """``/status`` and its sub-pages, and ``/report``; ``sections`` are the services'
    parts of ``/status`` after the router's."""
    pages: dict[str, Callable[[Report], str]] = {
        "/status": lambda report: render_status(report, sections),
        "/status/targets": render_targets,
        "/status/connections": render_connections,
        "/status/peers": render_peers,
        "/status/dns": render_dns,
        "/status/ipam": render_ipam,
    }
    for path, render in pages.items():
        server.route("GET", path, _page(snapshot, render))
    server.route("GET", "/report", _report(snapshot))


def register_connections(server: HttpServer, connect: Connect, forget: Forget) -> None:
    """``POST /connect`` and ``POST /forget``."""
    def connect_handler(request: Request) -> Response:
        replace = (request.query.get("replace") or [""])[0] == "true"
        errors = connect(list(request.query.get("peer", [])), replace)
        return go_error("\n".join(errors), 400) if errors else Response(200, b"", "")

    def forget_handler(request: Request) -> Response:
        forget(list(request.query.get("peer", [])))
        return Response(200, b"", "")

    server.route("POST", "/connect", connect_handler)
    server.route("POST", "/forget", forget_handler)


def register_metrics(server: HttpServer, registry: CollectorRegistry) -> None:
    """``GET /metrics`` in Go's text format."""
    server.route("GET", "/metrics", lambda _: Response(200, render_metrics(registry),
                                                       METRICS_CONTENT_TYPE))


def register_api(server: HttpServer, snapshot: Snapshot, connect: Connect, forget: Forget,
                 registry: CollectorRegistry,
                 sections: Sequence[StatusSection] = STANDARD_SECTIONS) -> None:
    """The routes of the API address that these pages need (IPAM adds its own)."""
    register_status(server, snapshot, sections)
    register_connections(server, connect, forget)
    register_metrics(server, registry)


def register_status_addr(server: HttpServer, snapshot: Snapshot,
                         registry: CollectorRegistry,
                         sections: Sequence[StatusSection] = STANDARD_SECTIONS) -> None:
    """The read-only routes Go serves on ``--status-addr``: status, report, metrics."""
    register_status(server, snapshot, sections)
    register_metrics(server, registry)
