"""The Go Weave Net 2.8.1 weaver in a fabric lab (:class:`common.lab.fabric.FabricLab`), for
interop and side-by-side checks (not run in CI: the binary is built from sources CI
cannot download, by ``tests/interop/build-go-weave.sh``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from common.lab.fabric import (
    HTTP_PORT,
    IPALLOC_RANGE,
    MESH_PORT,
    FabricLab,
    peer_name,
    remove_orphaned_labs,
    wait_until,
)
from common.lab.process import LabProcess
from common.lab.signals import exit_on_sigterm

GO_WEAVER = Path(os.environ.get("GO_WEAVER", "/work/go-weave/bin/weaver"))
"""Default Go binary (``tests/interop/build-go-weave.sh`` puts it there)."""

def go_weaver_argv(
    binary: Path,
    name: str,
    nickname: str,
    db_prefix: Path,
    peers: Sequence[str] = (),
    password: str | None = None,
    ipalloc_init: str | None = None,
    ipalloc_range: str = IPALLOC_RANGE,
    no_fastdp: bool = True,
    extra: Sequence[str] = (),
) -> list[str]:
    """The Go weaver command line that works in a lab node (see reference/go-weave.md).

    ``no_fastdp``: this kernel has no Open vSwitch datapath, so the weaver falls back
    to the plain bridge and sleeve anyway; but unless fastdp is switched off it asks
    for "bridged_fastdp" again on a restart, finds its own "bridge" and exits with
    'Existing bridge type "bridge" is different than requested "bridged_fastdp"'.
    """
    argv = [
        str(binary), "--port", str(MESH_PORT), "--name", name, "--nickname", nickname,
        "--http-addr", f"127.0.0.1:{HTTP_PORT}", "--docker-api", "", "--no-dns",
        "--db-prefix", f"{db_prefix}", "--ipalloc-range", ipalloc_range,
    ]
    if no_fastdp:
        argv.append("--no-fastdp")
    if password is not None:
        argv += ["--password", password]
    if ipalloc_init is not None:
        argv += ["--ipalloc-init", ipalloc_init]
    return [*argv, *extra, *peers]



class GoLab(FabricLab):
    """A fabric lab that also starts Go weavers."""

    def start_go_weaver(
        self,
        index: int,
        peers: Sequence[str] | None = None,
        password: str | None = None,
        ipalloc_init: str | None = None,
        extra: Sequence[str] = (),
        binary: Path = GO_WEAVER,
        ipalloc_range: str = IPALLOC_RANGE,
        label: str = "weaver",
        no_fastdp: bool = True,
    ) -> LabProcess:
        """Start the Go weaver on node ``index``; ``peers`` defaults to every other node's IP."""
        if peers is None:
            peers = [self.node_ip(i) for i in range(self.nodes) if i != index]
        argv = go_weaver_argv(
            binary,
            name=peer_name(index),
            nickname=f"node{index}",
            db_prefix=self.node_dir(index) / "weave-",
            peers=peers,
            password=password,
            ipalloc_init=ipalloc_init,
            ipalloc_range=ipalloc_range,
            no_fastdp=no_fastdp,
            extra=extra,
        )
        return self.spawn(index, argv, label, env={"CHECKPOINT_DISABLE": "1"})


__all__ = ["GO_WEAVER", "HTTP_PORT", "MESH_PORT", "GoLab", "exit_on_sigterm", "go_weaver_argv",
           "peer_name", "remove_orphaned_labs", "wait_until"]
