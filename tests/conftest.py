"""Shared fixtures: one netns lab per session for the kernel tests, per iptables flavour."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from npc.lab import Lab, LabPod
from tests.cluster import Enforcer, pods_over_nodes
from tests.e2e.scenario import ALL_PODS

MODES = ("nft", "legacy")


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """x, y, z × a, b, c spread over two nodes (a, c on one node and b on the other in x;
    alternating elsewhere), so same-node and cross-node paths are both exercised."""
    pods = [LabPod(key, node, ip) for key, node, ip in pods_over_nodes(ALL_PODS, 2)]
    with Lab(nodes=2, pods=pods, prefix="npt") as running:
        yield running


@pytest.fixture(scope="session", params=MODES)
def enforcer(request: pytest.FixtureRequest, lab: Lab) -> Iterator[Enforcer]:
    """The production iptables backend on every lab node, in one iptables flavour.  Both
    flavours hook the same netfilter points, so the other one is emptied first."""
    for other in MODES:
        Enforcer(lab, other).remove()
    enf = Enforcer(lab, request.param)
    try:
        yield enf
    finally:
        enf.remove()
