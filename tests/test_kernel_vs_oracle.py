"""Generated clusters and policies: the kernel, programmed by the production backend and
probed with real traffic, must agree with the reference evaluator (tests/oracle.py),
which is written from the spec independently of the compiler.

Examples per iptables flavour: ``NPC_ORACLE_EXAMPLES`` (default 500, so a CI run checks
1000 clusters; ``bench/oracle-nightly`` runs many more).
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from common.lab import Lab
from npc.compile.compiler import compile_ruleset
from npc.compile.incremental import IncrementalCompiler, PodChange
from npc.model.objects import ClusterState, Pod
from tests.cluster import Enforcer, lab_node_name
from tests.oracle import expected_matrix
from tests.strategies import POD_LABELS, cluster_states, probes

pytestmark = pytest.mark.kernel  # network namespaces, netfilter, real traffic

EXAMPLES = int(os.environ.get("NPC_ORACLE_EXAMPLES", "500"))


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_kernel_agrees_with_reference_evaluator(data: st.DataObject, lab: Lab,
                                                enforcer: Enforcer) -> None:
    keys = list(lab.keys)
    pods = [(k, lab.pod_ip(k)) for k in keys]
    nodes = {k: lab_node_name(lab.node_of(k)) for k in keys}
    state = data.draw(cluster_states(pods, nodes=nodes), label="cluster")
    port, protocol = data.draw(probes(), label="probe")
    enforcer.apply(state)
    lab.flush_conntrack()
    want = expected_matrix(state, keys, port, protocol)
    result = lab.validate(want, port, protocol.value, timeout=0.3)
    assert result.ok, (f"kernel and reference evaluator disagree on {protocol.value}/{port}"
                       f"\n{result.format()}\npolicies: {state.policies}")


PENDING_EXAMPLES = max(10, EXAMPLES // 20)


@pytest.mark.parametrize("enforcer", ["nftables"], indirect=True)
def test_pods_pending_after_pod_events_are_enforced(lab: Lab, enforcer: Enforcer) -> None:
    """nftables: pods that pod events changed are pending (their connections take the
    pending chain, not the dispatch map); the kernel must agree with the reference
    evaluator then, and again after the backend folds them into the map (tidy).  Most
    examples must have had pods pending."""
    keys = list(lab.keys)
    pods = [(k, lab.pod_ip(k)) for k in keys]
    nodes = {k: lab_node_name(lab.node_of(k)) for k in keys}
    seen: list[int] = []

    @settings(max_examples=PENDING_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        state = data.draw(cluster_states(pods, nodes=nodes), label="cluster")
        assume(state.policies)
        # Before the events: some pods did not exist yet, some had other labels.
        before_pods: list[Pod] = []
        for p in state.pods:
            fate = data.draw(st.sampled_from(["same", "absent", "absent", "relabelled"]))
            if fate == "relabelled":
                labels = data.draw(st.dictionaries(st.sampled_from(sorted(POD_LABELS)),
                                                   st.sampled_from(["a", "b", "c"]),
                                                   max_size=2))
                before_pods.append(replace(p, labels=tuple(sorted(labels.items()))))
            elif fate == "same":
                before_pods.append(p)
        before = ClusterState(state.namespaces, tuple(before_pods), state.policies)
        port, protocol = data.draw(probes(), label="probe")
        inc = IncrementalCompiler(enforcer.options)
        ruleset = inc.full(before)
        for backend in enforcer.backends:
            backend.sync(ruleset, full_check=True)
        old = {p.key: p for p in before.pods}
        # Pods with named ports appearing can make the compiler start over (no pod event).
        changes = [PodChange(old.get(p.key), p) for p in state.pods if old.get(p.key) != p]
        patched = inc.patch(changes) if changes else None
        for backend in enforcer.backends:
            if patched is not None:
                backend.sync(patched[0], changed_sets=patched[1])
            else:
                backend.sync(compile_ruleset(state, enforcer.options), full_check=True)
        untidy = [b.untidy() for b in enforcer.backends]
        seen.append(min(untidy))
        want = expected_matrix(state, keys, port, protocol)
        for step in ("pending", "tidied"):
            lab.flush_conntrack()
            result = lab.validate(want, port, protocol.value, timeout=0.3)
            assert result.ok, (f"{step}: kernel and reference evaluator disagree on "
                               f"{protocol.value}/{port} ({untidy} pods pending)"
                               f"\n{result.format()}\npolicies: {state.policies}")
            for backend in enforcer.backends:
                backend.tidy()
                assert backend.untidy() == 0

    check()
    assert sum(1 for n in seen if n > 0) >= len(seen) // 3, seen
