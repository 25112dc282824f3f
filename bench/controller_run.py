"""A running ``npc run`` against the test API server, both inside one fresh network
namespace (loopback only), loaded with a generated cluster — for the latency and memory
benchmarks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cluster_gen import objects
from common.kernel.netns import open_netns
from tests.apiserver import ApiServer
from tests.e2e.controllers import http_get_in_netns, kubeconfig

ROOT = Path(__file__).resolve().parents[1]
STATUS_PORT = 6781


@dataclass
class Running:
    api: ApiServer
    proc: subprocess.Popen[bytes]
    fd: int
    log: Path

    def status(self) -> dict[str, object]:
        code, body = http_get_in_netns(self.fd, STATUS_PORT, "/status", timeout=5)
        return json.loads(body) if code == 200 else {}

    def wait_applied(self, resource_version: int, timeout: float = 120,
                     kind: str | None = None) -> float:
        """Seconds until npc's kernel reflects ``resource_version`` — of one kind's watch
        when ``kind`` is given, else of all.  npc answers ``/status?wait=`` as soon as it
        does (no polling, which would load npc while it works)."""
        start = time.perf_counter()
        query = f"/status?wait={resource_version}&timeout={min(timeout, 60)}"
        if kind is not None:
            query += f"&kind={kind}"
        while time.perf_counter() - start < timeout:
            try:
                code, body = http_get_in_netns(self.fd, STATUS_PORT, query, timeout=65)
                status = json.loads(body) if code == 200 else {}
            except OSError:
                status = {}
                time.sleep(0.05)  # npc not listening yet
            if status.get("applied"):
                return time.perf_counter() - start
            if self.proc.poll() is not None:
                raise RuntimeError(f"npc exited:\n{self.log.read_text()[-2000:]}")
        raise TimeoutError(f"npc did not reach rv {resource_version}")

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")


@contextmanager
def running(pods: int, policies: int, backend: str) -> Iterator[Running]:
    ns = f"npcbench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
    workdir = Path(tempfile.mkdtemp(prefix="npcbench-"))
    fd = open_netns(ns)
    api = ApiServer("127.0.0.1", 0, bind_netns_fd=fd, bookmark_interval=0.02,
                    history_limit=100000)
    proc = None
    try:
        api.start()
        for obj in objects(pods, policies):
            api.create(obj["kind"], obj)
        config = kubeconfig(workdir / "kubeconfig", api.url)
        log = workdir / "npc.log"
        args = ["ip", "netns", "exec", ns, sys.executable, "-m", "npc.cli", "run",
                "--kubeconfig", str(config), "--node-name", "bench",
                "--metrics-addr", f"127.0.0.1:{STATUS_PORT}", "--backend", backend,
                "--full-check-interval", "3600", "--log-level", "warning"]
        proc = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                cwd=ROOT, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                               "PYTHONPATH": str(ROOT),
                                               "IPTABLES_BACKEND": "nft"})
        run = Running(api, proc, fd, log)
        run.wait_applied(int(api.resource_version), timeout=600)
        yield run
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        api.stop()
        subprocess.run(["ip", "netns", "del", ns], check=True)
        shutil.rmtree(workdir, ignore_errors=True)
