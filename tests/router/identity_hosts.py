"""Fake hosts for the identity tests: a temporary directory stands for ``/``.

Files are read with the live reader (``read_host_file``) under that directory, so the
"does not exist" / "cannot be read" distinction is the real one; links, the host name,
randomness and the persisted name are given as values.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

from common.kernel.netns import open_netns
from common.lab.netns import scratch_netns
from router.agent.identity import (
    HostView,
    IdentityError,
    PersistedPeerName,
    no_persisted_peer_name,
)
from router.agent.identity_host import read_host_file
from router.mesh.names import PeerName

HOST_ROOT = "/host"
"""Where the DaemonSet mounts the host's root; a fake root has it at ``<tmp>/host``."""
MACHINE_ID = HOST_ROOT + "/etc/machine-id"
DBUS_MACHINE_ID = HOST_ROOT + "/var/lib/dbus/machine-id"
PRODUCT_UUID = "/sys/class/dmi/id/product_uuid"
HYPERVISOR_UUID = "/sys/hypervisor/uuid"
DIRECTORY = object()
"""As a file's content in :func:`write_files`: make a directory there."""


def write_files(root: Path, files: Mapping[str, bytes | object]) -> None:
    """Create each absolute ``path`` under ``root`` with its bytes (or a directory)."""
    for path in sorted(files):
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        content = files[path]
        if content is DIRECTORY:
            target.mkdir()
        else:
            assert isinstance(content, bytes)
            target.write_bytes(content)


def persisted(name: str | None) -> PersistedPeerName:
    """A persisted-name source holding ``name`` (None: no DB, or no name in it)."""
    value = None if name is None else PeerName.parse(name)
    return lambda: value


def unreadable_db() -> PeerName | None:
    """A persisted-name source whose DB exists but cannot be read."""
    raise IdentityError("state DB: invalid database")


def fake_host(root: Path, links: Mapping[str, bytes] | None = None,
              persisted_name: PersistedPeerName = no_persisted_peer_name,
              hostname: str = "node-a", seed: int = 1) -> HostView:
    """A host whose ``/`` is ``root``, with these links (name → hardware address)."""
    link_table = dict(links or {})
    return HostView(read_file=lambda path: read_host_file(str(root) + path),
                    link_address=link_table.get,
                    hostname=lambda: hostname,
                    random_bytes=random.Random(seed).randbytes,
                    persisted_peer_name=persisted_name)


@contextlib.contextmanager
def scratch_node() -> Iterator[tuple[str, int]]:
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
