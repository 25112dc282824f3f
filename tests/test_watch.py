"""The list-then-watch loop against the test API server (real HTTP on loopback, the official
client), and against a scripted API where time and failures must be exact."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from urllib3.exceptions import ProtocolError

from common.service.apierrors import describe
from common.service.kube import kube_api_client, user_agent
from common.service.listwatch import Backoff
from npc.controller.store import ClusterStore, Kind
from npc.controller.watchers import watcher
from npc.model.parse import FieldError
from tests.apiserver import ApiServer
from tests.apiserver.helpers import pod
from tests.e2e.controllers import kubeconfig
from tests.support.doubles import RecordingLog


class Running:
    """A Watcher of pods running in a thread; errors and log lines recorded."""

    def __init__(self, api: ApiServer, tmp_path: Path,
                 backoff: Backoff | None = None) -> None:
        self.api = api
        self.store = ClusterStore()
        self.stop = threading.Event()
        self.errors: list[tuple[str, BaseException]] = []
        self.log = RecordingLog()
        kube = kube_api_client(str(kubeconfig(tmp_path / "kc", api.url)), "weave-npc")
        core = client.CoreV1Api(kube)
        self.watcher = watcher(Kind.POD, core.list_pod_for_all_namespaces, self.store,
                               on_error=lambda what, exc: self.errors.append((what, exc)),
                               stop=self.stop, log=self.log,
                               backoff=backoff or Backoff(initial=0.02, maximum=0.1),
                               watch_timeout=30)
        self.thread = threading.Thread(target=self.watcher.run, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.watcher.close()
        self.thread.join(timeout=10)

    def until(self, check: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.01)

    def pods(self) -> int:
        return self.store.counts()["pods"]


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer(namespaces=["ns1"]) as server:
        yield server


def test_a_broken_watch_resumes_from_the_last_version_it_saw(api: ApiServer,
                                                             tmp_path: Path) -> None:
    """The stream breaks after three events: the next watch starts at the third event's
    resourceVersion, not the list's (which would replay the events, or 410 with a real
    watch cache); nothing is listed again."""
    api.create("Pod", pod("before"))
    with Running(api, tmp_path) as run:
        assert api.wait_for_watchers("Pod")
        listed = api.requests("list", "pods")[0].query["resourceVersion"]
        for name in ("a", "b", "c"):
            api.create("Pod", pod(name))
        last = api.resource_version
        run.until(lambda: run.pods() == 4)
        api.store.end_watches(cut=True)  # the connection drops mid-stream
        run.until(lambda: len(api.requests("watch", "pods")) == 2)
        api.create("Pod", pod("d"))
        run.until(lambda: run.pods() == 5)
    watches = api.requests("watch", "pods")
    assert listed == "0"  # the first list is served from the watch cache
    assert watches[1].query["resourceVersion"] == last
    assert len(api.requests("list", "pods")) == 1 and run.watcher.lists == 1
    restarts = run.log.messages("watching")
    assert [r["resource_version"] for r in restarts] == [
        api.requests("watch", "pods")[0].query["resourceVersion"], last]
    assert restarts[0]["why"] == "after the list"
    assert restarts[1]["why"].startswith("after an error (ProtocolError")


def test_lists_are_logged_and_requests_say_who_asks(api: ApiServer, tmp_path: Path) -> None:
    for name in ("a", "b"):
        api.create("Pod", pod(name))
    api.create("NetworkPolicy", {"metadata": {"name": "np", "namespace": "ns1"},
                                 "spec": {"podSelector": {}}})
    with Running(api, tmp_path) as run:
        assert api.wait_for_watchers("Pod")
    listed = run.log.messages("listed")
    assert len(listed) == 1
    assert listed[0]["kind"] == "pods" and listed[0]["objects"] == 2
    # served from the watch cache: the kind's newest version, not the global one
    assert listed[0]["resource_version"] == api.kind_resource_version("Pod")
    assert listed[0]["resource_version"] != api.resource_version
    assert isinstance(listed[0]["seconds"], float)
    agents = {r.user_agent for r in api.requests()}
    assert agents == {user_agent("weave-npc")} and user_agent("weave-npc").startswith("weave-npc/")


def test_api_errors_name_the_status_reason_and_message(api: ApiServer,
                                                       tmp_path: Path) -> None:
    """An RBAC mistake is diagnosable from the log: code, reason, user, verb, resource.
    Once allowed, the watcher goes on by itself."""
    api.forbid("list", "pods")
    api.create("Pod", pod("a"))
    with Running(api, tmp_path) as run:
        run.until(lambda: len(run.errors) >= 2)
        api.permit_all()
        run.until(lambda: run.pods() == 1)
    what, exc = run.errors[0]
    assert what == "pods: API request failed, retrying"
    assert describe(exc) == (
        '403 Forbidden: pods is forbidden: User "system:serviceaccount:kube-system:weave-net"'
        ' cannot list resource "pods" in API group "" at the cluster scope')


def test_a_410_relists_from_the_last_version_seen(api: ApiServer, tmp_path: Path) -> None:
    """After the history is compacted, the resumed watch gets 410: the relist asks for
    any state at least as new as the last version seen (the watch cache serves it)."""
    with Running(api, tmp_path) as run:
        assert api.wait_for_watchers("Pod")
        api.create("Pod", pod("a"))
        last = api.resource_version
        run.until(lambda: run.pods() == 1)
        api.stop()  # the stream breaks; meanwhile a write, and etcd compacts
        api.create("Pod", pod("b"))
        api.compact()
        api.start()
        run.until(lambda: run.watcher.lists == 2 and run.pods() == 2)
    lists = api.requests("list", "pods")
    assert [r.query.get("resourceVersion") for r in lists] == ["0", last]
    assert any("watch expired" in what for what, _ in run.errors)


def test_close_ends_a_blocked_watch_at_once(api: ApiServer, tmp_path: Path) -> None:
    """Shutting down must not wait for the stream's next byte (a quiet watch sends
    nothing for a minute): close() breaks the read."""
    with Running(api, tmp_path) as run:
        assert api.wait_for_watchers("Pod")
        run.stop.set()
        run.watcher.close()
        run.thread.join(timeout=5)
        assert not run.thread.is_alive()


# ---- a scripted API: exact time and failures ----------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingStop(threading.Event):
    """The loop's stop event: records each backoff wait instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return self.is_set()


class Stream:
    """A watch response: some events (advancing the clock as it streams), then a reset."""

    def __init__(self, events: list[dict[str, Any]], clock: FakeClock, lasts: float) -> None:
        self.events, self.clock, self.lasts = events, clock, lasts

    def stream(self, amt: int, decode_content: bool) -> Iterator[bytes]:
        for event in self.events:
            yield json.dumps(event).encode() + b"\n"
        self.clock.now += self.lasts
        raise ProtocolError("Connection broken: ConnectionResetError(104)")

    def release_conn(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


class ScriptedApi:
    """``list_pod_for_all_namespaces`` as the watcher calls it: one list, then watches that
    stream for ``lasts`` seconds each before the connection resets."""

    def __init__(self, clock: FakeClock, stop: RecordingStop, lasts: list[float]) -> None:
        self.clock, self.stop, self.lasts = clock, stop, lasts
        self.watch_versions: list[str] = []
        self.rv = 10

    def __call__(self, **kwargs: Any) -> Any:
        if not kwargs.get("watch"):
            body = {"metadata": {"resourceVersion": str(self.rv)}, "items": []}
            return type("Resp", (), {"data": json.dumps(body).encode()})()
        self.watch_versions.append(kwargs["resource_version"])
        if not self.lasts:
            self.stop.set()
            raise ProtocolError("done")
        self.rv += 1
        event = {"type": "ADDED", "object": {"metadata": {
            "name": f"p{self.rv}", "namespace": "x", "resourceVersion": str(self.rv)}}}
        return Stream([event], self.clock, self.lasts.pop(0))


def test_backoff_starts_afresh_after_a_healthy_watch() -> None:
    """A reset after minutes of streaming is retried as a first failure; only failures in
    quick succession back off further."""
    clock, stop = FakeClock(), RecordingStop()
    api = ScriptedApi(clock, stop, lasts=[120.0, 0.0, 0.0, 300.0, 0.0])
    backoff = Backoff(initial=1.0, maximum=30.0, healthy_after=10.0)
    errors: list[FieldError] = []
    looping = watcher(Kind.POD, api, ClusterStore(), on_error=lambda *_: None,
                      on_invalid=errors.append, stop=stop, log=RecordingLog(), backoff=backoff,
                      rng=random.Random(7), clock=clock)
    looping.run()
    first, quick, quicker, healthy, quick_again = stop.waits
    assert 0.5 <= first <= 1.0
    assert 1.0 <= quick <= 2.0 and 2.0 <= quicker <= 4.0  # failures in quick succession
    assert 0.5 <= healthy <= 1.0  # after 300 s of streaming: a first failure again
    assert 1.0 <= quick_again <= 2.0
    # each watch resumed from the event the broken one delivered
    assert api.watch_versions == ["10", "11", "12", "13", "14", "15"]


class FailoverApi:
    """Watches that end in 410, and relists that an API server refuses or serves at a
    version it cannot watch from: ``lists`` scripts the list answers in turn ("504", or
    the list's resourceVersion), ``progress`` whether the watch delivers an event before
    its 410."""

    def __init__(self, stop: RecordingStop, lists: list[str], progress: bool) -> None:
        self.stop = stop
        self.answers = lists
        self.progress = progress
        self.lists: list[str] = []
        self.watches: list[str] = []

    def __call__(self, **kwargs: Any) -> Any:
        if kwargs.get("watch"):
            self.watches.append(kwargs["resource_version"])
            if not self.answers:
                self.stop.set()
                raise ProtocolError("done")
            events: list[dict[str, Any]] = []
            if self.progress:
                rv = str(int(kwargs["resource_version"]) + 1)
                events.append({"type": "ADDED", "object": {"metadata": {
                    "name": "p", "namespace": "x", "resourceVersion": rv}}})
            events.append({"type": "ERROR", "object": {
                "kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}})
            return Stream(events, FakeClock(), 0.0)
        self.lists.append(kwargs["resource_version"])
        answer = self.answers.pop(0)
        if answer == "504":
            status = {"kind": "Status", "code": 504, "reason": "Timeout",
                      "message": "Timeout: Too large resource version: 21, current: 15"}
            exc = client.ApiException(status=504, reason="Gateway Timeout")
            exc.body = json.dumps(status)
            raise exc
        body = {"metadata": {"resourceVersion": answer}, "items": []}
        return type("Resp", (), {"data": json.dumps(body).encode()})()


def run_failover(api: FailoverApi) -> list[str]:
    errors: list[str] = []
    looping = watcher(Kind.POD, api, ClusterStore(),
                      on_error=lambda what, exc: errors.append(f"{what}: {describe(exc)}"),
                      stop=api.stop, log=RecordingLog())
    looping.run()
    return errors


def test_a_relist_newer_than_the_servers_cache_falls_back_to_a_consistent_list() -> None:
    """After a 410 the relist asks for the last version seen (21); an API server whose
    cache is behind refuses it (504): the next list reads etcd."""
    api = FailoverApi(RecordingStop(), ["20", "504", "30"], progress=True)
    errors = run_failover(api)
    assert api.lists == ["0", "21", ""]
    assert errors[:2] == [
        "pods: watch expired, relisting: 410 Expired: too old",
        "pods: cannot list at 21, listing the latest state: 504 Timeout: Timeout: Too large"
        " resource version: 21, current: 15"]
    assert api.stop.waits == []  # no backoff: a refused version is no server failure


def test_a_410_again_right_after_a_relist_reads_etcd() -> None:
    """A restarted API server's cache lists at a version it cannot watch from (the list
    says 418, the watch 410 "too old resource version: 418 (456)"): after a relist at 418
    expired again at once, relisting at 418 would loop, so the next list reads etcd,
    after a backoff delay.  The first relist after a 410 is immediate."""
    api = FailoverApi(RecordingStop(), ["418", "418", "460"], progress=False)
    run_failover(api)
    assert api.lists == ["0", "418", ""] and api.watches == ["418", "418", "460"]
    assert len(api.stop.waits) == 1
