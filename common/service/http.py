"""One small HTTP server where each component registers its routes.

npc serves ``/metrics``, ``/healthz``, ``/readyz`` and ``/status`` on its metrics address;
the agent serves its API (``/status``, ``/report``, ``/connect``...) on 127.0.0.1:6784 and
its metrics on 6782.  Each is an :class:`HttpServer` with the handlers the components
registered: a handler takes the :class:`Request` and returns a :class:`Response`; it runs
in the server's thread for that connection, so one that waits (``/status?wait=``) holds
no one else up.  An exception in a handler is answered with 500 and its one-line text
(the process goes on); ``allow`` refuses clients by address (403) before any handler
runs, e.g. everything but loopback.
"""

from __future__ import annotations

import contextlib
import ipaddress
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    """The path without the query; a prefix route's handler sees the whole path."""
    query: dict[str, list[str]]
    body: bytes
    client: str
    """The client's address."""
    raw_headers: Message | None = None
    """The headers as received; read through :meth:`header` (no dictionary is built
    for a request whose handler reads none: npc answers ``/status?wait`` per pod event,
    and every microsecond of that thread's work is on the event's latency)."""

    def header(self, name: str) -> list[str]:
        """Every value of a request header (case-insensitive name)."""
        if self.raw_headers is None:
            return []
        return self.raw_headers.get_all(name) or []

    @property
    def headers(self) -> dict[str, list[str]]:
        """Every request header by lower-case name (a name may repeat)."""
        found: dict[str, list[str]] = {}
        for key, value in (self.raw_headers or Message()).items():
            found.setdefault(key.lower(), []).append(value)
        return found

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The last value of a query (or form) parameter."""
        values = self.query.get(name)
        return values[-1] if values else default


@dataclass(frozen=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = TEXT
    """Empty: no Content-Type header (as Go's server sends an empty body)."""
    headers: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def text(body: str, status: int = 200) -> Response:
        return Response(status, body.encode(), TEXT)


Handler = Callable[[Request], Response]


class _Server(ThreadingHTTPServer):
    request_queue_size = 128
    """The listen backlog: connections the kernel completes before they are accepted.
    socketserver's default of 5 overflowed with eight clients at once (as pods starting
    together call the CNI plugin): the kernel dropped the extra SYNs and those clients
    waited the one-second SYN retransmission (Go's server listens with the system's
    maximum)."""
    daemon_threads = True


class HttpServer:
    """Serves registered routes in daemon threads.  Routes are exact paths, or prefixes
    (``"/ip/"``: every path under it); the longest matching prefix wins."""

    def __init__(self, address: tuple[str, int], *,
                 allow: Callable[[str], bool] | None = None, name: str = "http",
                 not_found: Response | None = None,
                 method_not_allowed: Response | None = None) -> None:
        """``not_found``/``method_not_allowed``: the answers for a path nobody serves and
        for a served path asked with another method (default: short text, 404/405)."""
        self._routes: dict[tuple[str, str], Handler] = {}
        self._prefixes: list[tuple[str, str, Handler]] = []
        self._not_found = not_found or Response.text("not found\n", 404)
        self._method_not_allowed = method_not_allowed or Response.text(
            "method not allowed\n", 405)
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                outer._dispatch(self, allow)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

            def log_message(self, format: str, *args: object) -> None:
                return  # probes every few seconds would flood the log

        self.server = _Server(address, _Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name=name,
                                       daemon=True)

    def route(self, method: str, path: str, handler: Handler, *, prefix: bool = False) -> None:
        """Serve ``method`` requests for ``path`` (with ``prefix``: for every path that
        starts with it) by ``handler``."""
        if prefix:
            self._prefixes.append((method, path, handler))
            self._prefixes.sort(key=lambda r: -len(r[1]))
        else:
            self._routes[(method, path)] = handler

    def _find(self, method: str, path: str) -> tuple[Handler | None, bool]:
        """(handler, whether the path is served by some other method)."""
        handler = self._routes.get((method, path))
        if handler is not None:
            return handler, False
        for m, prefix, h in self._prefixes:
            if path.startswith(prefix) and m == method:
                return h, False
        known = any(p == path for _, p in self._routes) or any(
            path.startswith(p) for _, p, _ in self._prefixes)
        return None, known

    def _dispatch(self, raw: BaseHTTPRequestHandler,
                  allow: Callable[[str], bool] | None) -> None:
        client = str(raw.client_address[0])
        if allow is not None and not allow(client):
            self._send(raw, Response.text(f"requests from {client} are refused\n", 403))
            return
        path, query_text = split_target(raw.path)
        headers = raw.headers
        length = int(headers.get("Content-Length") or 0)
        body = raw.rfile.read(length) if length > 0 else b""
        query = parse_qs(query_text, keep_blank_values=True)
        if (headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
            for key, values in parse_qs(body.decode(errors="replace"),
                                        keep_blank_values=True).items():
                query.setdefault(key, []).extend(values)
        method = "GET" if raw.command == "HEAD" else raw.command
        handler, known = self._find(method, path)
        if handler is None:
            response = self._method_not_allowed if known else self._not_found
        else:
            try:
                response = handler(Request(method, path, query, body, client, headers))
            except Exception as exc:  # a handler's bug answers 500, the server goes on
                response = Response.text(f"{type(exc).__name__}: {exc}\n", 500)
        # A client that gave up waiting (a probe's timeout) has nothing more to be told.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(raw, response, head=raw.command == "HEAD")

    @staticmethod
    def _send(raw: BaseHTTPRequestHandler, response: Response, head: bool = False) -> None:
        raw.send_response(response.status)
        if response.content_type:
            raw.send_header("Content-Type", response.content_type)
        raw.send_header("Content-Length", str(len(response.body)))
        for key, value in response.headers.items():
            raw.send_header(key, value)
        raw.end_headers()
        if not head:
            raw.wfile.write(response.body)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_SPLIT_BY_URLSPLIT = frozenset("#\t\r\n")
"""What makes urlsplit() do more than split at the first "?" (a fragment; bytes it
removes)."""


def split_target(target: str) -> tuple[str, str]:
    """A request target's path and query, as ``urlsplit()`` gives them.  The usual
    target ("/path?query": no scheme, no authority, no fragment) is split directly:
    urlsplit() costs a few microseconds each time a target is new to its cache, as each
    ``/status?wait=RV`` is, on the way of the event the client waits for."""
    if target.startswith("/") and not target.startswith("//") \
            and _SPLIT_BY_URLSPLIT.isdisjoint(target):
        path, _, query = target.partition("?")
        return path, query
    url = urlsplit(target)
    return url.path, url.query


def metrics_handler(registry: CollectorRegistry) -> Handler:
    """``/metrics``: the registry in Prometheus' text format."""
    return lambda _: Response(200, generate_latest(registry), CONTENT_TYPE_LATEST)


def probe_handler(check: Callable[[], bool], ok: str = "ok", failing: str = "unhealthy") -> Handler:
    """A health probe: 200 while ``check()`` holds, else 503."""
    return lambda _: (Response.text(f"{ok}\n") if check()
                      else Response.text(f"{failing}\n", 503))


def loopback_only(client: str) -> bool:
    """For ``allow``: only the host itself (127.0.0.0/8, ::1, and the IPv4-mapped form)."""
    try:
        address = ipaddress.ip_address(client.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)
