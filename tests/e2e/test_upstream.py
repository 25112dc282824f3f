"""Every data-plane case of the upstream Kubernetes NetworkPolicy e2e suite, with real
traffic between pod namespaces spread over two lab nodes, per iptables flavour."""

from __future__ import annotations

import pytest

from common.lab import Lab
from tests.cluster import Cluster, Enforcer
from tests.e2e.scenario import Case
from tests.e2e.upstream import case_id, run_case
from tests.e2e.upstream_cases import CASES

pytestmark = pytest.mark.kernel  # network namespaces, netfilter, real traffic


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_upstream_case(case: Case, lab: Lab, enforcer: Enforcer) -> None:
    def directly(cluster: Cluster) -> None:
        enforcer.apply(cluster.state())

    run_case(case, lab, directly)
