"""Controllers under test: one ``npc run`` process per lab node, inside that node's network
namespace, watching the test API server over the lab network.

The API server listens in the lab's fabric namespace on an address of the fabric bridge,
which every node reaches through its ``weave`` bridge (the same L2 segment), so the
controllers talk real HTTP to it without leaving the lab.  Each controller serves
``/status`` on 127.0.0.1:6781 inside its node namespace; :meth:`Controllers.wait_synced`
waits until every node's kernel reflects a given resourceVersion — no sleeping.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common.lab import Lab, in_netns
from tests.apiserver import ApiServer
from tests.cluster import Cluster

API_ADDRESS = "10.47.254.1"
STATUS_PORT = 6781
ROOT = Path(__file__).resolve().parents[2]


def kubeconfig(path: Path, url: str) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "lab",
        "clusters": [{"name": "lab", "cluster": {"server": url}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "lab"}}],
        "users": [{"name": "lab", "user": {}}]}))
    return path


def http_get_in_netns(fd: int, port: int, path: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET http://127.0.0.1:port/path from inside a network namespace."""
    with in_netns(fd):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.sock = sock
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


class Controllers:
    def __init__(self, lab: Lab, api: ApiServer, mode: str, workdir: Path,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.lab = lab
        self.api = api
        self.mode = mode
        self.workdir = workdir
        self.extra_args = extra_args
        self.config = kubeconfig(workdir / "kubeconfig", api.url)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def log_path(self, node: int) -> Path:
        return self.workdir / f"npc-node-{node}.log"

    def start(self, node: int) -> None:
        argv = ["ip", "netns", "exec", self.lab.node_ns(node), sys.executable, "-m", "npc.cli",
                "run", "--kubeconfig", str(self.config), "--node-name", f"node-{node}",
                "--metrics-addr", f"127.0.0.1:{STATUS_PORT}", "--install-hooks",
                "--full-check-interval", "1", "--log-level", "info", *self.extra_args]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if self.mode in ("nft", "legacy"):
            env["IPTABLES_BACKEND"] = self.mode
        env.pop("EXTRA_ARGS", None)
        log = self.log_path(node).open("ab")
        self.procs[node] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            env=env, cwd=ROOT)

    def start_all(self) -> None:
        for node in range(self.lab.topology.nodes):
            self.start(node)

    def stop(self, node: int, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        proc = self.procs.pop(node)
        proc.send_signal(sig)
        return proc.wait(timeout=timeout)

    def stop_all(self) -> None:
        for node in list(self.procs):
            proc = self.procs[node]
            if proc.poll() is None:
                self.stop(node)
            else:
                self.procs.pop(node)

    def status(self, node: int, query: str = "") -> dict[str, Any] | None:
        try:
            code, body = http_get_in_netns(self.lab.netns_fd(self.lab.node_ns(node)),
                                           STATUS_PORT, f"/status{query}", timeout=10)
        except OSError:
            return None
        return json.loads(body) if code == 200 else None

    def metrics(self, node: int) -> str:
        return http_get_in_netns(self.lab.netns_fd(self.lab.node_ns(node)), STATUS_PORT,
                                 "/metrics")[1]

    def wait_synced(self, resource_version: int | str | None = None,
                    timeout: float = 20.0) -> None:
        """Until every running node's kernel reflects every write up to
        ``resource_version`` (default: the API server's current one), by npc's
        ``/status?wait=`` (without a kind: quiet kinds are confirmed as npc confirms them
        on a real cluster)."""
        target = int(resource_version or self.api.resource_version)
        deadline = time.monotonic() + timeout
        for node in sorted(self.procs):
            while True:
                proc = self.procs[node]
                if proc.poll() is not None:
                    raise AssertionError(f"npc on node {node} exited {proc.returncode}:\n"
                                         f"{self.log_path(node).read_text()[-3000:]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"node {node} not synced to rv {target}:\n"
                                         f"{self.log_path(node).read_text()[-2000:]}")
                status = self.status(node, f"?wait={target}&timeout={min(left, 5):.2f}")
                if status and status.get("applied"):
                    break
                if status is None:  # not serving yet
                    time.sleep(0.05)


def publish(api: ApiServer, cluster: Cluster) -> None:
    """Make the API server hold exactly ``cluster``'s objects (namespaces, pods, policies),
    writing only what differs."""
    wanted = {("Namespace", m["metadata"].get("namespace", ""), m["metadata"]["name"]): m
              for m in cluster.manifests() if m["kind"] == "Namespace"}
    wanted.update({(m["kind"], m["metadata"].get("namespace", "default"), m["metadata"]["name"]): m
                   for m in cluster.manifests() if m["kind"] != "Namespace"})
    for kind in ("NetworkPolicy", "Pod"):
        for obj in api.list(kind):
            meta = obj["metadata"]
            if (kind, meta["namespace"], meta["name"]) not in wanted:
                api.delete(kind, meta["namespace"], meta["name"])
    for kind in ("Namespace", "Pod", "NetworkPolicy"):
        for (k, ns, name), manifest in wanted.items():
            if k != kind:
                continue
            current = api.get(kind, ns or None, name)
            if current is None:
                api.create(kind, manifest)
            elif _differs(current, manifest):
                api.apply(kind, manifest)


def _differs(current: dict[str, Any], manifest: dict[str, Any]) -> bool:
    for key in ("spec", "status"):
        if key in manifest and _strip(current.get(key)) != _strip(manifest.get(key)):
            return True
    return (current["metadata"].get("labels") or {}) != {
        **(manifest["metadata"].get("labels") or {}),
        **({"kubernetes.io/metadata.name": manifest["metadata"]["name"]}
           if manifest["kind"] == "Namespace" else {})}


def _strip(value: Any) -> Any:
    """Compare without the API server's defaulting noise."""
    return json.loads(json.dumps(value or {}, sort_keys=True))
