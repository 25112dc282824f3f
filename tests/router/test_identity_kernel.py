"""The peer name from a real ``weave`` bridge, in a scratch network namespace (the same
against the Go weaver's ``--print-peer-name``: tests/interop/identity_against_go.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.kernel.netns import in_netns
from router.agent.identity import HostView, mac_from_uuid, peer_name
from router.agent.identity_host import link_hardware_address
from router.mesh.names import PeerName
from tests.router.identity_hosts import (
    HOST_ROOT,
    MACHINE_ID,
    fake_host,
    ip,
    link_mac,
    scratch_node,
    write_files,
)

pytestmark = pytest.mark.kernel

MID = b"5b1f0c2e9d8a4f3b8e7c6d5a4b3c2d1e\n"


@pytest.fixture
def node() -> Iterator[tuple[str, int]]:
    with scratch_node() as made:
        yield made


def files_and_live_links(root: Path) -> HostView:
    """Host files under ``root``, links from the kernel (the calling thread's netns)."""
    return dataclasses.replace(fake_host(root), link_address=link_hardware_address)


def test_the_name_is_the_weave_bridge_mac(node: tuple[str, int], tmp_path: Path) -> None:
    namespace, fd = node
    write_files(tmp_path, {MACHINE_ID: MID})
    host = files_and_live_links(tmp_path)
    with in_netns(fd):
        without_bridge = peer_name("", "weave", HOST_ROOT, host)
    ip(namespace, "link", "add", "weave", "type", "bridge")
    with in_netns(fd):
        with_bridge = peer_name("", "weave", HOST_ROOT, host)
    kernel_mac = link_mac(namespace, "weave")
    ip(namespace, "link", "set", "weave", "address", "0a:00:00:00:00:2a")
    with in_netns(fd):
        set_address = peer_name("", "weave", HOST_ROOT, host)
    assert without_bridge == PeerName.from_bytes6(mac_from_uuid(MID))
    assert str(with_bridge) == kernel_mac != str(without_bridge)
    assert set_address == PeerName(0x0A000000002A)


def test_an_alternative_name_is_not_the_bridge(node: tuple[str, int], tmp_path: Path) -> None:
    namespace, fd = node
    ip(namespace, "link", "add", "br0", "type", "bridge")
    ip(namespace, "link", "property", "add", "dev", "br0", "altname", "weave")
    write_files(tmp_path, {MACHINE_ID: MID})
    with in_netns(fd):
        assert link_hardware_address("br0") is not None
        assert link_hardware_address("weave") is None
        name = peer_name("", "weave", HOST_ROOT, files_and_live_links(tmp_path))
    assert name == PeerName.from_bytes6(mac_from_uuid(MID))
