"""Sanity checks on the transcribed upstream cases (pure data; no cluster needed)."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from typing import Any

import pytest

from npc.model.parse import parse_network_policy
from tests.e2e.scenario import (
    Case,
    CreatePolicy,
    DeletePolicy,
    Expect,
    ExpectAllEgress,
    ExpectAllIngress,
    ExpectPeer,
    SetNamespaceLabels,
    SetPodLabels,
    UpdatePolicy,
)
from tests.e2e.upstream_cases import (
    CASES,
    FIXTURE_NAMESPACES,
    SCTP_CONTEXT,
    TCP_CONTEXT,
    UDP_CONTEXT,
)

_PLACEHOLDER = re.compile(r"\{(ip|net):([a-z])/([a-z])(?:/(\d+))?\}")


def _dummy_ip(case: Case, pod: str) -> str:
    return f"10.32.0.{case.pods.index(pod) + 1}"


def _substitute(case: Case, value: Any) -> Any:
    """Replace {ip:ns/pod} and {net:ns/pod/len} with addresses made up for the case."""
    if isinstance(value, dict):
        return {k: _substitute(case, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(case, v) for v in value]
    if not isinstance(value, str):
        return value

    def repl(m: re.Match[str]) -> str:
        kind, ns, pod, plen = m.groups()
        pod_ref = f"{ns}/{pod}"
        assert pod_ref in case.pods, f"{case.name}: placeholder names absent pod {pod_ref}"
        ip = _dummy_ip(case, pod_ref)
        if kind == "ip":
            assert plen is None
            return ip
        assert plen is not None
        return str(ipaddress.ip_network(f"{ip}/{plen}", strict=False))

    return _PLACEHOLDER.sub(repl, value)


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _ids(case: Case) -> str:
    return f"{case.context} :: {case.name}"


def test_counts_per_context() -> None:
    counts = Counter(c.context for c in CASES)
    assert counts == {TCP_CONTEXT: 42, UDP_CONTEXT: 3, SCTP_CONTEXT: 3}


def test_names_unique_within_context() -> None:
    keys = [(c.context, c.name) for c in CASES]
    assert len(keys) == len(set(keys))
    assert all(c.name.endswith(" [Feature:NetworkPolicy]") for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_case_shape(case: Case) -> None:
    assert case.steps
    assert len(set(case.pods)) == len(case.pods)
    for p in case.pods:
        ns, _, name = p.partition("/")
        assert ns in FIXTURE_NAMESPACES and name
    for step in case.steps:
        assert step.probes, "every step probes at least once"
        for probe in step.probes:
            assert probe.port in case.ports
            assert probe.protocol in case.protocols


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_expectations_name_known_pods(case: Case) -> None:
    for step in case.steps:
        for e in step.reachability.expectations:
            if isinstance(e, Expect):
                assert e.src in case.pods and e.dst in case.pods
            elif isinstance(e, ExpectAllIngress | ExpectAllEgress):
                assert e.pod in case.pods
            else:
                assert isinstance(e, ExpectPeer)
                for ns, pod in ((e.from_ns, e.from_pod), (e.to_ns, e.to_pod)):
                    assert ns in ("", *FIXTURE_NAMESPACES)
                    if pod:
                        assert ns, "a pod wildcard needs a namespace"
                        assert f"{ns}/{pod}" in case.pods


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_manifests_parse_and_policy_lifecycle(case: Case) -> None:
    existing: set[tuple[str, str]] = set()
    for step in case.steps:
        for action in step.actions:
            if isinstance(action, CreatePolicy | UpdatePolicy):
                m = action.manifest
                assert m["apiVersion"] == "networking.k8s.io/v1"
                assert m["kind"] == "NetworkPolicy"
                key = (m["metadata"]["namespace"], m["metadata"]["name"])
                assert key[0] in FIXTURE_NAMESPACES
                if isinstance(action, CreatePolicy):
                    assert key not in existing, f"{key} created twice"
                    existing.add(key)
                else:
                    assert key in existing, f"{key} updated before it was created"
                policy, errors = parse_network_policy(_substitute(case, m))
                assert errors == [], errors
                assert not policy.rejected
                assert (policy.namespace, policy.name) == key
                assert not any("{" in s for s in _strings(_substitute(case, m)))
            elif isinstance(action, DeletePolicy):
                key = (action.namespace, action.name)
                assert key in existing, f"{key} deleted before it was created"
                existing.discard(key)
            elif isinstance(action, SetPodLabels):
                assert action.pod in case.pods
                assert action.labels.get("pod") == action.pod.partition("/")[2]
            else:
                assert isinstance(action, SetNamespaceLabels)
                assert action.namespace in FIXTURE_NAMESPACES
                assert action.labels.get("kubernetes.io/metadata.name") == action.namespace


def test_placeholders_substitute_as_documented() -> None:
    (case,) = [c for c in CASES if c.name.startswith("should enforce except clause")]
    manifest = case.steps[0].actions[0]
    assert isinstance(manifest, CreatePolicy)
    block = _substitute(case, manifest.manifest)["spec"]["egress"][0]["to"][0]["ipBlock"]
    assert block == {"cidr": "0.0.0.0/4", "except": ["10.32.0.2/32"]}
