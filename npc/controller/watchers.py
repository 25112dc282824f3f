"""npc's three watches (Namespaces, Pods, NetworkPolicies) over the shared list/watch loop
(:mod:`common.service.listwatch`), feeding the :class:`~npc.controller.store.ClusterStore`."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from common.service import logs
from common.service.listwatch import ListFunc, Parse, Watcher
from common.service.logs import Logger
from npc.controller.store import ClusterStore, Kind, object_key, parse_object
from npc.model.parse import FieldError


def parser(kind: Kind, on_invalid: Callable[[FieldError], None]) -> Parse:
    """Objects of ``kind`` as the store keeps them; each problem goes to ``on_invalid``
    (a policy that fails validation is kept, as a rejected policy)."""
    def parse(obj: dict[str, Any]) -> tuple[str, Any] | None:
        outcome = parse_object(kind, obj)
        for err in outcome.errors:
            on_invalid(err)
        return None if outcome.value is None else (outcome.key, outcome.value)
    return parse


def list_functions(api_client: Any) -> dict[Kind, ListFunc]:
    """Each kind's list (and watch) function of the generated client."""
    from kubernetes import client

    core, net = client.CoreV1Api(api_client), client.NetworkingV1Api(api_client)
    return {Kind.NAMESPACE: core.list_namespace, Kind.POD: core.list_pod_for_all_namespaces,
            Kind.POLICY: net.list_network_policy_for_all_namespaces}


def watcher(kind: Kind, list_func: ListFunc, store: ClusterStore, *,
            on_error: Callable[[str, BaseException], None] = lambda *_: None,
            on_invalid: Callable[[FieldError], None] = lambda _: None,
            stop: threading.Event | None = None, log: Logger | None = None,
            **tuning: Any) -> Watcher[Kind]:
    """One kind's watcher (``tuning``: the loop's page size, timeouts, backoff, clock)."""
    return Watcher(kind, list_func, store, parse=parser(kind, on_invalid),
                   key_of=functools.partial(object_key, kind), on_error=on_error,
                   stop=stop or threading.Event(), log=log or logs.silent(), **tuning)


def watchers(api_client: Any, store: ClusterStore, **options: Any) -> list[Watcher[Kind]]:
    """A watcher of every kind npc needs (``options``: as :func:`watcher` takes them)."""
    return [watcher(kind, func, store, **options)
            for kind, func in list_functions(api_client).items()]
