"""Data types for policy scenarios transcribed from the upstream Kubernetes e2e suite.

A scenario is pure data: the pods that exist, the steps (cluster changes followed by
probes) and, for each step, the expected reachability built the way upstream's
``Reachability`` builds it: start from a default, then apply the expectations in order,
each overriding what came before.

IP placeholders: a string field of a policy manifest may contain ``{ip:x/b}`` (the pod's
IPv4 address) or ``{net:x/b/4}`` (the network of x/b's address with that prefix length,
e.g. ``0.0.0.0/4`` for 10.x); the runner substitutes them once the lab has addresses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_PODS: tuple[str, ...] = tuple(f"{ns}/{p}" for ns in "xyz" for p in "abc")


# ---- expectations (upstream reachability.go), applied in order ----
@dataclass(frozen=True)
class ExpectPeer:
    """``ExpectPeer(&Peer{Namespace, Pod}, &Peer{...}, connected)``; "" is a wildcard."""

    from_ns: str
    from_pod: str
    to_ns: str
    to_pod: str
    connected: bool


@dataclass(frozen=True)
class ExpectAllIngress:
    """Every source to ``pod`` ("ns/name") has this outcome (a column)."""

    pod: str
    connected: bool


@dataclass(frozen=True)
class ExpectAllEgress:
    """``pod`` ("ns/name") to every destination has this outcome (a row)."""

    pod: str
    connected: bool


@dataclass(frozen=True)
class Expect:
    """One cell: ``src`` → ``dst`` ("ns/name" each)."""

    src: str
    dst: str
    connected: bool


Expectation = ExpectPeer | ExpectAllIngress | ExpectAllEgress | Expect


@dataclass(frozen=True)
class Reachability:
    default: bool = True
    expectations: tuple[Expectation, ...] = ()


# ---- cluster changes ----
@dataclass(frozen=True)
class CreatePolicy:
    manifest: dict[str, Any]


@dataclass(frozen=True)
class UpdatePolicy:
    manifest: dict[str, Any]


@dataclass(frozen=True)
class DeletePolicy:
    namespace: str
    name: str


@dataclass(frozen=True)
class SetNamespaceLabels:
    """Replace the namespace's labels (the kubernetes.io/metadata.name label stays)."""

    namespace: str
    labels: dict[str, str]


@dataclass(frozen=True)
class SetPodLabels:
    """Replace the pod's labels ("ns/name")."""

    pod: str
    labels: dict[str, str]


Action = CreatePolicy | UpdatePolicy | DeletePolicy | SetNamespaceLabels | SetPodLabels


@dataclass(frozen=True)
class Probe:
    port: int
    protocol: str = "TCP"  # TCP, UDP or SCTP


@dataclass(frozen=True)
class Step:
    actions: tuple[Action, ...]
    probes: tuple[Probe, ...]
    reachability: Reachability


@dataclass(frozen=True)
class Case:
    """One upstream test.  ``name`` is the upstream ginkgo name, verbatim."""

    name: str
    steps: tuple[Step, ...]
    pods: tuple[str, ...] = ALL_PODS
    # Container ports each pod declares: one container per (port, protocol), with the named
    # port serve-<port>-<proto lower>, as upstream's model builds them.
    ports: tuple[int, ...] = (80, 81)
    protocols: tuple[str, ...] = ("TCP",)
    context: str = "Netpol NetworkPolicy between server and client"
    extra: dict[str, Any] = field(default_factory=dict)
