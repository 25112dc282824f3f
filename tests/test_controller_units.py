"""Controller pieces without a kernel: settings, the store, the sync runner."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from npc.compile.compiler import Options
from npc.controller.metrics import Metrics
from npc.controller.settings import SettingsError, from_environment
from npc.controller.store import ClusterStore, Kind, parse_object
from npc.controller.sync import SyncRunner
from npc.dataplane.memory import MemoryBackend
from tests.support.doubles import FlakyBackend, RecordingLog, UntidyBackend


# ---- settings ----------------------------------------------------------------------------
def test_defaults_are_weave_npcs() -> None:
    s = from_environment([], {"HOSTNAME": "node-1"})
    assert s.metrics_addr == ("", 6781)
    assert (s.log_level, s.allow_mcast, s.max_list_size, s.bridge_port_name) == (
        "debug", True, 1024, "vethwe-bridge")
    assert s.node_name == "node-1" and s.sources["node_name"] == "environment HOSTNAME"


def test_extra_args_and_positional_args_are_honoured() -> None:
    s = from_environment(["--node-name=n", "stray", "positional"],
                         {"EXTRA_ARGS": "--allow-mcast=false --max-list-size 64",
                          "IPTABLES_BACKEND": "legacy"})
    assert (s.allow_mcast, s.max_list_size, s.iptables_mode) == (False, 64, "legacy")


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        from_environment(["--metrics-addr", "nope", "--log-level", "loud"],
                         {"IPTABLES_BACKEND": "xt"})
    text = str(info.value)
    for word in ("--metrics-addr", "--log-level", "HOSTNAME", "IPTABLES_BACKEND"):
        assert word in text


# ---- store -------------------------------------------------------------------------------
def pod(name: str, ip: str, labels: dict[str, str] | None = None,
        phase: str = "Running") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "x", "labels": labels or {},
                         "resourceVersion": "7"},
            "status": {"podIP": ip, "phase": phase, "conditions": [{"type": "Ready"}]}}


def test_store_ignores_updates_that_do_not_matter_to_policy() -> None:
    changes: list[int] = []
    store = ClusterStore()
    store.subscribe(on_change=lambda: changes.append(1), on_seen=lambda: None)
    outcome = parse_object(Kind.POD, pod("a", "10.0.0.1"))
    assert outcome.value is not None
    store.upsert(Kind.POD, outcome.key, outcome.value)
    noisy = pod("a", "10.0.0.1")
    noisy["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    again = parse_object(Kind.POD, noisy)
    assert again.value is not None
    store.upsert(Kind.POD, again.key, again.value)
    assert len(changes) == 1
    assert store.pod_name_for_ip("10.0.0.1") == "x/a"


def test_store_is_synced_only_after_every_kind_was_listed() -> None:
    store = ClusterStore()
    store.replace(Kind.POD, [])
    store.replace(Kind.NAMESPACE, [])
    assert not store.synced
    store.replace(Kind.POLICY, [])
    assert store.synced


def test_rejected_policy_is_kept_as_rejected() -> None:
    bad = {"metadata": {"name": "p", "namespace": "x"},
           "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 9, "endPort": 1}]}]}}
    outcome = parse_object(Kind.POLICY, bad)
    assert outcome.errors and outcome.value is not None
    assert getattr(outcome.value, "rejected", "")


# ---- sync runner -------------------------------------------------------------------------
def runner(backend: MemoryBackend, store: ClusterStore) -> tuple[SyncRunner, Metrics, RecordingLog]:
    metrics = Metrics(CollectorRegistry())
    log = RecordingLog()
    return SyncRunner(store=store, backend=backend, options=Options(), metrics=metrics,
                      log=log, min_interval=0), metrics, log


def test_nothing_is_applied_before_every_kind_is_listed() -> None:
    backend, store = FlakyBackend(), ClusterStore()
    sync, _, _ = runner(backend, store)
    store.replace(Kind.NAMESPACE, [])
    stop = threading.Event()
    thread = threading.Thread(target=sync.run, args=(stop,))
    thread.start()
    try:
        sync.mark_dirty()
        assert not stop.wait(0.3)
        assert backend.applied == []
        store.replace(Kind.POD, [])
        store.replace(Kind.POLICY, [])
        sync.mark_dirty()
        for _ in range(50):
            if backend.applied:
                break
            stop.wait(0.05)
        assert backend.applied and backend.applied[0][1] is True  # first sync: full check
        assert sync.status.ready
    finally:
        stop.set()
        thread.join()


def test_kernel_failure_is_counted_and_retried_with_a_full_check() -> None:
    backend, store = FlakyBackend(), ClusterStore()
    for kind in Kind:
        store.replace(kind, [])
    sync, metrics, log = runner(backend, store)
    backend.fail = 1
    assert sync.sync_once(full_check=False) is False
    assert metrics.registry.get_sample_value("weavenpc_kernel_command_failures_total") == 1
    assert sync.sync_once(full_check=sync.full_check_due()) is True
    assert backend.applied[-1][1] is True
    assert any(level == "error" for level, _, _ in log.lines)


def test_the_runner_tidies_once_events_stop_coming() -> None:
    """While events keep coming, nothing is tidied; once none has come for tidy_after,
    the backend tidies everything at once.  A failed tidy counts as a kernel failure and
    the next sync reads the kernel back."""
    backend, store = UntidyBackend(), ClusterStore()
    for kind in Kind:
        store.replace(kind, [])
    sync, metrics, _ = runner(backend, store)
    sync.tidy_after = 0.3
    stop = threading.Event()
    thread = threading.Thread(target=sync.run, args=(stop,))
    thread.start()
    try:
        for _ in range(8):  # an event every 0.05 s: never idle for 0.3 s
            sync.mark_dirty()
            stop.wait(0.05)
        assert backend.tidies == [] and backend.pending >= 2
        for _ in range(40):
            if backend.tidies:
                break
            stop.wait(0.05)
        assert backend.tidies == [len(backend.applied)] and backend.pending == 0
        backend.fail_tidy = True
        sync.mark_dirty()
        for _ in range(40):
            if metrics.registry.get_sample_value("weavenpc_kernel_command_failures_total"):
                break
            stop.wait(0.05)
        assert metrics.registry.get_sample_value("weavenpc_kernel_command_failures_total") == 1
        for _ in range(60):  # the retry is a full check
            if backend.applied[-1][1]:
                break
            stop.wait(0.05)
        assert backend.applied[-1][1] is True
    finally:
        stop.set()
        thread.join()


def test_rejected_policy_counted_once_in_the_original_metric() -> None:
    backend, store = FlakyBackend(), ClusterStore()
    for kind in Kind:
        store.replace(kind, [])
    bad = parse_object(Kind.POLICY, {"metadata": {"name": "p", "namespace": "x"}, "spec": {
        "podSelector": {}, "ingress": [{"from": [{}]}]}})
    assert bad.value is not None
    store.upsert(Kind.POLICY, bad.key, bad.value)
    sync, metrics, _ = runner(backend, store)
    sync.sync_once(full_check=True)
    sync.sync_once(full_check=False)
    text = generate_latest(metrics.registry).decode()
    assert "weavenpc_policy_enforcement_errors 1.0" in text
    assert "weavenpc_policy_enforcement_errors_total 1.0" in text


# ---- logging, supervision ----------------------------------------------------------------
def test_weave_log_line_format() -> None:
    import io
    import re

    from common.service import logs

    out = io.StringIO()
    logs.configure("info", "text", out)
    logs.get().warning("TCP connection from 10.32.0.7:56648 to 10.32.0.11:80 blocked by "
                       "Weave NPC.")
    logs.get().debug("not shown at info")
    line = out.getvalue().strip()
    assert re.fullmatch(r"WARN: \d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{6} TCP connection from "
                        r"10\.32\.0\.7:56648 to 10\.32\.0\.11:80 blocked by Weave NPC\.", line)


def test_json_log_format() -> None:
    import io
    import json

    from common.service import logs

    out = io.StringIO()
    logs.configure("debug", "json", out)
    logs.get().info("synced", seconds=0.01)
    record = json.loads(out.getvalue())
    assert (record["level"], record["msg"], record["seconds"]) == ("info", "synced", 0.01)


def test_a_crashing_worker_stops_everything() -> None:
    from common.service.supervisor import Supervisor

    stop = threading.Event()
    sup = Supervisor(stop)
    def idle() -> None:
        stop.wait()

    sup.spawn("ok", idle)

    def boom() -> None:
        raise KeyError("bug")

    sup.spawn("boom", boom)
    assert stop.wait(2)
    for t in sup.threads:
        t.join(2)
    assert sup.crash is not None and "KeyError" in sup.crash


def test_status_wait_answers_once_the_write_is_applied() -> None:
    """``/status?wait=RV&kind=K`` blocks until a sync has applied RV of that kind's watch,
    and says so; a version never reached times out with ``applied: false``."""
    import http.client
    import json

    from common.service.http import HttpServer
    from npc.controller.status import status_handler

    backend = FlakyBackend()
    store = ClusterStore()
    sync, _, _ = runner(backend, store)
    for kind in Kind:
        store.replace(kind, [])
    server = HttpServer(("127.0.0.1", 0))
    server.route("GET", "/status", status_handler(lambda: {"syncs": 1}, sync.wait_applied))
    server.start()
    stop = threading.Event()
    thread = threading.Thread(target=sync.run, args=(stop,))
    thread.start()

    def get(path: str) -> dict[str, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request("GET", path)
            body: dict[str, Any] = json.loads(conn.getresponse().read())
            return body
        finally:
            conn.close()

    try:
        waiting: list[dict[str, Any]] = []
        waiter = threading.Thread(target=lambda: waiting.append(
            get("/status?wait=7&kind=pods&timeout=5")))
        waiter.start()
        stop.wait(0.2)
        assert not waiting  # rv 7 not seen yet: still waiting
        outcome = parse_object(Kind.POD, pod("a", "10.32.0.7"))
        assert outcome.value is not None
        store.upsert(Kind.POD, outcome.key, outcome.value)
        store.seen(Kind.POD, "7")
        waiter.join(timeout=5)
        assert waiting == [{"syncs": 1, "applied": True}]
        assert get("/status?wait=99&kind=pods&timeout=0.2") == {"syncs": 1, "applied": False}
        assert get("/status") == {"syncs": 1}
    finally:
        stop.set()
        thread.join()
        server.stop()


def test_status_wait_takes_the_status_once_the_wait_is_over() -> None:
    """``/status?wait=`` takes the status once, after the wait: one taken before it would
    be thrown away, and would slow down the very event the client waits for."""
    import json

    from common.service.http import Request
    from npc.controller.status import status_handler

    calls: list[str] = []

    def status() -> dict[str, object]:
        calls.append("status")
        return {"syncs": 1}

    def wait_applied(rv: int, kind: str | None, timeout: float) -> bool:
        calls.append(f"wait {rv} {kind} {timeout}")
        return True

    handle = status_handler(status, wait_applied)

    def ask(**query: str) -> tuple[int, bytes]:
        response = handle(Request("GET", "/status", {k: [v] for k, v in query.items()},
                                  b"", "127.0.0.1"))
        return response.status, response.body

    status_code, body = ask(wait="7", kind="pods")
    assert (status_code, json.loads(body)) == (200, {"syncs": 1, "applied": True})
    assert calls == ["wait 7 pods 10.0", "status"]
    calls.clear()
    assert ask(wait="7", timeout="soon")[0] == 400
    assert calls == []
    status_code, body = ask()
    assert (status_code, json.loads(body)) == (200, {"syncs": 1})
    assert calls == ["status"]


def test_ruleset_size_gauges_are_counted_when_scraped() -> None:
    """The rules/sets/members gauges tell the size of the ruleset last applied, counted
    at scrape time (a pod event's sync does not count the whole ruleset)."""
    backend, store = FlakyBackend(), ClusterStore()
    for kind in Kind:
        store.replace(kind, [])
    sync, metrics, _ = runner(backend, store)

    def scraped(name: str) -> float | None:
        return metrics.registry.get_sample_value(name)
    assert scraped("weavenpc_ruleset_set_members") == 0.0  # nothing applied yet
    outcome = parse_object(Kind.POD, pod("a", "10.32.0.7"))
    assert outcome.value is not None
    store.upsert(Kind.POD, outcome.key, outcome.value)
    assert sync.sync_once(full_check=True)
    applied = backend.applied[-1][0]
    assert scraped("weavenpc_ruleset_sets") == len(applied.sets) > 0
    assert scraped("weavenpc_ruleset_rules") == sum(len(c.rules) for c in applied.chains)
    assert scraped("weavenpc_ruleset_set_members") == sum(
        len(s.members) for s in applied.sets) > 0


# ---- progress: /status?wait on a real cluster's resourceVersions -------------------------
def test_a_bookmark_covers_what_other_kinds_have_shown_an_event_does_not() -> None:
    from common.service.progress import Progress, caught_up, overall

    pods = Progress().confirmed(100, highest_seen=100)  # listed at 100
    policies = Progress().confirmed(90, highest_seen=100).event(140)
    assert (pods.through, policies.through) == (100, 140)
    kinds = ["pods", "networkpolicies"]
    assert overall({"pods": pods, "networkpolicies": policies}, kinds) == 100
    now = {"pods": pods, "networkpolicies": policies}
    assert not caught_up(140, now, now, kinds)  # asked now: nothing confirmed since
    # an event at 150 of pods says nothing of pods beyond 150, nor of other kinds
    assert pods.event(150).through == 150 and pods.event(150).covered == 100
    # a pods bookmark at its own newest version (100), after 140 was seen: covers 140
    bookmarked = pods.confirmed(100, highest_seen=140)
    applied = {"pods": bookmarked, "networkpolicies": policies}
    assert bookmarked.through == 140 and caught_up(140, applied, applied, kinds)
    assert overall(applied, kinds) == 140
    # a write nobody watches (199): a confirmation after the caller asked covers it
    asked = {"pods": bookmarked, "networkpolicies": policies}
    assert not caught_up(199, applied, asked, kinds)
    later = {"pods": bookmarked.confirmed(100, 140),
             "networkpolicies": policies.confirmed(140, 140)}
    assert caught_up(199, later, asked, kinds)
    assert not caught_up(199, later, asked, [*kinds, "namespaces"])  # never listed


def test_status_wait_on_a_quiet_cluster(tmp_path: Any) -> None:
    """Against resourceVersions as a real API server gives them: after a policy write, the
    pods and namespaces watches stay at their own older versions and get no bookmark (the
    watch cache sends none until the kind moves).  Waiting for the write with its kind
    answers at once; without a kind, a list of each quiet kind shows the store already
    holds its state as of the write: confirmed, and /status's overall version moves on."""
    from kubernetes import client

    from common.service.kube import kube_api_client
    from npc.controller.watchers import watcher
    from tests.apiserver import ApiServer
    from tests.e2e.controllers import kubeconfig

    with ApiServer(namespaces=["x"], bookmark_interval=0.1) as api:
        api.store.catch_up_wait = 0.2
        api.create("Pod", {"metadata": {"name": "a", "namespace": "x"}})
        kube = kube_api_client(str(kubeconfig(tmp_path / "kc", api.url)), "weave-npc")
        core, net = client.CoreV1Api(kube), client.NetworkingV1Api(kube)
        stop = threading.Event()
        backend = FlakyBackend()
        store = ClusterStore()
        log = RecordingLog()
        watchers = {w.kind.value: w for w in (
            watcher(kind, func, store, stop=stop, log=log)
            for kind, func in ((Kind.NAMESPACE, core.list_namespace),
                               (Kind.POD, core.list_pod_for_all_namespaces),
                               (Kind.POLICY, net.list_network_policy_for_all_namespaces)))}
        confirmations: list[tuple[str, int]] = []

        def confirm(kind: str, rv: int, timeout: float) -> bool:
            confirmations.append((kind, rv))
            return watchers[kind].confirm(rv, timeout)

        sync = SyncRunner(store=store, backend=backend, options=Options(),
                          metrics=Metrics(CollectorRegistry()), log=log, min_interval=0)
        threads = [threading.Thread(target=w.run) for w in watchers.values()]
        threads.append(threading.Thread(target=sync.run, args=(stop,)))
        for t in threads:
            t.start()
        try:
            for kind in ("Namespace", "Pod", "NetworkPolicy"):
                assert api.wait_for_watchers(kind)
            api.create("NetworkPolicy", {"metadata": {"name": "np", "namespace": "x"},
                                         "spec": {"podSelector": {}}})
            written = int(api.resource_version)
            assert sync.wait_applied(written, "networkpolicies", timeout=5)
            # no bookmark comes for the quiet kinds, and nothing confirms them
            assert not sync.wait_applied(written, None, timeout=0.5)
            assert sync.applied_through() < written
            sync.confirm = confirm
            assert sync.wait_applied(written, None, timeout=5)
            assert sorted(confirmations) == [("namespaces", written), ("pods", written)]
            assert sync.applied_through() >= written
            assert sync.applied_by_kind()["pods"] >= written
            # a version beyond anything the server has is not confirmed (the list of it is
            # refused as too large)
            assert not sync.wait_applied(written + 100, None, timeout=1.5)
        finally:
            stop.set()
            for w in watchers.values():
                w.close()
            for t in threads:
                t.join(timeout=10)


def test_confirming_needs_the_store_to_hold_exactly_the_listed_state() -> None:
    store = ClusterStore()
    outcome = parse_object(Kind.POD, pod("a", "10.32.0.7"))
    assert outcome.value is not None
    values = [(outcome.key, outcome.value)]
    assert not store.confirm_if_same(Kind.POD, values, "50")  # never listed
    store.replace(Kind.POD, [])
    store.confirmed(Kind.POD, "10")
    assert not store.confirm_if_same(Kind.POD, values, "50")  # an event is on its way
    assert store.progress()[1]["pods"].through == 10
    store.upsert(Kind.POD, outcome.key, outcome.value)
    store.seen(Kind.POD, "20")
    assert store.confirm_if_same(Kind.POD, values, "50")
    assert store.progress()[1]["pods"].through == 50
