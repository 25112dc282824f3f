"""The controller's view of the cluster: parsed model values only, thread-safe.

Watchers write into it (a relist replaces a kind wholesale; events upsert or delete one
object); the sync runner reads consistent snapshots.  Only what policy needs is kept —
the frozen model values of :mod:`npc.model.objects` — never the API objects, so memory
stays proportional to what matters.  An event that changes nothing policy-relevant (most
pod status updates) does not mark the store changed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from common.service.progress import Progress
from npc.compile.incremental import PodChange
from npc.model.objects import ClusterState, Namespace, NetworkPolicy, Pod
from npc.model.parse import (
    FieldError,
    Invalid,
    parse_namespace,
    parse_network_policy,
    parse_pod,
)


class Kind(str, Enum):
    NAMESPACE = "namespaces"
    POD = "pods"
    POLICY = "networkpolicies"


Value = Namespace | Pod | NetworkPolicy


@dataclass(frozen=True)
class ParseOutcome:
    key: str
    value: Value | None
    errors: tuple[FieldError, ...] = ()


def object_key(kind: Kind, obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    if kind is Kind.NAMESPACE:
        return name
    return f"{meta.get('namespace') or 'default'}/{name}"


def parse_object(kind: Kind, obj: Mapping[str, Any]) -> ParseOutcome:
    """Parse one API object.  A pod or namespace that cannot be parsed is dropped (and
    reported); a policy that fails validation is kept as a rejected policy, which isolates
    its targets."""
    key = object_key(kind, obj)
    try:
        if kind is Kind.NAMESPACE:
            return ParseOutcome(key, parse_namespace(obj))
        if kind is Kind.POD:
            return ParseOutcome(key, parse_pod(obj))
        policy, errors = parse_network_policy(obj)
        return ParseOutcome(key, policy, tuple(errors))
    except Invalid as exc:
        return ParseOutcome(key, None, (FieldError(f"{kind.value} {key}", exc.path, exc.reason),))


class ClusterStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._on_seen: Callable[[], None] = lambda: None
        self._objects: dict[Kind, dict[str, Value]] = {k: {} for k in Kind}
        self._listed: set[Kind] = set()
        self._version = 0
        self._snapshot: tuple[int, ClusterState] | None = None
        self._on_change: Callable[[], None] = lambda: None
        self._pod_ips: dict[str, str] = {}
        self._progress: dict[Kind, Progress] = {}
        self._changes: list[PodChange] = []
        self._structural = True  # until a sync has taken a full snapshot

    def subscribe(self, *, on_change: Callable[[], None], on_seen: Callable[[], None]) -> None:
        """Who to tell: ``on_change`` after a change that matters to policy, ``on_seen``
        after a watch moved on (called outside the store's lock).  One subscriber: the
        sync runner."""
        self._on_change, self._on_seen = on_change, on_seen

    # ---- writes (watchers) ---------------------------------------------------------
    def replace(self, kind: Kind, values: Iterable[tuple[str, Value]]) -> None:
        """A (re)list: the kind's objects are exactly ``values`` now."""
        new = dict(values)
        with self._lock:
            changed = new != self._objects[kind] or kind not in self._listed
            self._objects[kind] = new
            self._listed.add(kind)
            if kind is Kind.POD:
                self._pod_ips = {str(p.ipv4): k for k, p in new.items()
                                 if isinstance(p, Pod) and p.ipv4}
            if changed:
                self._version += 1
                self._structural = True
        if changed:
            self._on_change()

    def upsert(self, kind: Kind, key: str, value: Value) -> None:
        with self._lock:
            old = self._objects[kind].get(key)
            if old == value:
                return
            self._objects[kind][key] = value
            self._log(kind, old, value)
            if isinstance(value, Pod) and value.ipv4:
                self._pod_ips[value.ipv4] = key
            self._version += 1
        self._on_change()

    def delete(self, kind: Kind, key: str) -> None:
        with self._lock:
            old = self._objects[kind].pop(key, None)
            if old is None:
                return
            self._log(kind, old, None)
            self._version += 1
        self._on_change()

    def _log(self, kind: Kind, old: Value | None, new: Value | None) -> None:
        """Remember a pod change for the incremental compiler; any other change needs a
        full compile.  Called with the lock held."""
        if kind is Kind.POD and isinstance(old, Pod | None) and isinstance(new, Pod | None):
            self._changes.append(PodChange(old, new))
            if len(self._changes) > 1000:  # a storm: a full compile is cheaper
                self._structural = True
        else:
            self._structural = True

    def take(self, *, full: bool) -> tuple[int, list[PodChange] | None, ClusterState | None]:
        """What a sync needs, atomically: the store version, and either the pod changes
        since the last take (when they alone describe what changed and ``full`` is not
        asked) or a full ClusterState.  Clears the change log."""
        with self._lock:
            version = self._version
            changes = self._changes
            self._changes = []
            if not (full or self._structural):
                return version, changes, None
            self._structural = False
            state = self._state_locked()
        return version, None, state

    def _state_locked(self) -> ClusterState:
        namespaces = [v for v in self._objects[Kind.NAMESPACE].values()
                      if isinstance(v, Namespace)]
        pods = [v for v in self._objects[Kind.POD].values() if isinstance(v, Pod)]
        policies = [v for v in self._objects[Kind.POLICY].values()
                    if isinstance(v, NetworkPolicy)]
        return ClusterState(tuple(namespaces), tuple(pods), tuple(policies))

    def seen(self, kind: Kind, resource_version: str) -> None:
        """An event of ``kind`` at ``resource_version`` arrived."""
        self._advance(kind, resource_version, confirmed=False)

    def confirmed(self, kind: Kind, resource_version: str) -> None:
        """A bookmark of ``kind``, or a complete list of it, at ``resource_version``: every
        event of the kind up to now has been delivered (see :mod:`.progress`)."""
        self._advance(kind, resource_version, confirmed=True)

    def _advance(self, kind: Kind, resource_version: str, *, confirmed: bool) -> None:
        # Kubernetes resourceVersions are opaque; numeric ones (etcd revisions, as every
        # real API server uses) are tracked so that /status can tell up to which version
        # the kernel reflects the cluster.
        if not resource_version.isdigit():
            return
        with self._lock:
            self._advance_locked(kind, int(resource_version), confirmed=confirmed)
        self._on_seen()

    def _advance_locked(self, kind: Kind, rv: int, *, confirmed: bool) -> None:
        current = self._progress.get(kind, Progress())
        if confirmed:
            highest = max((p.position for p in self._progress.values()), default=0)
            self._progress[kind] = current.confirmed(rv, highest)
        else:
            self._progress[kind] = current.event(rv)

    def confirm_if_same(self, kind: Kind, values: Iterable[tuple[str, Value]],
                        resource_version: str) -> bool:
        """A list of ``kind`` at ``resource_version``, taken to check how far the kind is
        current: if the store holds exactly that state, it is current through that
        version (its watch may still deliver events up to it, but none changes what
        policy sees).  Nothing is changed otherwise; the watch brings the differences."""
        listed = dict(values)
        if not resource_version.isdigit():
            return False
        with self._lock:
            if kind not in self._listed or listed != self._objects[kind]:
                return False
            self._advance_locked(kind, int(resource_version), confirmed=True)
        self._on_seen()
        return True

    def progress(self) -> tuple[int, dict[str, Progress]]:
        """(store version, per kind: how far its watch is known to be current), read
        together."""
        with self._lock:
            return self._version, {k.value: v for k, v in self._progress.items()}

    # ---- reads ---------------------------------------------------------------------
    @property
    def synced(self) -> bool:
        """Every kind has been listed completely at least once."""
        with self._lock:
            return self._listed == set(Kind)

    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    def snapshot(self) -> tuple[int, ClusterState]:
        """A consistent ClusterState and the version it reflects."""
        with self._lock:
            if self._snapshot is None or self._snapshot[0] != self._version:
                self._snapshot = (self._version, self._state_locked())
            return self._snapshot

    def pod_name_for_ip(self, ip: str) -> str | None:
        """"namespace/name" of the pod that has ``ip`` now, if any (for log lines)."""
        with self._lock:
            key = self._pod_ips.get(ip)
            pod = self._objects[Kind.POD].get(key) if key else None
            return key if isinstance(pod, Pod) and pod.ipv4 == ip else None

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {k.value: len(v) for k, v in self._objects.items()}
