"""Generated clusters and policies: the kernel, programmed by the production backend and
probed with real traffic, must agree with the reference evaluator (tests/oracle.py),
which is written from the spec independently of the compiler.

Examples per iptables flavour: ``NPC_ORACLE_EXAMPLES`` (default 500, so a CI run checks
1000 clusters; ``bench/oracle-nightly`` runs many more).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npc.lab import Lab
from tests.cluster import Enforcer, lab_node_name
from tests.oracle import expected_matrix
from tests.strategies import cluster_states, probes

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
