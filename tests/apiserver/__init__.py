"""A small real-HTTP Kubernetes API server for tests (never part of the product).

It serves v1 Namespaces, v1 Pods and networking.k8s.io/v1 NetworkPolicies well enough for
the official ``kubernetes`` Python client, and a controller doing list+watch with it, to run
against it unmodified: discovery, list with pagination and selectors, watch with history
replay, bookmarks (by default once a minute, as the watch cache sends them), 410 Gone
after compaction, watch timeouts that end streams cleanly, RBAC-worded 403s,
create/get/update/patch/delete, the pod and namespace ``/status`` subresources, API-server
defaulting, and NetworkPolicy validation by the product's own parser (422 with field
causes).

Deliberate deviations from kube-apiserver are listed in ``DEVIATIONS``.

Usage::

    with ApiServer(bookmark_interval=0.2) as api:  # bookmarks 5/s (real: 1/min)
        api.create("Namespace", {"metadata": {"name": "ns1"}})
        cfg = kubernetes.client.Configuration(host=api.url)
        core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(cfg))
        ...
        api.restart(keep_history=False)  # watchers break, resume gets 410, relist works
"""

from tests.apiserver.resources import NAMESPACE, NETWORK_POLICY, POD, ApiError, ResourceType
from tests.apiserver.server import ApiServer

DEVIATIONS = """\
- Pod status supplied on create is stored (the real server drops it and sets Pending);
  writes to the main resource keep the stored status, as the real server does.
- Pod spec is mutable (the real server rejects most pod spec changes).
- Strategic merge patch is applied as a JSON merge patch (lists are replaced, not merged by
  key); server-side apply (application/apply-patch+yaml) is answered with 415.
- No authentication or RBAC: every request is made as ``ApiServer.user``, and ``forbid()``
  refuses chosen verbs on chosen kinds with RBAC's 403 Status.  No admission webhooks,
  managedFields, finalizer processing or graceful deletion: deletes are immediate, and
  deleting a Namespace removes its Pods and NetworkPolicies at once (DELETED events)
  without a Terminating phase.
- One global resourceVersion counter, and per kind the version of its newest write, as
  etcd and the watch cache give them: a consistent list reports the global version, a list
  with resourceVersion=0 (and every bookmark) the kind's; a watch gets no bookmark until
  its kind has a write past the version the watch started from (as the watch cache does;
  the real one also moves a quiet kind on with etcd's progress notifications, every 10
  minutes by default, which this server does not).  resourceVersionMatch=Exact and
  resourceVersion on GET are ignored (always the latest state).
- Continue tokens stay valid while their list snapshot is kept (the last 32 paginated lists)
  and the history has not been compacted past them; otherwise 410 Expired.
- A watch without timeoutSeconds never ends on its own (the real server ends it after a
  random 30-60 minutes).  dryRun is refused with 400.
- Metadata validation covers names and labels only; other kinds' specs are not validated.
- Only JSON (no protobuf, no YAML, no Table output).
"""

__all__ = ["DEVIATIONS", "NAMESPACE", "NETWORK_POLICY", "POD", "ApiError", "ApiServer",
           "ResourceType"]
