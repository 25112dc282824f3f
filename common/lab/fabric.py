"""A fabric lab: weave "nodes" (network namespaces on one fabric bridge) running agents.

Shape::

    <prefix>-n0: eth0 192.168.77.1/24 ==veth== fab-n0 --+
    <prefix>-n1: eth0 192.168.77.2/24 ==veth== fab-n1 --+-- bridge "fab" in <prefix>-fab
    ...                                                 |

Each node namespace is empty apart from ``lo`` and ``eth0``: the agent started
in it (ours, or the Go original: ``tests/interop/golab.py``) creates its own
``weave`` bridge, ``vethwe-*`` pair and iptables chains, exactly as on a real host
(which is why this is not the npc lab's topology, whose nodes already own a ``weave``
bridge).  The ``common.lab.netns`` helpers (iproute2 batches, per-thread ``setns``,
namespace deletion) are reused.

The HTTP API of a weaver binds ``127.0.0.1:6784`` *inside* its node namespace.
A socket belongs for life to the namespace of the thread that created it, so
:meth:`FabricLab.http` creates the socket on a thread that briefly enters the node
namespace, then speaks HTTP over it from wherever it is.

Cleanup: :meth:`FabricLab.close` stops the processes (SIGTERM, then SIGKILL), kills
anything still inside the namespaces, deletes the namespaces (their links go
with them) and removes the temporary directory; it runs on exceptions and
Ctrl-C (SIGINT is held back meanwhile).  :meth:`FabricLab.start` first removes
leftovers of labs whose creating process died (``kill -9`` skips cleanup).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from common.kernel.netns import list_netns, open_netns, write_sysctls
from common.lab.http import HttpReply, http_request
from common.lab.netns import (
    LabError,
    check_prefix,
    delete_netns,
    ip_batch,
    ip_batches_parallel,
    run,
)
from common.lab.process import LabProcess, signal_pid
from common.lab.signals import signals_deferred
from common.lab.topology import FABRIC_SYSCTLS

MESH_PORT = 6783
HTTP_PORT = 6784
IPALLOC_RANGE = "10.32.0.0/12"
LAB_ROOT = Path("/tmp")
NEIGHBOUR_LIMITS = Path("/proc/sys/net/ipv4/neigh/default")
"""The ARP table's limits.  The table is one for all network namespaces, so a lab of N
nodes that all talk to each other needs about N² entries: past gc_thresh3 (1024 by
default, 31 nodes) the kernel refuses new neighbours ("neighbor table overflow") and
connections time out."""
_ORPHAN_RE = re.compile(r"^(gl[a-z]?)(\d+)-(fab|n\d+)$")
BLOCK_COMMENT = "golab-block"

T = TypeVar("T")


def peer_name(index: int) -> str:
    """Deterministic weave peer name (a MAC) of node ``index``; survives restarts."""
    return f"ce:00:00:00:00:{index + 1:02x}"


def kill_netns_processes(names: Sequence[str]) -> None:
    """SIGKILL every process whose network namespace is one of ``names``."""
    existing = set(list_netns())
    for ns in names:
        if ns in existing:
            for pid in run(["ip", "netns", "pids", ns], check=False).split():
                signal_pid(int(pid), signal.SIGKILL)


def remove_orphaned_labs() -> list[str]:
    """Namespaces and directories of ``gl<pid>`` labs (or ``gl`` and one letter, as the
    benchmarks' ``glb<pid>``) whose process is gone; returns them."""
    dead = sorted(
        {n for n in list_netns() if (m := _ORPHAN_RE.match(n)) and not _pid_alive(m.group(2))}
    )
    kill_netns_processes(dead)
    delete_netns(dead)
    for path in LAB_ROOT.glob("golab-gl*"):
        pid = path.name.removeprefix("golab-gl").lstrip("abcdefghijklmnopqrstuvwxyz")
        if pid.isdigit() and not _pid_alive(pid):
            shutil.rmtree(path, ignore_errors=True)
    return dead


def _pid_alive(pid: str) -> bool:
    """Whether ``pid`` is a live process (``/proc/<tid>`` also exists for any thread's id)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return f"\nTgid:\t{pid}\n" in status


def wait_until(probe: Callable[[], T | None], timeout: float, what: str, step: float = 0.2) -> T:
    """Poll ``probe`` until it returns something other than None/False; raise after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


class FabricLab:
    """``nodes`` node namespaces on one fabric; processes and weaver HTTP queries inside them.

    Example::

        with FabricLab(nodes=3) as lab:
            for i in range(3):
                lab.spawn(i, ["weaver", "--name", peer_name(i), *peers])
            lab.wait_ready(range(3))
            print(lab.http(0, "GET", "/status/peers").text)
            lab.restart(1)
            lab.block(0, 2); ...; lab.heal(0, 2)
    """

    def __init__(
        self,
        nodes: int,
        prefix: str | None = None,
        fabric_cidr: str = "192.168.77.0/24",
        keep_dir: bool = False,
    ) -> None:
        self.prefix = check_prefix(prefix or f"gl{os.getpid()}")
        self.fabric = ipaddress.IPv4Network(fabric_cidr)
        if not 1 <= nodes <= min(200, self.fabric.num_addresses - 3):
            raise ValueError(f"{nodes} nodes do not fit in {fabric_cidr}")
        self.nodes = nodes
        self.workdir = LAB_ROOT / f"golab-{self.prefix}"
        self.keep_dir = keep_dir
        self.processes: dict[tuple[int, str], LabProcess] = {}
        self._fds: dict[str, int] = {}
        self._neighbour_limits: dict[str, str] = {}
        """The ARP table limits this lab raised, with their values before."""

    # ---- names ---------------------------------------------------------------
    @property
    def fabric_ns(self) -> str:
        return f"{self.prefix}-fab"

    def node_ns(self, index: int) -> str:
        if not 0 <= index < self.nodes:
            raise IndexError(f"no node {index}")
        return f"{self.prefix}-n{index}"

    def node_ip(self, index: int) -> str:
        """Address of node ``index`` on the fabric (its ``eth0``)."""
        self.node_ns(index)
        return str(self.fabric.network_address + index + 1)

    def node_dir(self, index: int) -> Path:
        return self.workdir / f"n{index}"

    def netns_fd(self, index: int) -> int:
        return self._fds[self.node_ns(index)]

    def all_ns(self) -> list[str]:
        return [self.fabric_ns, *(self.node_ns(i) for i in range(self.nodes))]

    # ---- lifecycle -----------------------------------------------------------
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Create namespaces and links; on any failure (or Ctrl-C) undo it all and re-raise."""
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        remove_orphaned_labs()
        kill_netns_processes(self.all_ns())
        delete_netns(self.all_ns())
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        root = [f"netns add {ns}" for ns in self.all_ns()]
        for i in range(self.nodes):
            # distinct ifindexes on the two ends: see common.lab.topology.Topology.root_batch
            root.append(
                f"link add name fab-n{i} netns {self.fabric_ns} index {1000 + i}"
                f" type veth peer name eth0 netns {self.node_ns(i)} index {100 + i}"
            )
        ip_batch(None, root)
        batches: dict[str | None, list[str]] = {
            self.fabric_ns: ["link set lo up", "link add fab type bridge", "link set fab up"]
        }
        for i in range(self.nodes):
            batches[self.fabric_ns] += [f"link set fab-n{i} master fab", f"link set fab-n{i} up"]
            batches[self.node_ns(i)] = [
                "link set lo up",
                f"addr add {self.node_ip(i)}/{self.fabric.prefixlen} dev eth0",
                "link set eth0 up",
            ]
        ip_batches_parallel(batches)
        for ns in self.all_ns():
            self._fds[ns] = open_netns(ns)
        write_sysctls(self._fds[self.fabric_ns], FABRIC_SYSCTLS)
        self._raise_neighbour_limits()

    def _raise_neighbour_limits(self) -> None:
        """Make room in the (host-wide) ARP table for every pair of nodes; restored by
        :meth:`close`."""
        needed = self.nodes * (self.nodes + 1)
        wanted = {"gc_thresh2": 2 * needed, "gc_thresh3": 4 * needed}
        for name, value in wanted.items():
            path = NEIGHBOUR_LIMITS / name
            before = path.read_text().strip()
            if int(before) < value:
                self._neighbour_limits[name] = before
                path.write_text(str(value))

    def close(self) -> None:
        """Stop processes, kill leftovers, delete namespaces and the work dir. Idempotent."""
        with signals_deferred():
            # All told at once, then waited for: a hundred agents stopped one by one
            # each saw the others leave, one at a time (minutes of topology churn).
            for proc in self.processes.values():
                try:
                    proc.terminate()
                except Exception as exc:  # keep cleaning up; the namespace kill follows
                    print(f"fabric lab: stopping {proc.label} failed: {exc}")
            deadline = time.monotonic() + 3.0
            for proc in self.processes.values():
                try:
                    proc.wait_or_kill(max(0.1, deadline - time.monotonic()))
                except Exception as exc:
                    print(f"fabric lab: stopping {proc.label} failed: {exc}")
            kill_netns_processes(self.all_ns())
            for proc in self.processes.values():
                proc.kill()
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            delete_netns(self.all_ns())
            for name in ("gc_thresh3", "gc_thresh2"):  # thresh2 <= thresh3 at every step
                if name in self._neighbour_limits:
                    (NEIGHBOUR_LIMITS / name).write_text(self._neighbour_limits.pop(name))
            if not self.keep_dir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    # ---- processes -----------------------------------------------------------
    def spawn(
        self,
        index: int,
        argv: Sequence[str],
        label: str = "weaver",
        env: Mapping[str, str] | None = None,
        pid_namespace: bool = True,
        cwd: Path | None = None,
    ) -> LabProcess:
        """Start ``argv`` in node ``index`` (cwd: the node's own directory); returns its handle.

        ``(index, label)`` names the process for :meth:`process`, :meth:`stop`, etc.
        """
        key = (index, label)
        if key in self.processes and self.processes[key].running():
            raise LabError(f"{label} already running on node {index}")
        proc = LabProcess(
            label=label,
            netns=self.node_ns(index),
            argv=argv,
            cwd=cwd or self.node_dir(index),
            env=env,
            pid_namespace=pid_namespace,
        )
        self.processes[key] = proc
        proc.start()
        return proc

    def process(self, index: int, label: str = "weaver") -> LabProcess:
        return self.processes[(index, label)]

    def stop(self, index: int, label: str = "weaver", timeout: float = 5.0) -> int | None:
        return self.process(index, label).stop(timeout)

    def kill(self, index: int, label: str = "weaver") -> int | None:
        return self.process(index, label).kill()

    def restart(self, index: int, label: str = "weaver", timeout: float = 5.0) -> None:
        self.process(index, label).restart(timeout)

    def run_in_node(
        self, index: int, argv: Sequence[str], check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a short command in node ``index``'s namespace."""
        cmd = ["ip", "netns", "exec", self.node_ns(index), *argv]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            raise LabError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    # ---- network faults ------------------------------------------------------
    def _block_rules(self, index: int, other: int) -> list[list[str]]:
        peer_ip = self.node_ip(other)
        tail = ["-m", "comment", "--comment", BLOCK_COMMENT, "-j", "DROP"]
        return [["INPUT", "-s", peer_ip, *tail], ["OUTPUT", "-d", peer_ip, *tail]]

    def block(self, a: int, b: int) -> None:
        """Drop all traffic between nodes ``a`` and ``b`` (iptables in ``a``'s namespace).

        Established TCP connections stall rather than reset: the mesh notices only
        through its heartbeat timeout, as on a real partition.
        """
        for chain, *rule in self._block_rules(a, b):
            self.run_in_node(a, ["iptables", "-w", "-I", chain, "1", *rule])

    def heal(self, a: int, b: int) -> None:
        """Undo :meth:`block` (missing rules are ignored)."""
        for chain, *rule in self._block_rules(a, b):
            self.run_in_node(a, ["iptables", "-w", "-D", chain, *rule], check=False)

    # ---- HTTP API ------------------------------------------------------------
    def http(
        self,
        index: int,
        method: str,
        path: str,
        form: Sequence[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        port: int = HTTP_PORT,
        timeout: float = 5.0,
    ) -> HttpReply:
        """One request to ``127.0.0.1:port`` inside node ``index`` (form: urlencoded body)."""
        return http_request(self.netns_fd(index), port, method, path, form, headers, timeout)

    def status(self, index: int, section: str = "") -> str:
        """Text of ``/status`` or ``/status/<section>`` (raises unless 200)."""
        path = "/status" + (f"/{section}" if section else "")
        return self.http(index, "GET", path).expect(200).text

    def report(self, index: int) -> dict[str, object]:
        """``/report`` as JSON."""
        reply = self.http(index, "GET", "/report", headers={"Accept": "application/json"})
        body = reply.expect(200).json()
        if not isinstance(body, dict):
            raise LabError(f"/report on node {index} is not a JSON object")
        return body

    def ready(self, index: int) -> bool:
        """Whether node ``index``'s HTTP API answers ``/status`` with 200."""
        try:
            return self.http(index, "GET", "/status", timeout=1.0).status == 200
        except OSError:
            return False

    def wait_ready(self, indexes: Sequence[int] | range, timeout: float = 30.0) -> None:
        for i in indexes:
            proc = self.processes.get((i, "weaver"))

            def probe(i: int = i, proc: LabProcess | None = proc) -> bool:
                if proc is not None and not proc.running():
                    raise LabError(f"weaver on node {i} exited:\n{proc.log_tail()}")
                return self.ready(i)

            wait_until(probe, timeout, f"node {i} HTTP API")
