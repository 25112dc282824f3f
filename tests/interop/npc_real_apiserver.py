"""``npc run`` against a real kube-apiserver, in a lab node namespace (not part of CI).

Needs the API server of ``tests/interop/real-apiserver.sh`` (built from public sources; CI
cannot download them).  For each backend it:

1. applies the shipped RBAC, mints a token of the ``weave-net`` service account and starts
   ``npc run`` with it inside lab node 0, reaching the server through a socat relay;
2. writes pods (with their lab addresses) and a policy, waits on ``/status?wait`` and
   checks real traffic between the lab's pods;
3. breaks the watch streams (kills the relay's connections) and checks the watches resume
   from the last version seen, without a relist;
4. restarts the API server (kill -9, as the recipe advises);
5. compacts etcd (needs ``--watch-cache=false`` on the server, given by this script's
   ``--no-watch-cache`` run) and checks the 410 leads to one relist;
6. waits without ``kind`` on a quiet cluster; runs ``npc debug explain``; times SIGTERM;
7. starts a second npc with a token that RBAC forbids, to show the log line.

It prints what it saw; run it as root from the repository root::

    bash tests/interop/real-apiserver.sh start
    .venv/bin/python -m tests.interop.npc_real_apiserver
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common.lab import Lab, LabPod
from tests.e2e.controllers import http_get_in_netns

ROOT = Path(__file__).resolve().parents[2]
KAPI = Path(os.environ.get("DIR", "/work/kapi"))
RUN = KAPI / "run"
ADMIN = RUN / "kubeconfig"
PODS = [LabPod("x/a", 0, "10.32.0.10"), LabPod("x/b", 1, "10.32.0.11"),
        LabPod("y/a", 0, "10.32.0.12"), LabPod("y/b", 1, "10.32.0.13")]
STATUS_PORT = 6781


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(["kubectl", "--kubeconfig", str(ADMIN), *args], input=stdin,
                          capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def apply(obj: dict[str, Any]) -> int:
    """kubectl apply one object; its new resourceVersion."""
    out = json.loads(kubectl("apply", "-f", "-", "-o", "json", stdin=json.dumps(obj)))
    return int(out["metadata"]["resourceVersion"])


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


class Npc:
    """``npc run`` in a lab node namespace, reaching the API server through a relay."""

    def __init__(self, lab: Lab, node: int, token: str, backend: str, log: Path) -> None:
        self.lab, self.node, self.log = lab, node, log
        ns = lab.node_ns(node)
        sock = RUN / f"api-{ns}.sock"
        self.relay_root = subprocess.Popen(
            ["socat", f"UNIX-LISTEN:{sock},fork,unlink-early", "TCP:127.0.0.1:6443"])
        self.relay_ns = subprocess.Popen(
            ["ip", "netns", "exec", ns, "socat",
             "TCP-LISTEN:6443,bind=127.0.0.1,fork,reuseaddr", f"UNIX-CONNECT:{sock}"])
        config = RUN / f"npc-{ns}.kubeconfig"
        config.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "npc",
            "clusters": [{"name": "real", "cluster": {
                "server": "https://127.0.0.1:6443",
                "certificate-authority": str(RUN / "server.crt")}}],
            "contexts": [{"name": "npc", "context": {"cluster": "real", "user": "npc"}}],
            "users": [{"name": "npc", "user": {"token": token}}]}))
        time.sleep(0.3)
        extra = ["--backend", "nftables"] if backend == "nftables" else []
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if backend != "nftables":
            env["IPTABLES_BACKEND"] = backend
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "npc.cli", "run",
             "--kubeconfig", str(config), "--node-name", f"node-{node}", "--install-hooks",
             "--metrics-addr", f"127.0.0.1:{STATUS_PORT}", "--log-level", "info", *extra],
            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    def status(self, query: str = "", timeout: float = 70) -> dict[str, Any] | None:
        try:
            code, body = http_get_in_netns(self.lab.netns_fd(self.lab.node_ns(self.node)),
                                           STATUS_PORT, f"/status{query}", timeout=timeout)
        except OSError:
            return None
        return json.loads(body) if code == 200 else None

    def wait(self, rv: int, kind: str | None = None, timeout: float = 10) -> tuple[bool, float]:
        started = time.monotonic()
        query = f"?wait={rv}&timeout={timeout}" + (f"&kind={kind}" if kind else "")
        status = self.status(query, timeout=timeout + 5)
        return bool(status and status.get("applied")), time.monotonic() - started

    def ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status and status.get("ready"):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"npc exited:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"npc not ready:\n{self.log.read_text()[-3000:]}")

    def break_streams(self) -> None:
        """Kill the relay's per-connection children: every open stream breaks."""
        for parent in (self.relay_ns.pid, self.relay_root.pid):
            subprocess.run(["pkill", "-9", "-P", str(parent)], check=False)

    def lines(self, since: int = 0) -> list[str]:
        return self.log.read_text().splitlines()[since:]

    def stop(self) -> float:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        elapsed = time.monotonic() - started
        for relay in (self.relay_ns, self.relay_root):
            relay.kill()
            relay.wait()
        return elapsed


def restart_apiserver(extra: list[str]) -> None:
    pid = int((RUN / "apiserver.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    server = subprocess.Popen(
        [str(KAPI / "kube-apiserver"), "--etcd-servers=http://127.0.0.1:2379",
         "--bind-address=127.0.0.1", "--secure-port=6443", "--advertise-address=127.0.0.1",
         "--tls-cert-file=server.crt", "--tls-private-key-file=server.key",
         "--token-auth-file=tokens.csv", "--authorization-mode=RBAC",
         "--service-account-key-file=sa.pub", "--service-account-signing-key-file=sa.key",
         "--service-account-issuer=https://kubernetes.default.svc",
         "--service-cluster-ip-range=10.96.0.0/16", "--enable-priority-and-fairness=false",
         "--endpoint-reconciler-type=none", *extra],
        cwd=RUN, stdout=(RUN / "apiserver.log").open("a"), stderr=subprocess.STDOUT)
    (RUN / "apiserver.pid").write_text(str(server.pid))
    for _ in range(200):
        if subprocess.run(["kubectl", "--kubeconfig", str(ADMIN), "get", "--raw", "/readyz"],
                          capture_output=True, check=False).returncode == 0:
            break
        time.sleep(0.1)
    time.sleep(1.5)


def etcd_revision() -> int:
    out = subprocess.run(["etcdctl", "endpoint", "status", "-w", "json"], capture_output=True,
                         text=True, check=True, env={**os.environ, "ETCDCTL_API": "3"}).stdout
    return int(json.loads(out)[0]["Status"]["header"]["revision"])


def setup_cluster() -> None:
    kubectl("apply", "-f", str(ROOT / "manifests" / "weave-npc-rbac.yaml"))
    for ns in ("x", "y"):
        kubectl("create", "namespace", ns, check=False)
        kubectl("label", "namespace", ns, f"team={ns}", "--overwrite")
        kubectl("-n", ns, "create", "serviceaccount", "default", check=False)
    for p in PODS:
        ns, name = p.key.split("/")
        kubectl("-n", ns, "delete", "pod", name, "--ignore-not-found", "--wait=false")
        apply({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "namespace": ns, "name": name, "labels": {"app": name}},
            "spec": {"nodeName": f"node-{p.node}",
                     "containers": [{"name": "c", "image": "none"}]}})
        kubectl("-n", ns, "patch", "pod", name, "--subresource=status", "--type=merge", "-p",
                json.dumps({"status": {"phase": "Running", "podIP": p.ip,
                                       "podIPs": [{"ip": p.ip}]}}))
    kubectl("delete", "networkpolicy", "--all", "-A")


def token(account: str) -> str:
    return kubectl("-n", "kube-system", "create", "token", account).strip()


def grep(lines: list[str], pattern: str) -> list[str]:
    return [line for line in lines if re.search(pattern, line)]


def run_backend(lab: Lab, backend: str, watch_cache: bool) -> None:
    say(f"backend {backend}, watch cache {'on' if watch_cache else 'off'}")
    setup_cluster()
    npc = Npc(lab, 0, token("weave-net"), backend, RUN / f"npc-{backend}.log")
    try:
        npc.ready()
        for line in grep(npc.lines(), "listed|watching|ready"):
            print("  " + line)
        rv = apply({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"namespace": "y", "name": "from-x"},
                    "spec": {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector":
                             {"matchLabels": {"team": "x"}}}]}]}})
        ok, took = npc.wait(rv, "networkpolicies")
        print(f"  kubectl apply policy rv={rv}: wait kind=networkpolicies applied={ok} "
              f"in {took * 1000:.0f} ms")
        lab.flush_conntrack()
        print(f"  traffic x/a->y/a {lab.probe('x/a', 'y/a', 80, 'TCP')} (want True), "
              f"y/b->y/a {lab.probe('y/b', 'y/a', 80, 'TCP')} (want False)")
        ok, took = npc.wait(rv, None, timeout=75)
        print(f"  wait without kind for rv={rv} (pods, namespaces quiet): applied={ok} "
              f"in {took:.1f} s; status={npc.status()}")
        ok, took = npc.wait(etcd_revision(), None, timeout=75)
        print(f"  wait without kind for etcd's revision: applied={ok} in {took:.1f} s")

        say("break every watch stream (kill the relay's connections)")
        mark = len(npc.lines())
        npc.break_streams()
        kubectl("-n", "x", "label", "pod", "a", "seen=after-break", "--overwrite")
        time.sleep(3)
        for line in grep(npc.lines(mark), "listed|watching|failed|expired"):
            print("  " + line)

        say("restart the API server (kill -9)")
        mark = len(npc.lines())
        restart_apiserver([] if watch_cache else ["--watch-cache=false"])
        time.sleep(4)
        rv = apply({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"namespace": "x", "name": "after-restart"},
                    "spec": {"podSelector": {"matchLabels": {"app": "b"}}}})
        ok, took = npc.wait(rv, "networkpolicies", timeout=30)
        print(f"  a policy after the restart: applied={ok} in {took * 1000:.0f} ms")
        for line in grep(npc.lines(mark), "listed|watching|failed|expired"):
            print("  " + line)

        if not watch_cache:
            say("compact etcd while the streams are down")
            mark = len(npc.lines())
            npc.relay_ns.send_signal(signal.SIGSTOP)
            npc.break_streams()
            kubectl("-n", "y", "label", "pod", "b", "seen=while-compacted", "--overwrite")
            revision = etcd_revision()
            subprocess.run(["etcdctl", "compact", str(revision)], check=True,
                           env={**os.environ, "ETCDCTL_API": "3"}, capture_output=True)
            npc.relay_ns.send_signal(signal.SIGCONT)
            time.sleep(5)
            for line in grep(npc.lines(mark), "listed|watching|failed|expired"):
                print("  " + line)

        say("npc debug explain in the node")
        out = lab.run_in_node(0, [sys.executable, "-m", "npc.cli", "debug", "--kubeconfig",
                                  str(RUN / f"npc-{lab.node_ns(0)}.kubeconfig"),
                                  "explain", "y/b", "y/a", "80"], check=False)
        print("  " + "\n  ".join((out.stdout + out.stderr).splitlines()))
    finally:
        took = npc.stop()
        say(f"SIGTERM: npc exited {npc.proc.returncode} after {took:.2f} s")


def forbidden(lab: Lab) -> None:
    say("a service account RBAC does not allow")
    kubectl("-n", "kube-system", "create", "serviceaccount", "nobody", check=False)
    npc = Npc(lab, 1, token("nobody"), "nftables", RUN / "npc-forbidden.log")
    time.sleep(4)
    npc.stop()
    for line in grep(npc.lines(), "failed")[:3]:
        print("  " + line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="nft,nftables")
    parser.add_argument("--no-watch-cache", action="store_true",
                        help="restart the API server with --watch-cache=false first, so "
                             "that etcd compaction gives real 410s")
    args = parser.parse_args()
    if args.no_watch_cache:
        restart_apiserver(["--watch-cache=false"])
    with Lab(nodes=2, pods=PODS, prefix="npr") as lab:
        for backend in args.backends.split(","):
            run_backend(lab, backend, watch_cache=not args.no_watch_cache)
        forbidden(lab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
