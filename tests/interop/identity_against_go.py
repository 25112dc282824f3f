"""Our peer name against the real Go weaver's ``--print-peer-name`` (not collected in CI:
the Go binary is built from sources CI cannot download).  Run as root, with the binary
from tests/interop/build-go-weave.sh:
``.venv/bin/pytest tests/interop/identity_against_go.py``."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.kernel.netns import in_netns
from router.agent.identity import peer_name, print_peer_name_output
from router.agent.identity_host import live_host
from tests.interop.golab import GO_WEAVER
from tests.router.identity_hosts import ip, scratch_node, write_files

pytestmark = pytest.mark.kernel

MID = b"0123456789abcdef0123456789abcdef\n"


@pytest.fixture
def node() -> Iterator[tuple[str, int]]:
    with scratch_node() as made:
        yield made




def go_print_peer_name(namespace: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", namespace, str(GO_WEAVER), "--print-peer-name",
                           *flags], capture_output=True, text=True, timeout=30)


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


@pytest.mark.parametrize("flag", ["CE::1", "a:b:c:d:e:f", " 12:34:56:78:9a:bc"])
def test_name_flag_as_the_go_weaver(node: tuple[str, int], tmp_path: Path, flag: str) -> None:
    namespace, fd = node
    ip(namespace, "link", "add", "weave", "type", "bridge")
    go = go_print_peer_name(namespace, f"--name={flag}", f"--db-prefix={tmp_path}/db-")
    with in_netns(fd):
        ours = peer_name(flag, "weave", "", live_host())
    assert go.returncode == 0, go.stderr
    assert go.stdout == print_peer_name_output(ours)
