"""The test API server against the official kubernetes client: discovery, CRUD, defaulting,
validation, pagination, selectors, the direct Python API and the patch/selector helpers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from tests.apiserver import ApiError, ApiServer
from tests.apiserver.helpers import pod, policy, raw_request
from tests.apiserver.patch import json_patch, merge_patch
from tests.apiserver.resources import POD
from tests.apiserver.selectors import field_selector, label_selector


def _status(exc: pytest.ExceptionInfo[client.ApiException]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.value.body or "{}")
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["code"] == exc.value.status
    return body


def test_discovery_version_and_health(api: ApiServer, api_client: Any) -> None:
    assert client.VersionApi(api_client).get_code().major == "1"
    assert client.CoreApi(api_client).get_api_versions().versions == ["v1"]
    groups = client.ApisApi(api_client).get_api_versions().groups
    assert [g.name for g in groups] == ["networking.k8s.io"]
    core_resources = {r.name for r in client.CoreV1Api(api_client).get_api_resources().resources}
    assert {"namespaces", "pods", "pods/status"} <= core_resources
    net_resources = client.NetworkingV1Api(api_client).get_api_resources().resources
    assert [r.kind for r in net_resources] == ["NetworkPolicy"]
    health = raw_request(api.port, "GET", "/healthz")
    assert (health.status, health.body) == (200, b"ok")
    assert raw_request(api.port, "GET", "/api/v1/nothing").status == 404


def test_namespace_crud_and_defaulting(api: ApiServer, core: Any) -> None:
    ns = core.create_namespace({"metadata": {"name": "ns2", "labels": {"team": "a"}}})
    assert ns.metadata.labels == {"team": "a", "kubernetes.io/metadata.name": "ns2"}
    assert ns.status.phase == "Active" and ns.metadata.uid and ns.metadata.creation_timestamp
    assert ns.metadata.resource_version == api.resource_version
    with pytest.raises(client.ApiException) as exc:
        core.create_namespace({"metadata": {"name": "ns2"}})
    assert exc.value.status == 409 and _status(exc)["reason"] == "AlreadyExists"
    # The metadata.name label cannot be removed: the server puts it back on every write.
    replaced = core.replace_namespace("ns2", {"metadata": {"name": "ns2", "labels": {}}})
    assert replaced.metadata.labels == {"kubernetes.io/metadata.name": "ns2"}
    assert replaced.metadata.uid == ns.metadata.uid
    patched = core.patch_namespace("ns2", {"metadata": {"labels": {"team": "b"}}})
    assert patched.metadata.labels["team"] == "b"
    assert sorted(n.metadata.name for n in core.list_namespace().items) == ["ns1", "ns2"]
    core.delete_namespace("ns2")
    with pytest.raises(client.ApiException) as exc:
        core.read_namespace("ns2")
    assert exc.value.status == 404 and _status(exc)["message"] == 'namespaces "ns2" not found'


def test_pod_crud_status_and_defaulting(api: ApiServer, core: Any) -> None:
    created = core.create_namespaced_pod(
        "ns1", pod("p1", labels={"app": "a"}, ip="10.0.0.5",
                   ports=[{"containerPort": 80, "name": "http"}]))
    assert created.status.pod_ip == "10.0.0.5"  # kept: a documented deviation
    assert created.spec.containers[0].ports[0].protocol == "TCP"
    bare = core.create_namespaced_pod("ns1", pod("p2"))
    assert bare.status.phase == "Pending"
    # A main-resource write cannot change status; the /status subresource can.
    body = pod("p1", labels={"app": "b"}, ip="10.9.9.9")
    replaced = core.replace_namespaced_pod("p1", "ns1", body)
    assert replaced.metadata.labels == {"app": "b"} and replaced.status.pod_ip == "10.0.0.5"
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    status = core.replace_namespaced_pod_status(
        "p1", "ns1", {"metadata": {"name": "p1"}, "status": {"podIP": "10.0.0.6",
                                                             "phase": "Running"}})
    assert status.status.pod_ip == "10.0.0.6" and status.metadata.labels == {"app": "b"}
    patched = core.patch_namespaced_pod("p1", "ns1", {"metadata": {"labels": {"tier": "x"}}})
    assert patched.metadata.labels == {"app": "b", "tier": "x"}
    removed = core.patch_namespaced_pod("p1", "ns1",
                                        [{"op": "remove", "path": "/metadata/labels/app"}])
    assert removed.metadata.labels == {"tier": "x"}
    assert [p.metadata.name for p in core.list_pod_for_all_namespaces().items] == ["p1", "p2"]
    core.delete_namespaced_pod("p2", "ns1")
    with pytest.raises(client.ApiException) as exc:
        core.delete_namespaced_pod("p2", "ns1")
    assert exc.value.status == 404
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_pod("nope", pod("p3", namespace="nope"))
    assert exc.value.status == 404 and _status(exc)["details"]["kind"] == "namespaces"


def test_no_op_update_keeps_resource_version(api: ApiServer, core: Any) -> None:
    first = core.create_namespaced_pod("ns1", pod("p", labels={"a": "1"}))
    again = core.patch_namespaced_pod("p", "ns1", {"metadata": {"labels": {"a": "1"}}})
    assert again.metadata.resource_version == first.metadata.resource_version


def test_network_policy_crud_defaulting_and_generation(api: ApiServer, net: Any) -> None:
    created = net.create_namespaced_network_policy("ns1", policy("np", spec={
        "egress": [{"ports": [{"port": 53, "protocol": "UDP"}, {"port": 443}]}]}))
    assert created.spec.policy_types == ["Ingress", "Egress"]
    assert created.spec.pod_selector is not None
    assert [p.protocol for p in created.spec.egress[0].ports] == ["UDP", "TCP"]
    assert created.metadata.generation == 1
    relabelled = net.patch_namespaced_network_policy("np", "ns1",
                                                     {"metadata": {"labels": {"x": "y"}}})
    assert relabelled.metadata.generation == 1
    changed = net.patch_namespaced_network_policy("np", "ns1", {"spec": {"egress": []}})
    assert changed.metadata.generation == 2
    body = net.read_namespaced_network_policy("np", "ns1").to_dict(serialize=True)
    body["spec"]["podSelector"] = {"matchLabels": {"app": "web"}}
    replaced = net.replace_namespaced_network_policy("np", "ns1", body)
    assert replaced.spec.pod_selector.match_labels == {"app": "web"}
    assert replaced.metadata.generation == 3
    assert changed.spec.policy_types == ["Ingress", "Egress"]  # explicit types are kept
    listed = net.list_network_policy_for_all_namespaces()
    assert [p.metadata.name for p in listed.items] == ["np"]
    net.delete_namespaced_network_policy("np", "ns1")
    assert net.list_namespaced_network_policy("ns1").items == []


def test_invalid_network_policy_is_rejected_with_field_causes(api: ApiServer, net: Any) -> None:
    bad = policy("bad", spec={"podSelector": {}, "ingress": [{"ports": [{"port": "80"}]}],
                              "policyTypes": ["Sideways"]})
    with pytest.raises(client.ApiException) as exc:
        net.create_namespaced_network_policy("ns1", bad)
    status = _status(exc)
    assert exc.value.status == 422 and status["reason"] == "Invalid"
    assert status["details"]["kind"] == "NetworkPolicy"
    assert status["details"]["causes"][0]["field"] == "spec.policyTypes[0]"
    assert status["message"].startswith('NetworkPolicy.networking.k8s.io "bad" is invalid: ')
    assert api.get("NetworkPolicy", "ns1", "bad") is None
    net.create_namespaced_network_policy("ns1", policy("good"))
    with pytest.raises(client.ApiException) as exc:
        net.patch_namespaced_network_policy("good", "ns1", {"spec": {"ingress": [
            {"ports": [{"port": "80"}]}]}})
    assert [c["field"] for c in _status(exc)["details"]["causes"]] == [
        "spec.ingress[0].ports[0].port"]


def test_lenient_server_stores_invalid_objects(api: ApiServer, net: Any) -> None:
    bad = policy("bad", spec={"ingress": [{"ports": [{"port": "80"}]}]})
    api.lenient = True
    stored = net.create_namespaced_network_policy("ns1", bad)
    assert stored.spec.ingress[0].ports[0].port == "80"
    assert stored.spec.ingress[0].ports[0].protocol == "TCP"  # still defaulted
    api.lenient = False
    api.create("NetworkPolicy", policy("bad2", spec=bad["spec"]), validate=False)
    with pytest.raises(ApiError) as exc:
        api.create("NetworkPolicy", policy("bad3", spec=bad["spec"]))
    assert exc.value.code == 422


def test_update_conflicts(api: ApiServer, core: Any) -> None:
    first = core.create_namespaced_pod("ns1", pod("p"))
    core.patch_namespaced_pod("p", "ns1", {"metadata": {"labels": {"a": "b"}}})
    stale = pod("p", labels={"a": "c"})
    stale["metadata"]["resourceVersion"] = first.metadata.resource_version
    with pytest.raises(client.ApiException) as exc:
        core.replace_namespaced_pod("p", "ns1", stale)
    assert exc.value.status == 409 and _status(exc)["reason"] == "Conflict"
    with pytest.raises(client.ApiException) as exc:
        core.replace_namespaced_pod("q", "ns1", pod("p"))
    assert exc.value.status == 400  # name in body differs from the URL


def test_namespace_delete_takes_contents(api: ApiServer) -> None:
    api.create("Namespace", {"metadata": {"name": "doomed"}})
    api.create("Pod", pod("p", namespace="doomed"))
    api.create("NetworkPolicy", policy("np", namespace="doomed"))
    api.create("Pod", pod("survivor"))
    before = int(api.resource_version)
    api.delete("Namespace", None, "doomed")
    assert int(api.resource_version) == before + 3
    assert [p["metadata"]["name"] for p in api.list("Pod")] == ["survivor"]
    assert api.list("NetworkPolicy") == []


def test_pagination_is_consistent_and_expires(api: ApiServer, core: Any) -> None:
    for i in range(5):
        api.create("Pod", pod(f"p{i}"))
    page1 = core.list_namespaced_pod("ns1", limit=2)
    assert [p.metadata.name for p in page1.items] == ["p0", "p1"]
    assert page1.metadata.remaining_item_count == 3 and page1.metadata._continue
    api.create("Pod", pod("p2a"))  # not in the snapshot the token refers to
    page2 = core.list_namespaced_pod("ns1", limit=2, _continue=page1.metadata._continue)
    page3 = core.list_namespaced_pod("ns1", limit=2, _continue=page2.metadata._continue)
    assert [p.metadata.name for p in page2.items + page3.items] == ["p2", "p3", "p4"]
    assert page3.metadata._continue is None
    assert page2.metadata.resource_version == page1.metadata.resource_version
    api.compact()
    with pytest.raises(client.ApiException) as exc:
        core.list_namespaced_pod("ns1", limit=2, _continue=page1.metadata._continue)
    assert exc.value.status == 410 and _status(exc)["reason"] == "Expired"


def test_label_and_field_selectors(api: ApiServer, core: Any) -> None:
    api.create("Pod", pod("a", labels={"app": "web", "tier": "1"}))
    api.create("Pod", pod("b", labels={"app": "db"}))
    api.create("Pod", pod("c", labels={"app": "web", "skip": ""}))

    def names(**kw: Any) -> list[str]:
        return [p.metadata.name for p in core.list_namespaced_pod("ns1", **kw).items]

    assert names(label_selector="app=web") == ["a", "c"]
    assert names(label_selector="app in (web, db),!skip") == ["a", "b"]
    assert names(label_selector="app!=web") == ["b"]
    assert names(label_selector="tier>0") == ["a"]
    assert names(field_selector="metadata.name!=a") == ["b", "c"]
    with pytest.raises(client.ApiException) as exc:
        names(label_selector="app in web")
    assert exc.value.status == 400
    with pytest.raises(client.ApiException) as exc:
        names(field_selector="spec.bogus=1")
    assert exc.value.status == 400


def test_list_items_omit_type_meta_like_the_real_server(api: ApiServer) -> None:
    api.create("Pod", pod("p"))
    listed = raw_request(api.port, "GET", "/api/v1/namespaces/ns1/pods").json()
    assert listed["kind"] == "PodList" and listed["apiVersion"] == "v1"
    assert "kind" not in listed["items"][0]
    api.list_item_type_meta = True
    listed = raw_request(api.port, "GET", "/api/v1/pods").json()
    assert listed["items"][0]["kind"] == "Pod"
    single = raw_request(api.port, "GET", "/api/v1/namespaces/ns1/pods/p").json()
    assert (single["kind"], single["apiVersion"]) == ("Pod", "v1")


def test_direct_api(api: ApiServer) -> None:
    created = api.create("pods", pod("p", ip="10.1.1.1"))
    assert created["metadata"]["uid"] and created["status"]["podIP"] == "10.1.1.1"
    created["metadata"]["labels"]["mutating"] = "the copy"
    assert api.get("Pod", "ns1", "p") != created  # callers get copies
    labelled = api.set_labels("Pod", "ns1", "p", {"app": "x"})
    assert labelled["metadata"]["labels"] == {"app": "x"}
    moved = api.set_status("Pod", "ns1", "p", {"podIP": "10.1.1.2"})
    assert moved["status"] == {"podIP": "10.1.1.2", "phase": "Pending"}
    replaced = api.update("Pod", {**pod("p", ip="10.1.1.3")})
    assert replaced["status"]["podIP"] == "10.1.1.3"  # direct update replaces status too
    api.apply("netpol", policy("np"))
    assert api.apply("netpol", policy("np", spec={"podSelector": {"matchLabels": {"a": "b"}}})
                     )["metadata"]["generation"] == 2
    with pytest.raises(ApiError) as exc:
        api.create("Pod", pod("p"))
    assert exc.value.code == 409 and exc.value.status()["reason"] == "AlreadyExists"
    assert api.delete("Pod", "ns1", "p")["metadata"]["name"] == "p"
    with pytest.raises(ApiError):
        api.set_labels("Pod", "ns1", "p", {})
    assert api.request_count("create", POD) == 0  # no HTTP involved


def test_request_counters(api: ApiServer, core: Any) -> None:
    core.list_namespaced_pod("ns1")
    core.list_pod_for_all_namespaces()
    core.list_namespaced_pod("ns1", watch=True, timeout_seconds=1, _preload_content=False,
                             resource_version=api.resource_version).release_conn()
    assert api.request_count("list", "Pod") == 2
    assert api.request_count("watch", "pods") == 1
    assert api.counts()[("list", "Pod")] == 2
    api.reset_counts()
    assert api.counts() == {}


def test_merge_and_json_patch() -> None:
    target = {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    assert merge_patch(target, {"a": {"b": None, "c": [3]}, "e": 1}) == \
        {"a": {"c": [3]}, "d": "x", "e": 1}
    ops = [{"op": "add", "path": "/a/c/-", "value": 3}, {"op": "replace", "path": "/d",
                                                         "value": "y"},
           {"op": "move", "from": "/a/b", "path": "/b"}, {"op": "test", "path": "/b",
                                                          "value": 1},
           {"op": "copy", "from": "/b", "path": "/a/~1x"}]
    assert json_patch(target, ops) == {"a": {"c": [1, 2, 3], "/x": 1}, "d": "y", "b": 1}
    assert target == {"a": {"b": 1, "c": [1, 2]}, "d": "x"}  # not mutated
    with pytest.raises(ApiError):
        json_patch(target, [{"op": "test", "path": "/d", "value": "z"}])


def test_selector_parsing() -> None:
    obj = {"metadata": {"name": "n", "labels": {"a": "1", "b": "x"}}, "spec": {"x": True}}
    sel = label_selector("a in (1,2), b notin (y), !c, b")
    assert sel is not None and sel(obj)
    other = label_selector("a=2")
    assert other is not None and not other(obj)
    assert label_selector("") is None
    fsel = field_selector(POD, "metadata.name=n,spec.hostNetwork!=true")
    assert fsel is not None and fsel({"metadata": {"name": "n"}, "spec": {}})
    with pytest.raises(ApiError):
        label_selector("a in (1")
