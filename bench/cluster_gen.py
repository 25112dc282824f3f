"""Realistic generated clusters for the benchmarks.

N pods over M = max(1, N // 100) namespaces with varied labels and containerPorts, and P
policies mixing default-deny, pod and namespace selectors, ipBlocks with except, named
ports, port ranges and egress — as API objects, parsed the way the controller parses
them.  Deterministic for a given (N, P, seed).
"""

from __future__ import annotations

import random
from typing import Any

from npc.model.load import Loaded, add_object
from npc.model.objects import ClusterState

Obj = dict[str, Any]


def pod_ip(i: int) -> str:
    return f"10.{32 + i // 65536}.{(i // 256) % 256}.{i % 256 + 0}"


def namespace(m: int) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": f"ns{m}", "labels": {"team": f"t{m % 10}",
                                                      "env": "prod" if m % 3 else "dev"}}}


def pod(i: int, m: int, rng: random.Random, labels: dict[str, str] | None = None) -> Obj:
    port = rng.choice([80, 8080, 8443])
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"p{i}", "namespace": f"ns{i % m}",
                         "labels": labels or {"app": f"a{rng.randrange(20)}",
                                              "tier": f"t{rng.randrange(3)}"}},
            "spec": {"nodeName": f"node-{i % 50}", "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": port},
                {"name": "metrics", "containerPort": 9090}]}]},
            "status": {"phase": "Running", "podIP": pod_ip(i)}}


def policy(j: int, m: int) -> Obj:
    kind = j % 6
    spec: Obj
    if kind == 0:
        spec = {"podSelector": {}}  # default deny
    elif kind == 1:
        spec = {"podSelector": {"matchLabels": {"app": f"a{j % 20}"}}, "ingress": [{
            "from": [{"namespaceSelector": {"matchLabels": {"team": f"t{j % 10}"}}}],
            "ports": [{"port": "http"}]}]}
    elif kind == 2:
        spec = {"podSelector": {"matchLabels": {"tier": "t1"}}, "ingress": [{
            "from": [{"ipBlock": {"cidr": "10.32.0.0/12", "except": [f"10.32.{j % 200}.0/24"]}}],
            "ports": [{"port": 8000, "endPort": 8999}]}]}
    elif kind == 3:
        spec = {"podSelector": {"matchLabels": {"app": f"a{j % 20}"}},
                "policyTypes": ["Egress"], "egress": [
                    {"to": [{"podSelector": {"matchLabels": {"tier": "t2"}},
                             "namespaceSelector": {"matchLabels": {"env": "prod"}}}]},
                    {"ports": [{"port": 53, "protocol": "UDP"}]}]}
    elif kind == 4:
        spec = {"podSelector": {"matchExpressions": [
            {"key": "app", "operator": "In", "values": [f"a{j % 20}", f"a{(j + 1) % 20}"]}]},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "t0"}}}],
                         "ports": [{"port": 9090}, {"port": 80, "protocol": "TCP"}]}]}
    else:
        spec = {"podSelector": {"matchLabels": {"app": f"a{j % 20}"}}, "ingress": [{
            "from": [{"namespaceSelector": {}, "podSelector": {
                "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["t2"]}]}}]}]}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": f"np{j}", "namespace": f"ns{j % m}"}, "spec": spec}


def objects(n_pods: int, n_policies: int, seed: int = 1) -> list[Obj]:
    rng = random.Random(seed)
    m = max(1, n_pods // 100)
    return ([namespace(k) for k in range(m)] + [pod(i, m, rng) for i in range(n_pods)]
            + [policy(j, m) for j in range(n_policies)])


def state(n_pods: int, n_policies: int, seed: int = 1) -> ClusterState:
    loaded = Loaded()
    for obj in objects(n_pods, n_policies, seed):
        add_object(loaded, obj, "generated")
    assert not loaded.failed, loaded.problems[:3]
    return loaded.state()
