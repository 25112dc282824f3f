"""Shared fixtures: one netns lab per session for the kernel tests, per iptables flavour;
and the ``kernel`` marker, given to every test that needs root and the kernel, so that
``pytest -m "not kernel"`` runs the pure tests alone.

A test is a kernel test when its module says so (``pytestmark``) or, in modules that mix
both, when it uses one of the fixtures that build network namespaces
(:data:`KERNEL_FIXTURES`)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest

from common.kernel.netns import list_netns
from common.lab import Lab, LabPod, cleanup_stale
from tests.cluster import Enforcer, pods_over_nodes
from tests.e2e.scenario import ALL_PODS

KERNEL_FIXTURES = frozenset({"lab", "enforcer", "netns", "netns_fd", "nft_ns", "api_lab",
                             "controllers"})
"""Fixtures that create network namespaces (and whatever runs in them)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if KERNEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.kernel)


MODES = ("nft", "legacy", "nftables")
"""The iptables backend in both iptables flavours, and the nftables backend."""
LAB_PREFIX = f"npt{os.getpid()}"
"""Unique per test process, so two test runs on one machine never share a lab."""


def remove_orphaned_labs() -> None:
    """Labs left by test processes that died (kill -9 skips every cleanup)."""
    found = {(m.group(1), m.group(2)) for n in list_netns()
             if (m := re.match(r"^(np[a-z])(\d+)-", n))}
    for prefix, pid in sorted(found):
        if not os.path.exists(f"/proc/{pid}"):
            cleanup_stale(f"{prefix}{pid}")


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """x, y, z × a, b, c spread over two nodes (a, c on one node and b on the other in x;
    alternating elsewhere), so same-node and cross-node paths are both exercised."""
    pods = [LabPod(key, node, ip) for key, node, ip in pods_over_nodes(ALL_PODS, 2)]
    remove_orphaned_labs()
    with Lab(nodes=2, pods=pods, prefix=LAB_PREFIX) as running:
        yield running


@pytest.fixture(scope="session", params=MODES)
def enforcer(request: pytest.FixtureRequest, lab: Lab) -> Iterator[Enforcer]:
    """A production backend on every lab node.  All of them hook the same netfilter
    points, so the others are emptied first."""
    for other in MODES:
        Enforcer(lab, other).remove()
    enf = Enforcer(lab, request.param)
    try:
        yield enf
    finally:
        enf.remove()
