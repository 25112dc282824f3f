"""Test plumbing shared by kernel tests: a mutable cluster of manifests, and enforcement of
its compiled ruleset on every node of a lab through the production backend."""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from common.kernel.exec import SubprocessRunner
from common.lab import Lab
from npc.compile import names
from npc.compile.compiler import Options, compile_ruleset
from npc.compile.ruleset import Ruleset
from npc.dataplane.backend import ApplyReport
from npc.dataplane.iptables import IptablesBackend
from npc.dataplane.nft_runner import NftCli
from npc.dataplane.nftables import NftablesBackend
from npc.model.load import Loaded, add_object
from npc.model.objects import ClusterState

_PLACEHOLDER = re.compile(r"\{(ip|net):([a-z0-9-]+/[a-z0-9-]+)(?:/(\d+))?\}")


def substitute_ips(value: Any, ip_of: dict[str, str]) -> Any:
    """Replace ``{ip:ns/pod}`` and ``{net:ns/pod/N}`` in every string of a manifest."""
    if isinstance(value, dict):
        return {k: substitute_ips(v, ip_of) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_ips(v, ip_of) for v in value]
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            ip = ip_of[m.group(2)]
            if m.group(1) == "ip":
                return ip
            return str(ipaddress.ip_network(f"{ip}/{m.group(3)}", strict=False))
        return _PLACEHOLDER.sub(repl, value)
    return value


@dataclass
class PodDef:
    namespace: str
    name: str
    ip: str
    node: str
    labels: dict[str, str]
    ports: list[tuple[int, str, str]]  # (port, protocol, name)


@dataclass
class Cluster:
    """Namespaces, pods and policies as API objects; ``state()`` parses them as the API
    server would hand them to npc (with its defaulting)."""

    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    pods: dict[str, PodDef] = field(default_factory=dict)
    policies: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def manifests(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": ns, "labels": dict(labels)}}
            for ns, labels in sorted(self.namespaces.items())]
        for p in self.pods.values():
            out.append({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": p.name, "namespace": p.namespace, "labels": p.labels},
                "spec": {"nodeName": p.node, "containers": [
                    {"name": f"cont-{port}-{proto.lower()}",
                     "ports": [{"containerPort": port, "protocol": proto, "name": name}]}
                    for port, proto, name in p.ports]},
                "status": {"phase": "Running", "podIP": p.ip, "podIPs": [{"ip": p.ip}]}})
        out += [copy.deepcopy(m) for _, m in sorted(self.policies.items())]
        return out

    def load(self) -> Loaded:
        loaded = Loaded()
        for i, obj in enumerate(self.manifests()):
            add_object(loaded, obj, f"object {i}")
        return loaded

    def state(self) -> ClusterState:
        loaded = self.load()
        assert not loaded.failed, [str(p) for p in loaded.problems]
        return loaded.state()

    def put_policy(self, manifest: dict[str, Any]) -> None:
        meta = manifest["metadata"]
        self.policies[(meta.get("namespace", "default"), meta["name"])] = manifest


class Enforcer:
    """Compiles a cluster and applies it to every node of a lab with the production
    iptables backend (the code path ``npc apply`` and a sync use)."""

    def __init__(self, lab: Lab, mode: str, options: Options | None = None) -> None:
        """``mode``: "nft" or "legacy" (the iptables backend in that flavour), or
        "nftables" (the nftables backend)."""
        self.lab = lab
        self.mode = mode
        self.options = options or Options()
        self.runners = [SubprocessRunner(("ip", "netns", "exec", lab.node_ns(i)))
                        for i in range(lab.topology.nodes)]
        self.backends: list[IptablesBackend | NftablesBackend] = [
            NftablesBackend(NftCli(r), options=self.options) if mode == "nftables"
            else IptablesBackend(r, mode=mode, list_size=self.options.max_list_size,
                                 install_hooks=True)
            for r in self.runners]

    @property
    def is_nftables(self) -> bool:
        return self.mode == "nftables"

    def apply(self, state: ClusterState) -> tuple[Ruleset, list[ApplyReport]]:
        ruleset = compile_ruleset(state, self.options)
        reports = [b.apply(ruleset) for b in self.backends]
        return ruleset, reports

    def prepare(self) -> None:
        """What a starting controller does before its first sync (fail closed)."""
        empty = compile_ruleset(ClusterState(), self.options)
        for b in self.backends:
            b.prepare(empty)

    def remove(self) -> None:
        for b in self.backends:
            b.remove_all()

    def kernel_text(self, node: int) -> str:
        """The node's rules with counters, without comment lines."""
        if self.is_nftables:
            text = self.runners[node](["nft", "list", "table", "inet", "weave-npc"])
        else:
            text = self.runners[node]([f"iptables-{self.mode}-save", "-c", "-t", "filter"])
        return "\n".join(line for line in text.splitlines() if not line.startswith("#"))

    def break_ingress(self, node: int, namespace_set_source: str) -> None:
        """Damage the node's state from outside: flush the ingress policy rules and the
        set of one namespace selector (as ``iptables -F`` / ``ipset flush`` or nft would)."""
        if self.is_nftables:
            from npc.render.nft import set_name as nft_set

            listing = self.runners[node](["nft", "list", "table", "inet", "weave-npc"])
            for line in listing.splitlines():
                if line.strip().startswith("chain ingress-"):
                    chain = line.split()[1]
                    self.runners[node](["nft", "flush", "chain", "inet", "weave-npc", chain])
            self.runners[node](["nft", "flush", "set", "inet", "weave-npc",
                                nft_set(names.set_name(namespace_set_source))])
            return
        self.runners[node]([f"iptables-{self.mode}", "-F", names.INGRESS_CHAIN])
        self.runners[node](["ipset", "flush", names.set_name(namespace_set_source)])


def lab_node_name(index: int) -> str:
    return f"node-{index}"


def pods_over_nodes(keys: Sequence[str], nodes: int, first_ip: int = 10) -> list[tuple[str, int,
                                                                                        str]]:
    """(key, node index, ip) spreading pods round-robin over nodes."""
    return [(k, i % nodes, f"10.32.0.{first_ip + i}") for i, k in enumerate(keys)]


def pairs(keys: Iterable[str]) -> list[tuple[str, str]]:
    keys = list(keys)
    return [(s, d) for s in keys for d in keys if s != d]


NAMESPACE_LABEL = "kubernetes.io/metadata.name"
SERVED = tuple((port, proto) for port in (80, 81) for proto in ("TCP", "UDP", "SCTP"))


def lab_cluster(lab: Lab, keys: Sequence[str] | None = None) -> Cluster:
    """The lab's pods as a cluster: namespaces with only their name label, pods labelled
    ``pod: <name>`` declaring every served port as ``serve-<port>-<proto>``."""
    cluster = Cluster()
    for key in keys or lab.keys:
        ns, name = key.split("/")
        cluster.namespaces.setdefault(ns, {NAMESPACE_LABEL: ns})
        cluster.pods[key] = PodDef(ns, name, lab.pod_ip(key), lab_node_name(lab.node_of(key)),
                                   {"pod": name}, [(port, proto, f"serve-{port}-{proto.lower()}")
                                                   for port, proto in SERVED])
    return cluster


def netpol(key: str, spec: dict[str, Any]) -> dict[str, Any]:
    namespace, name = key.split("/")
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}
