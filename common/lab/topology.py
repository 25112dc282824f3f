"""Names, addresses and iproute2 commands for a Weave-like lab cluster.

Shape (everything is a network namespace on this one machine)::

    pod ns (eth0 10.32.x.y/12) ==veth== vethwepl<hash> --+
                                                         | bridge "weave" (10.47.255.<n+1>/12)
    node ns <prefix>-n<n> ------------------------------ +-- vethwe-bridge ==veth==+
                                                                                   |
    fabric ns <prefix>-fab:  bridge "fab" <-- fab-n0, fab-n1, ... -----------------+

Weave Net attaches each pod to the node's ``weave`` bridge and the overlay to the
bridge through the ``vethwe-bridge`` port; weave-npc's iptables rules refer to
both names (``-i weave``, ``--physdev-out vethwe-bridge``), so they are kept
exact.  The fabric namespace joins all nodes' bridges into one L2 segment in
place of the overlay and does no filtering (br_netfilter calls are switched
off there, so only the node namespaces' iptables see bridged traffic).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from common import contract
from common.lab.netns import check_prefix

POD_CIDR = ipaddress.IPv4Network("10.32.0.0/12")
PREFIX_LEN = POD_CIDR.prefixlen
BRIDGE = contract.BRIDGE
BRIDGE_PORT = contract.BRIDGE_PORT
FABRIC_BRIDGE = "fab"
#: ifindex of fab-n<i> in the fabric namespace (see :meth:`Topology.root_batch`).
FABRIC_IFINDEX = 1000
#: first ifindex of the pods' vethwepl* ends in a node namespace.
POD_VETH_IFINDEX = 100

#: sysctls per namespace role.  bridge-nf-call-iptables is per-netns (kernel >= 5.3)
#: and makes bridged IPv4 traverse that namespace's iptables (PREROUTING/FORWARD/
#: POSTROUTING), which is what weave-npc relies on.
NODE_SYSCTLS = {"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"}
FABRIC_SYSCTLS = {
    "net.bridge.bridge-nf-call-iptables": "0",
    "net.bridge.bridge-nf-call-ip6tables": "0",
    "net.bridge.bridge-nf-call-arptables": "0",
}


@dataclass(frozen=True)
class LabPod:
    """A pod to create: ``key`` (e.g. ``"x/a"``), node index, IPv4 address in 10.32.0.0/12."""

    key: str
    node: int
    ip: str


def _sanitize(key: str) -> str:
    """A netns-name-safe rendering of a pod key (``x/a`` -> ``x-a``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", key) or "pod"


def _short_hash(text: str, salt: int) -> str:
    return hashlib.sha1(f"{salt}:{text}".encode()).hexdigest()[:7]


class Topology:
    """The static plan of a lab: validated inputs and every derived name."""

    def __init__(self, prefix: str, nodes: int, pods: Sequence[LabPod]) -> None:
        self.prefix = check_prefix(prefix)
        if not 1 <= nodes <= 254:
            raise ValueError("nodes must be between 1 and 254")
        self.nodes = nodes
        self.pods = list(pods)
        self._by_key = {p.key: p for p in self.pods}
        if len(self._by_key) != len(self.pods):
            raise ValueError("duplicate pod keys")
        self._validate_addresses()
        self._pod_ns = self._assign_pod_ns()
        self._veth = self._assign_veths()

    def _validate_addresses(self) -> None:
        node_ips = {self.node_ip(i) for i in range(self.nodes)}
        seen: set[str] = set()
        for pod in self.pods:
            if not 0 <= pod.node < self.nodes:
                raise ValueError(f"pod {pod.key}: node {pod.node} out of range")
            addr = ipaddress.IPv4Address(pod.ip)
            if addr not in POD_CIDR or addr in (
                POD_CIDR.network_address,
                POD_CIDR.broadcast_address,
            ):
                raise ValueError(f"pod {pod.key}: {pod.ip} not a host of {POD_CIDR}")
            if pod.ip in node_ips or pod.ip in seen:
                raise ValueError(f"pod {pod.key}: address {pod.ip} already in use")
            seen.add(pod.ip)

    def _assign_pod_ns(self) -> dict[str, str]:
        names: dict[str, str] = {}
        used: set[str] = set()
        for pod in self.pods:
            name = f"{self.prefix}-p-{_sanitize(pod.key)}"
            if name in used:  # e.g. "x/a" and "x-a"
                name = f"{name}-{_short_hash(pod.key, 0)}"
            used.add(name)
            names[pod.key] = name
        return names

    def _assign_veths(self) -> dict[str, str]:
        """Node-side veth names, like Weave's ``vethwepl<container-id>`` (<= 15 chars)."""
        names: dict[str, str] = {}
        used: set[tuple[int, str]] = set()
        for pod in self.pods:
            salt = 0
            while (pod.node, name := f"vethwepl{_short_hash(pod.key, salt)}") in used:
                salt += 1
            used.add((pod.node, name))
            names[pod.key] = name
        return names

    # ---- names -------------------------------------------------------------
    @property
    def fabric_ns(self) -> str:
        return f"{self.prefix}-fab"

    def node_ns(self, index: int) -> str:
        if not 0 <= index < self.nodes:
            raise IndexError(f"no node {index}")
        return f"{self.prefix}-n{index}"

    def node_ip(self, index: int) -> str:
        return f"10.47.255.{index + 1}"

    def pod(self, key: str) -> LabPod:
        return self._by_key[key]

    def pod_ns(self, key: str) -> str:
        return self._pod_ns[key]

    def pod_veth(self, key: str) -> str:
        return self._veth[key]

    def all_ns(self) -> list[str]:
        """Every namespace the lab owns, fabric first."""
        nodes = [self.node_ns(i) for i in range(self.nodes)]
        return [self.fabric_ns, *nodes, *(self._pod_ns[p.key] for p in self.pods)]

    # ---- commands ----------------------------------------------------------
    def root_batch(self) -> list[str]:
        """Create namespaces and veth pairs from the root namespace in one ``ip`` run.

        ``ip link add NAME netns A type veth peer name PEER netns B`` creates each
        end directly in its target namespace, so names never clash in the root
        namespace (or with a real Weave on this host).

        Explicit ifindexes: the kernel's linkwatch treats a carrier change as
        urgent for a device whose ``iflink`` differs from its ``ifindex``; a veth
        whose peer (in another namespace) happens to have the *same* ifindex
        (both are typically 2, the first device after ``lo``) is handled as
        non-urgent and its operstate - hence its bridge port - stays down for up
        to a second.  Giving the named end a distinct index avoids the stall.
        """
        lines = [f"netns add {ns}" for ns in self.all_ns()]
        for i in range(self.nodes):
            lines.append(
                f"link add name fab-n{i} netns {self.fabric_ns} index {FABRIC_IFINDEX + i}"
                f" type veth peer name {BRIDGE_PORT} netns {self.node_ns(i)}"
            )
        per_node = [0] * self.nodes
        for pod in self.pods:
            index = POD_VETH_IFINDEX + per_node[pod.node]
            per_node[pod.node] += 1
            lines.append(
                f"link add name {self.pod_veth(pod.key)} netns {self.node_ns(pod.node)}"
                f" index {index} type veth peer name eth0 netns {self.pod_ns(pod.key)}"
            )
        return lines

    def ns_batches(self) -> dict[str | None, list[str]]:
        """Per-namespace configuration, independent of each other (run in parallel)."""
        batches: dict[str | None, list[str]] = {}
        fab = [f"link add {FABRIC_BRIDGE} type bridge", f"link set {FABRIC_BRIDGE} up"]
        for i in range(self.nodes):
            fab += [f"link set fab-n{i} master {FABRIC_BRIDGE}", f"link set fab-n{i} up"]
        batches[self.fabric_ns] = fab
        for i in range(self.nodes):
            node = [
                "link set lo up",
                f"link add {BRIDGE} type bridge",
                f"addr add {self.node_ip(i)}/{PREFIX_LEN} dev {BRIDGE}",
                f"link set {BRIDGE} up",
                f"link set {BRIDGE_PORT} master {BRIDGE}",
                f"link set {BRIDGE_PORT} up",
            ]
            for pod in self.pods:
                if pod.node == i:
                    veth = self.pod_veth(pod.key)
                    node += [f"link set {veth} master {BRIDGE}", f"link set {veth} up"]
            batches[self.node_ns(i)] = node
        for pod in self.pods:
            batches[self.pod_ns(pod.key)] = [
                "link set lo up",
                f"addr add {pod.ip}/{PREFIX_LEN} dev eth0",
                "link set eth0 up",
            ]
        return batches
