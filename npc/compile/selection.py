"""Which pods and namespaces a selector picks, computed once per selector.

Only pods that take part in policy are indexed (they have an IPv4 address, are not
finished, are not on the host network: see :attr:`npc.model.objects.Pod.ipv4`).
"""

from __future__ import annotations

from collections import defaultdict
from functools import cached_property

from npc.model.objects import ClusterState, LabelSelector, Pod, Protocol


class Selection:
    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self._by_ns: dict[str, list[Pod]] = defaultdict(list)
        for pod in state.pods:
            if pod.ipv4 is not None:
                self._by_ns[pod.namespace].append(pod)
        self._pods_cache: dict[tuple[str, LabelSelector], tuple[Pod, ...]] = {}
        self._ns_cache: dict[LabelSelector, tuple[str, ...]] = {}

    def namespace_names(self) -> tuple[str, ...]:
        return tuple(ns.name for ns in self.state.namespaces)

    def pods_in(self, namespace: str) -> tuple[Pod, ...]:
        return tuple(self._by_ns.get(namespace, ()))

    def pods(self, namespace: str, selector: LabelSelector) -> tuple[Pod, ...]:
        """Participating pods of ``namespace`` whose labels match ``selector``."""
        key = (namespace, selector)
        if key not in self._pods_cache:
            self._pods_cache[key] = tuple(
                p for p in self._by_ns.get(namespace, ()) if selector.matches(p.labels))
        return self._pods_cache[key]

    def namespaces(self, selector: LabelSelector) -> tuple[str, ...]:
        """Names of the namespaces whose labels match ``selector`` (sorted)."""
        if selector not in self._ns_cache:
            self._ns_cache[selector] = tuple(
                ns.name for ns in self.state.namespaces if selector.matches(ns.labels))
        return self._ns_cache[selector]

    @cached_property
    def named_ports(self) -> dict[tuple[str, Protocol], dict[int, tuple[Pod, ...]]]:
        """(port name, protocol) → port number → the pods on which the name means it."""
        index: dict[tuple[str, Protocol], dict[int, list[Pod]]] = defaultdict(
            lambda: defaultdict(list))
        for pods in self._by_ns.values():
            for pod in pods:
                seen: set[tuple[str, Protocol]] = set()
                for cp in pod.container_ports:
                    # The first container port with the name wins, as Kubernetes resolves it.
                    if cp.name and (cp.name, cp.protocol) not in seen:
                        seen.add((cp.name, cp.protocol))
                        index[(cp.name, cp.protocol)][cp.port].append(pod)
        return {k: {n: tuple(ps) for n, ps in v.items()} for k, v in index.items()}
