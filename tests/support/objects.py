"""API objects built in a line, and the cluster state they load into: what the compiler's,
the backends' and the nftables tests start from."""

from __future__ import annotations

from typing import Any

from npc.model.load import Loaded, add_object
from npc.model.objects import ClusterState


def ns(name: str, **labels: str) -> dict[str, Any]:
    return {"kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def pod(key: str, ip: str, labels: dict[str, str] | None = None,
        ports: list[tuple[str, int, str]] | None = None, **status: Any) -> dict[str, Any]:
    namespace, name = key.split("/")
    containers = [{"name": "c", "ports": [{"name": n, "containerPort": p, "protocol": proto}
                                          for n, p, proto in ports or []]}]
    spec: dict[str, Any] = {"containers": containers}
    if status.pop("host_network", False):
        spec["hostNetwork"] = True
    return {"kind": "Pod", "metadata": {"name": name, "namespace": namespace,
                                        "labels": labels or {}},
            "spec": spec, "status": {"phase": status.get("phase", "Running"), "podIP": ip}}


def policy(key: str, spec: dict[str, Any]) -> dict[str, Any]:
    namespace, name = key.split("/")
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def state(*objects: dict[str, Any]) -> ClusterState:
    loaded = Loaded()
    for i, obj in enumerate(objects):
        add_object(loaded, obj, f"object {i}")
    return loaded.state()


BASE = (ns("x", team="a"), ns("y"),
        pod("x/a", "10.32.0.1", {"app": "a"}, [("http", 80, "TCP")]),
        pod("x/b", "10.32.0.2", {"app": "b"}, [("http", 8080, "TCP"), ("dns", 53, "UDP")]),
        pod("y/a", "10.32.0.3", {"app": "a"}))
