"""Frozen, typed values for the Kubernetes objects that network policy depends on.

Only the fields that policy needs are kept. Every value is immutable and hashable so a
cluster state can be compared, cached and compiled deterministically.  Parsing and
validation of API objects into these values lives in :mod:`npc.model.parse`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

Labels = tuple[tuple[str, str], ...]
"""Labels as a sorted tuple of (key, value) pairs: hashable and deterministic."""

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def labels_of(mapping: dict[str, str] | None) -> Labels:
    return tuple(sorted((mapping or {}).items()))


class Protocol(str, Enum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


class PolicyType(str, Enum):
    INGRESS = "Ingress"
    EGRESS = "Egress"


class Operator(str, Enum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True, order=True)
class Requirement:
    """One term of a label selector: ``key operator (values)``."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()
    equals: bool = False
    """A matchLabels term: ``In`` with one value, but written ``key=value`` in the selector
    string; a matchExpressions ``In`` with one value is written ``key in (value)``."""

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        if self.operator is Operator.EXISTS:
            return present
        if self.operator is Operator.DOES_NOT_EXIST:
            return not present
        if self.operator is Operator.IN:
            return present and labels[self.key] in self.values
        # NotIn also matches objects that lack the key (Kubernetes semantics).
        return not present or labels[self.key] not in self.values


@dataclass(frozen=True, order=True)
class LabelSelector:
    """A metav1.LabelSelector with matchLabels folded into ``In`` requirements.

    ``LabelSelector()`` (no requirements) is the empty selector ``{}`` and matches
    everything.  A *missing* selector is represented by ``None`` at the use site.
    """

    requirements: tuple[Requirement, ...] = ()
    _equal: tuple[tuple[str, str], ...] = field(default=(), init=False, compare=False,
                                                repr=False)
    _other: tuple[Requirement, ...] = field(default=(), init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Split once into plain equality tests (matchLabels, the common case) and the rest:
        # selectors are matched against every pod of a namespace, so this is a hot path.
        equal = tuple((r.key, r.values[0]) for r in self.requirements
                      if r.operator is Operator.IN and len(r.values) == 1)
        other = tuple(r for r in self.requirements
                      if not (r.operator is Operator.IN and len(r.values) == 1))
        object.__setattr__(self, "_equal", equal)
        object.__setattr__(self, "_other", other)

    @property
    def equalities(self) -> tuple[tuple[str, str], ...]:
        """The (key, value) pairs a matching object must carry (its ``key=value`` terms)."""
        return self._equal

    def matches(self, labels: Labels | dict[str, str]) -> bool:
        as_dict = labels if isinstance(labels, dict) else dict(labels)
        for key, value in self._equal:
            if as_dict.get(key) != value:
                return False
        return all(r.matches(as_dict) for r in self._other)

    @property
    def is_empty(self) -> bool:
        return not self.requirements

    def canonical(self) -> str:
        """The selector string of Kubernetes' ``labels.Selector.String()``.

        Requirements sorted by key, joined with ``,``; weave-npc hashes this string
        into its ipset names, so it must match the Go output byte for byte.
        """
        parts: list[str] = []
        # For one key, matchLabels' term comes first, as LabelSelectorAsSelector adds it first.
        for r in sorted(self.requirements,
                        key=lambda r: (r.key, not r.equals, r.operator.value, r.values)):
            if r.operator is Operator.EXISTS:
                parts.append(r.key)
            elif r.operator is Operator.DOES_NOT_EXIST:
                parts.append("!" + r.key)
            elif r.equals:
                parts.append(f"{r.key}={r.values[0]}")
            else:
                word = "in" if r.operator is Operator.IN else "notin"
                parts.append(f"{r.key} {word} ({','.join(sorted(r.values))})")
        return ",".join(parts)


@dataclass(frozen=True, order=True)
class ContainerPort:
    port: int
    protocol: Protocol = Protocol.TCP
    name: str = ""


@dataclass(frozen=True, order=True)
class Namespace:
    name: str
    labels: Labels = ()
    label_map: dict[str, str] = field(default_factory=dict, init=False, compare=False,
                                      repr=False)
    """``labels`` as a dict, for matching (computed once)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "label_map", dict(self.labels))


PodPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]


@dataclass(frozen=True, order=True)
class Pod:
    namespace: str
    name: str
    labels: Labels = ()
    ips: tuple[str, ...] = ()
    phase: str = "Running"
    host_network: bool = False
    node_name: str = ""
    container_ports: tuple[ContainerPort, ...] = ()
    ipv4: str | None = field(default=None, init=False, compare=False, repr=False)
    """The pod's IPv4 address if it takes part in policy, else None (computed once).

    Pods without an IP, finished pods (their IP may already belong to a new pod) and
    host-network pods (their IP is the node's) are in no set.
    """

    label_map: dict[str, str] = field(default_factory=dict, init=False, compare=False,
                                      repr=False)
    """``labels`` as a dict, for matching (computed once)."""
    key: str = field(default="", init=False, compare=False, repr=False)
    """``namespace/name``."""

    def __post_init__(self) -> None:
        address = None
        if not self.host_network and self.phase not in ("Succeeded", "Failed"):
            address = next((ip for ip in self.ips if ipaddress.ip_address(ip).version == 4),
                           None)
        object.__setattr__(self, "ipv4", address)
        object.__setattr__(self, "label_map", dict(self.labels))
        object.__setattr__(self, "key", f"{self.namespace}/{self.name}")

    def resolve_port(self, name: str, protocol: Protocol) -> int | None:
        for cp in self.container_ports:
            if cp.name == name and cp.protocol is protocol:
                return cp.port
        return None


@dataclass(frozen=True, order=True)
class IPBlock:
    cidr: str
    excepts: tuple[str, ...] = ()


@dataclass(frozen=True, order=True)
class Peer:
    """One element of ``from``/``to``.  Exactly one of: selectors (either or both), ipBlock."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True, order=True)
class PortSpec:
    """One element of ``ports``.  ``port`` None means every port of ``protocol``."""

    protocol: Protocol = Protocol.TCP
    port: int | str | None = None
    end_port: int | None = None


@dataclass(frozen=True, order=True)
class Rule:
    """An ingress or egress rule.  Empty ``peers`` means any peer; empty ``ports`` any port."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[PortSpec, ...] = ()


@dataclass(frozen=True, order=True)
class NetworkPolicy:
    namespace: str
    name: str
    pod_selector: LabelSelector = LabelSelector()
    policy_types: tuple[PolicyType, ...] = (PolicyType.INGRESS,)
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    rejected: str = ""
    """Non-empty when the object failed validation: the policy then isolates its targets
    for its policy types and allows nothing (fail closed); the text says why."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def rules(self, direction: PolicyType) -> tuple[Rule, ...]:
        if self.rejected:
            return ()
        return self.ingress if direction is PolicyType.INGRESS else self.egress


@dataclass(frozen=True)
class ClusterState:
    """Everything the compiler reads, keyed for lookup and sorted for determinism."""

    namespaces: tuple[Namespace, ...] = ()
    pods: tuple[Pod, ...] = ()
    policies: tuple[NetworkPolicy, ...] = ()
    _ns_index: dict[str, Namespace] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        # A pod or policy may name a namespace we have no object for (offline input, or
        # an event that raced the namespace's): it still exists, with only its name label.
        declared = {ns.name for ns in self.namespaces}
        used = {p.namespace for p in self.pods} | {p.namespace for p in self.policies}
        implicit = used - declared
        extra = tuple(Namespace(n, ((NAMESPACE_NAME_LABEL, n),)) for n in implicit)
        object.__setattr__(self, "namespaces", tuple(sorted((*self.namespaces, *extra))))
        object.__setattr__(self, "pods", tuple(sorted(self.pods)))
        object.__setattr__(self, "policies", tuple(sorted(self.policies)))
        self._ns_index.update({ns.name: ns for ns in self.namespaces})

    def namespace(self, name: str) -> Namespace | None:
        return self._ns_index.get(name)
