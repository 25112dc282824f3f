"""The peer name from a real ``weave`` bridge, in a scratch network namespace; and, when
the Go weaver is built (tests/interop/build-go-weave.sh), its ``--print-peer-name``
output next to ours on the same host."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.kernel.netns import in_netns, open_netns
from common.lab.netns import scratch_netns
from router.agent.identity import HostView, mac_from_uuid, peer_name, print_peer_name_output
from router.agent.identity_host import link_hardware_address, live_host
from router.mesh.names import PeerName
from tests.router.identity_hosts import HOST_ROOT, MACHINE_ID, fake_host, write_files

pytestmark = pytest.mark.kernel

GO_WEAVER = Path(os.environ.get("GO_WEAVER", "/work/go-weave/bin/weaver"))
MID = b"5b1f0c2e9d8a4f3b8e7c6d5a4b3c2d1e\n"


@pytest.fixture
def node() -> Iterator[tuple[str, int]]:
    """A scratch namespace (name, open fd), deleted afterwards."""
    with scratch_netns("idk") as name:
        fd = open_netns(name)
        try:
            yield name, fd
        finally:
            os.close(fd)


def ip(namespace: str, *args: str) -> str:
    return subprocess.run(["ip", "-n", namespace, *args], check=True, capture_output=True,
                          text=True).stdout


def link_mac(namespace: str, link: str) -> str:
    shown = json.loads(ip(namespace, "-j", "link", "show", link))
    address: str = shown[0]["address"]
    return address


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
    try:
        ip(namespace, "link", "property", "add", "dev", "br0", "altname", "weave")
    except subprocess.CalledProcessError:
        pytest.skip("this kernel has no alternative link names")
    write_files(tmp_path, {MACHINE_ID: MID})
    with in_netns(fd):
        assert link_hardware_address("br0") is not None
        assert link_hardware_address("weave") is None
        name = peer_name("", "weave", HOST_ROOT, files_and_live_links(tmp_path))
    assert name == PeerName.from_bytes6(mac_from_uuid(MID))


needs_go_weaver = pytest.mark.skipif(not GO_WEAVER.exists(), reason=f"no Go weaver at {GO_WEAVER}")


def go_print_peer_name(namespace: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", namespace, str(GO_WEAVER), "--print-peer-name",
                           *flags], capture_output=True, text=True, timeout=30)


@needs_go_weaver
@pytest.mark.parametrize("bridge", [False, True], ids=["system-name", "bridge"])
def test_print_peer_name_as_the_go_weaver(node: tuple[str, int], tmp_path: Path,
                                          bridge: bool) -> None:
    """Same namespace, same files (the real /sys, a host root with a machine-id)."""
    namespace, fd = node
    write_files(tmp_path, {"/host/etc/machine-id": MID})
    if bridge:
        ip(namespace, "link", "add", "weave", "type", "bridge")
    host_root = f"{tmp_path}/host"
    go = go_print_peer_name(namespace, f"--host-root={host_root}", f"--db-prefix={tmp_path}/db-")
    with in_netns(fd):
        ours = peer_name("", "weave", host_root, live_host())
    assert go.returncode == 0, go.stderr
    assert go.stdout == print_peer_name_output(ours)


@needs_go_weaver
@pytest.mark.parametrize("flag", ["CE::1", "a:b:c:d:e:f", " 12:34:56:78:9a:bc"])
def test_name_flag_as_the_go_weaver(node: tuple[str, int], tmp_path: Path, flag: str) -> None:
    namespace, fd = node
    ip(namespace, "link", "add", "weave", "type", "bridge")
    go = go_print_peer_name(namespace, f"--name={flag}", f"--db-prefix={tmp_path}/db-")
    with in_netns(fd):
        ours = peer_name(flag, "weave", "", live_host())
    assert go.returncode == 0, go.stderr
    assert go.stdout == print_peer_name_output(ours)
