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
    def __init__(self, on_change: Callable[[], None] = lambda: None) -> None:
        self._lock = threading.Lock()
        self._objects: dict[Kind, dict[str, Value]] = {k: {} for k in Kind}
        self._listed: set[Kind] = set()
        self._version = 0
        self._snapshot: tuple[int, ClusterState] | None = None
        self._on_change = on_change
        self._pod_ips: dict[str, str] = {}
        self._resource_versions: dict[Kind, int] = {}

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
        if changed:
            self._on_change()

    def upsert(self, kind: Kind, key: str, value: Value) -> None:
        with self._lock:
            if self._objects[kind].get(key) == value:
                return
            self._objects[kind][key] = value
            if isinstance(value, Pod) and value.ipv4:
                self._pod_ips[value.ipv4] = key
            self._version += 1
        self._on_change()

    def delete(self, kind: Kind, key: str) -> None:
        with self._lock:
            if self._objects[kind].pop(key, None) is None:
                return
            self._version += 1
        self._on_change()

    def seen(self, kind: Kind, resource_version: str) -> None:
        """The watch of ``kind`` is current through ``resource_version`` (an event or a
        bookmark).  Kubernetes resourceVersions are opaque; numeric ones (etcd revisions,
        as every real API server uses) are tracked so that /status can tell up to which
        version the kernel reflects the cluster."""
        if resource_version.isdigit():
            with self._lock:
                self._resource_versions[kind] = max(self._resource_versions.get(kind, 0),
                                                    int(resource_version))

    def current_through(self) -> tuple[int, int]:
        """(store version, the resourceVersion every kind is known to be current through,
        0 if unknown), read together."""
        with self._lock:
            if set(self._resource_versions) != set(Kind):
                return self._version, 0
            return self._version, min(self._resource_versions.values())

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
        return self.snapshot_with_rv()[:2]

    def snapshot_with_rv(self) -> tuple[int, ClusterState, int]:
        """Also the resourceVersion the snapshot is current through."""
        with self._lock:
            through = (min(self._resource_versions.values())
                       if set(self._resource_versions) == set(Kind) else 0)
        version, state = self._snapshot_state()
        return version, state, through

    def _snapshot_state(self) -> tuple[int, ClusterState]:
        with self._lock:
            if self._snapshot is not None and self._snapshot[0] == self._version:
                return self._snapshot
            version = self._version
            namespaces = [v for v in self._objects[Kind.NAMESPACE].values()
                          if isinstance(v, Namespace)]
            pods = [v for v in self._objects[Kind.POD].values() if isinstance(v, Pod)]
            policies = [v for v in self._objects[Kind.POLICY].values()
                        if isinstance(v, NetworkPolicy)]
        state = ClusterState(tuple(namespaces), tuple(pods), tuple(policies))
        with self._lock:
            self._snapshot = (version, state)
        return version, state

    def pod_name_for_ip(self, ip: str) -> str | None:
        """"namespace/name" of the pod that has ``ip`` now, if any (for log lines)."""
        with self._lock:
            key = self._pod_ips.get(ip)
            pod = self._objects[Kind.POD].get(key) if key else None
            return key if isinstance(pod, Pod) and pod.ipv4 == ip else None

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {k.value: len(v) for k, v in self._objects.items()}
