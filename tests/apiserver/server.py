"""``ApiServer``: lifecycle (start / stop / restart on the same port, optionally inside a
network namespace), the direct Python API tests use for setup, and request counters."""

from __future__ import annotations

import copy
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from tests.apiserver.handler import ApiHTTPServer
from tests.apiserver.resources import ApiError, Obj, ResourceType, not_found, resource
from tests.apiserver.store import Store


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    verb: str
    kind: str
    query: dict[str, str]
    user_agent: str


RequestLog = list[Request]


class ApiServer:
    """A small real-HTTP Kubernetes API server (Namespaces, Pods, NetworkPolicies).

    ``kind`` arguments accept a kind, plural, singular or short name (``"Pod"``, ``"pods"``,
    ``"netpol"``...).  ``namespace`` is ignored for cluster-scoped kinds.  Direct mutators
    apply the same defaulting, validation, resourceVersions and watch events as HTTP writes;
    they raise :class:`ApiError` where the HTTP API would answer with an error status.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 bind_netns_fd: int | None = None, bookmark_interval: float = 60.0,
                 history_limit: int = 1000, lenient: bool = False,
                 list_item_type_meta: bool = False, namespaces: Iterable[str] = ()) -> None:
        self.host = host
        self._port = port
        self.bind_netns_fd = bind_netns_fd
        self.bookmark_interval = bookmark_interval
        """Seconds between bookmarks on a watch that asked for them (the watch cache sends
        one a minute, and one 2 s before the watch's timeout)."""
        self.user = "system:serviceaccount:kube-system:weave-net"
        """Who every request is made as (in 403 messages)."""
        self._forbidden: set[tuple[str, str]] = set()
        self.lenient = lenient
        """Skip validation (an older or lenient API server); may be flipped at any time."""
        self.list_item_type_meta = list_item_type_meta
        """Put kind/apiVersion on list items (the real server leaves them out)."""
        self.store = Store(history_limit)
        self._httpd: ApiHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._requests: list[Request] = []
        self._counts_lock = threading.Lock()
        for name in namespaces:
            self.create("Namespace", {"metadata": {"name": name}})

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        """The listening port (the one picked by the first start() when created with 0)."""
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self, *, keep_history: bool = True) -> ApiServer:
        """Listen and serve (again, on the same port after a stop()).  ``keep_history=False``
        compacts first, so that every watch resumed from before gets 410 Gone."""
        with self._lifecycle:
            if self._httpd is not None:
                raise RuntimeError("the API server is already running")
            if not keep_history:
                self.store.compact()
            address = (self.host, self._port)
            if self.bind_netns_fd is not None:
                from common.kernel.netns import in_netns

                with in_netns(self.bind_netns_fd):
                    httpd = ApiHTTPServer(address, self)
            else:
                httpd = ApiHTTPServer(address, self)
            self._port = int(httpd.server_address[1])
            thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                      name=f"apiserver:{self._port}", daemon=True)
            thread.start()
            self._httpd, self._thread = httpd, thread
        return self

    def stop(self) -> None:
        """Stop serving: close the listener, cut every open connection (watchers see a
        broken stream) and join all server threads.  The data stays for a later start()."""
        with self._lifecycle:
            httpd, thread = self._httpd, self._thread
            if httpd is None or thread is None:
                return
            httpd.shutdown()
            self.store.end_watches(cut=True)
            httpd.cut_connections()
            httpd.server_close()  # joins the handler threads
            thread.join()
            self._httpd = self._thread = None

    def restart(self, *, keep_history: bool = True) -> None:
        self.stop()
        self.start(keep_history=keep_history)

    def __enter__(self) -> ApiServer:
        return self if self.running else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------------ direct API

    def _validating(self, validate: bool | None) -> bool:
        return not self.lenient if validate is None else validate

    def create(self, kind: str | ResourceType, obj: Mapping[str, Any], *,
               validate: bool | None = None) -> Obj:
        """Create (409 if it exists).  Pod status in ``obj`` is kept.  ``validate=False``
        stores an object the real server would reject (None: unless ``lenient``)."""
        return copy.deepcopy(self.store.create(resource(kind), dict(obj),
                                               validated=self._validating(validate)))

    def update(self, kind: str | ResourceType, obj: Mapping[str, Any], *,
               validate: bool | None = None) -> Obj:
        """Replace the whole object, status included; a metadata.resourceVersion in ``obj``
        must be current (409 otherwise)."""
        return copy.deepcopy(self.store.update(resource(kind), dict(obj),
                                               validated=self._validating(validate)))

    def apply(self, kind: str | ResourceType, obj: Mapping[str, Any], *,
              validate: bool | None = None) -> Obj:
        """Create or replace (unconditionally)."""
        rt = resource(kind)
        meta = obj.get("metadata") or {}
        with self.store.cond:
            if self.store.get(rt, meta.get("namespace") or "default", meta.get("name", "")):
                body = {**obj, "metadata": {k: v for k, v in meta.items()
                                            if k != "resourceVersion"}}
                return self.update(rt, body, validate=validate)
            return self.create(rt, obj, validate=validate)

    def delete(self, kind: str | ResourceType, namespace: str | None, name: str) -> Obj:
        """Delete; a Namespace takes its Pods and NetworkPolicies with it."""
        return copy.deepcopy(self.store.delete(resource(kind), namespace or "", name))

    def get(self, kind: str | ResourceType, namespace: str | None, name: str) -> Obj | None:
        found = self.store.get(resource(kind), namespace or "", name)
        return copy.deepcopy(found) if found is not None else None

    def list(self, kind: str | ResourceType, namespace: str | None = None) -> list[Obj]:
        _, items, _, _ = self.store.list_objects(resource(kind), namespace, lambda _: True)
        return copy.deepcopy(items)

    def _modify(self, kind: str | ResourceType, namespace: str | None, name: str,
                field: str, value: Any, validate: bool | None,
                status_only: bool = False) -> Obj:
        rt = resource(kind)
        with self.store.cond:
            current = self.store.get(rt, namespace or "", name)
            if current is None:
                raise not_found(rt, name)
            new = copy.deepcopy(current)
            if field == "labels":
                new["metadata"]["labels"] = dict(value)
            else:
                new[field] = copy.deepcopy(value)
            return copy.deepcopy(self.store.update(rt, new, validated=self._validating(validate),
                                                   status_only=status_only))

    def set_labels(self, kind: str | ResourceType, namespace: str | None, name: str,
                   labels: Mapping[str, str], *, validate: bool | None = None) -> Obj:
        """Replace an object's labels (one MODIFIED event, unless nothing changed)."""
        return self._modify(kind, namespace, name, "labels", labels, validate)

    def set_status(self, kind: str | ResourceType, namespace: str | None, name: str,
                   status: Mapping[str, Any], *, validate: bool | None = None) -> Obj:
        """Replace an object's status, as a write to its ``/status`` subresource would."""
        return self._modify(kind, namespace, name, "status", status, validate, status_only=True)

    def compact(self) -> None:
        """Drop all event history (and list snapshots): every later watch from an older
        resourceVersion, and every older continue token, gets 410 Gone.  Open watch
        streams carry on, as they do when etcd compacts."""
        self.store.compact()

    def expire_watches(self) -> None:
        """End every open watch stream now, cleanly (as a server-side timeout does)."""
        self.store.end_watches(cut=False)

    @property
    def resource_version(self) -> str:
        """The current (latest) resourceVersion, of any kind."""
        with self.store.cond:
            return str(self.store.rv)

    def kind_resource_version(self, kind: str | ResourceType) -> str:
        """The resourceVersion of ``kind``'s newest write (what its bookmarks carry)."""
        with self.store.cond:
            return str(self.store.kind_rv[resource(kind).kind])

    # ------------------------------------------------------------------ observation

    def record(self, verb: str, rt: ResourceType, query: Mapping[str, str],
               user_agent: str) -> None:
        with self._counts_lock:
            self._counts[(verb, rt.kind)] += 1
            self._requests.append(Request(verb, rt.kind, dict(query), user_agent))

    def requests(self, verb: str | None = None, kind: str | ResourceType | None = None,
                 ) -> RequestLog:
        """Every request so far (optionally of one verb and kind), oldest first."""
        wanted = None if kind is None else resource(kind).kind
        with self._counts_lock:
            return [r for r in self._requests
                    if (verb is None or r.verb == verb) and (wanted is None or r.kind == wanted)]

    def forbid(self, verb: str, kind: str | ResourceType) -> None:
        """Answer ``verb`` on ``kind`` with RBAC's 403 from now on."""
        with self._counts_lock:
            self._forbidden.add((verb, resource(kind).kind))

    def permit_all(self) -> None:
        with self._counts_lock:
            self._forbidden.clear()

    def allowed(self, verb: str, rt: ResourceType) -> bool:
        with self._counts_lock:
            return (verb, rt.kind) not in self._forbidden

    def request_count(self, verb: str, kind: str | ResourceType) -> int:
        """HTTP requests so far for a verb (``list``, ``watch``, ``get``, ``create``,
        ``update``, ``patch``, ``delete``, ``deletecollection``) on a kind."""
        with self._counts_lock:
            return self._counts[(verb, resource(kind).kind)]

    def counts(self) -> dict[tuple[str, str], int]:
        """All counters, keyed by ``(verb, Kind)``."""
        with self._counts_lock:
            return dict(self._counts)

    def reset_counts(self) -> None:
        with self._counts_lock:
            self._counts.clear()
            self._requests.clear()

    def watcher_count(self, kind: str | ResourceType | None = None) -> int:
        """Watch streams open right now (on a kind, or in total)."""
        return self.store.watcher_count(None if kind is None else resource(kind))

    def wait_for_watchers(self, kind: str | ResourceType, count: int = 1,
                          timeout: float = 5.0) -> bool:
        """Wait until at least ``count`` watches on ``kind`` are open (e.g. until a
        controller has finished its initial list and started watching)."""
        rt = resource(kind)
        return self.store.wait_for(lambda: self.store.watcher_count(rt) >= count, timeout)


__all__ = ["ApiError", "ApiServer"]
