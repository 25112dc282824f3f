"""HTTP side of the test API server: routing, JSON responses, chunked watch streams.

Speaks HTTP/1.1 with keep-alive (every plain response has a Content-Length) and, for
watches, ``Transfer-Encoding: chunked`` with one newline-terminated JSON event per chunk,
as kube-apiserver does for ``application/json``.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import socketserver
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from tests.apiserver.patch import apply_patch
from tests.apiserver.resources import (
    RESOURCES,
    ApiError,
    Obj,
    ResourceType,
    bad_request,
    forbidden,
    not_found,
)
from tests.apiserver.selectors import Predicate, combine, field_selector, label_selector
from tests.apiserver.store import Watcher

if TYPE_CHECKING:
    from tests.apiserver.server import ApiServer

SERVER_VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0+npc-test",
                  "gitCommit": "0000000000000000000000000000000000000000",
                  "gitTreeState": "clean", "buildDate": "2024-01-01T00:00:00Z",
                  "goVersion": "go1.22.0", "compiler": "gc", "platform": "linux/amd64"}
_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_BY_GROUP = {(rt.group, rt.plural): rt for rt in RESOURCES}
_PREFIXES = {rt.prefix: rt.group for rt in RESOURCES}
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}


@dataclass(frozen=True)
class Route:
    rt: ResourceType
    namespace: str | None  # None: cluster-scoped, or all namespaces
    name: str | None  # None: the collection
    subresource: str | None


def route(path: str) -> Route | None:
    """Map a resource URL path onto what it names (None if it names nothing we serve)."""
    for prefix, group in _PREFIXES.items():
        if not path.startswith(prefix + "/"):
            continue
        segs = path[len(prefix) + 1:].split("/")
        inner = _BY_GROUP.get((group, segs[2])) if len(segs) >= 3 else None
        if segs[0] == "namespaces" and inner is not None and inner.namespaced:
            rt, namespace, rest = inner, segs[1], segs[3:]
        else:
            found = _BY_GROUP.get((group, segs[0]))
            if found is None or (found.namespaced and len(segs) > 1):
                return None
            rt, namespace, rest = found, None, segs[1:]
        if len(rest) > 2 or "" in rest or (namespace == ""):
            return None
        sub = rest[1] if len(rest) == 2 else None
        if sub is not None and not (sub == "status" and rt.status_subresource):
            return None
        return Route(rt, namespace, rest[0] if rest else None, sub)
    return None


def _discovery(path: str, host: str) -> Obj | None:
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": host}]}
    groups = sorted({rt.group for rt in RESOURCES if rt.group})
    group_docs = {g: {"name": g, "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                      "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"}}
                  for g in groups}
    if path == "/apis":
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": list(group_docs.values())}
    if path.startswith("/apis/") and path[len("/apis/"):] in group_docs:
        return {"kind": "APIGroup", "apiVersion": "v1", **group_docs[path[len("/apis/"):]]}
    if path in _PREFIXES:
        resources: list[Obj] = []
        for rt in RESOURCES:
            if rt.prefix != path:
                continue
            verbs = [v for v in _VERBS if rt.namespaced or v != "deletecollection"]
            resources.append({"name": rt.plural, "singularName": rt.singular,
                              "namespaced": rt.namespaced, "kind": rt.kind, "verbs": verbs,
                              "shortNames": list(rt.short_names)})
            if rt.status_subresource:
                resources.append({"name": f"{rt.plural}/status", "singularName": "",
                                  "namespaced": rt.namespaced, "kind": rt.kind,
                                  "verbs": ["get", "patch", "update"]})
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": RESOURCES[0].api_version if path == "/api/v1"
                else f"{_PREFIXES[path]}/v1", "resources": resources}
    return None


class ApiHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows its open connections, so that stopping it can cut
    them all (idle keep-alive ones and watch streams alike) and then join every thread."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = True

    def __init__(self, address: tuple[str, int], api: ApiServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.api = api
        self._conn_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._closing = False
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host name (getfqdn), which can stall
        # for seconds inside a network namespace without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def track(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._conns.add(conn)
            if self._closing:
                _shutdown(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._conns.discard(conn)

    def cut_connections(self) -> None:
        with self._conn_lock:
            self._closing = True
            for conn in self._conns:
                _shutdown(conn)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client went away, or stop() cut the connection
        super().handle_error(request, client_address)


def _peer_closed(conn: socket.socket) -> bool:
    """Whether the client closed its end (readable, and a peek reads nothing)."""
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _shutdown(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ApiHTTPServer

    def setup(self) -> None:
        super().setup()
        if self.connection.family in (socket.AF_INET, socket.AF_INET6):
            # Headers and body go out in separate writes; without this, Nagle plus the
            # client's delayed ACK add ~40 ms to every response.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # ------------------------------------------------------------------ plumbing

    def _send(self, code: int, data: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, code: int, obj: Obj) -> None:
        self._send(code, json.dumps(obj, separators=(",", ":")).encode())

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _event(self, kind: str, obj: Obj) -> None:
        self._chunk(json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode()
                    + b"\n")

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise bad_request(f"invalid JSON body: {exc}") from None

    def _handle(self, method: str) -> None:
        self._streaming = False
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        path = url.path.rstrip("/") or "/"
        try:
            body = self._read_json()
            if path in ("/healthz", "/livez", "/readyz"):
                self._send(200, b"ok", "text/plain; charset=utf-8")
                return
            if method == "GET" and path == "/version":
                self._send_json(200, SERVER_VERSION)
                return
            doc = _discovery(path, f"{self.server.server_name}:{self.server.server_port}")
            if method == "GET" and doc is not None:
                self._send_json(200, doc)
                return
            target = route(path)
            if target is None:
                raise ApiError(404, "NotFound", "the server could not find the requested "
                               "resource")
            if query.get("dryRun"):
                raise bad_request("dryRun is not supported by the test API server")
            self._resource(method, target, query, body)
        except ApiError as exc:
            self._send_json(exc.code, exc.status())
        except OSError:
            self.close_connection = True
        except Exception as exc:  # a bug here (or in the product's parser): say so loudly
            traceback.print_exc()
            self.close_connection = True
            if not self._streaming:
                self._send_json(500, ApiError(500, "InternalError", repr(exc)).status())

    # ------------------------------------------------------------------ resources

    def _resource(self, method: str, r: Route, query: dict[str, str], body: Any) -> None:
        api = self.server.api
        store = api.store
        rt = r.rt
        if r.name is None:
            predicate = combine(label_selector(query.get("labelSelector")),
                                field_selector(rt, query.get("fieldSelector")))
            if method == "GET" and query.get("watch", "") in _TRUE:
                self._admit("watch", r, query)
                self._watch(rt, r.namespace, predicate, query)
            elif method == "GET":
                self._admit("list", r, query)
                self._list(rt, r.namespace, predicate, query)
            elif method == "POST" and (r.namespace is not None or not rt.namespaced):
                self._admit("create", r, query)
                obj = self._body_for(rt, r, body)
                self._send_json(201, api.store.create(rt, obj, validated=not api.lenient))
            elif method == "DELETE" and rt.namespaced:
                self._admit("deletecollection", r, query)
                items = store.delete_collection(rt, r.namespace, predicate)
                self._send_json(200, self._list_doc(rt, store.rv, items))
            else:
                raise _not_allowed()
            return
        namespace = r.namespace or ""
        if method == "GET":
            self._admit("get", r, query)
            found = store.get(rt, namespace, r.name)
            if found is None:
                raise not_found(rt, r.name)
            self._send_json(200, found)
        elif method == "PUT":
            self._admit("update", r, query)
            obj = self._body_for(rt, r, body)
            self._send_json(200, store.update(rt, obj, validated=not api.lenient,
                                              status_only=r.subresource == "status",
                                              keep_status=r.subresource is None))
        elif method == "PATCH":
            self._admit("patch", r, query)
            with store.cond:  # read-modify-write as one step; respond outside the lock
                current = store.get(rt, namespace, r.name)
                if current is None:
                    raise not_found(rt, r.name)
                patched = apply_patch(self.headers.get("Content-Type") or "", current, body)
                obj = self._body_for(rt, r, patched)
                result = store.update(rt, obj, validated=not api.lenient,
                                      status_only=r.subresource == "status",
                                      keep_status=r.subresource is None)
            self._send_json(200, result)
        elif method == "DELETE" and r.subresource is None:
            self._admit("delete", r, query)
            pre = body.get("preconditions") if isinstance(body, dict) else None
            self._send_json(200, store.delete(rt, namespace, r.name,
                                              pre if isinstance(pre, dict) else None))
        else:
            raise _not_allowed()

    def _admit(self, verb: str, r: Route, query: dict[str, str]) -> None:
        """Count and log the request, and refuse it (403) if the API server forbids it."""
        api = self.server.api
        api.record(verb, r.rt, query, self.headers.get("User-Agent") or "")
        if not api.allowed(verb, r.rt):
            raise forbidden(r.rt, api.user, verb, r.namespace, r.name)

    def _body_for(self, rt: ResourceType, r: Route, body: Any) -> Obj:
        """The request body as an object of ``rt`` whose namespace and name agree with the
        URL (filled in from it when absent), as the real server insists."""
        if not isinstance(body, dict):
            raise bad_request(f"the body must be a {rt.kind} object")
        raw_meta = body.get("metadata")
        meta: Obj = dict(raw_meta) if isinstance(raw_meta, dict) else {}
        out: Obj = {**body, "metadata": meta}
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != r.namespace:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            meta["namespace"] = r.namespace
        if r.name is not None:
            if meta.get("name") and meta["name"] != r.name:
                raise bad_request(f"the name of the object ({meta['name']}) does not match "
                                  f"the name on the URL ({r.name})")
            meta["name"] = r.name
        return out

    def _list_doc(self, rt: ResourceType, rv: int, items: list[Obj],
                  token: str | None = None, remaining: int | None = None) -> Obj:
        meta: Obj = {"resourceVersion": str(rv)}
        if token:
            meta["continue"] = token
            if remaining is not None:
                meta["remainingItemCount"] = remaining
        if not self.server.api.list_item_type_meta:
            # The real server leaves kind/apiVersion out of list items (kubernetes#3030).
            items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")}
                     for o in items]
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta,
                "items": items}

    def _list(self, rt: ResourceType, namespace: str | None, predicate: Predicate,
              query: dict[str, str]) -> None:
        limit = _int_param(query, "limit")
        store = self.server.api.store
        rv, items, token, remaining = store.list_objects(
            rt, namespace, predicate, limit, query.get("continue") or None,
            query.get("resourceVersion"))
        has_selector = bool(query.get("labelSelector") or query.get("fieldSelector"))
        self._send_json(200, self._list_doc(rt, rv, items, token,
                                            None if has_selector else remaining))

    # ------------------------------------------------------------------ watch

    def _watch(self, rt: ResourceType, namespace: str | None, predicate: Predicate,
               query: dict[str, str]) -> None:
        api = self.server.api
        timeout = _int_param(query, "timeoutSeconds")
        bookmarks = query.get("allowWatchBookmarks", "") in _TRUE
        initial_state = query.get("sendInitialEvents", "") in _TRUE
        try:
            watcher, initial, _ = api.store.watch(rt, namespace, predicate,
                                                   query.get("resourceVersion"), initial_state)
        except ApiError as exc:
            if exc.code != 410:
                raise
            # The real server reports an expired resourceVersion inside a 200 stream.
            self._start_stream()
            self._event("ERROR", exc.status())
            self._chunk(b"")
            return
        try:
            self._start_stream()
            for kind, obj in initial:
                self._event(kind, obj)
            if initial_state and bookmarks:
                self._event("BOOKMARK", self._bookmark(rt, api.store.kind_rv[rt.kind],
                                                       initial_events_end=True))
            self._stream(watcher, rt, bookmarks, timeout)
        except OSError:
            self.close_connection = True
        finally:
            api.store.unwatch(watcher)

    def _start_stream(self) -> None:
        self._streaming = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

    @staticmethod
    def _bookmark(rt: ResourceType, rv: int, initial_events_end: bool = False) -> Obj:
        meta: Obj = {"resourceVersion": str(rv)}
        if initial_events_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}

    def _stream(self, watcher: Watcher, rt: ResourceType, bookmarks: bool,
                timeout: int | None) -> None:
        """Events as they come; with bookmarks, one every ``bookmark_interval`` and one 2 s
        before the timeout (as the watch cache sends them), carrying the kind's newest
        resourceVersion, but only once that is past the version the watch started from
        (the watch cache sends no bookmark before); at the timeout, a clean end of the
        stream."""
        api = self.server.api
        now = time.monotonic()
        deadline = now + timeout if timeout else None
        next_bookmark = now + api.bookmark_interval
        if deadline is not None and deadline - 2 > now:
            next_bookmark = min(next_bookmark, deadline - 2)
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            waits = [t - now for t in (deadline, next_bookmark if bookmarks else None)
                     if t is not None]
            # Wake at least twice a second to notice a client that went away (the real
            # server's request context ends when the connection closes).
            events, _ = api.store.next_events(watcher, max(0.0, min([*waits, 0.5])))
            if not events and _peer_closed(self.connection):
                self.close_connection = True
                return
            if watcher.cut:
                self.close_connection = True
                _shutdown(self.connection)  # the client must see a broken stream
                return
            for kind, obj in events:
                self._event(kind, obj)
            if watcher.ended:
                break
            now = time.monotonic()
            if bookmarks and now >= next_bookmark:
                with api.store.cond:
                    current = api.store.kind_rv[rt.kind]
                if current > watcher.start:
                    self._event("BOOKMARK", self._bookmark(rt, current))
                next_bookmark = now + api.bookmark_interval
                if deadline is not None and deadline - 2 > now:
                    next_bookmark = min(next_bookmark, deadline - 2)
        self._chunk(b"")  # end of the chunked body: a clean end of the watch


def _int_param(query: dict[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(str(raw))
    except ValueError:
        raise bad_request(f"{name}: invalid value {raw!r}") from None


def _not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed",
                    "the server does not allow this method on the requested resource")

