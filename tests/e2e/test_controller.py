"""``npc run`` end to end: one controller per lab node, inside its network namespace,
against the test API server over the lab network, with real traffic between pods."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from common.lab import Lab, LabPod
from npc.dataplane.nftables import NftablesBackend
from tests.apiserver import ApiServer
from tests.cluster import Cluster, Enforcer, lab_cluster, netpol, pods_over_nodes
from tests.conftest import remove_orphaned_labs
from tests.e2e.controllers import API_ADDRESS, Controllers, publish
from tests.e2e.scenario import ALL_PODS, Case
from tests.e2e.upstream import case_id, initial_cluster, run_case
from tests.e2e.upstream_cases import CASES
from tests.oracle import expected_matrix

pytestmark = pytest.mark.kernel  # network namespaces, netfilter, real traffic

BACKENDS = ("nft", "nftables")
"""The iptables backend (nf_tables flavour) and the nftables backend."""


@pytest.fixture(scope="module")
def api_lab() -> Iterator[Lab]:
    remove_orphaned_labs()
    pods = [LabPod(key, node, ip) for key, node, ip in pods_over_nodes(ALL_PODS, 2)]
    with Lab(nodes=2, pods=pods, prefix=f"npa{os.getpid()}") as lab:
        lab.run_in_ns(lab.fabric_ns, ["ip", "addr", "add", f"{API_ADDRESS}/12", "dev", "fab"])
        yield lab


@pytest.fixture(scope="module")
def api(api_lab: Lab) -> Iterator[ApiServer]:
    server = ApiServer(API_ADDRESS, 0, bind_netns_fd=api_lab.netns_fd(api_lab.fabric_ns),
                       bookmark_interval=0.2)
    with server:
        yield server


@pytest.fixture(scope="module", params=BACKENDS)
def controllers(request: pytest.FixtureRequest, api_lab: Lab, api: ApiServer,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controllers]:
    mode = request.param
    for other in BACKENDS:
        Enforcer(api_lab, other).remove()
    publish(api, lab_cluster(api_lab))
    extra = ("--backend", "nftables") if mode == "nftables" else ()
    ctl = Controllers(api_lab, api, mode, tmp_path_factory.mktemp("npc"), extra)
    ctl.start_all()
    try:
        ctl.wait_synced()
        yield ctl
    finally:
        ctl.stop_all()
        Enforcer(api_lab, mode).remove()


def sync(ctl: Controllers, cluster: Cluster) -> None:
    publish(ctl.api, cluster)
    ctl.wait_synced()
    ctl.lab.flush_conntrack()


# ---- the upstream suite, driven through the API ------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_upstream_case_through_the_api(case: Case, controllers: Controllers) -> None:
    def through_the_api(cluster: Cluster) -> None:
        publish(controllers.api, cluster)
        controllers.wait_synced()

    through_the_api(initial_cluster(case, controllers.lab))
    run_case(case, controllers.lab, through_the_api)


# ---- restarts, faults, bad input ---------------------------------------------------------
MIXED = [netpol("x/only-from-y", {"podSelector": {}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}]}]}),
         netpol("z/no-egress", {"podSelector": {"matchLabels": {"pod": "a"}},
                                "policyTypes": ["Egress"]})]


def mixed_cluster(lab: Lab) -> Cluster:
    cluster = lab_cluster(lab)
    for p in MIXED:
        cluster.put_policy(p)
    return cluster


class Prober:
    """Probes pairs continuously in a thread, recording every outcome that is wrong."""

    def __init__(self, lab: Lab, want: dict[tuple[str, str], bool]) -> None:
        self.lab, self.want = lab, want
        self.wrong: list[str] = []
        self.rounds = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        pairs = list(self.want)
        while not self.stop.is_set():
            got = self.lab.probe_many(pairs, 80, "TCP", timeout=0.5)
            for pair, result in got.items():
                if result.ok != self.want[pair]:
                    self.wrong.append(f"{pair}: want {self.want[pair]}, got {result}")
            self.rounds += 1

    def __enter__(self) -> Prober:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def test_restart_without_a_gap(controllers: Controllers) -> None:
    lab = controllers.lab
    cluster = mixed_cluster(lab)
    sync(controllers, cluster)
    state = cluster.state()
    pairs = [("y/a", "x/a"), ("y/b", "x/b"), ("z/b", "x/a"), ("x/b", "x/c"), ("z/a", "y/a"),
             ("z/a", "x/b"), ("y/c", "z/a"), ("x/c", "y/b")]
    want = {p: expected_matrix(state, list(p), 80, _tcp())[p] for p in pairs}
    assert set(want.values()) == {True, False}
    with Prober(lab, want) as prober:
        for node, sig in ((0, signal.SIGTERM), (1, signal.SIGKILL)):
            # SIGTERM breaks the open watch streams instead of waiting for their next byte
            code = controllers.stop(node, sig, timeout=4)
            assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
            controllers.start(node)
            controllers.wait_synced()
        rounds = prober.rounds
        while prober.rounds < rounds + 2:
            prober.stop.wait(0.05)
    assert prober.rounds >= 3
    assert not prober.wrong, "\n".join(prober.wrong[:20])


def _tcp() -> Any:
    from npc.model.objects import Protocol
    return Protocol.TCP


def test_kill_9_in_the_middle_of_a_sync(controllers: Controllers) -> None:
    lab = controllers.lab
    cluster = lab_cluster(lab)
    for i in range(150):  # a big change: many policies, sets and rules at once
        cluster.put_policy(netpol(f"x/p{i}", {"podSelector": {"matchLabels": {"pod": "a"}},
                                              "ingress": [{"from": [{"ipBlock": {
                                                  "cidr": f"192.168.{i}.0/24"}}]}]}))
    cluster.put_policy(MIXED[0])
    publish(controllers.api, cluster)
    # Kill while it applies: the first sync after the burst takes tens of milliseconds.
    threading.Event().wait(0.15)
    controllers.stop(0, signal.SIGKILL)
    controllers.start(0)
    sync(controllers, cluster)
    state = cluster.state()
    keys = ["x/a", "x/b", "y/a", "z/b"]
    result = lab.validate(expected_matrix(state, keys, 80, _tcp()), 80, "TCP", keys=keys)
    assert result.ok, result.format()


def test_outside_flush_is_repaired_within_one_check_period(controllers: Controllers) -> None:
    lab = controllers.lab
    cluster = mixed_cluster(lab)
    sync(controllers, cluster)
    node = lab.node_of("x/a")
    assert lab.probe("y/a", "x/a", 80, "TCP", timeout=0.5)
    Enforcer(lab, controllers.mode).break_ingress(node, ":kubernetes.io/metadata.name=y")
    deadline = threading.Event()
    for _ in range(60):  # full check every 1 s (jittered ±20%)
        if lab.probe("y/a", "x/a", 80, "TCP", timeout=0.3):
            break
        deadline.wait(0.1)
    assert lab.probe("y/a", "x/a", 80, "TCP", timeout=0.5)
    assert not lab.probe("z/b", "x/a", 80, "TCP", timeout=0.5)
    metrics = controllers.metrics(node)
    assert 'weavenpc_drift_repairs_total{kind="chain"}' in metrics
    assert 'weavenpc_drift_repairs_total{kind="set"}' in metrics


def test_api_server_restart_and_410_gone(controllers: Controllers) -> None:
    lab, api = controllers.lab, controllers.api
    sync(controllers, lab_cluster(lab))
    lists_before = api.request_count("list", "NetworkPolicy")
    api.stop()
    # While the API server is down the last known state stays enforced.
    assert lab.probe("z/b", "x/a", 80, "TCP", timeout=0.5)
    cluster = mixed_cluster(lab)
    publish(api, cluster)  # written while it is down: no watcher sees these events
    api.start(keep_history=False)  # history lost: resuming watches get 410 Gone
    controllers.wait_synced(timeout=40)
    lab.flush_conntrack()
    assert api.request_count("list", "NetworkPolicy") > lists_before  # relisted
    assert not lab.probe("z/b", "x/a", 80, "TCP", timeout=0.5)
    assert lab.probe("y/b", "x/a", 80, "TCP", timeout=0.5)


def test_malformed_policy_next_to_valid_ones(controllers: Controllers) -> None:
    lab, api = controllers.lab, controllers.api
    cluster = mixed_cluster(lab)
    publish(api, cluster)
    api.create("NetworkPolicy", netpol("y/broken", {
        "podSelector": {"matchLabels": {"pod": "b"}},
        "ingress": [{"ports": [{"port": 81, "endPort": 80}]}]}), validate=False)
    try:
        controllers.wait_synced()
        lab.flush_conntrack()
        assert not lab.probe("x/a", "y/b", 80, "TCP", timeout=0.5)  # isolated: fail closed
        assert lab.probe("x/a", "y/a", 80, "TCP", timeout=0.5)  # untouched
        assert lab.probe("y/a", "x/a", 80, "TCP", timeout=0.5)  # other policies enforced
        assert not lab.probe("z/b", "x/a", 80, "TCP", timeout=0.5)
        for node in range(2):
            text = controllers.metrics(node)
            line = next(x for x in text.splitlines()
                        if x.startswith("weavenpc_policy_enforcement_errors "))
            assert float(line.split()[1]) >= 1
            assert "policy enforced fail-closed" in controllers.log_path(node).read_text()
    finally:
        api.delete("NetworkPolicy", "y", "broken")


def folds(controllers: Controllers, node: int) -> float:
    text = controllers.metrics(node)
    return float(next(line.split()[1] for line in text.splitlines()
                      if line.startswith("weavenpc_pending_folds_total ")))


def test_a_pod_event_is_enforced_before_and_after_the_idle_fold(
        controllers: Controllers) -> None:
    """A pod relabelled into a policy is enforced as soon as the sync reports it, and stays
    so.  With nftables the pod is pending at first (a plain set, no map element); once no
    event has come for a while the controller folds it into the dispatch map: traffic
    agrees with the reference evaluator throughout.  (The controllers here check the
    kernel every second, and a full check leaves nothing pending: an attempt whose event
    met one on some node is taken again, up to six times.)"""
    lab = controllers.lab
    cluster = mixed_cluster(lab)
    cluster.put_policy(netpol("z/db-from-c", {
        "podSelector": {"matchLabels": {"role": "db"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "c"}}}]}]}))
    cluster.pods["z/c"].labels["role"] = "db"  # so the policy's rules exist already
    pairs = [("z/c", "z/b"), ("y/a", "z/b"), ("y/b", "z/b"), ("z/b", "y/a")]
    nodes = range(lab.topology.nodes)
    ip = lab.pod_ip("z/b")
    enforcer = Enforcer(lab, controllers.mode)
    attempts: list[tuple[list[float], list[float]]] = []
    for _ in range(6):
        cluster.pods["z/b"].labels.pop("role", None)
        sync(controllers, cluster)
        cluster.pods["z/b"].labels["role"] = "db"
        want = {p: expected_matrix(cluster.state(), list(p), 80, _tcp())[p] for p in pairs}
        assert want == {("z/c", "z/b"): True, ("y/a", "z/b"): False,
                        ("y/b", "z/b"): False, ("z/b", "y/a"): True}
        before = [folds(controllers, n) for n in nodes]
        sync(controllers, cluster)
        with Prober(lab, want) as prober:
            folded = False
            for _ in range(60):
                if controllers.mode == "nftables":
                    states = [b.read_state() for b in enforcer.backends
                              if isinstance(b, NftablesBackend)]
                    folded = all(ip in s.maps["ingress_dispatch"]
                                 and not s.sets["ingress_pending"] for s in states)
                else:
                    folded = True  # every sync leaves the final layout
                if folded and prober.rounds >= 3:
                    break
                prober.stop.wait(0.1)
            assert folded
        assert prober.rounds >= 3
        assert not prober.wrong, "\n".join(prober.wrong[:20])
        if controllers.mode != "nftables":
            return
        attempts.append((before, [folds(controllers, n) for n in nodes]))
        if all(a > b for a, b in zip(*reversed(attempts[-1]), strict=True)):
            return  # folded by every node's idle fold, not by a full check
    raise AssertionError(f"no attempt was folded by the idle fold on every node: {attempts}")


def test_blocked_connections_are_logged_and_counted(controllers: Controllers) -> None:
    lab = controllers.lab
    sync(controllers, mixed_cluster(lab))
    assert not lab.probe("z/b", "x/a", 80, "TCP", timeout=0.5)
    node = lab.node_of("x/a")
    line = (f"TCP connection from {lab.pod_ip('z/b')}:")
    for _ in range(50):
        log = controllers.log_path(node).read_text()
        if line in log and "blocked by Weave NPC" in log:
            break
        threading.Event().wait(0.1)
    assert line in log and "z/b" in log and "x/a" in log
    assert 'weavenpc_blocked_connections_total{dport="80",protocol="tcp"}' in \
        controllers.metrics(node)


def test_probe_endpoints_and_metric_names(controllers: Controllers) -> None:
    from tests.e2e.controllers import STATUS_PORT, http_get_in_netns

    fd = controllers.lab.netns_fd(controllers.lab.node_ns(0))
    assert http_get_in_netns(fd, STATUS_PORT, "/readyz")[0] == 200
    assert http_get_in_netns(fd, STATUS_PORT, "/healthz")[0] == 200
    text = controllers.metrics(0)
    for name in ("weavenpc_policy_enforcement_errors", "weavenpc_sync_duration_seconds_bucket",
                 "weavenpc_last_successful_sync_timestamp_seconds", "weavenpc_ruleset_rules",
                 "weavenpc_ruleset_sets", "weavenpc_kernel_command_failures_total"):
        assert f"\n{name}" in text, name


def test_live_debug_and_explain_against_the_api(controllers: Controllers) -> None:
    """``npc debug`` on a node reads the desired state from the API server and finds the
    kernel matching it; ``npc debug explain`` names the deciding policy."""
    import subprocess
    import sys

    lab = controllers.lab
    sync(controllers, mixed_cluster(lab))
    node = lab.node_of("x/a")
    base = ["ip", "netns", "exec", lab.node_ns(node), sys.executable, "-m", "npc.cli",
            "debug", "--kubeconfig", str(controllers.config)]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    live = subprocess.run(base, capture_output=True, text=True, env=env, timeout=60)
    assert live.returncode == 0, live.stdout[-3000:] + live.stderr
    assert "x/only-from-y ingress[0] peer[0]" in live.stdout
    explain = subprocess.run([*base, "explain", "z/b", "x/a", "80"], capture_output=True,
                             text=True, env=env, timeout=60)
    assert explain.returncode == 0, explain.stderr
    assert "DENIED" in explain.stdout and "x/only-from-y" in explain.stdout
    # walked through the layout this node holds
    if controllers.mode == "nftables":
        assert "nftables layout" in explain.stdout and "@ingress_dispatch" in explain.stdout
        assert "WEAVE-NPC" not in explain.stdout
    else:
        assert "iptables layout" in explain.stdout and "WEAVE-NPC" in explain.stdout
