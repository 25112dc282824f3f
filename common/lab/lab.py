"""The :class:`Lab` context manager: build the namespaces, serve, probe, tear down.

Teardown order matters for the kernel: a namespace only disappears once nothing
references it, and open sockets (the pod servers, in-flight probes) as well as
our own netns fds are references.  So ``close()`` stops the probe pool, closes
every server socket and fd, and only then deletes the ``/run/netns`` mounts;
the dying namespaces take their veths (and, via the peers, the other ends) with
them.  SIGINT is deferred during teardown so a second Ctrl-C cannot leave half a
lab behind; leftovers from a hard crash are removed by :func:`cleanup_stale` at
the next start with the same prefix.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from types import TracebackType

from common.kernel.netns import open_netns, write_sysctls
from common.lab.matrix import Comparison, Matrix, probe_matrix
from common.lab.matrix import validate as validate_matrix
from common.lab.netns import (
    LabError,
    cleanup_stale,
    delete_netns,
    ip_batch,
    ip_batches_parallel,
    run,
)
from common.lab.probe import Prober, ProbeResult, ProbeSpec, Protocol, normalize_protocol
from common.lab.servers import DEFAULT_PORTS, PodServers
from common.lab.signals import signals_deferred
from common.lab.topology import FABRIC_SYSCTLS, NODE_SYSCTLS, LabPod, Topology

Pair = tuple[str, str]


def _all_ports_forwarding(ns: str) -> bool:
    """Whether ``bridge -n NS link`` lists only ports in state forwarding."""
    ports = json.loads(run(["bridge", "-n", ns, "-j", "link", "show"]) or "[]")
    return all(port.get("state") == "forwarding" for port in ports)


class Lab:
    """A Weave-like cluster of ``nodes`` node namespaces and the given pods.

    The lab installs no iptables rules; the policy controller under test (or the
    test) does.  ``prefix`` ([A-Za-z0-9_]+) scopes all namespace names so that
    labs with different prefixes coexist.  Example::

        pods = [LabPod("x/a", 0, "10.32.0.10"), LabPod("x/b", 1, "10.32.0.11")]
        with Lab(nodes=2, pods=pods, prefix="npl") as lab:
            lab.run_in_node(1, ["iptables", "-I", "FORWARD", "-j", "DROP"])
            lab.flush_conntrack()
            print(lab.matrix(80, "TCP").format())
            cmp = lab.validate({("x/a", "x/b"): False, ("x/b", "x/a"): False}, 80, "UDP")
            assert cmp.ok, cmp.format()
    """

    def __init__(
        self,
        nodes: int,
        pods: Sequence[LabPod],
        prefix: str = "npl",
        workers: int = 64,
        ports: Sequence[int] = DEFAULT_PORTS,
    ) -> None:
        self.topology = Topology(prefix, nodes, pods)
        self.ports = tuple(ports)
        self._workers = workers
        self._fds: dict[str, int] = {}
        self._servers: PodServers | None = None
        self._prober: Prober | None = None
        self.build_seconds = 0.0

    # ---- lifecycle ---------------------------------------------------------
    def __enter__(self) -> Lab:
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
        """Create everything; on any failure (or Ctrl-C) undo what was done and re-raise."""
        begin = time.monotonic()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        self.build_seconds = time.monotonic() - begin

    def _build(self) -> None:
        topo = self.topology
        cleanup_stale(topo.prefix)
        ip_batch(None, topo.root_batch())
        ip_batches_parallel(topo.ns_batches())
        for ns in topo.all_ns():
            self._fds[ns] = open_netns(ns)
        write_sysctls(self._fds[topo.fabric_ns], FABRIC_SYSCTLS)
        for i in range(topo.nodes):
            write_sysctls(self._fds[topo.node_ns(i)], NODE_SYSCTLS)
        self._servers = PodServers(self.ports)
        for pod in topo.pods:
            self._servers.add_pod(pod.key, self._fds[topo.pod_ns(pod.key)])
        self._servers.start()
        self._prober = Prober(self._workers)
        self._wait_bridge_ports()

    def _wait_bridge_ports(self, timeout: float = 5.0) -> None:
        """Wait until every port of every bridge is in STP state ``forwarding``.

        With STP off a port forwards as soon as it is operationally up, but the
        operstate is updated asynchronously (linkwatch); probing earlier loses
        the first ARP requests, and the senders' neighbour entries then sit in
        INCOMPLETE for a whole retransmit interval (1 s), failing probes.
        """
        deadline = time.monotonic() + timeout
        pending = [self.fabric_ns, *(self.node_ns(i) for i in range(self.topology.nodes))]
        while pending:
            pending = [ns for ns in pending if not _all_ports_forwarding(ns)]
            if pending and time.monotonic() > deadline:
                raise LabError(f"bridge ports not forwarding after {timeout}s in {pending}")
            if pending:
                time.sleep(0.02)

    def close(self) -> None:
        """Stop threads, close sockets and fds, delete every namespace of this lab.

        Idempotent; safe after a partial :meth:`start`.
        """
        with signals_deferred():
            if self._prober is not None:
                self._prober.close()
                self._prober = None
            if self._servers is not None:
                self._servers.stop()
                self._servers = None
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            delete_netns(self.topology.all_ns())

    # ---- names ---------------------------------------------------------------
    @property
    def prefix(self) -> str:
        return self.topology.prefix

    @property
    def nodes(self) -> int:
        return self.topology.nodes

    @property
    def keys(self) -> list[str]:
        """Pod keys in creation order (the default matrix order)."""
        return [p.key for p in self.topology.pods]

    @property
    def fabric_ns(self) -> str:
        return self.topology.fabric_ns

    def node_ns(self, index: int) -> str:
        return self.topology.node_ns(index)

    def node_ip(self, index: int) -> str:
        """Address of node ``index``'s ``weave`` bridge."""
        return self.topology.node_ip(index)

    def pod_ns(self, key: str) -> str:
        return self.topology.pod_ns(key)

    def pod_ip(self, key: str) -> str:
        return self.topology.pod(key).ip

    def node_of(self, key: str) -> int:
        return self.topology.pod(key).node

    def pod_veth(self, key: str) -> str:
        """Name of the pod's veth end in its node namespace (a ``weave`` bridge port)."""
        return self.topology.pod_veth(key)

    def netns_fd(self, name: str) -> int:
        """Open fd of one of the lab's namespaces (for :func:`common.lab.in_netns`)."""
        return self._fds[name]

    # ---- commands ------------------------------------------------------------
    def run_in_ns(
        self, ns: str, argv: Sequence[str], input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` via ``ip netns exec``; raise :class:`LabError` if it fails and ``check``."""
        cmd = ["ip", "netns", "exec", ns, *argv]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise LabError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def run_in_node(
        self, index: int, argv: Sequence[str], input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in node ``index``'s namespace (e.g. ``iptables-restore``)."""
        return self.run_in_ns(self.node_ns(index), argv, input=input, check=check)

    def flush_conntrack(self) -> None:
        """``conntrack -F`` in every node namespace, concurrently.

        UDP "connections" and SCTP associations stay in conntrack for tens of
        seconds; without a flush the next step's probes would match ESTABLISHED
        entries of the previous step instead of being evaluated as NEW.
        """
        procs = [
            subprocess.Popen(
                ["ip", "netns", "exec", self.node_ns(i), "conntrack", "-F"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(self.topology.nodes)
        ]
        errors = []
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                errors.append(err.strip())
        if errors:
            raise LabError("conntrack -F failed: " + "; ".join(errors))

    # ---- probing -------------------------------------------------------------
    def probe_many(
        self, pairs: Sequence[Pair], port: int, protocol: str, timeout: float = 0.5
    ) -> dict[Pair, ProbeResult]:
        """Probe all (src, dst) pairs concurrently; self-pairs are skipped."""
        if self._prober is None:
            raise LabError("lab is not running")
        proto = normalize_protocol(protocol)
        todo = [(s, d) for s, d in pairs if s != d]
        specs = [
            ProbeSpec(
                src_fd=self._fds[self.pod_ns(src)],
                dst_ip=self.pod_ip(dst),
                port=port,
                protocol=proto,
                timeout=timeout,
                expect_reply=dst.encode() if proto == "UDP" else None,
            )
            for src, dst in todo
        ]
        return dict(zip(todo, self._prober.run(specs), strict=True))

    def probe_result(
        self, src: str, dst: str, port: int, protocol: str, timeout: float = 0.5
    ) -> ProbeResult:
        """One probe with its failure kind."""
        if src == dst:
            raise ValueError("self-pairs are not probed")
        return self.probe_many([(src, dst)], port, protocol, timeout)[(src, dst)]

    def probe(self, src: str, dst: str, port: int, protocol: str, timeout: float = 0.5) -> bool:
        """Whether ``src`` reaches ``dst`` on ``port``/``protocol`` within ``timeout``."""
        return self.probe_result(src, dst, port, protocol, timeout).ok

    def matrix(
        self, port: int, protocol: str, timeout: float = 0.5, keys: Sequence[str] | None = None
    ) -> Matrix:
        """Probe all ordered pairs of ``keys`` (default: all pods)."""
        proto = normalize_protocol(protocol)
        return probe_matrix(self._probe_many_typed, keys or self.keys, port, proto, timeout)

    def validate(
        self,
        expected: Mapping[Pair, bool],
        port: int,
        protocol: str,
        timeout: float = 0.5,
        keys: Sequence[str] | None = None,
        retry: bool = True,
    ) -> Comparison:
        """Matrix + comparison with ``expected``, re-probing wrong cells once if ``retry``."""
        proto = normalize_protocol(protocol)
        return validate_matrix(
            self._probe_many_typed, expected, keys or self.keys, port, proto, timeout, retry
        )

    def _probe_many_typed(
        self, pairs: Sequence[Pair], port: int, protocol: Protocol, timeout: float
    ) -> dict[Pair, ProbeResult]:
        return self.probe_many(pairs, port, protocol, timeout)
