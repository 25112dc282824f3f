"""Driving the upstream Kubernetes NetworkPolicy e2e cases (:mod:`.upstream_cases`) over a
lab: the initial cluster of a case, its actions, and each step's probes compared with the
expected reachability, whatever enforces the cluster (a backend directly, or npc run
through the API server)."""

from __future__ import annotations

from collections.abc import Callable

from common.lab import Lab
from tests.cluster import Cluster, PodDef, lab_node_name, substitute_ips
from tests.e2e.scenario import (
    Case,
    CreatePolicy,
    DeletePolicy,
    SetNamespaceLabels,
    SetPodLabels,
    UpdatePolicy,
)
from tests.e2e.truthtable import expected

NAMESPACE_LABEL = "kubernetes.io/metadata.name"


def case_id(case: Case) -> str:
    proto = "-".join(p.lower() for p in case.protocols)
    return f"{proto}: {case.name.replace(' [Feature:NetworkPolicy]', '')}"


def initial_cluster(case: Case, lab: Lab) -> Cluster:
    cluster = Cluster()
    for ns in ("x", "y", "z"):
        cluster.namespaces[ns] = {NAMESPACE_LABEL: ns}
    ports = [(port, proto, f"serve-{port}-{proto.lower()}")
             for port in case.ports for proto in case.protocols]
    for key in case.pods:
        ns, name = key.split("/")
        cluster.pods[key] = PodDef(ns, name, lab.pod_ip(key), lab_node_name(lab.node_of(key)),
                                   {"pod": name}, list(ports))
    return cluster


def apply_action(cluster: Cluster, action: object, ip_of: dict[str, str]) -> None:
    if isinstance(action, CreatePolicy | UpdatePolicy):
        cluster.put_policy(substitute_ips(action.manifest, ip_of))
    elif isinstance(action, DeletePolicy):
        del cluster.policies[(action.namespace, action.name)]
    elif isinstance(action, SetNamespaceLabels):
        cluster.namespaces[action.namespace] = {**action.labels,
                                                NAMESPACE_LABEL: action.namespace}
    elif isinstance(action, SetPodLabels):
        cluster.pods[action.pod].labels = dict(action.labels)
    else:
        raise TypeError(action)


def run_case(case: Case, lab: Lab, enforce: Callable[[Cluster], None]) -> None:
    """Every step of ``case``: change the cluster, ``enforce`` it, probe, compare."""
    cluster = initial_cluster(case, lab)
    ip_of = {key: lab.pod_ip(key) for key in lab.keys}
    failures = []
    for index, step in enumerate(case.steps):
        for action in step.actions:
            apply_action(cluster, action, ip_of)
        enforce(cluster)
        lab.flush_conntrack()
        want = expected(step.reachability, case.pods)
        for probe in step.probes:
            result = lab.validate(want, probe.port, probe.protocol, keys=list(case.pods))
            if not result.ok:
                failures.append(f"step {index} {probe.port}/{probe.protocol}:\n"
                                f"{result.format()}")
    assert not failures, "\n".join(failures)
