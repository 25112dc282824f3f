"""Which pods and namespaces a selector picks, computed once per selector.

Only pods that take part in policy are indexed (they have an IPv4 address, are not
finished, are not on the host network: see :attr:`npc.model.objects.Pod.ipv4`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from functools import cached_property

from npc.model.objects import ClusterState, LabelSelector, NetworkPolicy, Pod, Protocol


class Selection:
    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self._by_ns: dict[str, list[Pod]] = defaultdict(list)
        for pod in state.pods:
            if pod.ipv4 is not None:
                self._by_ns[pod.namespace].append(pod)
        self._policies_by_ns: dict[str, list[NetworkPolicy]] = defaultdict(list)
        for policy in state.policies:
            self._policies_by_ns[policy.namespace].append(policy)
        self._pods_cache: dict[tuple[str, LabelSelector], tuple[Pod, ...]] = {}
        self._label_indexes: dict[str, dict[tuple[str, str], list[Pod]]] = {}
        self._ns_cache: dict[LabelSelector, tuple[str, ...]] = {}

    def namespace_names(self) -> tuple[str, ...]:
        return tuple(ns.name for ns in self.state.namespaces)

    def pods_in(self, namespace: str) -> tuple[Pod, ...]:
        return tuple(self._by_ns.get(namespace, ()))

    def policies_in(self, namespace: str) -> tuple[NetworkPolicy, ...]:
        return tuple(self._policies_by_ns.get(namespace, ()))

    def pods(self, namespace: str, selector: LabelSelector) -> tuple[Pod, ...]:
        """Participating pods of ``namespace`` whose labels match ``selector``, in state
        order."""
        key = (namespace, selector)
        found = self._pods_cache.get(key)
        if found is None:
            candidates: list[Pod] = self._by_ns.get(namespace, [])
            if candidates and selector.equalities:
                # Start from the pods carrying the rarest of the selector's key=value pairs.
                index = self._label_index(namespace)
                for pair in selector.equalities:
                    carrying = index.get(pair, [])
                    if len(carrying) < len(candidates):
                        candidates = carrying
            if len(selector.requirements) <= 1 and len(selector.equalities) == \
                    len(selector.requirements):
                # {} or one key=value: every candidate matches (the commonest selectors).
                found = tuple(candidates)
            else:
                found = tuple(p for p in candidates if selector.matches(p.label_map))
            self._pods_cache[key] = found
        return found

    def participating(self) -> Iterator[Pod]:
        """Every participating pod, namespace by namespace."""
        for pods in self._by_ns.values():
            yield from pods

    def _label_index(self, namespace: str) -> dict[tuple[str, str], list[Pod]]:
        """(label key, value) → the participating pods of ``namespace`` carrying it."""
        index = self._label_indexes.get(namespace)
        if index is None:
            index = self._label_indexes[namespace] = defaultdict(list)
            for pod in self._by_ns.get(namespace, ()):
                for pair in pod.labels:
                    index[pair].append(pod)
        return index

    def namespaces(self, selector: LabelSelector) -> tuple[str, ...]:
        """Names of the namespaces whose labels match ``selector`` (sorted)."""
        if selector not in self._ns_cache:
            self._ns_cache[selector] = tuple(
                ns.name for ns in self.state.namespaces if selector.matches(ns.label_map))
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
