"""The object store behind the test API server: objects, resourceVersions, event history,
watchers and list snapshots, all guarded by one condition variable.

Stored objects are never mutated after they are committed: every write builds a fresh dict.
That lets history events, list snapshots and open watch streams share them without copies;
the HTTP layer only serialises them and the direct Python API hands out deep copies.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import copy
import json
import random
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from tests.apiserver.resources import (
    NAMESPACE,
    NETWORK_POLICY,
    RESOURCES,
    Obj,
    ResourceType,
    already_exists,
    apply_defaults,
    bad_request,
    conflict,
    expired,
    invalid,
    not_found,
    now_rfc3339,
    too_large,
    validate,
)
from tests.apiserver.selectors import Predicate

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
FIRST_RESOURCE_VERSION = 100
"""The store starts here, so that no list ever reports the special value "0"."""
_SNAPSHOTS_KEPT = 32
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


@dataclass(frozen=True)
class Event:
    """One committed write.  ``obj`` is the object as of this event (for DELETED its last
    state, carrying the deletion's resourceVersion); ``prev`` the state before a MODIFIED."""

    type: str
    rv: int
    rt: ResourceType
    obj: Obj
    prev: Obj | None


def _with_rv(obj: Obj, rv: int) -> Obj:
    return {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(rv)}}


def _namespace_of(obj: Obj) -> str:
    return str(obj["metadata"].get("namespace") or "")


class Watcher:
    """One open watch: what it selects and the events queued for it since it started."""

    def __init__(self, rt: ResourceType, namespace: str | None, predicate: Predicate) -> None:
        self.rt = rt
        self.namespace = namespace
        self.predicate = predicate
        self.queue: deque[Event] = deque()
        self.after = 0
        """Events at or before this resourceVersion are not sent."""
        self.start = 0
        """The resourceVersion the watch started from: the watch cache sends a bookmark
        only when the kind's newest version is past it."""
        self.ended = False  # finish the stream cleanly (expire_watches)
        self.cut = False  # drop the connection (server stop)

    def wants(self, ev: Event) -> bool:
        return ev.rt is self.rt and ev.rv > self.after and (self.namespace is None
                                     or _namespace_of(ev.obj) == self.namespace)

    def translate(self, ev: Event) -> tuple[str, Obj] | None:
        """The event this watcher sees, given its selectors: an update that moves an object
        into the selection is ADDED, one that moves it out is DELETED (carrying the previous
        state at the event's resourceVersion), exactly as the watch cache does."""
        now = self.predicate(ev.obj)
        if ev.type != MODIFIED or ev.prev is None:
            return (ev.type, ev.obj) if now else None
        before = self.predicate(ev.prev)
        if now:
            return (MODIFIED if before else ADDED), ev.obj
        return (DELETED, _with_rv(ev.prev, ev.rv)) if before else None


def _key(obj: Obj) -> str:
    """The etcd-like sort key: ``namespace/name`` (or ``name`` when cluster-scoped)."""
    ns = _namespace_of(obj)
    name = str(obj["metadata"]["name"])
    return f"{ns}/{name}" if ns else name


def encode_continue(rv: int, start: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_resource_version(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise bad_request(f"invalid resource version {text!r}") from None


def decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(raw["rv"]), str(raw["start"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise bad_request("continue key is not valid") from None


class Store:
    """Thread-safe object store with a bounded event history for watch replay."""

    def __init__(self, history_limit: int = 1000, catch_up_wait: float = 3.0) -> None:
        self.cond = threading.Condition(threading.RLock())
        self.history_limit = history_limit
        self.catch_up_wait = catch_up_wait
        """How long a list at a version newer than the newest waits before 504 (the
        real server gives its watch cache 3 s to catch up)."""
        self.rv = FIRST_RESOURCE_VERSION
        """The global resourceVersion (etcd's revision): the newest write of any kind."""
        self.kind_rv = {rt.kind: FIRST_RESOURCE_VERSION for rt in RESOURCES}
        """Per kind, the resourceVersion of its newest write: where the kind's watch cache
        is.  Cached lists and bookmarks carry it, not the global one."""
        self.compacted_rv = FIRST_RESOURCE_VERSION
        """Every event with a resourceVersion above this is still in the history."""
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {rt.kind: {} for rt in RESOURCES}
        self._history: list[Event] = []
        self._watchers: set[Watcher] = set()
        self._snapshots: OrderedDict[tuple[str, int], list[tuple[str, Obj]]] = OrderedDict()

    # ------------------------------------------------------------------ reads

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj | None:
        with self.cond:
            return self._objects[rt.kind].get((namespace if rt.namespaced else "", name))

    def _sorted(self, rt: ResourceType) -> list[tuple[str, Obj]]:
        return sorted((_key(o), o) for o in self._objects[rt.kind].values())

    def list_objects(self, rt: ResourceType, namespace: str | None, predicate: Predicate,
                     limit: int | None = None, token: str | None = None,
                     resource_version: str | None = None,
                     ) -> tuple[int, list[Obj], str | None, int | None]:
        """Objects in key order: ``(resourceVersion, items, continue, remainingItemCount)``.

        The list's resourceVersion is what kube-apiserver (1.36, watch cache on) reports:
        without ``resource_version`` (a consistent read) the global one; with ``"0"`` (any
        state, from the watch cache) the kind's newest write, and ``limit`` is ignored as
        the cache ignores it; with ``N`` (not older than N) the kind's newest write when
        that is at least N, else the global one, and 504 "Too large resource version" when
        N is newer than anything the server has.  A continuation is served from the
        snapshot taken when its first page was listed, so pages are consistent; a token
        older than the compaction point gets 410 Expired."""
        with self.cond:
            start = ""
            if token:
                if resource_version not in (None, "", "0"):
                    raise bad_request("specifying resource version is not allowed when "
                                      "using continue")
                rv, start = decode_continue(token)
                snapshot = self._snapshots.get((rt.kind, rv))
                if snapshot is None and rv == self.rv:
                    snapshot = self._sorted(rt)
                if rv < self.compacted_rv or snapshot is None:
                    raise expired("The provided continue parameter is too old to display a "
                                  "consistent list result. You can start a new list without "
                                  "the continue parameter.")
            else:
                rv, snapshot = self._list_version(rt, resource_version), self._sorted(rt)
                if resource_version == "0":
                    limit = None
            matching = [(k, o) for k, o in snapshot if k >= start
                        and (namespace is None or _namespace_of(o) == namespace) and predicate(o)]
            if limit is None or limit <= 0 or len(matching) <= limit:
                return rv, [o for _, o in matching], None, None
            self._snapshots[(rt.kind, rv)] = snapshot
            self._snapshots.move_to_end((rt.kind, rv))
            while len(self._snapshots) > _SNAPSHOTS_KEPT:
                self._snapshots.popitem(last=False)
            page = matching[:limit]
            return (rv, [o for _, o in page], encode_continue(rv, page[-1][0] + "\x00"),
                    len(matching) - limit)

    def _list_version(self, rt: ResourceType, resource_version: str | None) -> int:
        if resource_version in (None, ""):
            return self.rv
        if resource_version == "0":
            return self.kind_rv[rt.kind]
        at_least = parse_resource_version(resource_version)
        if at_least > self.rv:
            # The real server waits up to 3 s for its cache to catch up first.
            self.cond.wait_for(lambda: self.rv >= at_least, self.catch_up_wait)
        if at_least > self.rv:
            raise too_large(at_least, self.kind_rv[rt.kind])
        return self.kind_rv[rt.kind] if self.kind_rv[rt.kind] >= at_least else self.rv

    # ------------------------------------------------------------------ writes

    def _commit(self, rt: ResourceType, kind: str, obj: Obj, prev: Obj | None) -> Obj:
        self.rv += 1
        self.kind_rv[rt.kind] = self.rv
        obj = _with_rv(obj, self.rv)
        key = (_namespace_of(obj), str(obj["metadata"]["name"]))
        if kind == DELETED:
            del self._objects[rt.kind][key]
        else:
            self._objects[rt.kind][key] = obj
        ev = Event(kind, self.rv, rt, obj, prev)
        self._history.append(ev)
        excess = len(self._history) - self.history_limit
        if excess > 0:
            self.compacted_rv = self._history[excess - 1].rv
            del self._history[:excess]
        for w in self._watchers:
            if w.wants(ev):
                w.queue.append(ev)
        self.cond.notify_all()
        return obj

    def _identify(self, rt: ResourceType, obj: Obj) -> tuple[Obj, str, str]:
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if rt.namespaced:
            meta["namespace"] = ns = str(meta.get("namespace") or "default")
        else:
            meta.pop("namespace", None)
            ns = ""
        obj["kind"], obj["apiVersion"] = rt.kind, rt.api_version
        return meta, ns, str(meta.get("name") or "")

    def create(self, rt: ResourceType, body: Obj, *, validated: bool = True) -> Obj:
        obj = copy.deepcopy(body)
        meta, ns, name = self._identify(rt, obj)
        if not name and meta.get("generateName"):
            name = str(meta["generateName"]) + "".join(random.choices(_GENERATE_ALPHABET, k=5))
        if not name:
            raise invalid(rt, "", [("metadata.name", "Required value: name or generateName "
                                                     "is required")])
        meta["name"] = name
        for field in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if rt is NETWORK_POLICY:
            meta["generation"] = 1
        with self.cond:
            if rt.namespaced and ("", ns) not in self._objects[NAMESPACE.kind]:
                raise not_found(NAMESPACE, ns)
            apply_defaults(rt, obj, creating=True)
            if validated:
                validate(rt, obj)
            if (ns, name) in self._objects[rt.kind]:
                raise already_exists(rt, name)
            return self._commit(rt, ADDED, obj, None)

    def update(self, rt: ResourceType, body: Obj, *, validated: bool = True,
               status_only: bool = False, keep_status: bool = False) -> Obj:
        """Replace an object (PUT).  ``status_only``: the ``/status`` subresource (only the
        status changes); ``keep_status``: a main-resource write that cannot touch status."""
        new = copy.deepcopy(body)
        meta, ns, name = self._identify(rt, new)
        with self.cond:
            old = self._objects[rt.kind].get((ns, name))
            if old is None:
                raise not_found(rt, name)
            old_meta = old["metadata"]
            if meta.get("resourceVersion") and meta["resourceVersion"] != old_meta[
                    "resourceVersion"]:
                raise conflict(rt, name)
            if meta.get("uid") and meta["uid"] != old_meta["uid"]:
                raise conflict(rt, name, f"Precondition failed: UID in precondition: "
                                         f"{meta['uid']}, UID in object meta: {old_meta['uid']}")
            if status_only:
                new = {**copy.deepcopy(old), "status": new.get("status") or {}}
            else:
                for field in ("uid", "creationTimestamp", "generation"):
                    if field in old_meta:
                        meta[field] = old_meta[field]
                    else:
                        meta.pop(field, None)
                if keep_status and rt.status_subresource:
                    new["status"] = copy.deepcopy(old.get("status"))
            apply_defaults(rt, new, creating=False)
            if validated:
                validate(rt, new)
            if rt is NETWORK_POLICY and new.get("spec") != old.get("spec"):
                new["metadata"]["generation"] = int(old_meta.get("generation") or 1) + 1
            if _with_rv(new, 0) == _with_rv(old, 0):
                return old  # a no-op write: no new resourceVersion, no event
            return self._commit(rt, MODIFIED, new, old)

    def delete(self, rt: ResourceType, namespace: str, name: str,
               preconditions: Obj | None = None) -> Obj:
        """Delete one object; deleting a Namespace first deletes everything in it."""
        with self.cond:
            ns = namespace if rt.namespaced else ""
            old = self._objects[rt.kind].get((ns, name))
            if old is None:
                raise not_found(rt, name)
            pre = preconditions or {}
            if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
                raise conflict(rt, name, f"Precondition failed: UID in precondition: "
                                         f"{pre['uid']}, UID in object meta: "
                                         f"{old['metadata']['uid']}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"][
                    "resourceVersion"]:
                raise conflict(rt, name)
            if rt is NAMESPACE:
                for inner in RESOURCES:
                    if inner.namespaced:
                        for (ins, _), obj in sorted(self._objects[inner.kind].items()):
                            if ins == name:
                                self._commit(inner, DELETED, obj, None)
            return self._commit(rt, DELETED, old, None)

    def delete_collection(self, rt: ResourceType, namespace: str | None,
                          predicate: Predicate) -> list[Obj]:
        with self.cond:
            _, items, _, _ = self.list_objects(rt, namespace, predicate)
            return [self.delete(rt, _namespace_of(o), o["metadata"]["name"]) for o in items]

    # ------------------------------------------------------------------ watch

    def watch(self, rt: ResourceType, namespace: str | None, predicate: Predicate,
              resource_version: str | None, initial_state: bool = False,
              ) -> tuple[Watcher, list[tuple[str, Obj]], int]:
        """Register a watcher; returns it, the events to send first, and the current rv.

        Without a resourceVersion (or "0", or with ``initial_state``) the first events are
        synthetic ADDEDs for the current state; with ``N`` they replay the history after N,
        or raise 410 Expired when N is older than the compaction point."""
        with self.cond:
            w = Watcher(rt, namespace, predicate)
            if initial_state or resource_version in (None, "", "0"):
                _, items, _, _ = self.list_objects(rt, namespace, predicate)
                initial = [(ADDED, o) for o in items]
                w.start = self.kind_rv[rt.kind]
            else:
                since = parse_resource_version(str(resource_version))
                w.after = w.start = since  # newer than the server: wait for it, as it does
                if since < self.compacted_rv:
                    raise expired(f"too old resource version: {since} ({self.compacted_rv})")
                first = bisect.bisect_right(self._history, since, key=lambda e: e.rv)
                initial = [t for ev in self._history[first:]
                           if w.wants(ev) and (t := w.translate(ev)) is not None]
            self._watchers.add(w)
            self.cond.notify_all()  # wakes wait_for() callers counting watchers
            return w, initial, self.rv

    def next_events(self, w: Watcher, timeout: float | None,
                    ) -> tuple[list[tuple[str, Obj]], int]:
        """Wait up to ``timeout`` for events; returns them and the rv they bring ``w`` to."""
        with self.cond:
            self.cond.wait_for(lambda: bool(w.queue) or w.ended or w.cut, timeout)
            out: list[tuple[str, Obj]] = []
            while w.queue:
                translated = w.translate(w.queue.popleft())
                if translated is not None:
                    out.append(translated)
            return out, self.rv

    def unwatch(self, w: Watcher) -> None:
        with self.cond:
            self._watchers.discard(w)
            self.cond.notify_all()

    def watcher_count(self, rt: ResourceType | None = None) -> int:
        with self.cond:
            return sum(1 for w in self._watchers if rt is None or w.rt is rt)

    def end_watches(self, cut: bool) -> None:
        """Finish every open watch stream cleanly, or (``cut``) make it drop its connection."""
        with self.cond:
            for w in self._watchers:
                if cut:
                    w.cut = True
                else:
                    w.ended = True
            self.cond.notify_all()

    def compact(self) -> None:
        """Forget all history: any watch or continue token from before now gets 410."""
        with self.cond:
            self._history.clear()
            self._snapshots.clear()
            self.compacted_rv = self.rv

    def wait_for(self, check: Callable[[], object], timeout: float) -> bool:
        """Wait (re-checking on every store change) until ``check()`` is true."""
        with self.cond:
            return bool(self.cond.wait_for(check, timeout))
