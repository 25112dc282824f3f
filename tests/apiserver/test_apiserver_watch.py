"""Watch semantics of the test API server, with the official client's Watch and on the wire:
replay and live events, bookmarks, 410 after compaction, restarts, netns binding."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.apiserver import ApiServer
from tests.apiserver.helpers import Collector, pod, policy, raw_request


def _rvs(events: list[tuple[str, dict[str, Any]]]) -> list[int]:
    return [int(o["metadata"]["resourceVersion"]) for _, o in events]


@contextlib.contextmanager
def _after(delay: float, action: Any) -> Iterator[None]:
    timer = threading.Timer(delay, action)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()


def test_watch_replays_history_then_streams_live(api: ApiServer, core: Any) -> None:
    api.create("Namespace", {"metadata": {"name": "ns2"}})
    rv = core.list_namespaced_pod("ns1").metadata.resource_version
    api.create("Pod", pod("a"))
    api.set_labels("Pod", "ns1", "a", {"x": "1"})
    api.create("Pod", pod("b"))
    api.create("Pod", pod("elsewhere", namespace="ns2"))
    api.delete("Pod", "ns1", "b")
    watch = Collector(core.list_namespaced_pod, "ns1", resource_version=rv)
    try:
        assert watch.wait(lambda ev: len(ev) >= 4)
        api.create("Pod", pod("c"))
        assert watch.wait(lambda ev: len(ev) >= 5)
    finally:
        watch.stop()
    assert watch.changes() == [("ADDED", "a"), ("MODIFIED", "a"), ("ADDED", "b"),
                               ("DELETED", "b"), ("ADDED", "c")]
    rvs = _rvs(watch.events)
    assert rvs == sorted(rvs) and len(set(rvs)) == 5 and rvs[0] > int(rv)
    assert watch.events[-1][1]["kind"] == "Pod"


def test_watch_without_resource_version_starts_with_current_state(api: ApiServer,
                                                                  core: Any) -> None:
    api.create("Pod", pod("a"))
    api.create("Pod", pod("b"))
    watch = Collector(core.list_namespaced_pod, "ns1", timeout_seconds=1)
    try:
        assert watch.wait(lambda ev: len(ev) >= 2)
        api.delete("Pod", "ns1", "a")
        assert watch.wait(lambda ev: len(ev) >= 3)
    finally:
        watch.stop()
    assert watch.changes() == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")]


def test_bookmarks_carry_the_newest_version_of_their_kind(api: ApiServer, core: Any) -> None:
    """As the watch cache does: a bookmark carries the resourceVersion of the kind's newest
    write (whoever it was for), not the global one, which other kinds move on."""
    api.create("Namespace", {"metadata": {"name": "ns2"}})
    watch = Collector(core.list_namespaced_pod, "ns1", allow_watch_bookmarks=True,
                      resource_version=api.resource_version)
    try:
        assert api.wait_for_watchers("Pod")
        api.create("Pod", pod("unseen", namespace="ns2"))  # filtered out, yet rv moves on
        pods_rv = api.resource_version
        api.create("NetworkPolicy", policy("elsewhere"))  # another kind: the global rv only
        assert api.kind_resource_version("Pod") == pods_rv < api.resource_version
        watch.events.clear()
        assert watch.wait(lambda ev: any(t == "BOOKMARK" for t, o in ev))
    finally:
        watch.stop()
    bookmark = next(o for t, o in watch.events if t == "BOOKMARK")
    assert (bookmark["kind"], bookmark["apiVersion"]) == ("Pod", "v1")
    assert bookmark["metadata"]["resourceVersion"] == pods_rv
    assert watch.changes() == []
    assert watch.watch.resource_version == pods_rv  # the client tracks bookmark rvs


def test_list_resource_versions_as_the_watch_cache_gives_them(api: ApiServer,
                                                              core: Any) -> None:
    """A consistent list reports the global version; ``resourceVersion=0`` the kind's
    newest write (and ignores limit); ``N`` at least N; beyond the newest, 504."""
    for name in ("a", "b", "c"):
        api.create("Pod", pod(name))
    pods_rv = api.resource_version
    api.create("NetworkPolicy", policy("np"))
    latest = api.resource_version
    assert core.list_pod_for_all_namespaces().metadata.resource_version == latest
    cached = core.list_pod_for_all_namespaces(resource_version="0", limit=1)
    assert cached.metadata.resource_version == pods_rv
    assert len(cached.items) == 3 and not cached.metadata._continue
    assert core.list_pod_for_all_namespaces(
        resource_version=pods_rv).metadata.resource_version == pods_rv
    assert core.list_pod_for_all_namespaces(
        resource_version=latest).metadata.resource_version == latest
    paged = core.list_pod_for_all_namespaces(limit=2)
    assert len(paged.items) == 2 and paged.metadata._continue
    with pytest.raises(client.ApiException) as refused:
        core.list_pod_for_all_namespaces(resource_version=str(int(latest) + 5))
    assert refused.value.status == 504
    status = json.loads(refused.value.body or "")
    assert status["message"] == (f"Timeout: Too large resource version: {int(latest) + 5}, "
                                 f"current: {pods_rv}")
    assert status["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"


def test_a_watch_ends_cleanly_at_its_timeout_after_a_bookmark() -> None:
    """Bookmarks come once a minute by default; a watch with timeoutSeconds=3 gets one 2 s
    before its end (as the watch cache sends it), then the chunked stream ends normally."""
    with ApiServer(namespaces=["ns1"]) as api:
        started = api.resource_version
        api.create("Pod", pod("a"))
        api.create("Namespace", {"metadata": {"name": "ns2"}})
        pods_rv = api.kind_resource_version("Pod")
        reply = raw_request(api.port, "GET", "/api/v1/namespaces/ns1/pods?watch=1&"
                            f"resourceVersion={started}&"
                            "allowWatchBookmarks=true&timeoutSeconds=3", timeout=10)
    assert reply.status == 200 and reply.chunks is not None and reply.chunks[-1] == b""
    events = [json.loads(chunk) for chunk in reply.chunks[:-1]]
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["resourceVersion"] == pods_rv


def test_no_bookmark_until_the_kind_moves_past_the_watch_start() -> None:
    """As the watch cache does: a watch from the kind's newest version gets no bookmark,
    however long it runs and whatever other kinds do; a write of its kind (even one the
    watch does not select) starts them."""
    with ApiServer(namespaces=["ns1", "ns2"], bookmark_interval=0.1) as api:
        api.create("Pod", pod("a"))
        with _after(0.5, lambda: api.create("NetworkPolicy", policy("np"))), \
                _after(0.8, lambda: api.create("Pod", pod("b", namespace="ns2"))):
            reply = raw_request(api.port, "GET", "/api/v1/namespaces/ns1/pods?watch=1&"
                                f"resourceVersion={api.resource_version}&"
                                "allowWatchBookmarks=true&timeoutSeconds=2", timeout=10)
    assert reply.chunks is not None
    events = [json.loads(chunk) for chunk in reply.chunks[:-1]]
    assert events and {e["type"] for e in events} == {"BOOKMARK"}
    assert {e["object"]["metadata"]["resourceVersion"] for e in events} == {
        api.kind_resource_version("Pod")}
    # the pod in ns2 was created at 0.8 s: with bookmarks every 0.1 s, a stream that had
    # sent them from the start would hold about 19, not the 8 or so after 0.8 s
    assert len(events) <= 13


def test_forbidden_requests_get_rbacs_status(api: ApiServer, core: Any, net: Any) -> None:
    api.forbid("list", "pods")
    api.forbid("watch", "networkpolicies")
    try:
        with pytest.raises(client.ApiException) as pods:
            core.list_pod_for_all_namespaces()
        with pytest.raises(client.ApiException) as policies:
            net.list_network_policy_for_all_namespaces(watch=True, _preload_content=False)
        core.list_namespace()  # not forbidden
    finally:
        api.permit_all()
    assert pods.value.status == policies.value.status == 403
    assert json.loads(pods.value.body or "") == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'pods is forbidden: User "system:serviceaccount:kube-system:weave-net" '
                   'cannot list resource "pods" in API group "" at the cluster scope',
        "reason": "Forbidden", "details": {"kind": "pods"}, "code": 403}
    body = json.loads(policies.value.body or "")
    assert body["message"] == (
        'networkpolicies.networking.k8s.io is forbidden: User "system:serviceaccount:'
        'kube-system:weave-net" cannot watch resource "networkpolicies" in API group '
        '"networking.k8s.io" at the cluster scope')
    assert body["details"] == {"group": "networking.k8s.io", "kind": "networkpolicies"}


def test_selector_watch_turns_relabels_into_added_and_deleted(api: ApiServer,
                                                              net: Any) -> None:
    api.create("NetworkPolicy", policy("np"))
    watch = Collector(net.list_namespaced_network_policy, "ns1", label_selector="on=yes",
                      resource_version=api.resource_version)
    try:
        assert api.wait_for_watchers("NetworkPolicy")
        api.set_labels("NetworkPolicy", "ns1", "np", {"on": "yes"})
        api.set_labels("NetworkPolicy", "ns1", "np", {"on": "yes", "more": "x"})
        api.set_labels("NetworkPolicy", "ns1", "np", {})
        assert watch.wait(lambda ev: len(ev) >= 3)
    finally:
        watch.stop()
    assert watch.changes() == [("ADDED", "np"), ("MODIFIED", "np"), ("DELETED", "np")]
    deleted = watch.events[2][1]
    assert deleted["metadata"]["labels"]["on"] == "yes"  # the last state that matched
    assert deleted["metadata"]["resourceVersion"] == api.resource_version


def test_namespace_delete_is_seen_by_cluster_wide_watches(api: ApiServer, core: Any,
                                                          net: Any) -> None:
    api.create("NetworkPolicy", policy("np"))
    rv = api.resource_version
    policies = Collector(net.list_network_policy_for_all_namespaces, resource_version=rv)
    namespaces = Collector(core.list_namespace, resource_version=rv)
    try:
        api.delete("Namespace", None, "ns1")
        assert policies.wait(lambda ev: len(ev) >= 1)
        assert namespaces.wait(lambda ev: len(ev) >= 1)
    finally:
        policies.stop()
        namespaces.stop()
    assert policies.changes() == [("DELETED", "np")]
    assert namespaces.changes() == [("DELETED", "ns1")]
    assert _rvs(policies.events)[0] < _rvs(namespaces.events)[0]


def test_compaction_expires_old_resource_versions(api: ApiServer, core: Any) -> None:
    old = api.resource_version
    api.create("Pod", pod("a"))
    api.compact()
    current = api.resource_version
    resp = raw_request(api.port, "GET", f"/api/v1/namespaces/ns1/pods?watch=true"
                                        f"&resourceVersion={old}")
    assert resp.status == 200 and resp.chunks is not None
    assert len(resp.chunks) == 2 and resp.chunks[1] == b""  # one ERROR event, then the end
    event = json.loads(resp.chunks[0])
    assert event == {"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f"too old resource version: {old} ({current})", "reason": "Expired",
        "code": 410}}
    watch = Collector(core.list_namespaced_pod, "ns1", resource_version=old, timeout_seconds=1)
    watch.done.wait(2)
    watch.stop()
    assert isinstance(watch.error, client.ApiException) and watch.error.status == 410
    fresh = Collector(core.list_namespaced_pod, "ns1", resource_version=current)
    try:
        api.create("Pod", pod("b"))
        assert fresh.wait(lambda ev: len(ev) >= 1)
    finally:
        fresh.stop()
    assert fresh.changes() == [("ADDED", "b")]


def test_history_limit_bounds_replay() -> None:
    with ApiServer(history_limit=3, namespaces=["ns1"]) as api:
        start = api.resource_version
        for i in range(4):
            api.create("Pod", pod(f"p{i}"))
        expired = raw_request(api.port, "GET", f"/api/v1/pods?watch=1&resourceVersion={start}")
        assert expired.chunks is not None and b'"code":410' in expired.chunks[0]
        recent = int(api.resource_version) - 2
        with _after(0.2, api.expire_watches):
            replay = raw_request(api.port, "GET",
                                 f"/api/v1/pods?watch=1&resourceVersion={recent}")
        assert replay.chunks is not None
        names = [json.loads(c)["object"]["metadata"]["name"] for c in replay.chunks if c]
        assert names == ["p2", "p3"]


def test_open_watch_outlives_compaction(api: ApiServer, core: Any) -> None:
    watch = Collector(core.list_namespaced_pod, "ns1", resource_version=api.resource_version)
    try:
        assert api.wait_for_watchers("Pod")
        api.compact()
        api.create("Pod", pod("a"))
        assert watch.wait(lambda ev: len(ev) >= 1)
    finally:
        watch.stop()
    assert watch.changes() == [("ADDED", "a")]


def test_expired_watch_is_resumed_by_the_client(api: ApiServer, core: Any) -> None:
    watch = Collector(core.list_namespaced_pod, "ns1", resource_version=api.resource_version)
    try:
        assert api.wait_for_watchers("Pod")
        api.create("Pod", pod("a"))
        assert watch.wait(lambda ev: len(ev) >= 1)
        api.expire_watches()  # clean end: the client's Watch reconnects from its last rv
        assert api.store.wait_for(lambda: api.request_count("watch", "Pod") == 2, 2.0)
        api.create("Pod", pod("b"))
        assert watch.wait(lambda ev: len(ev) >= 2)
    finally:
        watch.stop()
    assert watch.changes() == [("ADDED", "a"), ("ADDED", "b")]
    assert watch.error is None


def test_restart_on_the_same_port_keeps_data_and_history(api: ApiServer, core: Any) -> None:
    api.create("Pod", pod("a"))
    rv = core.list_namespaced_pod("ns1").metadata.resource_version
    port = api.port
    watch = Collector(core.list_namespaced_pod, "ns1", resource_version=rv)
    assert api.wait_for_watchers("Pod")
    api.stop()
    assert watch.done.wait(2), "the open watch was not cut"
    watch.stop()
    assert watch.error is not None and not isinstance(watch.error, client.ApiException)
    api.set_labels("Pod", "ns1", "a", {"while": "down"})  # direct writes work while stopped
    api.start()
    assert api.port == port
    assert [p.metadata.labels for p in core.list_namespaced_pod("ns1").items] == [
        {"while": "down"}]
    resumed = Collector(core.list_namespaced_pod, "ns1", resource_version=rv)
    try:
        assert resumed.wait(lambda ev: len(ev) >= 1)
    finally:
        resumed.stop()
    assert resumed.changes() == [("MODIFIED", "a")]


def test_restart_without_history_forces_a_relist(api: ApiServer, core: Any) -> None:
    api.create("Pod", pod("a"))
    rv = core.list_namespaced_pod("ns1").metadata.resource_version
    api.stop()
    api.set_labels("Pod", "ns1", "a", {"missed": "yes"})
    api.start(keep_history=False)  # the change is older than the new server's history
    gone = Collector(core.list_namespaced_pod, "ns1", resource_version=rv, timeout_seconds=1)
    gone.done.wait(2)
    gone.stop()
    assert isinstance(gone.error, client.ApiException) and gone.error.status == 410
    relisted = core.list_namespaced_pod("ns1")
    assert [p.metadata.labels for p in relisted.items] == [{"missed": "yes"}]
    watch = Collector(core.list_namespaced_pod, "ns1",
                      resource_version=relisted.metadata.resource_version)
    try:
        api.delete("Pod", "ns1", "a")
        assert watch.wait(lambda ev: len(ev) >= 1)
    finally:
        watch.stop()
    assert watch.changes() == [("DELETED", "a")]
    assert api.request_count("list", "Pod") == 2


def test_watch_stream_framing(api: ApiServer) -> None:
    api.create("Pod", pod("a"))
    api.create("Pod", pod("b"))
    # bookmarks come once the kind has a write past where the watch started
    with _after(0.1, lambda: api.create("Pod", pod("c"))), _after(0.45, api.expire_watches):
        resp = raw_request(api.port, "GET", "/api/v1/namespaces/ns1/pods?watch=1"
                                            "&allowWatchBookmarks=true&timeoutSeconds=5")
    assert resp.status == 200 and resp.chunks is not None
    assert resp.headers["transfer-encoding"] == "chunked"
    assert resp.headers["content-type"] == "application/json"
    assert "content-length" not in resp.headers
    *events, end = resp.chunks
    assert end == b""
    for chunk in events:  # exactly one newline-terminated JSON event per chunk
        assert chunk.endswith(b"\n") and chunk.count(b"\n") == 1
        assert set(json.loads(chunk)) == {"type", "object"}
    types = [json.loads(c)["type"] for c in events]
    assert types[:3] == ["ADDED", "ADDED", "ADDED"] and set(types[3:]) == {"BOOKMARK"}


def test_watch_list_ends_initial_events_with_annotated_bookmark(api: ApiServer) -> None:
    api.create("Pod", pod("a"))
    with _after(0.05, api.expire_watches):
        resp = raw_request(api.port, "GET", "/api/v1/pods?watch=1&sendInitialEvents=true"
                           "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")
    assert resp.chunks is not None
    first, second = (json.loads(c) for c in resp.chunks[:2])
    assert first["type"] == "ADDED" and second["type"] == "BOOKMARK"
    assert second["object"]["metadata"] == {
        "resourceVersion": api.resource_version,
        "annotations": {"k8s.io/initial-events-end": "true"}}


def test_client_disconnect_is_handled_silently(api: ApiServer,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_connection(("127.0.0.1", api.port), timeout=2) as sock:
        sock.sendall(b"GET /api/v1/pods?watch=1&allowWatchBookmarks=1 HTTP/1.1\r\n"
                     b"Host: x\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        assert api.wait_for_watchers("Pod")
    assert api.store.wait_for(lambda: api.watcher_count() == 0, 2.0)
    assert raw_request(api.port, "GET", "/healthz").status == 200
    assert capsys.readouterr().err == ""


def test_bad_watch_parameters(api: ApiServer) -> None:
    resp = raw_request(api.port, "GET", "/api/v1/pods?watch=1&resourceVersion=abc")
    assert resp.status == 400 and resp.json()["reason"] == "BadRequest"
    resp = raw_request(api.port, "GET", "/api/v1/pods?watch=1&timeoutSeconds=x")
    assert resp.status == 400


@pytest.mark.kernel
def test_listens_inside_a_network_namespace() -> None:
    from common.kernel.netns import in_netns, open_netns

    name = f"apisrv{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        fd = open_netns(name)
        try:
            with ApiServer(bind_netns_fd=fd) as api:
                with in_netns(fd):  # the client socket is created inside the namespace
                    assert raw_request(api.port, "GET", "/healthz").body == b"ok"
                with pytest.raises(OSError):
                    raw_request(api.port, "GET", "/healthz", timeout=0.5)
                api.restart()
                with in_netns(fd):
                    assert raw_request(api.port, "GET", "/version").status == 200
        finally:
            os.close(fd)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
